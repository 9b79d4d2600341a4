"""The albumentations execution of a policy, and saving it where plain `A.load` reads it.

A policy becomes `Compose([OneOf([Sequential([op1(p=p1), op2(p=p2)], p=1), ...], p=1)])`:
`OneOf` picks a sub-policy uniformly (its children's p are weights, all 1), `Sequential` runs
the ops in order and each op fires with its own probability. A signed op is a `OneOf` of its
+m and -m transforms with the op's probability. Ops albumentations lacks are autoaug's own
transforms (`autoaug.space.albu`); a file holding them loads after `import autoaug`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch

from autoaug.errors import PipelineError, TargetError
from autoaug.files import atomic_write
from autoaug.space.albu import ClippedCutout, SamplePairing, compose, load_pipeline, normalization, seed_pipeline, walk
from autoaug.space.augment import Augmenter
from autoaug.space.targets import TargetParams

PIPELINES = ("policy", "train", "eval")


def to_albumentations(policy: Augmenter, image_pool: np.ndarray | None = None, seed: int | None = None,
                      targets: TargetParams | None = None) -> A.Compose:
    """An `A.Compose` that applies `policy` (a Policy, RandAugment or TrivialAugment) to one HWC
    uint8 image per call. `image_pool` feeds SamplePairing (usually the training images);
    `targets` the mask fills and the bbox / keypoint formats (`autoaug.space.targets`)."""
    if targets is None:
        return compose(policy.to_albumentations_transforms(), image_pool=image_pool, seed=seed)
    return compose(policy.to_albumentations_transforms(targets), image_pool=image_pool, seed=seed, targets=targets)


def loading_note(policy: Augmenter | A.BaseCompose) -> str | None:
    """What a user must do before using the export of `policy` (or an albumentations pipeline,
    e.g. a whole training pipeline), or None when plain `A.load` is enough."""
    pipeline = policy if isinstance(policy, A.BaseCompose) else to_albumentations(policy)
    transforms = list(walk(pipeline))
    own = sorted({type(t).__name__ for t in transforms if type(t).__module__ == ClippedCutout.__module__})
    if not own:
        return None
    note = (f"note: the albumentations JSON holds autoaug's own transforms ({' / '.join(own)}): "
            "`import autoaug` before A.load")
    if any(isinstance(t, SamplePairing) for t in transforms):
        note += ", and give SamplePairing its partner images with autoaug.albu.set_image_pool(pipeline, images)"
    return note


def pipeline_document(pipeline: A.BaseCompose) -> dict[str, Any]:
    """What `A.save` writes for `pipeline`, and the top Compose's `strict` (albumentations 2.0.8
    leaves it out, but `A.load` passes it back to `Compose`): a strict pipeline says
    "keypoints_params must be specified" where a lax one fails on keypoints= with an
    AttributeError (issue #25)."""
    buffer = io.StringIO()
    A.save(pipeline, buffer, data_format="json")
    doc = json.loads(buffer.getvalue())
    if isinstance(pipeline, A.Compose) and pipeline.strict:
        doc["transform"]["strict"] = True
    return doc


def save_pipeline(pipeline: A.BaseCompose, path: str | Path) -> Path:
    """Write `pipeline` as `A.save` does (JSON, `pipeline_document`), through `files.atomic_write`:
    never half a file, and a device or pipe as the target is written into, not replaced."""
    text = json.dumps(pipeline_document(pipeline), indent=2).encode("utf-8")
    return atomic_write(path, lambda handle: handle.write(text), "albumentations pipeline")


def save_albumentations(policy: Augmenter, path: str | Path, targets: TargetParams | None = None) -> Path:
    """Write the albumentations JSON of `policy` with `A.save` (with `targets`' mask fills and formats)."""
    return save_pipeline(to_albumentations(policy, targets=targets), path)


def pipeline_path(native_path: str | Path, kind: str) -> Path:
    """`x.json` -> `x.albumentations.json` (policy), `x.train.albumentations.json`, `x.eval...`."""
    if kind not in PIPELINES:
        raise PipelineError(f"unknown pipeline {kind!r}; expected one of {', '.join(PIPELINES)}")
    native_path = Path(native_path)
    stem = native_path.name[:-5] if native_path.name.endswith(".json") else native_path.name
    middle = "" if kind == "policy" else f".{kind}"
    return native_path.with_name(f"{stem}{middle}.albumentations.json")


def albumentations_path(native_path: str | Path) -> Path:
    """`policies/x.json` -> `policies/x.albumentations.json`."""
    return pipeline_path(native_path, "policy")


class AlbumentationsFile:
    """An exported albumentations pipeline, drawn like an augmenter: `(images, generator) -> images`."""

    def __init__(self, doc: Any, path: str):
        """From the parsed JSON `doc` of file `path`, checked by `load_pipeline`; what it warns
        about (a pipeline that never changes an image) is in `warnings`."""
        self.pipeline, self.warnings = load_pipeline(doc, path)
        self.provenance = {"source": path}

    def describe(self) -> str:
        names = sorted({type(t).__name__ for t in walk(self.pipeline)} - {"Compose", "OneOf", "Sequential"})
        return f"albumentations pipeline (A.load reads it) of {', '.join(names)}"

    def summary(self) -> str:
        return "albumentations pipeline"

    def to_albumentations_transforms(self, targets: TargetParams | None = None) -> list[A.BasicTransform]:
        if targets is not None and (targets.mask_fill, targets.cutout_mask_fill) != (0, None):
            raise TargetError("an albumentations file keeps the mask fills written in it: expected no "
                              "--mask-fill / --cutout-mask-fill with it")
        return list(self.pipeline.transforms)

    def __call__(self, images: torch.Tensor, generator: torch.Generator, **targets: Any) -> torch.Tensor:
        if targets:
            raise TargetError("an albumentations file takes targets through albumentations: call its .pipeline "
                              "with image=, mask=, bboxes=, keypoints=, not the batched call")
        seed_pipeline(self.pipeline, int(torch.randint(2**31, (1,), generator=generator, device=generator.device)))
        hwc = images.permute(0, 2, 3, 1).cpu().numpy()
        outs = [self.pipeline(image=np.ascontiguousarray(img))["image"] for img in hwc]
        if not isinstance(outs[0], torch.Tensor):  # a policy pipeline: HWC uint8
            return torch.from_numpy(np.stack(outs)).permute(0, 3, 1, 2).contiguous().to(images.device)
        # A whole pipeline ending in ToTensorV2: back from its normalisation to pixels to draw.
        x = torch.stack(outs)  # (N, C, H, W) float32
        stats = normalization(self.pipeline)
        if stats is not None:
            x = x * torch.tensor(stats[1]).view(1, -1, 1, 1) + torch.tensor(stats[0]).view(1, -1, 1, 1)
        return x.round().clamp(0, 255).to(torch.uint8).to(images.device)
