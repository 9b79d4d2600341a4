"""Whole albumentations pipelines (`autoaug.space.pipeline`): the exported train / eval files load with
`A.load` and give the tensors the torch path trains and evaluates on; the train pipeline's
pad-crop, flip and Cutout draw what the torch path draws; DataLoader workers; the README example;
a pipeline that does not end in ToTensorV2 is refused in one line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from autoaug.cli import main
from autoaug.errors import AutoaugError, PipelineError
from autoaug.space.pipeline import (
    eval_pipeline,
    load_pipeline_file,
    normalization,
    pipeline_path,
    seed_worker,
    train_pipeline,
)
from autoaug.space.policy import Policy, published_policy
from autoaug.training.config import TrainConfig
from autoaug.training.loop import model_input, normalise
from autoaug.training.pipelines import AlbumentationsDataset, dataset_stats

ROOT = Path(__file__).resolve().parents[2]
C10_TRAIN = ROOT / "policies" / "autoaugment-cifar10.train.albumentations.json"
C10_EVAL = ROOT / "policies" / "autoaugment-cifar10.eval.albumentations.json"


@pytest.fixture(scope="module")
def stats():
    return dataset_stats("cifar10-reduced")


def _run(pipeline, images: np.ndarray) -> torch.Tensor:
    return torch.stack([pipeline(image=img)["image"] for img in images])  # (N, C, H, W)


# --- what the files give ----------------------------------------------------------------------


def test_exported_train_and_eval_files_give_normalised_chw_tensors(tmp_path, cifar_images, stats):
    mean, std, _ = stats
    train_file, eval_file = tmp_path / "c10.train.json", tmp_path / "c10.eval.json"
    assert main(["export-albumentations", "autoaugment-cifar10", "--pipeline", "train", "--out", str(train_file)]) == 0
    assert main(["export-albumentations", "autoaugment-cifar10", "--pipeline", "eval", "--out", str(eval_file)]) == 0
    train, evaluate = A.load(str(train_file), data_format="json"), A.load(str(eval_file), data_format="json")
    assert [type(t).__name__ for t in train.transforms] == [
        "OneOf", "Normalize", "Pad", "RandomCrop", "HorizontalFlip", "ClippedCutout", "ToTensorV2"]
    # The dataset's statistics are written in both files.
    for pipeline in (train, evaluate):
        got_mean, got_std = normalization(pipeline)
        np.testing.assert_allclose(got_mean, mean, rtol=1e-6)
        np.testing.assert_allclose(got_std, std, rtol=1e-6)
    x = _run(train, cifar_images[:64])
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
    assert -3 < float(x.mean()) < 3 and float(x.abs().max()) < 3.5  # normalised, not 0..255
    # eval = exactly what `autoaug train` evaluates on (torch normalise), up to float rounding.
    expected = normalise(torch.from_numpy(cifar_images[:64]).permute(0, 3, 1, 2),
                         torch.tensor(mean), torch.tensor(std))
    torch.testing.assert_close(_run(evaluate, cifar_images[:64]), expected, rtol=0, atol=1e-5)


def test_policies_dir_holds_the_published_cifar10_train_and_eval_pipelines(cifar_images, stats):
    mean, std, size = stats
    for path in (C10_TRAIN, C10_EVAL):
        pipeline = load_pipeline_file(path)  # ends in ToTensorV2 or PipelineError
        np.testing.assert_allclose(normalization(pipeline)[0], mean, rtol=1e-6)
    fresh = train_pipeline(published_policy("autoaugment-cifar10"), mean=mean, std=std, image_size=size)
    assert A.to_dict(load_pipeline_file(C10_TRAIN)) == A.to_dict(fresh), "rerun experiments/make_policies.py"


def test_without_standard_or_cutout_the_train_pipeline_leaves_them_out(stats):
    mean, std, size = stats
    bare = train_pipeline(None, mean=mean, std=std, image_size=size, standard=False, cutout=0)
    assert A.to_dict(bare) == A.to_dict(eval_pipeline(mean=mean, std=std))  # Normalize + ToTensorV2


# --- the same draws as the torch path ---------------------------------------------------------

_IDENTITY = SimpleNamespace(mean=torch.zeros(3), std=torch.ones(3))  # normalised value == pixel
_N = 3000


def _coded_image() -> np.ndarray:
    """Channel 0 = row + 1, channel 1 = column + 1, channel 2 = 7 (HWC uint8): any output pixel
    says where it came from; 0 is the zero padding."""
    rows, cols = np.mgrid[0:32, 0:32]
    return np.stack([rows + 1, cols + 1, np.full_like(rows, 7)], axis=-1).astype(np.uint8)


def _crop_flip(x: torch.Tensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dy, dx, flipped) of each output (N, 3, 32, 32) of a zero-pad-4 crop of `_coded_image`."""
    row = x[:, 0, 16, 16].round().long() - 1  # source row of output row 16 = 16 + dy - 4
    step = x[:, 1, 16, 17] - x[:, 1, 16, 16]  # +1 plain, -1 flipped
    col = x[:, 1, 16, 16].round().long() - 1
    flipped = step < 0
    # Unflipped: output column c reads padded column dx + c; flipped: dx + 31 - c.
    dx = torch.where(flipped, col + 4 - 15, col + 4 - 16)
    assert torch.equal(step.abs(), torch.ones_like(step))
    return (row + 4 - 16).numpy(), dx.numpy(), flipped.numpy()


