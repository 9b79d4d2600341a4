"""The op table: every row complete, ranges and units as the paper gives them, kernels pure."""

from __future__ import annotations

import math

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from autoaug.space.albu import compose
from autoaug.space.ops import MAGNITUDE_BINS, OP_NAMES, OPS, TABLE, OpContext, get_op
from autoaug.errors import PolicyError

PAPER_OPS = (
    "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "AutoContrast", "Invert", "Equalize",
    "Solarize", "Posterize", "Contrast", "Color", "Brightness", "Sharpness", "Cutout", "SamplePairing",
)


def test_table_holds_the_papers_sixteen_ops_in_token_order():
    assert OP_NAMES == PAPER_OPS
    assert [op.name for op in TABLE] == [*PAPER_OPS, "Identity"]  # Identity: outside the search space


@pytest.mark.parametrize("op", TABLE, ids=lambda op: op.name)
def test_every_row_has_kernel_export_and_range(op, cifar_batch):
    assert callable(op.kernel) and callable(op.albumentations) and op.unit
    x = cifar_batch[:4]
    g = torch.Generator().manual_seed(0)
    for magnitude_bin in range(MAGNITUDE_BINS):
        m = op.magnitude(magnitude_bin)
        out = op.kernel(x.clone(), torch.full((4,), m), OpContext(g, x, torch.arange(4)))
        assert out.shape == x.shape and out.dtype == torch.uint8
        t = op.albumentations(m, 1.0)
        assert isinstance(t, A.BasicTransform)
    if op.has_magnitude:
        assert op.magnitude(MAGNITUDE_BINS - 1) == pytest.approx(op.high)  # bin 9 is the end of the range
        assert op.magnitude(0) == pytest.approx(op.low)


def test_ranges_follow_the_paper():
    # AutoAugment appendix: shear 0.3, translate 150 px of 331, rotate 30 deg, solarize 256..0
    # (the reference code's direction: bin 0 inverts nothing, bin 9 everything),
    # posterize 4..8 bits, enhancement factors 0.1..1.9, sample pairing weight 0.4
    assert get_op("ShearX").high == 0.3 and get_op("Rotate").high == 30
    assert math.isclose(get_op("TranslateY").high, 150 / 331)
    assert get_op("Solarize").magnitude(0) == 256 and get_op("Solarize").magnitude(9) == 0
    assert [get_op("Posterize").magnitude(b) for b in (0, 9)] == [8, 4]
    for name in ("Contrast", "Color", "Brightness", "Sharpness"):
        assert get_op(name).magnitude(0) == pytest.approx(0.1) and get_op(name).magnitude(9) == pytest.approx(1.9)
    assert get_op("SamplePairing").high == 0.4
    assert {op.name for op in OPS if op.signed} == {"ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"}


def test_unknown_op_lists_valid_names():
    with pytest.raises(PolicyError, match="expected one of ShearX, ShearY"):
        get_op("Shear")


def test_known_answers_on_a_tiny_image():
    x = torch.tensor([[[[0, 100], [200, 255]]]], dtype=torch.uint8).expand(1, 3, 2, 2).contiguous()
    g = torch.Generator()
    ctx = OpContext(g, x, torch.arange(1))
    assert get_op("Invert").kernel(x, torch.zeros(1), ctx)[0, 0].tolist() == [[255, 155], [55, 0]]
    assert get_op("Solarize").kernel(x, torch.tensor([150.0]), ctx)[0, 0].tolist() == [[0, 100], [55, 0]]
    assert get_op("Posterize").kernel(x, torch.tensor([4.0]), ctx)[0, 0].tolist() == [[0, 96], [192, 240]]
    assert get_op("Brightness").kernel(x, torch.tensor([0.5]), ctx)[0, 0].tolist() == [[0, 50], [100, 127]]
    # AutoContrast leaves [0, 255] alone (255 counts towards the range, as in PIL)...
    assert get_op("AutoContrast").kernel(x, torch.zeros(1), ctx)[0, 0].tolist() == [[0, 100], [200, 255]]
    # ...and stretches [100, 200] towards [0, 255] truncating, float quirk and all, as Pillow 13
    # does: 150 -> 127.5 -> 127, and 200 -> 200 * 2.55 - 100 * 2.55 = 254.99999999999997 -> 254
    y = torch.tensor([[[[100, 150], [200, 200]]]], dtype=torch.uint8).expand(1, 3, 2, 2).contiguous()
    assert get_op("AutoContrast").kernel(y, torch.zeros(1), ctx)[0, 0].tolist() == [[0, 127], [254, 254]]


