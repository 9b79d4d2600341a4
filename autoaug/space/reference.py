"""Pillow models of what an op means, to check our kernels against a library we did not write.

Two things per op, for `tests/space/test_reference.py` and `experiments/reference_diff.py` (issue #8):

- `pil_op(name, image, m)`: Pillow doing what our table says op `name` at physical magnitude
  `m` means (our conventions: affine about the centre, grey 128 fill, bilinear sampling, translate
  in whole pixels). Comparing it with the torch kernel tests the kernel.
- `reference_op(name, image, level, sign, rng)`: what the AutoAugment reference code
  (`augmentation_transforms.py` of the AutoAugment release, Cubuk et al. 2018, which runs on PIL)
  did at its level 0..9, rewritten here from its semantics (`reference_magnitude` gives each
  op's value; levels scale by level / 10, so level 9 is 0.9 x maxval; geometric ops sample
  nearest, PIL's default, and shear about the top-left corner).

Geometric ops and Cutout leave alpha 0 behind, which the reference's `pil_unwrap` turns into the
normalised zero, i.e. the dataset mean (`REFERENCE_FILL`), unless a later op of the sub-policy
converts to RGB and back (AutoContrast, Equalize, Invert, Posterize, Solarize do): then the
uncovered pixels are black (white after Invert) and count in that op's histogram. Only single
ops are modelled here. The reference's Cutout paints a square on the diagonal, not the box it
meant (`reference_cutout_box`); SamplePairing is not in its op list.

Needs Pillow (the `dev` extra), which autoaug itself never imports.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from autoaug.space.pil_kernels import FILL

PARAMETER_MAX = 10
REFERENCE_MEAN = (0.49139968, 0.48215841, 0.44653091)  # the reference code's CIFAR-10 MEANS
REFERENCE_FILL = tuple(round(255 * c) for c in REFERENCE_MEAN)  # (125, 123, 114)
NO_REFERENCE = ("SamplePairing",)  # ops the reference code does not have
_ENHANCERS = {
    "Contrast": ImageEnhance.Contrast, "Color": ImageEnhance.Color,
    "Brightness": ImageEnhance.Brightness, "Sharpness": ImageEnhance.Sharpness,
}


def _pil(image: np.ndarray) -> Image.Image:
    return Image.fromarray(np.ascontiguousarray(image), "RGB")


def _whole_pixels(x: float) -> int:
    return int(np.sign(x) * np.floor(abs(x) + 0.5))  # half away from zero, as the kernel


def pil_op(name: str, image: np.ndarray, m: float, partner: np.ndarray | None = None) -> np.ndarray:
    """Pillow applying op `name` at our physical magnitude `m` (signed) to one HWC uint8 RGB image."""
    img = _pil(image)
    h, w = image.shape[:2]
    fill = (FILL,) * 3
    if name in ("ShearX", "ShearY"):
        # output (x, y) samples the source at (x + m (y - H/2), y) (ShearX), about the centre
        data = (1, m, -m * h / 2, 0, 1, 0) if name == "ShearX" else (1, 0, 0, m, 1, -m * w / 2)
        out = img.transform((w, h), Image.Transform.AFFINE, data, Image.Resampling.BILINEAR, fillcolor=fill)
    elif name in ("TranslateX", "TranslateY"):
        dx = _whole_pixels(m * w) if name == "TranslateX" else 0  # a positive m moves the content right / down
        dy = _whole_pixels(m * h) if name == "TranslateY" else 0
        out = img.transform((w, h), Image.Transform.AFFINE, (1, 0, -dx, 0, 1, -dy), fillcolor=fill)
    elif name == "Rotate":
        out = img.rotate(m, Image.Resampling.BILINEAR, fillcolor=fill)  # counter-clockwise degrees
    elif name == "AutoContrast":
        out = ImageOps.autocontrast(img)
    elif name == "Equalize":
        out = ImageOps.equalize(img)
    elif name == "Invert":
        out = ImageOps.invert(img)
    elif name == "Solarize":
        out = ImageOps.solarize(img, int(m))
    elif name == "Posterize":
        out = ImageOps.posterize(img, int(m))
    elif name in _ENHANCERS:
        out = _ENHANCERS[name](img).enhance(m)
    elif name == "SamplePairing":
        if partner is None:
            raise ValueError("SamplePairing needs a partner image")
        out = Image.blend(img, _pil(partner), m)
    else:
        raise ValueError(f"no Pillow model of {name!r} at a given magnitude")
    return np.asarray(out)


def int_parameter(level: int, maxval: float) -> int:
    return int(level * maxval / PARAMETER_MAX)


def float_parameter(level: int, maxval: float) -> float:
    return float(level) * maxval / PARAMETER_MAX


def reference_magnitude(name: str, level: int, side: int = 32) -> float:
    """The reference code's value at `level`, in our table's unit (translate: fraction of `side`)."""
    if name in ("ShearX", "ShearY"):
        return float_parameter(level, 0.3)
    if name in ("TranslateX", "TranslateY"):
        return int_parameter(level, 10) / side
    if name == "Rotate":
        return float(int_parameter(level, 30))
    if name == "Posterize":
        return float(4 - int_parameter(level, 4))
    if name == "Solarize":
        return float(256 - int_parameter(level, 256))
    if name in _ENHANCERS:
        return float_parameter(level, 1.8) + 0.1
    if name == "Cutout":
        return int_parameter(level, 20) / side
    raise ValueError(f"{name!r} has no magnitude in the reference code")


def _geometric(img: Image.Image, warp) -> np.ndarray:
    # the reference works on RGBA: uncovered pixels come out transparent and become the mean
    rgba = np.asarray(warp(img.convert("RGBA")))
    out = rgba[..., :3].copy()
    out[rgba[..., 3] == 0] = REFERENCE_FILL
    return out


def reference_op(name: str, image: np.ndarray, level: int, sign: int = 1,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """The reference code's op `name` at level 0..9 on one 32 x 32 HWC uint8 RGB image.

    `sign` (+1 / -1) stands for the reference's random sign of the geometric ops, mapped so that
    +1 moves the content the way our positive magnitude does; `rng` places Cutout's hole.
    """
    img = _pil(image)
    size = img.size
    affine = Image.Transform.AFFINE
    if name in ("ShearX", "ShearY"):
        s = sign * float_parameter(level, 0.3)  # same sense as ours: source x = x + s y
        data = (1, s, 0, 0, 1, 0) if name == "ShearX" else (1, 0, 0, s, 1, 0)
        return _geometric(img, lambda im: im.transform(size, affine, data))
    if name in ("TranslateX", "TranslateY"):
        px = -sign * int_parameter(level, 10)  # the reference's positive level moves the content left / up
        data = (1, 0, px, 0, 1, 0) if name == "TranslateX" else (1, 0, 0, 0, 1, px)
        return _geometric(img, lambda im: im.transform(size, affine, data))
    if name == "Rotate":
        return _geometric(img, lambda im: im.rotate(sign * int_parameter(level, 30)))
    if name == "Posterize":
        return np.asarray(ImageOps.posterize(img, 4 - int_parameter(level, 4)))
    if name == "Solarize":
        return np.asarray(ImageOps.solarize(img, 256 - int_parameter(level, 256)))
    if name in _ENHANCERS:
        return np.asarray(_ENHANCERS[name](img).enhance(float_parameter(level, 1.8) + 0.1))
    if name == "Cutout":
        out = np.array(image)
        hole = reference_cutout_box(image.shape[0], int_parameter(level, 20), rng or np.random.default_rng())
        if hole is not None:
            (y0, y1), (x0, x1) = hole
            out[y0:y1, x0:x1] = REFERENCE_FILL
        return out
    if name in ("AutoContrast", "Equalize", "Invert"):
        return pil_op(name, image, 0.0)
    raise ValueError(f"the reference code has no op {name!r}")


def reference_cutout_box(side: int, size: int, rng: np.random.Generator):
    """The rows and columns the reference's Cutout paints, or None (size 0 or an empty box)."""
    if size <= 0:
        return None
    cy, cx = int(rng.integers(side)), int(rng.integers(side))
    upper = (max(0, cy - size // 2), max(0, cx - size // 2))
    lower = (min(side, cy + size // 2), min(side, cx + size // 2))
    # pixels[i, j] for i and j both in range(upper[0], lower[1]): x and y over the same span
    lo, hi = upper[0], lower[1]
    return None if hi <= lo else ((lo, hi), (lo, hi))
