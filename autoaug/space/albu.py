"""albumentations transforms for the ops albumentations 2.0.8 cannot express with our meaning.

They subclass albumentations' transforms, so its serialisation registers them by class name the
moment this module is imported (`import autoaug` does that): after it, a pipeline that contains
them loads with plain `A.load`. Pixel ops are `ImageOnlyTransform`s (targets stay); Translate,
and ClippedCutout are `DualTransform`s that treat masks, boxes and keypoints by the rules
of `autoaug.space.targets` (issue #25). Each mirrors the torch kernel of the same name in
`autoaug.space.ops` (AutoContrast, Equalize and Translate run that very kernel, from
`autoaug.space.pil_kernels`, on the one image); `tests/space/test_parity.py` holds them together.
Also here: `compose` and the helpers that walk a pipeline, and `load_pipeline`, which checks a file.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.augmentations.dropout import functional as fdropout
from albumentations.augmentations.geometric import functional as fgeometric
from albumentations.core.bbox_utils import denormalize_bboxes, normalize_bboxes
from albumentations.core.serialization import SERIALIZABLE_REGISTRY
from albumentations.core.type_definitions import Targets
from albumentations.pytorch import ToTensorV2

from autoaug.errors import AutoaugError, PolicyError, shown
from autoaug.space import pil_kernels
from autoaug.space.targets import DEFAULT_TARGETS, TargetParams

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
        # OpenCV drops a trailing channel axis of 1: (H, W, 1) in, (H, W) out (issue #22).
        smooth = cv2.filter2D(x, -1, _SMOOTH, borderType=cv2.BORDER_REFLECT_101).reshape(x.shape)
        out = x.copy()
        inner = (slice(1, -1), slice(1, -1))
        out[inner] = smooth[inner] + self.factor * (x[inner] - smooth[inner])
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("factor",)


def _run_kernel(kernel, img: np.ndarray, magnitude: float = 0.0) -> np.ndarray:
    """Apply a batched torch kernel of `autoaug.space.pil_kernels` to one HWC (or HW) uint8 image."""
    hwc = img[..., None] if img.ndim == 2 else img
    x = torch.from_numpy(np.ascontiguousarray(hwc)).permute(2, 0, 1)[None]  # (1, C, H, W)
    out = kernel(x, torch.tensor([magnitude], dtype=torch.float32), None)[0].permute(1, 2, 0).numpy()
    return out[..., 0] if img.ndim == 2 else out


class AutoContrast(A.ImageOnlyTransform):
    """PIL's `ImageOps.autocontrast` per channel (255 counts towards the range, values truncate).

    albumentations' `AutoContrast` leaves 255 out of the range and rounds.
    """

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return _run_kernel(pil_kernels.auto_contrast, img)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


class Equalize(A.ImageOnlyTransform):
    """PIL's `ImageOps.equalize` per channel. albumentations' `Equalize(mode="pil")` is not PIL's rule."""

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        return _run_kernel(pil_kernels.equalize, img)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ()


# The targets autoaug's DualTransforms move (albumentations' declaration, read by `check_targets`)
_MOVES = (Targets.IMAGE, Targets.MASK, Targets.BBOXES, Targets.KEYPOINTS)


class Translate(A.DualTransform):
    """Move the image by `x` of its width and `y` of its height, rounded to whole pixels, grey fill.

    albumentations' `Affine(translate_percent=...)` truncates the shift to whole pixels. Masks move
    by the same pixels (`fill_mask` where nothing moves in), boxes and keypoints by the same vector,
    boxes then clipped or dropped as `A.Affine` does.
    """

    _targets = _MOVES

    def __init__(self, x: float = 0.0, y: float = 0.0, fill_mask: float = 0.0, p: float = 0.5):
        super().__init__(p=p)
        self.x, self.y = float(x), float(y)
        self.fill_mask = float(fill_mask)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        dx = int(pil_kernels.whole_pixels(torch.tensor([self.x], dtype=torch.float32), w))
        dy = int(pil_kernels.whole_pixels(torch.tensor([self.y], dtype=torch.float32), h))
        return {"dx": dx, "dy": dy}

    def apply(self, img: np.ndarray, **params: Any) -> np.ndarray:
        out = img
        if self.y:
            out = _run_kernel(pil_kernels.translate_y, out, self.y)
        if self.x:
            out = _run_kernel(pil_kernels.translate_x, out, self.x)
        return out

    def apply_to_mask(self, mask: np.ndarray, dx: int = 0, dy: int = 0, **params: Any) -> np.ndarray:
        return shift_array(mask, dx, dy, self.fill_mask)

    def apply_to_bboxes(self, bboxes: np.ndarray, dx: int = 0, dy: int = 0, **params: Any) -> np.ndarray:
        shape = params["shape"][:2]
        matrix = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
        return fgeometric.bboxes_affine(bboxes, matrix, "largest_box", shape, cv2.BORDER_CONSTANT, shape)

    def apply_to_keypoints(self, keypoints: np.ndarray, dx: int = 0, dy: int = 0, **params: Any) -> np.ndarray:
        out = keypoints.copy()
        out[:, 0] += dx
        out[:, 1] += dy
        return out

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("x", "y", "fill_mask")


