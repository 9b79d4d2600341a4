"""The child recipe at the image's scale (issue #20): pad side/8 and Cutout side/2 on any size,
horizontal flip a setting of its own on both paths, and CIFAR-10's 32x32 recipe unchanged."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from autoaug.errors import ConfigError
from autoaug.cli.common import child_settings
from autoaug.space.albu import ClippedCutout
from autoaug.space.pipeline import crop_pad, cutout_pixels, cutout_side, train_pipeline
from autoaug.space.specs import resolve
from autoaug.training.config import TrainConfig
from autoaug.training.loop import model_input

_IDENTITY = SimpleNamespace(mean=torch.zeros(3), std=torch.ones(3))  # normalised value == pixel


@pytest.mark.parametrize("side, pad, cut", [(32, 4, 16), (28, 4, 14), (24, 3, 12), (20, 3, 10), (8, 1, 4), (96, 12, 48)])
def test_sizes_scale_with_the_side(side, pad, cut):
    # side/8 and side/2 rounded half up (28 -> 3.5 -> 4, 20 -> 2.5 -> 3: Python's round would give 2)
    assert (crop_pad(side), cutout_side(side)) == (pad, cut)
    assert cutout_pixels("auto", (side, side)) == cut
    assert cutout_pixels("auto", (side, 2 * side)) == cut  # the shorter side
    assert cutout_pixels(5, (side, side)) == 5 and cutout_pixels(0, (side, side)) == 0  # pixels stay pixels
    assert TrainConfig(cutout="auto").for_images((side, side)).cutout == cut


def _coded(n: int, side: int) -> torch.Tensor:
    """(n, 3, side, side) uint8: channel 0 = row + 1, channel 1 = column + 1, channel 2 = 7."""
    rows, cols = np.mgrid[0:side, 0:side]
    image = np.stack([rows + 1, cols + 1, np.full_like(rows, 7)]).astype(np.uint8)
    return torch.from_numpy(image).expand(n, 3, side, side).contiguous()


def _shift_and_flip(x: torch.Tensor, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(largest crop shift in rows, flipped?) of each output of `_coded` without Cutout."""
    centre = side // 2
    shift = (x[:, 0, centre, centre].round().long() - 1 - centre).abs()  # source row - output row
    flipped = x[:, 1, centre, centre + 1] < x[:, 1, centre, centre]
    return shift.numpy(), flipped.numpy()


@pytest.mark.parametrize("side", [28, 32, 24])
def test_both_paths_pad_and_cut_at_the_image_scale(side):
    n = 400
    batch = _coded(n, side)
    pipeline = train_pipeline(None, mean=[0, 0, 0], std=[1, 1, 1], image_size=(side, side), cutout=0)
    pipeline.set_random_state(np.random.default_rng(0), __import__("random").Random(0))
    theirs = torch.stack([pipeline(image=img)["image"] for img in batch.permute(0, 2, 3, 1).numpy()])
    ours = model_input(batch, _IDENTITY, TrainConfig(cutout=0), torch.Generator().manual_seed(0))
    for x in (theirs, ours):
        shift, flipped = _shift_and_flip(x, side)
        # Offsets uniform over 0..2*pad: every shift up to the pad occurs (400 draws), none beyond.
        assert set(shift.tolist()) == set(range(crop_pad(side) + 1))
        assert 0.4 < flipped.mean() < 0.6
    ones = torch.ones(n, 3, side, side, dtype=torch.uint8)
    cut = model_input(ones, _IDENTITY, TrainConfig(standard=False, cutout="auto"), torch.Generator().manual_seed(1))
    zeros = (cut == 0).all(dim=1).sum(dim=(1, 2))  # (N,) pixels cut out of each image
    assert zeros.max() == cutout_side(side) ** 2  # a whole square where the centre is inside
    albu = train_pipeline(None, mean=[0, 0, 0], std=[1, 1, 1], image_size=(side, side), cutout="auto")
    (square,) = [t for t in albu.transforms if isinstance(t, ClippedCutout)]
    assert square.size == cutout_side(side)


