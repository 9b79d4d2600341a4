"""The search space: one table row per augmentation operation.

Each `OpSpec` row owns every fact about one of the AutoAugment paper's 16 operations (Cubuk et al.
2018, appendix table "List of all image transformations"): the physical range its 10 magnitude bins
span, the unit, whether it gets a random sign, the batched torch kernel and the albumentations
factory. Adding an op is adding a row; `tests/space/test_ops.py` walks the table and fails for a row
without a kernel, an export or a parity case.

Conventions shared by every row
- Magnitude bins 0..9 map linearly onto [low, high]: bin 9 is the end of the paper's range. (The
  reference code, the AutoAugment release's PIL-based `augmentation_transforms.py`, scales by
  level / 10, so its top level gives 0.9 x max; torchvision's `_AutoAugmentBase` uses
  `linspace(low, high, 10)` like we do.) Bin 0 is the weakest op everywhere, as in the reference.
- Pixel ranges the paper gives for 331 px ImageNet images are stored as fractions of the image
  size, so a policy means the same at 32 px and 224 px.
- Kernels take uint8 images (N, C, H, W) and per-image physical magnitudes (N,) and return uint8
  images. They are pure: the only randomness (Cutout position, SamplePairing partner) comes from
  the `torch.Generator` in the `OpContext` passed in.
- Each kernel reproduces, up to documented rounding, what the albumentations 2.0.8 transform that
  the same row exports does, so that a policy searched with the torch kernels means the same when
  it ships as an albumentations pipeline (`tests/space/test_parity.py`), and each is checked against
  Pillow and the reference code's reading of the bins (`tests/space/test_reference.py`; the op
  table of policies/README.md gives every measured difference, from `autoaug.space.op_notes`).
- Geometric ops fill uncovered pixels with grey 128 (the reference fills with the dataset mean,
  the normalised zero; torchvision with 0).
- Every row states what it does to the targets of its image (`OpSpec.targets`, issue #25; the
  rules are `autoaug.space.targets`'): geometric rows give the forward 2x3 matrix their kernel
  applies (`OpSpec.matrix`), which moves masks, boxes and keypoints in the torch path, and export
  as albumentations `DualTransform`s that move them the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import albumentations as A
import cv2
import torch
import torch.nn.functional as F

from autoaug.errors import PolicyError
from autoaug.space import albu
from autoaug.space.pil_kernels import FILL, auto_contrast, equalize, translate_x, translate_y, whole_pixels
from autoaug.space.targets import DEFAULT_TARGETS, EFFECTS, GEOMETRIC, IMAGE_ONLY, OCCLUDES, PIXEL, TargetParams

MAGNITUDE_BINS = 10
PROB_BINS = 11
# How a policy reads the ranges of the table (issue #8). "paper": the appendix table's ranges.
# "reference": where the reference code that found the CIFAR-10 and SVHN policies used another
# range, that one (`OpSpec.reference_high`; only TranslateX/Y have one: 10 px of 32, not 150 of
# 331). A policy carries its reading (`Policy.range_reading`); search uses "paper".
RANGE_READINGS = ("paper", "reference")


@dataclass(frozen=True)
class OpContext:
    """What a kernel may need beyond the images: randomness and the batch it came from."""

    generator: torch.Generator
    batch: torch.Tensor  # (B, C, H, W) uint8: the batch before augmentation (SamplePairing partners)
    index: torch.Tensor  # (N,) long: positions in `batch` of the images handed to the kernel


Kernel = Callable[[torch.Tensor, torch.Tensor, OpContext], torch.Tensor]
AlbuFactory = Callable[[float, float], A.BasicTransform]  # (signed magnitude, p) -> transform
# (signed magnitudes (N,), H, W) -> the (N, 2, 3) forward matrices the kernel applies, in pixel
# coordinates with pixel centres at integers (x right, y down)
MatrixFn = Callable[[torch.Tensor, int, int], torch.Tensor]
# (images, magnitudes, context) -> (N, H, W) bool: the pixels the kernel overwrites, drawn as it draws
RegionFn = Callable[[torch.Tensor, torch.Tensor, OpContext], torch.Tensor]


@dataclass(frozen=True)
class OpSpec:
    name: str
    low: float | None  # physical magnitude at bin 0 (None: the op has no magnitude)
    high: float | None  # physical magnitude at bin 9
    unit: str
    signed: bool  # geometric ops get a random sign when applied
    kernel: Kernel
    albumentations: AlbuFactory
    integer: bool = False  # magnitudes are rounded to whole numbers (bits, thresholds)
    reference_high: float | None = None  # bin 9 under the "reference" range reading, where it differs
    # The kernel draws from ctx.generator or reads ctx.batch / ctx.index: `apply_ops` with several
    # children's batches gives it one child's images at a time (tests/space/test_policy.py
    # checks that every other kernel leaves the generator alone).
    draws: bool = False
    targets: str = ""  # what it does to masks, boxes and keypoints: a key of targets.EFFECTS, stated per row
    matrix: MatrixFn | None = None  # geometric rows: the matrix that moves their targets
    region: RegionFn | None = None  # occluding rows: the region the kernel hides

    def __post_init__(self) -> None:
        # a row that forgot its effect, or a geometric row without the matrix to move targets by,
        # would pass targets through unchanged: refused when the table is built
        assert self.targets in EFFECTS, f"{self.name}: targets must be one of {sorted(EFFECTS)}"
        assert (self.matrix is not None) == (self.targets == GEOMETRIC), f"{self.name}: matrix iff geometric"
        assert (self.region is not None) == (self.targets == OCCLUDES), f"{self.name}: region iff occluding"

    @property
    def has_magnitude(self) -> bool:
        return self.low is not None

    def magnitude(self, level: float, top: float = MAGNITUDE_BINS - 1, reading: str = "paper") -> float:
        """Physical magnitude (before any random sign) at `level` of a scale 0..`top`: a magnitude
        bin 0..9 by default, RandAugment's M on 0..30 with `top=30`; linear over [low, high], or
        over [low, reference_high] under the "reference" range reading where the row has one."""
        if self.low is None or self.high is None:
            return 0.0
        high = self.reference_high if reading == "reference" and self.reference_high is not None else self.high
        value = self.low + (high - self.low) * level / top
        return float(round(value)) if self.integer else value


# --------------------------------------------------------------------------------------------
# Kernels. Images are uint8 (N, C, H, W); `m` is float32 (N,) physical magnitudes (signed).


def _to_uint8(x: torch.Tensor) -> torch.Tensor:
    return x.round_().clamp_(0, 255).to(torch.uint8)


def _floor_to_uint8(x: torch.Tensor) -> torch.Tensor:
    # albumentations' LUT ops (brightness, contrast) clip then cast, which truncates.
    return x.clamp_(0, 255).floor_().to(torch.uint8)


def _grey(img: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma exactly as OpenCV's RGB2GRAY computes it for uint8 (14-bit fixed point)."""
    if img.shape[1] == 1:
        return img[:, 0].int()
    r, g, b = img[:, 0].int(), img[:, 1].int(), img[:, 2].int()  # (N, H, W)
    return (r * 4899 + g * 9617 + b * 1868 + 8192) >> 14  # (N, H, W) int, 0..255


