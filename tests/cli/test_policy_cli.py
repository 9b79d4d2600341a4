"""`autoaug validate`, `show`, `export-albumentations`: the happy paths and user mistakes (one line, exit 2)."""

from __future__ import annotations

import subprocess
import sys

import albumentations as A
import cv2
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