def shift_array(arr: np.ndarray, dx: int, dy: int, fill: float) -> np.ndarray:
    """An (H, W, ...) array moved dx pixels right and dy down, `fill` where nothing moves in."""
    h, w = arr.shape[:2]
    out = np.full_like(arr, fill)
    src = arr[max(-dy, 0):h - max(dy, 0), max(-dx, 0):w - max(dx, 0)]
    out[max(dy, 0):max(dy, 0) + src.shape[0], max(dx, 0):max(dx, 0) + src.shape[1]] = src
    return out


class SamplePairing(A.ImageOnlyTransform):
    """Blend with a random image of a pool: out = (1 - weight) * image + weight * other.

    The pool (an (N, H, W, C) or (N, H, W) uint8 array, usually the training set) is not
    serialised: after `A.load`, hand it over with `set_image_pool(pipeline, images)`. A partner
    of another size is resized to the image's size; a grey partner of a colour image is repeated
    over its channels, a colour partner of a grey image becomes its luma (issue #22).
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
        other = other.reshape(*img.shape[:2], -1)  # (H, W, C'): cv2.resize drops a channel axis of 1
        channels = img.shape[2] if img.ndim == 3 else 1
        if other.shape[2] != channels:
            other = (other if other.shape[2] == 1 else cv2.cvtColor(other[..., :3], cv2.COLOR_RGB2GRAY)[..., None])
            other = np.repeat(other, channels, axis=2)
        other = other.reshape(img.shape)
        out = img.astype(np.float32) * (1 - self.weight) + other.astype(np.float32) * self.weight
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("weight",)


class ClippedCutout(A.DualTransform):
    """Fill one `size` x `size` square with `fill`, its centre uniform over every pixel of the
    image and the square clipped at the borders (DeVries & Taylor 2017, the AutoAugment reference
    code's `cutout_numpy`): the Cutout of the training recipe (16 px on 32x32), `autoaug.training.loop.cutout`
    per image.

    albumentations' `CoarseDropout` keeps its holes wholly inside the image, which cuts out more
    pixels near the border than this. In the training pipeline it runs after `Normalize`, so
    `fill` 0.0 is the dataset's mean colour, as the zeros of the torch path are.

    Targets follow albumentations' `CoarseDropout` (the policy's Cutout): the mask's square is
    filled with `fill_mask`, or left alone when it is None (the default); boxes shrink to their
    visible part and go when too little is left (the pipeline's min_area / min_visibility);
    keypoints under the square go.
    """

    _targets = _MOVES

    def __init__(self, size: int = 16, fill: float = 0.0, fill_mask: float | None = None, p: float = 1.0):
        super().__init__(p=p)
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise AutoaugError(f"ClippedCutout size: expected an int >= 1 (pixels), got {size!r}")
        self.size = size
        self.fill = float(fill)
        self.fill_mask = None if fill_mask is None else float(fill_mask)

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        h, w = params["shape"][:2]
        cy = int(self.random_generator.integers(h))
        cx = int(self.random_generator.integers(w))
        y0, x0 = cy - self.size // 2, cx - self.size // 2  # may lie outside: clipped below
        return {"box": (max(y0, 0), min(y0 + self.size, h), max(x0, 0), min(x0 + self.size, w))}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any) -> np.ndarray:
        y0, y1, x0, x1 = box
        out = img.copy()
        out[y0:y1, x0:x1] = self.fill
        return out

    def apply_to_mask(self, mask: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0), **params: Any) -> np.ndarray:
        if self.fill_mask is None:
            return mask
        y0, y1, x0, x1 = box
        out = mask.copy()
        out[y0:y1, x0:x1] = self.fill_mask
        return out

    def apply_to_bboxes(self, bboxes: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0),
                        **params: Any) -> np.ndarray:
        processor = self.get_processor("bboxes")
        y0, y1, x0, x1 = box
        if processor is None or y1 <= y0 or x1 <= x0:
            return bboxes
        shape = params["shape"][:2]
        kept = fdropout.filter_bboxes_by_holes(denormalize_bboxes(bboxes, shape), np.array([[x0, y0, x1, y1]]), shape,
                                               min_area=processor.params.min_area,
                                               min_visibility=processor.params.min_visibility)
        return normalize_bboxes(kept, shape)

    def apply_to_keypoints(self, keypoints: np.ndarray, box: tuple[int, int, int, int] = (0, 0, 0, 0),
                           **params: Any) -> np.ndarray:
        processor = self.get_processor("keypoints")
        y0, y1, x0, x1 = box
        if processor is None or not processor.params.remove_invisible or y1 <= y0 or x1 <= x0:
            return keypoints
        return fdropout.filter_keypoints_in_holes(keypoints, np.array([[x0, y0, x1, y1]]))

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("size", "fill", "fill_mask")


# Files exported before the package had layers (autoaug 0.1 up to the restructure of issue #9)
# name these transforms "autoaug.albu.<class>": register those names too, so such files still load.
for _cls in (Sharpness, AutoContrast, Equalize, Translate, SamplePairing, ClippedCutout):
    SERIALIZABLE_REGISTRY.setdefault(f"autoaug.albu.{_cls.__name__}", _cls)


def walk(transform: Any):
    """A transform and, depth first, every transform nested in it."""
    yield transform
    if isinstance(transform, A.BaseCompose):  # not ColorJitter, whose `transforms` are functions
        for child in transform.transforms:
            yield from walk(child)


def set_image_pool(pipeline: Any, images: np.ndarray) -> int:
    """Give every SamplePairing in `pipeline` the images to pair with; returns how many it found."""
    images = np.asarray(images)
    if images.ndim not in (3, 4) or images.dtype != np.uint8:
        raise AutoaugError(
            f"image pool: expected a uint8 array of shape (N, H, W, C) or (N, H, W), got {images.dtype} {images.shape}"
        )
    found = 0
    for t in walk(pipeline):
        if isinstance(t, SamplePairing):
            t.image_pool = images
            found += 1
    return found


def normalization(pipeline: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """(mean, std) on the 0..255 scale of the first `Normalize` in `pipeline`, or None."""
    for t in walk(pipeline):
        if isinstance(t, A.Normalize) and t.mean is not None and t.std is not None:
            scale = t.max_pixel_value or 1.0
            mean = tuple(float(m) * scale for m in t.mean)  # type: ignore[union-attr]
            std = tuple(float(s) * scale for s in t.std)  # type: ignore[union-attr]
            return mean, std
    return None


def seed_pipeline(pipeline: A.BaseCompose, seed: int) -> None:
    """Make `pipeline` reproducible from one seed, all its transforms drawing from ONE stream.

    Not `A.Compose(seed=...)` / `set_random_seed`: those give every nested transform its own
    generator with the same seed, so identical transforms (RandAugment's N `OneOf`s, two ops
    with the same probability) draw the same numbers and their choices correlate.
    """
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


def compose(
    transforms: list[A.BasicTransform], image_pool: np.ndarray | None = None, seed: int | None = None,
    targets: TargetParams | None = None,
) -> A.Compose:
    """An `A.Compose` of an augmenter's transforms, applied to one HWC uint8 image per call.

    `image_pool` feeds SamplePairing (usually the training images); `seed` seeds the pipeline with
    `seed_pipeline`; `targets` gives it the bbox_params / keypoint_params its boxes and keypoints
    are read with (masks need none).
    """
    # strict: albumentations' own one-line error for keypoints= or bboxes= without their params, or
    # an unknown key, where a lax Compose fails deep inside (issue #25)
    pipeline = A.Compose(transforms, p=1.0, strict=True, **(targets or DEFAULT_TARGETS).compose_args())
    if seed is not None:
        seed_pipeline(pipeline, seed)
    if image_pool is not None:
        set_image_pool(pipeline, image_pool)
    return pipeline


# --- reading an albumentations file -----------------------------------------------------------

def load_pipeline(doc: Any, where: str, size: tuple[int, int] | None = None) -> tuple[Any, list[str]]:
    """An albumentations pipeline from its parsed JSON `doc` (what `A.load` reads), checked:
    (pipeline, warnings). PolicyError for a document `A.load` refuses (unknown transform,
    missing or mistyped fields), for arguments it would drop with only a warning (a misspelled
    name would silently become the default), for a transform without `p` (it would silently
    become 0.5) and for a `p` that is not a number in [0, 1] (Compose does not check its own).
    A pipeline in which no transform can ever fire is valid but gets a warning. The whole pipeline
    must then run (`check_runs`) on `size` images, by default the size it implies.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            pipeline = A.from_dict(doc)
        except KeyError as err:  # albumentations' registry lookup: an unknown class name
            raise PolicyError(f"{where}: unknown albumentations transform or missing key {_first_line(err)}") from None
        except Exception as err:  # A.from_dict has no error type of its own for a bad document
            raise PolicyError(f"{where}: albumentations cannot load it ({type(err).__name__}: {_first_line(err)})") from None
    for warning in caught:
        text = str(warning.message)
        if "not valid for transform" in text or "has no 'p' parameter" in text:
            raise PolicyError(f"{where}: {_first_line(text)}")
    if not isinstance(pipeline, A.BaseCompose):
        raise PolicyError(f"{where}: expected a Compose pipeline, got a {type(pipeline).__name__}")
    check_targets(pipeline, where)
    for t in walk(pipeline):
        if isinstance(t.p, bool) or not isinstance(t.p, (int, float)) or not 0 <= t.p <= 1:  # NaN too
            raise PolicyError(f"{where}: {type(t).__name__} has p = {t.p!r}; expected a number in [0, 1]")
    _try_each(pipeline, where)
    check_runs(pipeline, where, size)
    notes = []
    if not _can_fire(pipeline):
        notes.append(f"{where}: no transform in this pipeline can ever fire (all p = 0, NoOp or "
                     "empty): it never changes an image")
    return pipeline, notes


def check_targets(pipeline: A.BaseCompose, where: str) -> None:
    """PolicyError for a file whose Compose takes boxes or keypoints (its bbox_params /
    keypoint_params) but holds a transform that moves pixels and cannot move them (issue #25):
    refused when read, not found out mid-training or, worse, passed through unmoved. Image-only
    transforms change pixel values only and leave every target where it is, rightly."""
    processors = getattr(pipeline, "processors", {}) or {}
    wanted = [(Targets.BBOXES, "bboxes", "boxes", "bbox_params"),
              (Targets.KEYPOINTS, "keypoints", "keypoints", "keypoint_params")]
    for t in walk(pipeline):
        if not isinstance(t, A.DualTransform):
            continue
        declared = getattr(t, "_targets", ())
        declared = declared if isinstance(declared, tuple) else (declared,)
        for target, key, words, params in wanted:
            if key in processors and target not in declared:
                raise PolicyError(f"{where}: {type(t).__name__} moves pixels but cannot move {words}, and the "
                                  f"pipeline takes {words} (its {params}); expected only transforms that move "
                                  f"{words} with the image")


def _try_each(pipeline: Any, where: str) -> None:
    """Run every transform of `pipeline` once, whatever its p, on a 32x32 RGB image (larger where
    a RandomCrop of a whole training pipeline asks for more): albumentations accepts arguments it
    then cannot apply (an int beyond float range in an Affine, say), and a file found broken
    mid-training would cost the run. Normalize may give float32, ToTensorV2 a (C, H, W) tensor."""
    crops = [getattr(t, name, 0) for t in walk(pipeline) if isinstance(t, A.RandomCrop) for name in ("height", "width")]
    side = max([32] + [c for c in crops if isinstance(c, int) and 0 < c <= 4096])
    image = (np.arange(side * side * 3) % 256).astype(np.uint8).reshape(side, side, 3)  # (H, W, C)
    for t in walk(pipeline):
        if isinstance(t, A.BaseCompose):
            continue
        p, pool = t.p, getattr(t, "image_pool", None)
        t.p = 1.0
        if isinstance(t, SamplePairing):
            t.image_pool = image[None]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # overflow warnings of extreme but finite values
                out = t(image=image)["image"]
            if isinstance(t, ToTensorV2):
                ok = isinstance(out, torch.Tensor) and out.ndim == 3
            else:
                ok = isinstance(out, np.ndarray) and out.ndim == 3 and (
                    out.dtype == np.uint8 or (out.dtype == np.float32 and isinstance(t, A.Normalize)))
            if not ok:
                raise TypeError(f"gave {type(out).__name__} {getattr(out, 'dtype', '')}")
        except Exception as err:  # noqa: BLE001 - any failure of a transform on a plain image
            raise PolicyError(
                f"{where}: {type(t).__name__} fails on a 32x32 RGB image ({type(err).__name__}: "
                f"{_first_line(err)}); check its arguments"
            ) from None
        finally:
            t.p = p
            if isinstance(t, SamplePairing):
                t.image_pool = pool


# Sample images for `check_runs`: at least this many draws, more where a OneOf has more branches.
_MIN_DRAWS = 4
# Without a dataset (`validate`, a file read before its data): the size of the default dataset,
# the embedded reduced CIFAR-10, or the size a train pipeline's RandomCrop names.
DEFAULT_SIZE = (32, 32)


def ends_in_tensor(pipeline: Any) -> bool:
    """Whether `pipeline` is a train / eval pipeline: its last top-level transform is ToTensorV2."""
    return isinstance(pipeline, A.BaseCompose) and len(pipeline.transforms) > 0 and \
        isinstance(pipeline.transforms[-1], ToTensorV2)


def implied_size(pipeline: Any) -> tuple[int, int]:
    """The image size a pipeline is checked at without a dataset: the size the last crop or
    resize of a train pipeline gives (its RandomCrop crops to its data's size); anything else
    gets DEFAULT_SIZE."""
    size = DEFAULT_SIZE
    if ends_in_tensor(pipeline):
        for t in walk(pipeline):
            h, w = getattr(t, "height", None), getattr(t, "width", None)
            if all(isinstance(v, int) and not isinstance(v, bool) and 1 <= v <= 1024 for v in (h, w)):
                size = (h, w)
    return size


def check_runs(pipeline: Any, where: str, size: tuple[int, int] | None = None) -> None:
    """PolicyError unless the whole `pipeline` runs on (H, W) = `size` RGB images (issue #23:
    "valid" means "runs") and gives what its kind must: a policy pipeline uint8 images of the
    input's shape, a train / eval pipeline (ending in ToTensorV2) float32 (3, H, W) tensors.

    Every transform that can fire fires (p forced to 1; p = 0 never runs), and the draws walk
    every branch: draw k takes branch k of each OneOf, and a SomeOf / RandomOrder its members from
    k on. A transform that runs only on some draws must keep the image's size and dtype. The
    error names the transform to blame and what it produced.
    """
    h, w = size or implied_size(pipeline)
    image = ((np.arange(h * w * 3) * 7) % 256).astype(np.uint8).reshape(h, w, 3)  # (H, W, C)
    composes = [t for t in walk(pipeline) if isinstance(t, A.BaseCompose)]
    draws = max([_MIN_DRAWS] + [len(t.transforms) for t in composes])
    tensors = ends_in_tensor(pipeline)
    for draw in range(draws):
        run = _Run(where, draw, image)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = run.flow(pipeline, image)
        if tensors:
            ok = isinstance(out, torch.Tensor) and out.dtype == torch.float32 and tuple(out.shape) == (3, h, w)
            expected = f"float32 (3, {h}, {w}) tensors (a train or eval pipeline ends in them)"
        else:
            ok = isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == image.shape
            expected = f"uint8 {h}x{w} RGB images like its input (a policy pipeline changes pixels only)"
        if not ok:
            wrong_size = tuple(getattr(out, "shape", ())) not in ((3, h, w), (h, w, 3))
            blame = run.sized_by if wrong_size and run.sized_by else run.typed_by or run.sized_by
            raise PolicyError(f"{where}: on {h}x{w} images the pipeline gives {_described(out)}"
                              f"{f' (made so by {blame})' if blame else ''}; expected {expected}")


class _Run:
    """One draw through a pipeline, transform by transform, remembering whom to blame."""

    def __init__(self, where: str, draw: int, image: np.ndarray) -> None:
        self.where, self.draw, self.image = where, draw, image
        self.rng = np.random.default_rng(draw)
        self.tensor_from: str | None = None  # the ToTensorV2 already run
        self.sized_by: str | None = None  # the last transform that set the image size
        self.typed_by: str | None = None  # the last transform that changed the dtype

    def flow(self, t: Any, image: Any, optional: bool = False, forced: bool = False) -> Any:
        """`image` through `t` (every transform fires). `optional`: `t` runs only on some draws
        (a p < 1 above it, a SomeOf's choice), so it must keep the image's size and dtype, or the
        pipeline's output would depend on the draw; `forced`: OneOf runs its choice whatever its p."""
        name = type(t).__name__
        if not forced and t.p <= 0:
            return image  # never runs
        optional = optional or (not forced and t.p < 1)
        if isinstance(t, (A.Compose, A.Sequential, A.OneOf, A.SomeOf)):  # RandomOrder is a SomeOf
            children = list(t.transforms)
            if isinstance(t, A.OneOf):
                children = children[self.draw % len(children):][:1] if children else []
            elif isinstance(t, A.SomeOf):
                n = t.n
                if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= (len(children) if not t.replace else 10**3):
                    raise PolicyError(f"{self.where}: {name} has n = {shown(n)}; expected an integer in "
                                      f"0..{len(children)} (how many of its transforms to apply)")
                # Which ones run, and for RandomOrder in which order, depends on the draw.
                optional = optional or t.replace or n < len(children) or isinstance(t, A.RandomOrder)
                # Draw k starts at member k: over the draws every member runs at least once.
                picked = [(self.draw + j) % len(children) for j in range(n)] if children else []
                if isinstance(t, A.RandomOrder):
                    picked = list(self.rng.permutation(picked))
                children = [children[i] for i in (picked if isinstance(t, A.RandomOrder) else sorted(picked))]
            for child in children:
                image = self.flow(child, image, optional, forced=isinstance(t, A.OneOf))
            return image
        if self.tensor_from is not None:
            raise PolicyError(f"{self.where}: {name} runs after {self.tensor_from} and would get a tensor; "
                              "expected ToTensorV2 only as the last transform of the pipeline")
        pool = getattr(t, "image_pool", None)
        if isinstance(t, SamplePairing) and pool is None:
            t.image_pool = self.image[None]
        try:
            out = t(image=image, force_apply=True)["image"]
        except AutoaugError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure of a transform inside the pipeline
            raise PolicyError(f"{self.where}: {name} fails inside the pipeline on {self.image.shape[0]}x"
                              f"{self.image.shape[1]} images, given {_described(image)} ({type(err).__name__}: "
                              f"{_first_line(err)})") from None
        finally:
            if isinstance(t, SamplePairing):
                t.image_pool = pool
        same = isinstance(out, np.ndarray) and out.shape == image.shape and out.dtype == image.dtype
        if optional and not same:
            raise PolicyError(f"{self.where}: {name} runs only on some draws (its p or a OneOf / SomeOf above it) "
                              f"and turns {_described(image)} into {_described(out)}; expected a transform that "
                              "may not run to keep the image's size and dtype")
        if isinstance(out, torch.Tensor) and isinstance(t, ToTensorV2):
            self.tensor_from = name
            return out
        if not isinstance(out, np.ndarray) or out.ndim != 3 or out.shape[2] != 3:
            raise PolicyError(f"{self.where}: {name} gives {_described(out)} inside the pipeline; expected "
                              "an (H, W, 3) image")
        if out.shape[:2] != image.shape[:2] or isinstance(getattr(t, "height", None), int):
            self.sized_by = name
        if out.dtype != image.dtype:
            self.typed_by = name
        return out


def _described(value: Any) -> str:
    if isinstance(value, (np.ndarray, torch.Tensor)):
        dtype = str(value.dtype).replace("torch.", "")
        return f"{dtype} {'tensors' if isinstance(value, torch.Tensor) else 'arrays'} of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def _can_fire(transform: Any) -> bool:
    if transform.p <= 0 or isinstance(transform, A.NoOp):
        return False
    if isinstance(transform, A.BaseCompose):
        return any(_can_fire(child) for child in transform.transforms)
    return True


def _first_line(err: Any) -> str:
    text = str(err).strip().splitlines()
    line = text[0] if text else type(err).__name__
    return line if len(line) <= 160 else line[:157] + "..."
