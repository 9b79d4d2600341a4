"""albumentations transforms for the ops albumentations 2.0.8 cannot express with our meaning.

They subclass `ImageOnlyTransform`, so albumentations' serialisation registers them by class
name the moment this module is imported (`import autoaug` does that): after it, a pipeline that
contains them loads with plain `A.load`. Each mirrors the torch kernel of the same name in
`autoaug.space.ops`; `tests/space/test_parity.py` holds them together.

Also here: `compose`, the one way an augmenter's transforms become a seeded `A.Compose`, and the
helpers that walk a pipeline (`walk`, `set_image_pool`, `seed_pipeline`).
"""

from __future__ import annotations

import random
from typing import Any

import albumentations as A
import cv2
import numpy as np

from autoaug.errors import AutoaugError

# The name a file stores for each transform: the module path these classes had before the package
# was split into layers (issue #9), so pipelines exported then still load.
_SERIALISED_MODULE = "autoaug.albu"

_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13  # PIL's SMOOTH filter


class Sharpness(A.ImageOnlyTransform):
    """Blend with PIL's smoothing filter: `factor` < 1 blurs, > 1 sharpens, 1 is the identity.

    albumentations' `Sharpen` only sharpens, so AutoAugment's Sharpness below 1.0 needs this.
    The one-pixel border keeps its values, as in PIL.
    """

    @classmethod
    def get_class_fullname(cls) -> str:
        return f"{_SERIALISED_MODULE}.{cls.__name__}"

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


class SamplePairing(A.ImageOnlyTransform):
    """Blend with a random image of a pool: out = (1 - weight) * image + weight * other.

    The pool (an (N, H, W, C) uint8 array, usually the training set) is not serialised: after
    `A.load`, hand it over with `set_image_pool(pipeline, images)`. A partner of another size is
    resized to the image's size.
    """

    @classmethod
    def get_class_fullname(cls) -> str:
        return f"{_SERIALISED_MODULE}.{cls.__name__}"

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


def seed_pipeline(pipeline: A.BaseCompose, seed: int) -> None:
    """Make `pipeline` reproducible from one seed, all its transforms drawing from ONE stream.

    Not `A.Compose(seed=...)` / `set_random_seed`: those give every nested transform its own
    generator with the same seed, so identical transforms (RandAugment's N `OneOf`s, two ops
    with the same probability) draw the same numbers and their choices correlate.
    """
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


def compose(
    transforms: list[A.BasicTransform], image_pool: np.ndarray | None = None, seed: int | None = None
) -> A.Compose:
    """An `A.Compose` of an augmenter's transforms, applied to one HWC uint8 image per call.

    `image_pool` feeds SamplePairing (usually the training images); `seed` seeds the pipeline with
    `seed_pipeline`.
    """
    pipeline = A.Compose(transforms, p=1.0)
    if seed is not None:
        seed_pipeline(pipeline, seed)
    if image_pool is not None:
        set_image_pool(pipeline, image_pool)
    return pipeline
