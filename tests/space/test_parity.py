"""The contract between search and deployment: both executions of every op and of a whole policy agree.

Pixel parity: for every op x magnitude bin x sign, on real CIFAR images, the torch kernel and the
albumentations transform the same table row exports give the same image within the op's
tolerance. Statistical parity: both executions draw sub-policies uniformly, fire each op with its
probability and pick each sign half the time.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from autoaug.space import albu
from autoaug.space.export import to_albumentations
from autoaug.space.ops import MAGNITUDE_BINS, OPS, TABLE, OpContext, get_op
from autoaug.space.policy import Operation, Policy

# Largest per-pixel difference allowed between the executions, per op. Zero unless a comment says why.
MAX_ABS_DIFF = {
    # OpenCV's warpAffine quantises source coordinates to 1/32 px and uses fixed-point bilinear
    # weights; grid_sample uses exact float weights: an off-by-one after rounding on edges.
    # (TranslateX/Y, AutoContrast and Equalize export as autoaug transforms that run the kernel.)
    "ShearX": 1, "ShearY": 1, "Rotate": 1,
    # OpenCV's addWeighted and our float32 blend round a handful of exact .5 cases differently.
    "Color": 1,
    # cv2.filter2D and torch conv2d sum the 9 float32 products in different orders.
    "Sharpness": 1,
}
# ...and the mean absolute difference stays far below one level for every op.
MAX_MEAN_DIFF = 0.05

PIXEL_OPS = [op for op in TABLE if op.name not in ("Cutout", "SamplePairing")]


def _cases(op):
    signs = (1, -1) if op.signed else (1,)
    bins = range(MAGNITUDE_BINS) if op.has_magnitude else (0,)
    return [(b, s) for b in bins for s in signs]


def _albumentations_images(transform, images: np.ndarray) -> np.ndarray:
    return np.stack([transform(image=img)["image"] for img in images])


# Ops whose export is autoaug's own albumentations transform running the same kernel
# (`autoaug.space.pil_kernels`) on one image: their parity checks the wrapper, not two
# implementations. The others export as a transform of albumentations' own.
SAME_KERNEL = ("TranslateX", "TranslateY", "AutoContrast", "Equalize")
_WRAPPERS = (albu.AutoContrast, albu.Equalize, albu.Translate)


def test_same_kernel_ops_are_exactly_the_ones_exported_as_a_kernel_wrapper():
    wrapped = [op.name for op in PIXEL_OPS if isinstance(op.albumentations(op.magnitude(9), 1.0), _WRAPPERS)]
    assert wrapped == list(SAME_KERNEL)


@pytest.mark.parametrize("op", [op for op in PIXEL_OPS if op.name not in SAME_KERNEL], ids=lambda op: op.name)
def test_pixel_parity_every_bin_and_sign(op, cifar_images, cifar_batch):
    _check_pixel_parity(op, cifar_images, cifar_batch)


@pytest.mark.parametrize("op", [op for op in PIXEL_OPS if op.name in SAME_KERNEL], ids=lambda op: op.name)
def test_same_kernel_in_its_albumentations_wrapper_every_bin_and_sign(op, cifar_images, cifar_batch):
    _check_pixel_parity(op, cifar_images, cifar_batch)


def _check_pixel_parity(op, cifar_images, cifar_batch) -> None:
    n = len(cifar_images)
    g = torch.Generator().manual_seed(0)
    for magnitude_bin, sign in _cases(op):
        m = op.magnitude(magnitude_bin) * sign
        ours = op.kernel(cifar_batch.clone(), torch.full((n,), m), OpContext(g, cifar_batch, torch.arange(n)))
        ours = ours.permute(0, 2, 3, 1).numpy().astype(int)
        theirs = _albumentations_images(op.albumentations(m, 1.0), cifar_images).astype(int)
        diff = np.abs(ours - theirs)
        where = f"{op.name} bin {magnitude_bin} sign {sign:+d}"
        assert diff.max() <= MAX_ABS_DIFF.get(op.name, 0), f"{where}: max diff {diff.max()}"
        assert diff.mean() <= MAX_MEAN_DIFF, f"{where}: mean diff {diff.mean():.4f}"


def _hole(out: np.ndarray, orig: np.ndarray) -> np.ndarray:
    """(H, W) bool: the pixels Cutout painted (the image has no grey 128 pixel of its own)."""
    return (out == 128).all(axis=-1) & ~(orig == 128).all(axis=-1)


@pytest.mark.parametrize("magnitude_bin", range(MAGNITUDE_BINS))
def test_cutout_hole_has_exactly_the_documented_size_in_both_executions(magnitude_bin, cifar_images):
    # the hole's position is random in both executions, so compare what it is, not where: one
    # filled rectangle of trunc(m * H) x trunc(m * W) grey pixels, wholly inside the image
    op = get_op("Cutout")
    m = op.magnitude(magnitude_bin)
    n = 16
    images = cifar_images[:n].copy()
    images[images == 128] = 127  # so that every grey pixel afterwards is the hole's
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    g = torch.Generator().manual_seed(magnitude_bin)
    ours = op.kernel(batch.clone(), torch.full((n,), m), OpContext(g, batch, torch.arange(n)))
    ours = ours.permute(0, 2, 3, 1).numpy()
    theirs = _albumentations_images(op.albumentations(m, 1.0), images)
    side = (int(m * 32), int(m * 32))
    for out in (ours, theirs):
        for img, orig in zip(out, images):
            hole = _hole(img, orig)
            assert np.array_equal(img[~hole], orig[~hole])  # nothing outside the hole changed
            if side[0] == 0:
                assert not hole.any()
                continue
            rows, cols = np.nonzero(hole.any(axis=1))[0], np.nonzero(hole.any(axis=0))[0]
            box = (rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
            assert box == side and hole.sum() == side[0] * side[1], f"bin {magnitude_bin}: {box} vs {side}"


@pytest.mark.parametrize("magnitude_bin", range(MAGNITUDE_BINS))
def test_sample_pairing_parity(magnitude_bin, cifar_images, cifar_batch):
    # with a batch (torch) and a pool (albumentations) of exactly one other image, the partner is fixed
    op = get_op("SamplePairing")
    m = op.magnitude(magnitude_bin)
    pair = cifar_batch[:2]
    ours = op.kernel(pair.clone(), torch.full((2,), m), OpContext(torch.Generator(), pair, torch.arange(2)))
    t = op.albumentations(m, 1.0)
    t.image_pool = cifar_images[1:2]
    theirs = t(image=cifar_images[0])["image"]
    diff = np.abs(ours[0].permute(1, 2, 0).numpy().astype(int) - theirs.astype(int))
    # both blend in float32 and round; identical arithmetic
    assert diff.max() == 0


def test_sample_pairing_without_pool_says_so(cifar_images):
    from autoaug.errors import AutoaugError

    t = get_op("SamplePairing").albumentations(0.2, 1.0)
    with pytest.raises(AutoaugError, match="needs an image pool"):
        t(image=cifar_images[0])


# ---- statistical parity ------------------------------------------------------------------

# Sub-policy i: Brightness (factor 0.1 + 0.2 i, prob P[i]) then Solarize bin 9 (invert all, prob Q[i]).
# On a constant image of value 100 every outcome value names which ops fired in which sub-policy.
P = (0.2, 0.4, 0.6, 0.8, 1.0)
Q = (0.9, 0.7, 0.5, 0.3, 0.1)
DRAWS = 20_000


def _probe_policy() -> Policy:
    return Policy(tuple(
        (Operation("Brightness", P[i], i), Operation("Solarize", Q[i], 9)) for i in range(5)
    ))


def _expected() -> dict[int, float]:
    exp: dict[int, float] = {}
    for i in range(5):
        b = math.floor(100 * (0.1 + 0.2 * i))
        for value, prob in ((100, (1 - P[i]) * (1 - Q[i])), (b, P[i] * (1 - Q[i])),
                            (155, (1 - P[i]) * Q[i]), (255 - b, P[i] * Q[i])):
            exp[value] = exp.get(value, 0.0) + prob / 5
    return exp


def _check_counts(values: np.ndarray) -> None:
    exp = _expected()
    assert set(np.unique(values)) <= set(exp)
    for value, p in exp.items():
        count = int((values == value).sum())
        sigma = math.sqrt(DRAWS * p * (1 - p))
        assert abs(count - DRAWS * p) <= 4 * sigma, f"value {value}: {count} vs {DRAWS * p:.0f} +/- {sigma:.0f}"


def test_torch_execution_draws_sub_policies_and_ops_with_their_probabilities():
    x = torch.full((DRAWS, 3, 2, 2), 100, dtype=torch.uint8)
    out = _probe_policy()(x, torch.Generator().manual_seed(0))
    assert (out == out[:, :1, :1, :1]).all()  # one outcome per image
    _check_counts(out[:, 0, 0, 0].numpy())


def test_albumentations_execution_draws_sub_policies_and_ops_with_their_probabilities():
    pipeline = to_albumentations(_probe_policy(), seed=0)
    img = np.full((2, 2, 3), 100, np.uint8)
    values = np.array([pipeline(image=img)["image"][0, 0, 0] for _ in range(DRAWS)])
    _check_counts(values)


def _sign_fraction(outputs: np.ndarray) -> float:
    # TranslateX by +/- 14 px of 32: grey on the left means a shift to the right
    left_grey = (outputs[:, :, 0] == 128).all(axis=(1, 2))
    right_grey = (outputs[:, :, -1] == 128).all(axis=(1, 2))
    assert (left_grey ^ right_grey).all()
    return float(left_grey.mean())


def test_both_executions_draw_each_sign_half_the_time(cifar_images):
    policy = Policy(((Operation("TranslateX", 1.0, 9),),))
    n = 4000
    img = cifar_images[0]
    batch = torch.from_numpy(np.repeat(img[None], n, 0)).permute(0, 3, 1, 2).contiguous()
    ours = policy(batch, torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).numpy()
    pipeline = to_albumentations(policy, seed=0)
    theirs = np.stack([pipeline(image=img)["image"] for _ in range(n)])
    sigma = math.sqrt(0.25 / n)
    for outputs in (ours, theirs):
        assert abs(_sign_fraction(outputs) - 0.5) <= 4 * sigma


def test_same_seed_same_pixels_other_seed_other_pixels(cifar_batch):
    from autoaug.space.policy import published_policy

    aug = published_policy("autoaugment-cifar10")
    a = aug(cifar_batch, torch.Generator().manual_seed(7))
    b = aug(cifar_batch, torch.Generator().manual_seed(7))
    c = aug(cifar_batch, torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and not torch.equal(a, c)


# ---- every op's application rate, both executions -------------------------------------------

RATE_DRAWS = 1000
RATE_PROB = 0.3
# textured colour images in 40..200 that every op at bin 9 changes (the range leaves AutoContrast
# room; the noise gives Equalize, Sharpness and the shifts something to move; no two are alike,
# so a SamplePairing partner always differs; PIL's Equalize leaves images under ~256 pixels alone)
RATE_IMAGES = np.random.default_rng(0).integers(40, 201, (RATE_DRAWS, 24, 24, 3), dtype=np.uint8)


def _check_rate(changed: np.ndarray, where: str) -> None:
    sigma = math.sqrt(RATE_PROB * (1 - RATE_PROB) / len(changed))
    assert abs(changed.mean() - RATE_PROB) <= 4 * sigma, f"{where}: fired {changed.mean():.3f}, expected {RATE_PROB}"


@pytest.mark.parametrize("op", OPS, ids=lambda op: op.name)
def test_every_op_fires_with_its_probability_in_both_executions(op):
    policy = Policy(((Operation(op.name, RATE_PROB, 9 if op.has_magnitude else None),),))
    batch = torch.from_numpy(RATE_IMAGES).permute(0, 3, 1, 2).contiguous()
    out = policy(batch, torch.Generator().manual_seed(0))
    _check_rate((out != batch).flatten(1).any(dim=1).numpy(), f"{op.name} torch")
    pipeline = to_albumentations(policy, image_pool=RATE_IMAGES[::-1].copy(), seed=0)
    changed = np.array([(pipeline(image=img)["image"] != img).any() for img in RATE_IMAGES])
    _check_rate(changed, f"{op.name} albumentations")
