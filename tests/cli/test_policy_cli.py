"""`autoaug validate`, `show`, `export-albumentations`: the happy paths and user mistakes (one line, exit 2)."""

from __future__ import annotations

import subprocess
import sys

import albumentations as A
import cv2
import numpy as np
import pytest

from autoaug.cli import main
from autoaug.space.policy import published_policy
from autoaug.space.render import sub_policy_label


def test_validate_prints_a_summary(capsys):
    assert main(["validate", "policies/autoaugment-cifar10.json"]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "25 sub-policies" in out and "Invert(p=0.1)" in out


def test_show_draws_one_row_per_sub_policy_plus_the_originals(tmp_path):
    out = tmp_path / "grid.png"
    assert main(["show", "policies/autoaugment-cifar10.json", "--out", str(out), "--samples", "4"]) == 0
    img = cv2.imread(str(out))
    image = 32 * 3  # 3x upscaled image under its label strip of 14 px per line
    assert img.shape == ((14 + image) + 25 * (2 * 14 + image), 4 * 32 * 3, 3)  # a line per op


def test_show_labels_each_op_with_probability_and_magnitude():
    sub = published_policy("autoaugment-cifar10").sub_policies[1]
    assert sub_policy_label(1, sub).splitlines() == [
        "1: Rotate(p=0.7, bin 2 = +/-6.67 degrees)",
        "  > TranslateX(p=0.3, bin 9 = +/-0.453 fraction of the width)",
    ]
    # the published CIFAR-10 policy reads translate on the reference code's range (issue #8)
    assert sub_policy_label(1, sub, "reference").splitlines()[1] == (
        "  > TranslateX(p=0.3, bin 9 = +/-0.312 fraction of the width)"
    )


def test_export_albumentations_writes_a_loadable_file(tmp_path):
    out = tmp_path / "svhn.albumentations.json"
    assert main(["export-albumentations", "autoaugment-svhn", "--out", str(out)]) == 0
    assert isinstance(A.load(str(out), data_format="json"), A.Compose)


@pytest.mark.parametrize("args, message", [
    (["validate", "missing.json"], "missing.json: no such file"),
    (["validate", "autoaugment-mnist"], "unknown published policy"),
    (["show", "autoaugment-cifar10", "--out", "x.png", "--samples", "0"], "--samples: expected a positive number"),
])
def test_user_mistakes_are_one_line_and_exit_2(tmp_path, args, message):
    run = subprocess.run([sys.executable, "-m", "autoaug", *args], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


def test_bad_policy_file_exit_2(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "autoaug.policy", "version": 1, "kind": "policy", "sub_policies": [[{"op": "Rotate", "prob": 2, "magnitude_bin": 1}]]}')
    run = subprocess.run([sys.executable, "-m", "autoaug", "validate", str(bad)], capture_output=True, text=True)
    assert run.returncode == 2 and "sub_policies[0][0].prob" in run.stderr and "Traceback" not in run.stderr


def test_show_draws_an_albumentations_export(tmp_path):
    exported = tmp_path / "c10.albumentations.json"
    assert main(["export-albumentations", "autoaugment-cifar10", "--out", str(exported)]) == 0
    out = tmp_path / "grid.png"
    assert main(["show", str(exported), "--out", str(out), "--samples", "3"]) == 0
    img = cv2.imread(str(out))
    assert img.shape == (6 * (14 + 32 * 3), 3 * 32 * 3, 3)  # originals + 5 fresh draws
    assert main(["validate", str(exported)]) == 0
    assert main(["export-albumentations", str(exported), "--out", str(tmp_path / "again.json")]) == 2


# --- show --targets (issue #25) ---------------------------------------------------------------


def _tiles(img, rows: list[int], samples: int, side: int = 32 * 3):
    """The (side, side) image tiles of a show picture whose label strips have `rows[k]` lines."""
    top = 0
    for lines in rows:
        top += 14 * lines
        yield [img[top: top + side, j * side: (j + 1) * side] for j in range(samples)]
        top += side


def _count(tile, rgb) -> int:
    return int((tile == rgb[::-1]).all(axis=2).sum())  # cv2 reads BGR


def test_show_targets_draws_a_mask_box_and_keypoints_on_every_image(tmp_path):
    from autoaug.space.render import BOX_COLOUR, MASK_COLOUR

    plain, drawn = tmp_path / "grid.png", tmp_path / "targets.png"
    assert main(["show", "autoaugment-cifar10", "--out", str(plain), "--samples", "3"]) == 0
    assert main(["show", "autoaugment-cifar10", "--targets", "--out", str(drawn), "--samples", "3"]) == 0
    a, b = cv2.imread(str(plain)), cv2.imread(str(drawn))
    assert a.shape == b.shape  # the same grid: originals, then one row per sub-policy
    rows = [1] + [len(sub) for sub in published_policy("autoaugment-cifar10").sub_policies]
    for tiles_a, tiles_b in zip(_tiles(a, rows, 3), _tiles(b, rows, 3)):
        for ta, tb in zip(tiles_a, tiles_b):
            assert _count(ta, BOX_COLOUR) < 5 and _count(tb, BOX_COLOUR) > 100  # a box's outline
            assert _count(tb, MASK_COLOUR) > 10  # the ellipse's outline, part of it pushed out maybe


def test_show_targets_moves_the_box_with_the_image(tmp_path):
    from autoaug.space.render import BOX_COLOUR

    policy = tmp_path / "rotate.json"
    policy.write_text('{"format": "autoaug.policy", "version": 1, "kind": "policy", "sub_policies": '
                      '[[{"op": "Rotate", "prob": 1.0, "magnitude_bin": 9}]]}')
    out = tmp_path / "targets.png"
    assert main(["show", str(policy), "--targets", "--out", str(out), "--samples", "2"]) == 0
    original, rotated = _tiles(cv2.imread(str(out)), [1, 1], 2)
    for before, after in zip(original, rotated):
        box_before = (before == BOX_COLOUR[::-1]).all(axis=2)
        box_after = (after == BOX_COLOUR[::-1]).all(axis=2)
        assert box_after.sum() > box_before.sum() + 20  # a rotated ellipse's box is larger


def test_show_targets_refuses_images_too_small_for_a_target(tmp_path, cli_fails):
    tiny = tmp_path / "tiny.npz"
    x = np.zeros((4, 6, 6, 3), np.uint8)
    np.savez(tiny, x=x, y=np.arange(4), x_val=x, y_val=np.arange(4), x_test=x, y_test=np.arange(4))
    cli_fails(["show", "autoaugment-cifar10", "--targets", "--dataset", f"npz:{tiny}", "--out",
               str(tmp_path / "t.png")], "--targets: expected images of at least 8x8 pixels", "got 6x6")
    assert not (tmp_path / "t.png").exists()


@pytest.mark.parametrize("policy", ["trivialaugment", "policies/autoaugment-cifar10.train.albumentations.json"])
def test_show_targets_draws_five_draws_of_a_policy_without_sub_policies(tmp_path, policy):
    """TrivialAugment, and the whole exported train pipeline (crop, flip and Cutout move or hide the
    target too), whose normalised tensors are drawn back as pixels."""
    from autoaug.space.render import BOX_COLOUR

    out = tmp_path / "targets.png"
    assert main(["show", policy, "--targets", "--out", str(out), "--samples", "2"]) == 0
    img = cv2.imread(str(out))
    assert img.shape == (6 * (14 + 32 * 3), 2 * 32 * 3, 3)
    for tiles in _tiles(img, [1] * 6, 2):
        for tile in tiles:
            assert _count(tile, BOX_COLOUR) > 50 and 30 < tile.mean() < 225  # pixels, not normalised values