def test_flip_off_is_honoured_on_both_paths_with_the_same_other_draws():
    side, n = 28, 200
    batch = _coded(n, side)
    flips = model_input(batch, _IDENTITY, TrainConfig(cutout=0), torch.Generator().manual_seed(3))
    plain = model_input(batch, _IDENTITY, TrainConfig(cutout=0, flip=False), torch.Generator().manual_seed(3))
    assert not _shift_and_flip(plain, side)[1].any()
    # The same crops: each image is the flipped one's mirror or equal to it (both occur).
    mirrored = (plain.flip(-1) == flips).flatten(1).all(dim=1)
    same = (plain == flips).flatten(1).all(dim=1)
    assert (mirrored | same).all() and mirrored.any() and same.any()
    # The Cutout draws after the flips stay those of the same seed with flips: the images not
    # flipped there come out identical, Cutout squares included.
    with_flips = model_input(batch, _IDENTITY, TrainConfig(cutout="auto"), torch.Generator().manual_seed(3))
    without = model_input(batch, _IDENTITY, TrainConfig(cutout="auto", flip=False), torch.Generator().manual_seed(3))
    assert torch.equal(with_flips[same], without[same]) and (with_flips[same] == 0).all(dim=1).sum() > 0

    pipeline = train_pipeline(None, mean=[0, 0, 0], std=[1, 1, 1], image_size=(side, side), flip=False, cutout=0)
    assert not any(type(t).__name__ == "HorizontalFlip" for t in pipeline.transforms)
    pipeline.set_random_state(np.random.default_rng(0), __import__("random").Random(0))
    theirs = torch.stack([pipeline(image=img)["image"] for img in batch.permute(0, 2, 3, 1).numpy()])
    shift, flipped = _shift_and_flip(theirs, side)
    assert not flipped.any() and shift.max() == crop_pad(side)


def test_flip_and_cutout_are_child_settings():
    config = child_settings(TrainConfig(), ["child.flip=false", "child.cutout=auto"])
    assert (config.flip, config.cutout) == (False, "auto")
    assert child_settings(TrainConfig(), ["child.cutout=12"]).cutout == 12
    with pytest.raises(ConfigError, match=r"cutout must be an int >= 0 \(pixels, 0 = off\) or 'auto'"):
        child_settings(TrainConfig(), ["child.cutout=half"])
    with pytest.raises(ConfigError, match="child.flip expects bool"):
        child_settings(TrainConfig(), ["child.flip=no"])


# Computed with the code before issue #20 (pad 4 and Cutout 16 fixed): the sum of the model input
# of 16 random 32x32 images under seed 7, and of the albumentations pipeline's output under seed 5.
# The recipe at 32x32 must draw and give exactly the same.
_OLD_MODEL_INPUT = {(True, 16): 8797.765175831504, (True, 0): 10856.105207221583, (False, 16): 10030.707936510444}
_OLD_PIPELINE = 8552.42486354243


def test_cifar_recipe_is_unchanged():
    images = torch.randint(0, 256, (16, 3, 32, 32), generator=torch.Generator().manual_seed(123), dtype=torch.uint8)
    data = SimpleNamespace(mean=torch.tensor([120.0, 115.0, 100.0]), std=torch.tensor([60.0, 62.0, 65.0]))
    for (standard, cutout), old in _OLD_MODEL_INPUT.items():
        for setting in (cutout, "auto") if cutout else (cutout,):
            out = model_input(images, data, TrainConfig(standard=standard, cutout=setting), torch.Generator().manual_seed(7))
            assert float(out.double().sum()) == pytest.approx(old, rel=1e-12), (standard, setting)
    pipeline = train_pipeline(None, mean=data.mean.tolist(), std=data.std.tolist(), image_size=(32, 32))
    pipeline.set_random_seed(5)
    outs = np.stack([pipeline(image=np.ascontiguousarray(im))["image"].numpy() for im in images.permute(0, 2, 3, 1).numpy()])
    assert float(outs.astype(np.float64).sum()) == pytest.approx(_OLD_PIPELINE, rel=1e-12)
    # ... and the specs say what they said on CIFAR.
    assert resolve("cutout").describe((32, 32)) == "standard + Cutout 16 (DeVries & Taylor 2017)"
    assert resolve("standard").describe((32, 32)) == "standard: pad 4 + random crop, horizontal flip"
    assert resolve("trivialaugment").describe((28, 28)).endswith("+ standard + Cutout 14")