def test_pad_crop_flip_draws_as_the_torch_path():
    image = _coded_image()
    pipeline = train_pipeline(None, mean=[0, 0, 0], std=[1, 1, 1], image_size=(32, 32), cutout=0)
    pipeline.set_random_state(np.random.default_rng(0), __import__("random").Random(0))
    theirs = _run(pipeline, np.broadcast_to(image, (_N, 32, 32, 3)))
    batch = torch.from_numpy(image).permute(2, 0, 1).expand(_N, 3, 32, 32).contiguous()
    ours = model_input(batch, _IDENTITY, TrainConfig(cutout=0), torch.Generator().manual_seed(0))
    for x in (theirs, ours):
        dy, dx, flipped = _crop_flip(x)
        # Offsets uniform over 0..8 (the 9 crops of the 40 x 40 padded image), flips at 1/2:
        # with 3,000 draws a bin's count has std sqrt(3000 * 1/9 * 8/9) = 17, so 333 +/- 70.
        for offsets in (dy, dx):
            counts = np.bincount(offsets, minlength=9)
            assert len(counts) == 9 and counts.min() > 333 - 70 and counts.max() < 333 + 70, counts
        assert abs(flipped.mean() - 0.5) < 0.04
        # The padding is zeros: row dy of the padded image above the picture, for dy < 4.
        top = x[:, 0, 0, 16]
        assert torch.equal(top == 0, torch.from_numpy(dy < 4))


def _cutout_boxes(x: torch.Tensor) -> np.ndarray:
    """(N, 4) rows y0, y1, x0, x1 of the zeroed rectangle of each all-ones output, checking it is one."""
    zero = (x == 0).all(dim=1)  # (N, H, W)
    assert torch.equal(zero, (x == 0).any(dim=1))  # every channel cut together
    boxes = []
    for z in zero:
        rows, cols = z.any(dim=1).nonzero().flatten(), z.any(dim=0).nonzero().flatten()
        assert len(rows) * len(cols) == int(z.sum())  # a filled rectangle
        boxes.append((rows.min(), rows.max() + 1, cols.min(), cols.max() + 1))
    return np.array(boxes)


def test_cutout_draws_as_the_torch_path():
    ones = np.ones((32, 32, 3), np.uint8)
    pipeline = train_pipeline(None, mean=[0, 0, 0], std=[1, 1, 1], image_size=(32, 32), standard=False, cutout=16)
    pipeline.set_random_state(np.random.default_rng(1), __import__("random").Random(1))
    theirs = _run(pipeline, np.broadcast_to(ones, (_N, 32, 32, 3)))
    batch = torch.ones(_N, 3, 32, 32, dtype=torch.uint8)
    ours = model_input(batch, _IDENTITY, TrainConfig(standard=False, cutout=16), torch.Generator().manual_seed(1))
    # Centre uniform over the 32 rows: the square spans [c - 8, c + 8) clipped to [0, 32), so a
    # side is 16 for c in 8..24 (17 of 32) and 8 + c or 40 - c otherwise.
    sides = np.array([min(c + 8, 32) - max(c - 8, 0) for c in range(32)])
    for x in (theirs, ours):
        boxes = _cutout_boxes(x)
        heights, widths = boxes[:, 1] - boxes[:, 0], boxes[:, 3] - boxes[:, 2]
        assert set(heights) <= set(sides) and heights.min() == 8 and widths.max() == 16
        full = (heights == 16) & (widths == 16)
        assert abs(full.mean() - (17 / 32) ** 2) < 0.03  # std of the fraction: 0.008
        assert abs(heights.mean() - sides.mean()) < 0.25  # std of the mean side: 0.05
        # Clipped at both borders alike: top-left corners at 0 as often as bottom-right at 32.
        assert abs((boxes[:, 0] == 0).mean() - (boxes[:, 1] == 32).mean()) < 0.04


