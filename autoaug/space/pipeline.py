"""Whole albumentations pipelines: a policy inside the training recipe, ending in `ToTensorV2`.

`autoaug export-albumentations --pipeline train` writes `train_pipeline(...)`, and
`autoaug train --augment albumentations` trains from the same object read back from its file,
so what ships is what was measured. In the order of the torch path
(`autoaug.training.loop.model_input`):

    policy (uint8) -> Normalize -> Pad (zeros) + RandomCrop -> HorizontalFlip -> ClippedCutout
    -> ToTensorV2

The pad and the Cutout side scale with the image (`crop_pad`, `cutout_side`): 4 and 16 px on
32x32 CIFAR, as in the AutoAugment reference code; `flip` false leaves out the flip (digits, text).

Normalising right after the policy and filling the pad and the Cutout square with 0.0 is what
the torch path does (and the AutoAugment reference code, which pads and cuts out with zeros of
the normalised image): the fill is the dataset's mean colour, exactly, not a rounded uint8 grey.
`Pad` + `RandomCrop` draws each offset uniformly from 0..2*pad as `pad_crop_flip` does, and
Cutout is `ClippedCutout`, the torch `cutout` per image.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import torch
from albumentations.pytorch import ToTensorV2

from autoaug.errors import PipelineError
from autoaug.files import read_json
from autoaug.space.albu import ClippedCutout, compose, load_pipeline, normalization, seed_pipeline
from autoaug.space.export import PIPELINES, pipeline_path, save_pipeline, to_albumentations
from autoaug.space.targets import DEFAULT_TARGETS, TargetParams

__all__ = ["PIPELINES", "crop_pad", "cutout_side", "cutout_pixels", "CUTOUT_AUTO", "PipelineError", "normalization", "normalize", "train_pipeline",
           "eval_pipeline", "check_tensor_pipeline", "gives_tensors", "load_pipeline_file", "is_pipeline_document",
           "seed_worker", "save_pipeline", "pipeline_path"]

# The recipe's sizes scale with the image side (issue #20): the AutoAugment reference code pads
# 32x32 CIFAR by 4 px before its random crop and cuts out 16 px squares, i.e. an eighth and a half
# of the side. On a side s the pad is s/8 and the Cutout side s/2, rounded half up (28 px: 4 and
# 14; 24 px: 3 and 12; 32 px: 4 and 16 exactly as before). A non-square image scales with its
# shorter side.
CUTOUT_AUTO = "auto"  # the `cutout` setting that asks for the scaled Cutout side


def _half_up(x: float) -> int:
    return int(x + 0.5)  # x >= 0; Python's round() would round 3.5 to 4 but 2.5 to 2


def crop_pad(side: int) -> int:
    """Pixels of zero padding before the random crop of a `side`-pixel image: side / 8."""
    return _half_up(side / 8)


def cutout_side(side: int) -> int:
    """Side of the recipe's Cutout square on a `side`-pixel image: side / 2 (16 at 32 px)."""
    return max(1, _half_up(side / 2))


def cutout_pixels(cutout: int | str, image_size: tuple[int, int]) -> int:
    """The Cutout side in pixels of a `cutout` setting (pixels, 0 = off, or 'auto' = `cutout_side`)
    on (H, W) images."""
    return cutout_side(min(image_size)) if cutout == CUTOUT_AUTO else int(cutout)


def normalize(mean: Sequence[float], std: Sequence[float]) -> A.Normalize:
    """`A.Normalize` with per-channel `mean` and `std` given on the 0..255 scale (as
    `autoaug.training.device.DeviceData` holds them); written in the file on albumentations' 0..1
    scale."""
    return A.Normalize(
        mean=tuple(float(m) / 255.0 for m in mean),
        std=tuple(float(s) / 255.0 for s in std),
        max_pixel_value=255.0,
    )


