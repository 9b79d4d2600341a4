"""Batched torch execution: a whole batch on its device, per-image choices, no loop over images.

`Augmenter` is what every augmenter of the package is (a learned or published `Policy`,
`RandAugment`, `TrivialAugment`): each draws its per-image choices (ops, whether they fire,
magnitudes, signs) from the `torch.Generator` passed in, so the same seed gives the same pixels,
and hands them to `apply_ops`. Images that share an op at the same stage are processed by one
kernel call, so a batch costs at most (ops per image) x (table rows) kernel calls however many
images there are.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import albumentations as A
import torch

from autoaug.errors import TargetError
from autoaug.space.ops import TABLE, OpContext, OpSpec, fill_region
from autoaug.space.targets import GEOMETRIC, OCCLUDES, Augmented, TargetBatch, TargetParams

SIGNED = torch.tensor([op.signed for op in TABLE])  # (rows,) which table rows get a random sign


class Augmenter(Protocol):
    """A policy, RandAugment or TrivialAugment: the batched call, the albumentations form, the
    native JSON document and a description."""

    provenance: dict[str, Any]
    """Where it came from ("source", "created", ...), kept in its JSON document."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator, *, masks: Any = None, boxes: Any = None,
                 keypoints: Any = None, target_params: TargetParams | None = None) -> torch.Tensor | Augmented:
        """uint8 (B, C, H, W) -> uint8 (B, C, H, W), every image with its own draws; with masks,
        boxes or keypoints, an `Augmented` holding them moved with their images
        (`autoaug.space.targets`)."""

    def to_albumentations_transforms(self) -> list[A.BasicTransform]:
        """The transforms of the albumentations pipeline that does the same to one image."""

    def to_json(self) -> dict[str, Any]:
        """The native policy document (`autoaug.space.specs.policy_from_json` reads it back)."""

    def describe(self) -> str:
        """What it does, for `autoaug validate`: a title line, then one line per part."""

    def summary(self) -> str:
        """One line for reports, e.g. "RandAugment N=2 M=9"."""


def signed_magnitudes(magnitudes: torch.Tensor, op_ids: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """`magnitudes` (B, depth) with a random sign where table row `op_ids` is signed (shear,
    translate, rotate). One draw per entry, signed op or not, so the stream of draws does not
    depend on which ops were chosen."""
    sign = torch.randint(0, 2, op_ids.shape, generator=generator, device=generator.device).cpu() * 2 - 1
    return magnitudes * torch.where(SIGNED[op_ids], sign, 1)  # (B, depth)


def augment(
    images: torch.Tensor,
    drawn: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    generator: torch.Generator,
    masks: Any = None,
    boxes: Any = None,
    keypoints: Any = None,
    target_params: TargetParams | None = None,
) -> torch.Tensor | Augmented:
    """`apply_ops` of the per-image choices `drawn` (op ids, magnitudes, fire), and an
    `Augmented` with the targets moved alike when any target is given; the images and the draws
    from `generator` are the same either way."""
    if masks is None and boxes is None and keypoints is None:
        if target_params is not None:
            raise TargetError("target_params: expected masks=, boxes= or keypoints= with them, got no targets")
        return apply_ops(images, *drawn, generator)
    targets = TargetBatch(images, masks, boxes, keypoints, target_params)
    return targets.result(apply_ops(images, *drawn, generator, targets=targets))


def apply_ops(
    images: torch.Tensor,
    op_ids: torch.Tensor,
    magnitudes: torch.Tensor,
    fire: torch.Tensor,
    generator: torch.Generator | Sequence[torch.Generator],
    targets: TargetBatch | None = None,
) -> torch.Tensor:
    """Apply, stage by stage, op `op_ids[i, k]` at `magnitudes[i, k]` to image i where `fire[i, k]`.

    `op_ids`, `magnitudes`, `fire` are (B, depth) CPU tensors (choices are drawn on the CPU side
    so grouping needs no device sync per op); images stay on their device. `op_ids` are positions
    in the op table `TABLE`. Shared by the policy, RandAugment and TrivialAugment executions.

    With K generators, `images` are K batches of B / K stacked along dim 0 (fused children,
    `autoaug.space.policy.apply_policies`), batch j drawing from `generator[j]`: one kernel call
    per op and stage for all K, except the ops that draw (`OpSpec.draws`), called batch by batch
    with each batch's own generator, so every batch gets exactly the pixels it would get alone.

    `targets` (one generator only) are moved with their images as each op's row says.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images of shape (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
    generators = [generator] if isinstance(generator, torch.Generator) else list(generator)
    assert targets is None or len(generators) == 1, "targets ride with one batch, one generator"
    b = images.shape[0] // len(generators)  # images per batch
    original = images
    out = images.clone()
    dev = images.device
    for k in range(op_ids.shape[1]):
        ids_k = torch.where(fire[:, k], op_ids[:, k], -1)
        for op_id in torch.unique(ids_k).tolist():
            if op_id < 0:
                continue
            idx = torch.nonzero(ids_k == op_id).squeeze(1)  # (n,) CPU, ascending
            if len(generators) == 1 or not TABLE[op_id].draws:
                parts = [(idx, 0)]
            else:
                owner = idx // b
                parts = [(idx[owner == j], j) for j in torch.unique(owner).tolist()]
            for part, j in parts:
                idx_dev = part.to(dev)
                ctx = OpContext(generator=generators[j], batch=original[j * b : (j + 1) * b],
                                index=idx_dev - j * b if j else idx_dev)
                m = magnitudes[part, k].to(dev, torch.float32)
                if targets is None:
                    out[idx_dev] = TABLE[op_id].kernel(out[idx_dev], m, ctx)
                else:
                    out[idx_dev] = _with_targets(TABLE[op_id], out[idx_dev], m, ctx, idx_dev, targets)
    return out


def _with_targets(op: OpSpec, img: torch.Tensor, m: torch.Tensor, ctx: OpContext, idx: torch.Tensor,
                  targets: TargetBatch) -> torch.Tensor:
    """One op's kernel on images `idx`, their targets treated as the op's row says
    (`OpSpec.targets`); the kernel draws exactly what it draws without targets."""
    if op.targets == GEOMETRIC:
        assert op.matrix is not None
        targets.move(idx, op.matrix(m, img.shape[-2], img.shape[-1]))
    elif op.targets == OCCLUDES and targets.occlusion_matters:
        assert op.region is not None
        region = op.region(img, m, ctx)  # the kernel's own draw, so the hole is where the image's is
        targets.occlude(idx, region)
        return fill_region(img, region)
    return op.kernel(img, m, ctx)