def _affine(
    img: torch.Tensor,
    rotate: torch.Tensor | None = None,
    shear_x: torch.Tensor | None = None,
    shear_y: torch.Tensor | None = None,
    translate_x: torch.Tensor | None = None,
    translate_y: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-image affine warp about the image centre, built like albumentations' `Affine`.

    Angles are degrees; translations are whole pixels. The forward matrix is
    shift_back @ translate @ shear @ rotate @ shift_to_origin with the centre at (W/2 - 0.5,
    H/2 - 0.5), and albumentations negates the shear angle it is given, so we do too. Each output
    pixel samples the inverse-mapped source bilinearly; outside the image it sees FILL.
    """
    n, c, h, w = img.shape
    dev = img.device
    zero = torch.zeros(n, device=dev)
    tx = translate_x if translate_x is not None else zero
    ty = translate_y if translate_y is not None else zero
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    a, b, c_, d = _linear(n, dev, rotate, shear_x, shear_y)
    # forward: p' = L (p - c) + c + t  =>  inverse: p = L^-1 (p' - c - t) + c
    det = a * d - b * c_
    ia, ib, ic, id_ = d / det, -b / det, -c_ / det, a / det
    ys, xs = torch.meshgrid(
        torch.arange(h, device=dev, dtype=torch.float32),
        torch.arange(w, device=dev, dtype=torch.float32),
        indexing="ij",
    )  # (H, W)
    px = xs[None] - cx - tx[:, None, None]  # (N, H, W)
    py = ys[None] - cy - ty[:, None, None]
    sx = ia[:, None, None] * px + ib[:, None, None] * py + cx  # source x, pixel units
    sy = ic[:, None, None] * px + id_[:, None, None] * py + cy
    grid = torch.stack((sx * (2 / (w - 1)) - 1, sy * (2 / (h - 1)) - 1), dim=-1)  # (N, H, W, 2)
    shifted = img.float() - FILL  # zero padding on this == FILL padding on the image
    out = F.grid_sample(shifted, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return _to_uint8(out + FILL)


def _linear(n: int, dev: torch.device, rotate: torch.Tensor | None = None, shear_x: torch.Tensor | None = None,
            shear_y: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """(a, b, c, d), each (N,): the linear part [[a, b], [c, d]] = shear @ rotate of `_affine`."""
    zero = torch.zeros(n, device=dev)
    rot = torch.deg2rad(rotate if rotate is not None else zero)
    shx = torch.tan(torch.deg2rad(-(shear_x if shear_x is not None else zero)))
    shy = torch.tan(torch.deg2rad(-(shear_y if shear_y is not None else zero)))
    cos, sin = torch.cos(rot), torch.sin(rot)
    return cos - shx * sin, sin + shx * cos, shy * cos - sin, shy * sin + cos


def _matrix(h: int, w: int, a, b, c_, d, tx=0.0, ty=0.0) -> torch.Tensor:
    """The (N, 2, 3) forward matrix p' = L (p - c) + c + t of `_affine`, c the centre (W/2 - 0.5, H/2 - 0.5)."""
    cx, cy = w / 2 - 0.5, h / 2 - 0.5
    row0 = torch.stack((a, b, cx - a * cx - b * cy + tx), dim=-1)
    row1 = torch.stack((c_, d, cy - c_ * cx - d * cy + ty), dim=-1)
    return torch.stack((row0, row1), dim=-2)


def _shear_degrees(m: torch.Tensor) -> torch.Tensor:
    # magnitude is the shear factor; albumentations takes degrees: arctan(factor) in degrees
    return torch.rad2deg(torch.atan(m))


def shear_x_matrix(m, h, w):
    return _matrix(h, w, *_linear(len(m), m.device, shear_x=_shear_degrees(m)))


def shear_y_matrix(m, h, w):
    return _matrix(h, w, *_linear(len(m), m.device, shear_y=_shear_degrees(m)))


def rotate_matrix(m, h, w):
    return _matrix(h, w, *_linear(len(m), m.device, rotate=m))


def translate_x_matrix(m, h, w):
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _matrix(h, w, one, zero, zero, one, tx=whole_pixels(m, w))


def translate_y_matrix(m, h, w):
    one, zero = torch.ones_like(m), torch.zeros_like(m)
    return _matrix(h, w, one, zero, zero, one, ty=whole_pixels(m, h))


def shear_x(img, m, ctx):
    return _affine(img, shear_x=_shear_degrees(m))


def shear_y(img, m, ctx):
    return _affine(img, shear_y=_shear_degrees(m))


def rotate(img, m, ctx):
    return _affine(img, rotate=m)


def invert(img, m, ctx):
    return 255 - img


def solarize(img, m, ctx):
    # invert every pixel at or above the threshold; threshold 256 leaves the image alone
    return torch.where(img.float() >= m[:, None, None, None], 255 - img, img)


def posterize(img, m, ctx):
    # keep the top `bits` bits of every channel value
    shift = (8 - m).to(torch.int32)[:, None, None, None]  # (N, 1, 1, 1)
    mask = ((0xFF << shift) & 0xFF).to(torch.uint8)
    return img & mask


def contrast(img, m, ctx):
    # blend with the mean grey level of the whole image (albumentations: truncating LUT)
    mean = _grey(img).float().mean(dim=(1, 2))[:, None, None, None]  # (N, 1, 1, 1)
    f = m[:, None, None, None]
    return _floor_to_uint8(img.float() * f + mean * (1 - f))


def color(img, m, ctx):
    # blend with the grey image (saturation); OpenCV's addWeighted rounds
    grey = _grey(img).float()[:, None]  # (N, 1, H, W)
    f = m[:, None, None, None]
    return _to_uint8(img.float() * f + grey * (1 - f))


def brightness(img, m, ctx):
    # blend with black, i.e. scale (albumentations: truncating LUT)
    return _floor_to_uint8(img.float() * m[:, None, None, None])


def sharpness(img, m, ctx):
    """Blend with PIL's 3x3 smoothing filter: factor < 1 blurs, > 1 sharpens.

    As PIL (and torchvision) do, the one-pixel border keeps its original values.
    """
    n, c, h, w = img.shape
    if h < 3 or w < 3:
        return img
    x = img.float()
    inner = x[:, :, 1:-1, 1:-1]
    # the 3x3 neighbourhood sum with the centre counted 5 times, over 13 (shifted slices beat a
    # one-channel conv2d on the CPU by an order of magnitude)
    smooth = 4 * inner
    for dy in range(3):
        for dx in range(3):
            smooth = smooth + x[:, :, dy : dy + h - 2, dx : dx + w - 2]
    smooth = smooth / 13
    f = m[:, None, None, None]
    out = x.clone()
    out[:, :, 1:-1, 1:-1] = smooth + f * (inner - smooth)
    return _to_uint8(out)


def cutout(img, m, ctx):
    """Fill one rectangle of (H * m, W * m) pixels (truncated) with grey, wholly inside the image."""
    return fill_region(img, cutout_region(img, m, ctx))


def fill_region(img: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """`img` with the pixels of `inside` (N, H, W) grey: what Cutout does with its region."""
    return torch.where(inside[:, None], torch.full_like(img, FILL), img)


def cutout_region(img, m, ctx):
    """Cutout's rectangle, (N, H, W) bool: (H * m, W * m) pixels (truncated), its corner uniform
    over the positions that keep it wholly inside the image."""
    n, c, h, w = img.shape
    hole_h = torch.trunc(m * h).long()  # (N,)
    hole_w = torch.trunc(m * w).long()
    u = torch.rand(n, 2, generator=ctx.generator, device=ctx.generator.device).to(img.device)
    y0 = (u[:, 0] * (h - hole_h + 1)).long().clamp_max(h - hole_h)  # uniform over valid rows
    x0 = (u[:, 1] * (w - hole_w + 1)).long().clamp_max(w - hole_w)
    ys = torch.arange(h, device=img.device)[None, :, None]  # (1, H, 1)
    xs = torch.arange(w, device=img.device)[None, None, :]
    inside = (
        (ys >= y0[:, None, None]) & (ys < (y0 + hole_h)[:, None, None])
        & (xs >= x0[:, None, None]) & (xs < (x0 + hole_w)[:, None, None])
    )  # (N, H, W)
    return inside


def sample_pairing(img, m, ctx):
    """Blend with another image of the same batch (before augmentation), weight m on the other."""
    b = ctx.batch.shape[0]
    if b < 2:
        return img
    # a uniform partner other than the image itself: add 1..B-1 to its position
    step = torch.randint(1, b, (img.shape[0],), generator=ctx.generator, device=ctx.generator.device)
    partner = ctx.batch[(ctx.index + step.to(ctx.index.device)) % b]
    wgt = m[:, None, None, None]
    return _to_uint8(img.float() * (1 - wgt) + partner.float() * wgt)


# --------------------------------------------------------------------------------------------
# albumentations factories: (signed physical magnitude, p) -> transform.


def _affine_albu(**kwargs) -> Callable[[float, float], A.BasicTransform]:
    def make(m: float, p: float) -> A.BasicTransform:
        args = {key: fn(m) for key, fn in kwargs.items()}
        # masks: nearest neighbour (the fill_mask of the targets is set by op_to_albumentations)
        return A.Affine(**args, interpolation=cv2.INTER_LINEAR, mask_interpolation=cv2.INTER_NEAREST,
                        border_mode=cv2.BORDER_CONSTANT, fill=FILL, p=p)

    return make


def _degrees_of_shear(m: float) -> tuple[float, float]:
    deg = math.degrees(math.atan(m))
    return (deg, deg)


def _solarize_albu(m: float, p: float) -> A.BasicTransform:
    if m >= 256:
        return A.NoOp(p=p)  # threshold 256 inverts nothing, which A.Solarize cannot say (its top is 255)
    # albumentations inverts i >= threshold * 255 (threshold 0: every pixel); half a level below
    # the integer keeps float round-off from moving the boundary
    t = (m - 0.5) / 255 if m > 0 else 0.0
    return A.Solarize(threshold_range=(t, t), p=p)


def _posterize_albu(m: float, p: float) -> A.BasicTransform:
    bits = int(m)
    return A.NoOp(p=p) if bits >= 8 else A.Posterize(num_bits=bits, p=p)


def _jitter(kind: str) -> AlbuFactory:
    def make(m: float, p: float) -> A.BasicTransform:
        factors = {"brightness": (1.0, 1.0), "contrast": (1.0, 1.0), "saturation": (1.0, 1.0)}
        factors[kind] = (m, m)
        # factor 1 of the others and hue 0 are exact no-ops in albumentations
        return A.ColorJitter(**factors, hue=(0.0, 0.0), p=p)

    return make


def _cutout_albu(m: float, p: float) -> A.BasicTransform:
    if m <= 0:
        return A.NoOp(p=p)
    return A.CoarseDropout(
        num_holes_range=(1, 1), hole_height_range=(m, m), hole_width_range=(m, m), fill=FILL, p=p
    )


def identity(img, m, ctx):
    return img


# --------------------------------------------------------------------------------------------
# The table. Ranges: AutoAugment paper, appendix table of operations. Where each row differs from
# the paper, the reference code and torchvision, and by how much, measured: autoaug.space.op_notes,
# rendered with the rows as the op table of policies/README.md.

OPS: tuple[OpSpec, ...] = (
    OpSpec("ShearX", 0.0, 0.3, "shear factor", True, shear_x,
           _affine_albu(shear=lambda m: {"x": _degrees_of_shear(m), "y": (0.0, 0.0)}),
           targets=GEOMETRIC, matrix=shear_x_matrix),
    OpSpec("ShearY", 0.0, 0.3, "shear factor", True, shear_y,
           _affine_albu(shear=lambda m: {"x": (0.0, 0.0), "y": _degrees_of_shear(m)}),
           targets=GEOMETRIC, matrix=shear_y_matrix),
    OpSpec("TranslateX", 0.0, 150 / 331, "fraction of the width", True, translate_x,
           lambda m, p: albu.Translate(x=m, p=p), reference_high=10 / 32, targets=GEOMETRIC, matrix=translate_x_matrix),
    OpSpec("TranslateY", 0.0, 150 / 331, "fraction of the height", True, translate_y,
           lambda m, p: albu.Translate(y=m, p=p), reference_high=10 / 32, targets=GEOMETRIC, matrix=translate_y_matrix),
    OpSpec("Rotate", 0.0, 30.0, "degrees", True, rotate, _affine_albu(rotate=lambda m: (m, m)),
           targets=GEOMETRIC, matrix=rotate_matrix),
    OpSpec("AutoContrast", None, None, "-", False, auto_contrast, lambda m, p: albu.AutoContrast(p=p), targets=PIXEL),
    OpSpec("Invert", None, None, "-", False, invert, lambda m, p: A.InvertImg(p=p), targets=PIXEL),
    OpSpec("Equalize", None, None, "-", False, equalize, lambda m, p: albu.Equalize(p=p), targets=PIXEL),
    OpSpec("Solarize", 256.0, 0.0, "threshold", False, solarize, _solarize_albu, integer=True, targets=PIXEL),
    OpSpec("Posterize", 8.0, 4.0, "bits kept", False, posterize, _posterize_albu, integer=True, targets=PIXEL),
    OpSpec("Contrast", 0.1, 1.9, "factor", False, contrast, _jitter("contrast"), targets=PIXEL),
    OpSpec("Color", 0.1, 1.9, "factor", False, color, _jitter("saturation"), targets=PIXEL),
    OpSpec("Brightness", 0.1, 1.9, "factor", False, brightness, _jitter("brightness"), targets=PIXEL),
    OpSpec("Sharpness", 0.1, 1.9, "factor", False, sharpness, lambda m, p: albu.Sharpness(factor=m, p=p),
           targets=PIXEL),
    OpSpec("Cutout", 0.0, 20 / 32, "fraction of the side", False, cutout, _cutout_albu, draws=True,
           targets=OCCLUDES, region=cutout_region),
    OpSpec("SamplePairing", 0.0, 0.4, "weight of the other image", False, sample_pairing,
           lambda m, p: albu.SamplePairing(weight=m, p=p), draws=True, targets=IMAGE_ONLY),
)

# The AutoAugment search space is the 16 rows above (a policy's op id is a position in OPS);
# RandAugment and TrivialAugment may also draw this one, which their papers list.
IDENTITY_OP = OpSpec("Identity", None, None, "-", False, identity, lambda m, p: A.NoOp(p=p), targets=PIXEL)
TABLE: tuple[OpSpec, ...] = OPS + (IDENTITY_OP,)  # every row; `apply_ops` takes positions in TABLE
TABLE_NAMES: tuple[str, ...] = tuple(op.name for op in TABLE)
OP_NAMES: tuple[str, ...] = TABLE_NAMES[: len(OPS)]
OPS_BY_NAME: dict[str, OpSpec] = {op.name: op for op in OPS}


def get_op(name: str) -> OpSpec:
    """The table row of an op name; a clear error listing the valid names otherwise."""
    try:
        return OPS_BY_NAME[name]
    except KeyError:
        raise PolicyError(f"unknown op {name!r}; expected one of {', '.join(OP_NAMES)}") from None


def op_transform(name: str, magnitude: float, prob: float, targets: TargetParams | None = None) -> A.BasicTransform:
    """One op's albumentations transform at a signed physical magnitude, firing with `prob`. The
    mask fill of `targets` (None: `DEFAULT_TARGETS`) goes where the row's effect says: a
    geometric op's uncovered pixels, Cutout's hole (None: its mask stays)."""
    spec = TABLE[TABLE_NAMES.index(name)]
    t = spec.albumentations(magnitude, prob)
    targets = targets or DEFAULT_TARGETS
    fill = {GEOMETRIC: targets.mask_fill, OCCLUDES: targets.cutout_mask_fill}
    if spec.targets in fill and hasattr(t, "fill_mask"):  # not the NoOp of Cutout at 0
        value = fill[spec.targets]
        t.fill_mask = None if value is None else float(value)  # albumentations' own type
    return t


def op_to_albumentations(name: str, magnitude: float, prob: float,
                         targets: TargetParams | None = None) -> A.BasicTransform:
    """One op at a physical magnitude, firing with `prob`; a random sign where the op is signed."""
    if TABLE[TABLE_NAMES.index(name)].signed and magnitude != 0:
        both = [op_transform(name, magnitude, 1.0, targets), op_transform(name, -magnitude, 1.0, targets)]
        return A.OneOf(both, p=prob)
    return op_transform(name, magnitude, prob, targets)
