"""Issue #22: a folder of the user's own images (mixed sizes, grayscale) through every command that
reads a dataset: one image-size setting, recorded in the run's config and the policy file, and
the commands after a search default to the dataset it was searched on."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from autoaug import cli
from autoaug.cli.train import default_out
from autoaug.search.rewards import small_val_warning
from autoaug.search.config import CONFIG_FILENAME, load_config
from autoaug.space.pipeline import load_pipeline_file
from autoaug.space.specs import load_policy

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 16


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """3 classes x 14 grayscale PNGs, half 16x16 and half 20x18: a class is a brightness band."""
    root = tmp_path_factory.mktemp("own")
    rng = np.random.default_rng(0)
    for k, name in enumerate(("boot", "coat", "shirt")):
        (root / name).mkdir()
        for i in range(14):
            hw = (16, 16) if i % 2 else (20, 18)
            grey = np.clip(rng.normal(60 + 70 * k, 20, hw), 0, 255).astype(np.uint8)  # (H, W): one channel
            assert cv2.imwrite(str(root / name / f"{i:02d}.png"), grey)
    return root


TINY = ["--set", "batch_size=2", "backend=inline", "child.epochs=1", "child.batch_size=8",
        "reward.paired=false", "export.reevaluate_top=0"]


def test_a_folder_of_mixed_sizes_is_searched_with_one_image_size_then_shown_and_trained_on_it(
        folder: Path, tmp_path: Path, capsys, cli_fails) -> None:
    spec = f"folder:{folder}"
    run = tmp_path / "run"
    # Without a size: the error names the flag, and the flag exists on search.
    cli_fails(["search", "--dataset", spec, "--out", str(run), "--budget", "2", "--no-progress", *TINY],
              "--image-size")
    assert cli.main(["search", "--dataset", spec, "--image-size", str(SIZE), "--out", str(run), "--budget", "2",
                     "--no-progress", *TINY]) == 0
    captured = capsys.readouterr()
    out = captured.out
    # approx_kl (in the hundreds at clipfrac 0.75, normal) is left to TensorBoard (item 9).
    assert "round 1/1: 2 policies" in captured.err and "approx_kl" not in captured.err
    # The start header (item 7): data, directory, recipe, phases; the round line adds the time to go.
    assert f"autoaug search on {spec}: {SIZE}x{SIZE} images, 3 classes" in captured.err
    assert "1. search: 2 policies in 1 rounds of 2 = 2 children" in captured.err
    assert "2 children in all" in captured.err and "min to go in all (0 children left" in captured.err
    # 3 val images (one per class, carved): one image moves the reward by 33 points (item 13).
    assert "warning: the reward is scored on 3 val images, so one image moves it by 33.33 points" in captured.err
    assert load_config(run / CONFIG_FILENAME).image_size == SIZE  # recorded in the run's config
    policy = load_policy(run / "policy.json")
    assert policy.provenance["dataset"] == spec and policy.provenance["image_size"] == SIZE
    assert f"autoaug train --policy {run / 'policy.json'} --dataset {spec} --image-size {SIZE}" in out
    # The closing summary (item 9): the exported policies labelled, best first.
    listed = [float(line.split("search reward ")[1]) for line in out.splitlines() if line.startswith("  trial ")]
    assert "exported 2 policies, best first by the search's reward:" in out and listed == sorted(listed, reverse=True)
    # One call wrote all four files (item 10).
    assert all((run / f"policy{kind}.json").is_file() for kind in ("", ".albumentations", ".train.albumentations",
                                                                    ".eval.albumentations"))

    # show and train default to the policy's dataset and size; another --dataset is warned about.
    assert cli.main(["show", str(run / "policy.json"), "--out", str(tmp_path / "grid.png"), "--samples", "2"]) == 0
    assert f"images of {spec}" in capsys.readouterr().out
    # ... and so does the albumentations policy written beside policy.json (its dataset is the native file's).
    assert cli.main(["show", str(run / "policy.albumentations.json"), "--out", str(tmp_path / "albu.png"),
                     "--samples", "2"]) == 0
    assert f"images of {spec}" in capsys.readouterr().out
    assert cli.main(["train", "--policy", str(run / "policy.json"), "--epochs", "1",
                     "--out", str(tmp_path / "train")]) == 0
    results = json.loads((tmp_path / "train" / "results.json").read_text())
    assert results["dataset"] == spec and results["image_size"] == [SIZE, SIZE]
    assert cli.main(["show", str(run / "policy.json"), "--dataset", "cifar10-reduced",
                     "--out", str(tmp_path / "cifar.png"), "--samples", "2"]) == 0
    captured = capsys.readouterr()
    assert f"was searched on {spec}; using --dataset cifar10-reduced" in captured.err
    assert "images of cifar10-reduced" in captured.out

    # export's train pipeline: its crop is the run's size, its Normalize the run's folder's.
    assert cli.main(["export", str(run), "--out", str(tmp_path / "p.json")]) == 0
    crop = [t for t in load_pipeline_file(tmp_path / "p.train.albumentations.json").transforms
            if type(t).__name__ == "RandomCrop"]
    assert (crop[0].height, crop[0].width) == (SIZE, SIZE)
    capsys.readouterr()

    # The same flag on the other commands that read a dataset.
    assert cli.main(["data", "info", spec, "--image-size", str(SIZE)]) == 0
    assert f"images {SIZE}x{SIZE}" in capsys.readouterr().out
    assert cli.main(["randaugment", "--dataset", spec, "--image-size", str(SIZE), "--n", "1", "--m", "9",
                     "--epochs", "1", "--set", "child.batch_size=8", "--backend", "inline",
                     "--out", str(tmp_path / "ra"), "--no-test"]) == 0
    best = load_policy(tmp_path / "ra" / "best.json").provenance
    assert best["dataset"] == spec and best["image_size"] == SIZE
    capsys.readouterr()
    cli_fails(["compare", "--dataset", spec, "--no-free", "standard", "--out", str(tmp_path / "c")], "--image-size")


def test_trains_default_output_directories_do_not_collide():
    """Item 12: two searches' policy.json, or one policy on two datasets or sizes, train into
    different default directories; the same command goes to the same one."""
    a = default_out("runs/a/policy.json", "cifar10-reduced", None)
    assert a.name.startswith("train-policy-cifar10-reduced-") and a == default_out("runs/a/policy.json", "cifar10-reduced", None)
    others = {default_out("runs/b/policy.json", "cifar10-reduced", None), default_out("runs/a/policy.json", "folder:x", None),
              default_out("runs/a/policy.json", "cifar10-reduced", 28)}
    assert a not in others and len(others) == 3


def test_small_val_warning_follows_the_measured_reward_noise():
    assert small_val_warning(2000) is None and small_val_warning(121) is None  # 0.83 points per image at 121
    assert "one image moves it by 1.00 points" in small_val_warning(100)
