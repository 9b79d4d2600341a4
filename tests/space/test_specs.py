"""One spec resolver: train, show, validate, export-albumentations and the API accept the same specs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from autoaug.cli import main
from autoaug.errors import PolicyError
from autoaug.space.export import AlbumentationsFile
from autoaug.space.specs import resolve, resolve_policy
from autoaug.space.pipeline import cutout_pixels

ROOT = Path(__file__).resolve().parents[2]
SPECS = [
    "autoaugment-cifar10",
    "randaugment:N=2,M=9",
    "trivialaugment:ops=Rotate+Identity",
    str(ROOT / "policies/autoaugment-svhn.json"),
    str(ROOT / "policies/autoaugment-svhn.albumentations.json"),
]


@pytest.mark.parametrize("spec", SPECS)
def test_every_command_accepts_the_same_specs(spec, tmp_path, cifar_batch):
    resolved = resolve(spec)  # what `autoaug train --policy` uses
    # a policy gets standard + Cutout 16 on 32x32; an albumentations file is the whole recipe as written
    expected = (False, 0) if resolved.pipeline_file is not None else (True, 16)
    assert (resolved.standard, cutout_pixels(resolved.cutout, (32, 32))) == expected
    out = resolved.augmenter(cifar_batch[:4], torch.Generator().manual_seed(0))
    assert out.shape == cifar_batch[:4].shape and out.dtype == torch.uint8
    assert main(["validate", spec]) == 0
    assert main(["show", spec, "--out", str(tmp_path / "grid.png"), "--samples", "2"]) == 0
    if not isinstance(resolved.augmenter, AlbumentationsFile):
        assert main(["export-albumentations", spec, "--out", str(tmp_path / "x.albumentations.json")]) == 0


def test_baselines_name_no_policy():
    assert resolve("cutout").augmenter is None and cutout_pixels(resolve("cutout").cutout, (32, 32)) == 16
    with pytest.raises(PolicyError, match="'none' is a baseline without a policy"):
        resolve_policy("none")
