"""albumentations transforms for the ops albumentations 2.0.8 cannot express with our meaning.

They subclass `ImageOnlyTransform`, so albumentations' serialisation registers them by class
name the moment this module is imported (`import autoaug` does that): after it, a pipeline that
contains them loads with plain `A.load`. Each mirrors the torch kernel of the same name in
`autoaug.ops` (AutoContrast, Equalize and Translate run that kernel on the one image, so the two
executions are the same arithmetic); `tests/test_parity.py` holds them together.
"""

from __future__ import annotations

from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch

from autoaug.errors import AutoaugError

_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13  # PIL's SMOOTH filter


class Sharpness(A.ImageOnlyTransform):
    """Blend with PIL's smoothing filter: `factor` < 1 blurs, > 1 sharpens, 1 is the identity.

    albumentations' `Sharpen` only sharpens, so AutoAugment's Sharpness below 1.0 needs this.
    The one-pixel border keeps its values, as in PIL.
    """

    def __init__(self, factor: float = 1.0, p: float = 0.5):
        super().__init__(p=p)
        self.factor = float(factor)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        if img.shape[0] < 3 or img.shape[1] < 3:
            return img
        x = img.astype(np.float32)
        smooth = cv2.filter2D(x, -1, _SMOOTH, borderType=cv2.BORDER_REFLECT_101)
        out = x.copy()
        inner = (slice(1, -1), slice(1, -1))
        out[inner] = smooth[inner] + self.factor * (x[inner] - smooth[inner])
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("factor",)


def _run_kernel(name: str, img: np.ndarray, magnitude: float = 0.0) -> np.ndarray:
    """Apply the torch kernel of op `name` to one HWC (or HW) uint8 image."""
    from autoaug.ops import OpContext, get_op  # autoaug.ops imports this module

    hwc = img[..., None] if img.ndim == 2 else img
    x = torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1)[None]  # (1, C, H, W)
    ctx = OpContext(torch.Generator(), x, torch.zeros(1, dtype=torch.long))
    out = get_op(name).kernel(x, torch.tensor([magnitude], dtype=torch.float32), ctx)
    out = out[0].permute(1, 2, 0).numpy()
    return out[..., 0] if img.ndim == 2 else out


class AutoContrast(A.ImageOnlyTransform):
    """PIL's `ImageOps.autocontrast` per channel (255 counts towards the range, values truncate).

    albumentations' `AutoContrast` leaves 255 out of the range and rounds.
    """

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return _run_kernel("AutoContrast", img)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


class Equalize(A.ImageOnlyTransform):
    """PIL's `ImageOps.equalize` per channel. albumentations' `Equalize(mode="pil")` is not PIL's rule."""

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return _run_kernel("Equalize", img)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


class Translate(A.ImageOnlyTransform):
    """Move the image by `x` of its width and `y` of its height, rounded to whole pixels, grey fill.

    albumentations' `Affine(translate_percent=...)` truncates the shift to whole pixels.
    """

    def __init__(self, x: float = 0.0, y: float = 0.0, p: float = 0.5):
        super().__init__(p=p)
        self.x, self.y = float(x), float(y)

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        if self.y == 0:
            return _run_kernel("TranslateX", img, self.x)
        out = _run_kernel("TranslateY", img, self.y)
        return _run_kernel("TranslateX", out, self.x) if self.x else out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("x", "y")


class SamplePairing(A.ImageOnlyTransform):
    """Blend with a random image of a pool: out = (1 - weight) * image + weight * other.

    The pool (an (N, H, W, C) uint8 array, usually the training set) is not serialised: after
    `A.load`, hand it over with `set_image_pool(pipeline, images)`. A partner of another size is
    resized to the image's size.
    """

    def __init__(self, weight: float = 0.0, p: float = 0.5):
        super().__init__(p=p)
        self.weight = float(weight)
        self.image_pool: np.ndarray | None = None

    def get_params(self) -> dict[str, Any]:
        if self.image_pool is None or len(self.image_pool) == 0:
            raise AutoaugError(
                "SamplePairing needs an image pool to pick partners from: call "
                "autoaug.albu.set_image_pool(pipeline, images) with an (N, H, W, C) uint8 array"
            )
        return {"partner": int(self.random_generator.integers(len(self.image_pool)))}

    def apply(self, img: np.ndarray, partner: int = 0, **params: Any) -> np.ndarray:
        other = self.image_pool[partner]
        if other.shape[:2] != img.shape[:2]:
            other = cv2.resize(other, (img.shape[1], img.shape[0]), interpolation=cv2.INTER_AREA)
        if other.ndim == 2:
            other = other[..., None]
        if other.shape[-1] != img.shape[-1]:
            other = np.broadcast_to(other[..., :1], img.shape)
        out = img.astype(np.float32) * (1 - self.weight) + other.astype(np.float32) * self.weight
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("weight",)


def walk(transform: Any):
    """A transform and, depth first, every transform nested in it."""
    yield transform
    if isinstance(transform, A.BaseCompose):  # not ColorJitter, whose `transforms` are functions
        for child in transform.transforms:
            yield from walk(child)


def set_image_pool(pipeline: Any, images: np.ndarray) -> int:
    """Give every SamplePairing in `pipeline` the images to pair with; returns how many it found."""
    images = np.asarray(images)
    if images.ndim != 4 or images.dtype != np.uint8:
        raise AutoaugError(
            f"image pool: expected a uint8 array of shape (N, H, W, C), got {images.dtype} {images.shape}"
        )
    found = 0
    for t in walk(pipeline):
        if isinstance(t, SamplePairing):
            t.image_pool = images
            found += 1
    return found