def test_translate_moves_whole_pixels_and_fills_grey():
    x = torch.arange(16, dtype=torch.uint8).reshape(1, 1, 4, 4).expand(1, 3, 4, 4).contiguous()
    ctx = OpContext(torch.Generator(), x, torch.arange(1))
    out = get_op("TranslateX").kernel(x, torch.tensor([0.25]), ctx)[0, 0]  # one pixel right
    assert out[:, 0].tolist() == [128] * 4
    assert out[:, 1:].tolist() == x[0, 0, :, :3].tolist()
    # 0.375 of 4 px is 1.5 px: rounded half away from zero, so 2 px (either way)
    for sign in (1, -1):
        out = get_op("TranslateX").kernel(x, torch.tensor([0.375 * sign]), ctx)[0, 0]
        assert (out == 128).sum().item() == 8


def test_cutout_hole_size_and_fill(cifar_batch):
    x = cifar_batch[:8]
    g = torch.Generator().manual_seed(1)
    m = get_op("Cutout").magnitude(9)  # 20/32 of the side -> 20 px
    out = get_op("Cutout").kernel(x.clone(), torch.full((8,), m), OpContext(g, x, torch.arange(8)))
    changed = (out != x).any(dim=1)  # (8, H, W)
    grey = (out == 128).all(dim=1)
    for i in range(8):
        assert grey[i].sum() >= 400 and (changed[i] <= grey[i]).all()
        rows = grey[i].any(dim=1).nonzero().squeeze(1)
        cols = grey[i].any(dim=0).nonzero().squeeze(1)
        assert rows.max() - rows.min() + 1 >= 20 and cols.max() - cols.min() + 1 >= 20


def test_sample_pairing_blends_with_another_image_of_the_batch(cifar_batch):
    x = cifar_batch[:2]
    out = get_op("SamplePairing").kernel(x.clone(), torch.full((2,), 0.4), OpContext(torch.Generator(), x, torch.arange(2)))
    expected = (x[0].float() * 0.6 + x[1].float() * 0.4).round().to(torch.uint8)
    assert torch.equal(out[0], expected)


# Issue #22: a user's own images may be grayscale, as (H, W) or (H, W, 1) uint8.
SHAPES = ("HW", "HW1", "HW3")


def _shaped(rgb: np.ndarray, shape: str) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    return {"HW": grey, "HW1": grey[..., None], "HW3": rgb}[shape]


@pytest.mark.parametrize("op", TABLE, ids=lambda op: op.name)
def test_every_op_at_every_bin_runs_on_one_and_three_channel_images(op, cifar_images):
    """The exported transform (autoaug's own or albumentations') and the torch kernel keep the
    shape and dtype of (H, W), (H, W, 1) and (H, W, 3) uint8 images, at every magnitude bin, on
    both signs; the pool SamplePairing draws from has the images' own layout."""
    g = torch.Generator().manual_seed(0)
    for shape in SHAPES:
        images = np.stack([_shaped(img, shape) for img in cifar_images[:4]])
        batch = torch.from_numpy(images.reshape(*images.shape[:3], -1)).permute(0, 3, 1, 2).contiguous()
        for magnitude_bin in range(MAGNITUDE_BINS):
            for sign in (1, -1) if op.signed else (1,):
                m = sign * op.magnitude(magnitude_bin)
                pipeline = compose([op.albumentations(m, 1.0)], image_pool=images, seed=magnitude_bin)
                for img in images:
                    out = pipeline(image=img)["image"]
                    assert out.shape == img.shape and out.dtype == np.uint8, (shape, magnitude_bin, m)
                out = op.kernel(batch.clone(), torch.full((4,), m), OpContext(g, batch, torch.arange(4)))
                assert out.shape == batch.shape and out.dtype == torch.uint8, (shape, magnitude_bin, m)