def train_pipeline(
    policy: Any,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    image_size: tuple[int, int],
    standard: bool = True,
    flip: bool = True,
    cutout: int | str = CUTOUT_AUTO,
    targets: TargetParams | None = None,
) -> A.Compose:
    """The whole training pipeline of `policy` (a Policy, RandAugment, TrivialAugment, or None for
    the baselines): HWC uint8 image -> normalised float32 (C, H, W) tensor.

    `standard`: pad (`crop_pad`) + random crop, then a horizontal flip if `flip`; `cutout`: side
    of the Cutout square in pixels (0 = none) or 'auto' (`cutout_side`); `image_size`: (H, W) of
    the training images, the size of the random crop. `targets`: masks, boxes and keypoints go
    through the whole pipeline with their image (`autoaug.space.targets`: the pad fills masks with
    `mask_fill`, the Cutout square is filled in them only with `cutout_mask_fill`; the file
    carries the bbox / keypoint formats).
    """
    given, targets = targets, targets or DEFAULT_TARGETS
    transforms: list[A.BasicTransform] = []
    if policy is not None:
        transforms += list(to_albumentations(policy, targets=given).transforms)
    transforms.append(normalize(mean, std))
    if standard:
        h, w = image_size
        transforms += [
            A.Pad(padding=crop_pad(min(h, w)), fill=0.0, fill_mask=float(targets.mask_fill), border_mode=cv2.BORDER_CONSTANT),
            A.RandomCrop(height=h, width=w),
        ]
        if flip:
            transforms.append(A.HorizontalFlip(p=0.5))
    side = cutout_pixels(cutout, image_size)
    if side:
        transforms.append(ClippedCutout(size=side, fill=0.0, fill_mask=targets.cutout_mask_fill))
    transforms.append(ToTensorV2())
    return compose(transforms, targets=targets)


def eval_pipeline(*, mean: Sequence[float], std: Sequence[float], targets: TargetParams | None = None) -> A.Compose:
    """Normalise + ToTensorV2: HWC uint8 image -> the float32 (C, H, W) tensor `autoaug train`
    evaluates on (`targets`: the bbox / keypoint formats it reads, which it leaves alone)."""
    return compose([normalize(mean, std), ToTensorV2()], targets=targets)


def gives_tensors(pipeline: A.BaseCompose) -> bool:
    """Whether `pipeline` ends in ToTensorV2: a whole training pipeline, not a policy alone."""
    return bool(len(pipeline.transforms)) and isinstance(pipeline.transforms[-1], ToTensorV2)


def check_tensor_pipeline(pipeline: Any, name: str = "the pipeline") -> None:
    """PipelineError unless `pipeline` ends in ToTensorV2, i.e. gives the tensors a model eats."""
    if not isinstance(pipeline, A.BaseCompose):
        raise PipelineError(f"{name}: expected an albumentations Compose, got {type(pipeline).__name__}")
    last = pipeline.transforms[-1] if len(pipeline.transforms) else None
    if not gives_tensors(pipeline):
        got = type(last).__name__ if last is not None else "nothing (an empty Compose)"
        raise PipelineError(
            f"{name} ends in {got}, expected ToTensorV2 (a pipeline that gives normalised tensors); "
            f"export one with `autoaug export-albumentations POLICY --pipeline train`"
        )


def load_pipeline_file(path: str | Path, *, tensors: bool = True) -> A.Compose:
    """Read an exported pipeline file as `A.load` does, checked by `autoaug.space.albu.load_pipeline`
    (PolicyError for a broken one); with `tensors`, one that ends in ToTensorV2 (PipelineError
    otherwise). autoaug's own transforms load because importing autoaug registered them."""
    pipeline, _ = load_pipeline(read_json(path, PipelineError, "an albumentations pipeline file"), str(path))
    if tensors:
        check_tensor_pipeline(pipeline, str(path))
    return pipeline


def is_pipeline_document(doc: Any) -> bool:
    """Whether parsed JSON is an albumentations file (what `A.save` writes)."""
    return isinstance(doc, dict) and "transform" in doc and "__version__" in doc


def seed_worker(worker_id: int) -> None:
    """DataLoader `worker_init_fn`: reseed the worker's copy of its dataset's albumentations
    pipeline (the dataset's `.pipeline` or `.transform`) from torch's seed for that worker.

    Needed: albumentations seeds a pipeline once, when it is built or loaded, and every worker
    forks that state, so without this all workers draw the same numbers, and with
    non-persistent workers every epoch repeats the first one's augmentations. Torch's worker seed
    differs per worker and per epoch and follows the DataLoader's `generator`.
    """
    info = torch.utils.data.get_worker_info()
    if info is None:
        raise PipelineError("seed_worker is a DataLoader worker_init_fn; it runs in worker processes")
    for name in ("pipeline", "transform"):
        pipeline = getattr(info.dataset, name, None)
        if isinstance(pipeline, A.BaseCompose):
            seed_pipeline(pipeline, info.seed)
            return
    raise PipelineError(f"seed_worker: expected the dataset ({type(info.dataset).__name__}) to hold its "
                        "albumentations pipeline as .pipeline or .transform")