# --- DataLoader workers, the README example ---------------------------------------------------


def test_dataloader_with_two_workers_over_the_exported_file(cifar_images):
    # Every image the same, so each draw shows the randomness alone.
    dataset = AlbumentationsDataset(np.repeat(cifar_images[:1], 64, axis=0), np.arange(64) % 10,
                                    load_pipeline_file(C10_TRAIN))

    def epoch(**kwargs) -> torch.Tensor:
        batches = list(torch.utils.data.DataLoader(dataset, batch_size=16, num_workers=2, **kwargs))
        assert len(batches) == 4 and batches[0][1].tolist() == list(range(10)) + list(range(6))
        x = torch.cat([b[0] for b in batches])
        assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
        return x

    # Without seed_worker albumentations' forked generators repeat: worker 1's batch equals
    # worker 0's, and the next epoch the first one (what the README warns against) ...
    a, b = epoch(), epoch()
    assert torch.equal(a[:16], a[16:32]) and torch.equal(a, b)
    # ... with it, workers and epochs draw apart, reproducibly from the loader's generator.
    g = torch.Generator().manual_seed(0)
    c, d = epoch(worker_init_fn=seed_worker, generator=g), epoch(worker_init_fn=seed_worker, generator=g)
    assert not torch.equal(c[:16], c[16:32]) and not torch.equal(c, d)
    assert torch.equal(c, epoch(worker_init_fn=seed_worker, generator=torch.Generator().manual_seed(0)))


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    found = re.search(r"<!-- example: own dataset -->\s*```python\n(.*?)```", text, re.S)
    assert found, "README.md lost its own-dataset example (marker `<!-- example: own dataset -->`)"
    return found.group(1)


def test_readme_own_dataset_example_runs_as_written(tmp_path, cifar_images):
    """As written (the published CIFAR-10 pair on 32x32), and (issue #22) with the export of a
    policy that holds SamplePairing on grey 20x20 images: set_image_pool and LazyLinear."""
    for split, images in (("train", cifar_images[:12]), ("test", cifar_images[12:18])):
        for i, img in enumerate(images):
            for root, picture in (("data", cv2.cvtColor(img, cv2.COLOR_RGB2BGR)),
                                  ("grey/data", cv2.resize(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY), (20, 20)))):
                folder = tmp_path / root / split / ("cat" if i % 2 else "dog")
                folder.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(folder / f"{i}.png"), picture)
    (tmp_path / "policies").mkdir()
    for path in (C10_TRAIN, C10_EVAL):
        (tmp_path / "policies" / path.name).write_text(path.read_text())
    native = tmp_path / "grey" / "pairing.json"
    Policy.from_json({"format": "autoaug.policy", "version": 1, "kind": "policy", "sub_policies": [
        [{"op": "SamplePairing", "prob": 1.0, "magnitude_bin": 9}, {"op": "Sharpness", "prob": 0.5, "magnitude_bin": 2}],
    ]}).save(native)
    for kind in ("train", "eval"):
        assert main(["export-albumentations", str(native), "--pipeline", kind, "--dataset",
                     f"folder:{tmp_path / 'grey' / 'data'}", "--out", str(tmp_path / "grey" / f"p.{kind}.json")]) == 0
    for cwd, args in ((tmp_path, []), (tmp_path / "grey", ["p.train.json", "p.eval.json"])):
        (cwd / "example.py").write_text(_readme_example())
        run = subprocess.run([sys.executable, "example.py", *args], capture_output=True, text=True, cwd=cwd, timeout=120)
        assert run.returncode == 0, run.stderr
        assert re.search(r"test accuracy \d+\.\d%", run.stdout), run.stdout


# --- bad input --------------------------------------------------------------------------------


def test_a_pipeline_without_totensorv2_is_refused_where_tensors_are_needed(tmp_path, cifar_images):
    policy_only = tmp_path / "c10.albumentations.json"
    assert main(["export-albumentations", "autoaugment-cifar10", "--out", str(policy_only)]) == 0
    with pytest.raises(PipelineError, match="ends in OneOf, expected ToTensorV2"):
        load_pipeline_file(policy_only)
    with pytest.raises(PipelineError, match="expected ToTensorV2"):
        AlbumentationsDataset(cifar_images[:4], np.zeros(4), A.load(str(policy_only), data_format="json"))
    assert issubclass(PipelineError, AutoaugError)


def test_train_wraps_a_policy_only_albumentations_file_in_the_recipe_on_either_path(tmp_path, tiny_npz, capsys):
    """Issue #22: the file `autoaug export` writes as its main artifact trains like the native
    policy, inside the data's train recipe, on the torch and on the albumentations path; its
    SamplePairing gets the training images as partners on both."""
    native = tmp_path / "mine.json"
    Policy.from_json({"format": "autoaug.policy", "version": 1, "kind": "policy", "sub_policies": [[{"op": "SamplePairing", "prob": 1.0, "magnitude_bin": 9},
                                        {"op": "Sharpness", "prob": 1.0, "magnitude_bin": 2}]]}).save(native)
    policy_only = tmp_path / "mine.albumentations.json"
    assert main(["export-albumentations", str(native), "--out", str(policy_only)]) == 0
    for path in ("torch", "albumentations"):
        out = tmp_path / path
        assert main(["train", "--policy", str(policy_only), "--augment", path, "--workers", "1", "--epochs", "1",
                     "--dataset", f"npz:{tiny_npz}", "--device", "cpu", "--set", "child.batch_size=12",
                     "--out", str(out)]) == 0
        assert "albumentations policy mine.albumentations.json + standard + Cutout 8" in capsys.readouterr().out
    # The albumentations path wrote the recipe around the policy, as export --pipeline train does.
    whole = load_pipeline_file(tmp_path / "albumentations" / "train.albumentations.json")
    assert [type(t).__name__ for t in whole.transforms][1:] == [
        "Normalize", "Pad", "RandomCrop", "HorizontalFlip", "ClippedCutout", "ToTensorV2"]


@pytest.mark.parametrize("args, message", [
    (["export-albumentations", "autoaugment-cifar10", "--pipeline", "test"], "invalid choice: 'test'"),
    (["export-albumentations", "autoaugment-cifar10", "--dataset", "cifar10-reduced"], "--dataset sets the normalisation"),
    (["export-albumentations", "cutout"], "baseline without a policy"),
    (["export-albumentations", "autoaugment-cifar10", "--pipeline", "train", "--dataset", "nope"], "nope"),
    (["train", "--policy", "POLICIES/autoaugment-cifar10.train.albumentations.json"], "--augment albumentations"),
])
def test_cli_mistakes_are_one_line_and_exit_2(tmp_path, args, message, capsys):
    # In process (autoaug.cli.main is what `python -m autoaug` runs; the subprocess case is above).
    args = [a.replace("POLICIES", str(ROOT / "policies")) for a in args] + ["--out", str(tmp_path / "out")]
    try:
        code = main(args)
    except SystemExit as stop:  # argparse's own usage errors
        code = stop.code
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert message in err.strip().splitlines()[-1], err
    assert not (tmp_path / "out").exists()


def test_cli_writes_the_three_pipelines(tmp_path, capsys):
    for kind in ("policy", "train", "eval"):
        out = pipeline_path(tmp_path / "c10.json", kind)
        assert main(["export-albumentations", "autoaugment-cifar10", "--pipeline", kind, "--out", str(out)]) == 0
        # The note for Sharpness and ClippedCutout; the eval pipeline is albumentations' own.
        assert ("import autoaug" in capsys.readouterr().out) == (kind != "eval")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "c10.albumentations.json", "c10.eval.albumentations.json", "c10.train.albumentations.json"]
    assert isinstance(load_pipeline_file(tmp_path / "c10.albumentations.json", tensors=False).transforms[0], A.OneOf)
