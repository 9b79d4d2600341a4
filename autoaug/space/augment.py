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

from autoaug.space.ops import TABLE, OpContext

SIGNED = torch.tensor([op.signed for op in TABLE])  # (rows,) which table rows get a random sign


class Augmenter(Protocol):
    """A policy, RandAugment or TrivialAugment: the batched call, the albumentations form, the
    native JSON document and a description."""

    provenance: dict[str, Any]
    """Where it came from ("source", "created", ...), kept in its JSON document."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """uint8 (B, C, H, W) -> uint8 (B, C, H, W), every image with its own draws."""

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


def apply_ops(
    images: torch.Tensor,
    op_ids: torch.Tensor,
    magnitudes: torch.Tensor,
    fire: torch.Tensor,
    generator: torch.Generator | Sequence[torch.Generator],
) -> torch.Tensor:
    """Apply, stage by stage, op `op_ids[i, k]` at `magnitudes[i, k]` to image i where `fire[i, k]`.

    `op_ids`, `magnitudes`, `fire` are (B, depth) CPU tensors (choices are drawn on the CPU side
    so grouping needs no device sync per op); images stay on their device. `op_ids` are positions
    in the op table `TABLE`. Shared by the policy, RandAugment and TrivialAugment executions.

    With K generators, `images` are K batches of B / K stacked along dim 0 (fused children,
    `autoaug.space.policy.apply_policies`), batch j drawing from `generator[j]`: one kernel call
    per op and stage for all K, except the ops that draw (`OpSpec.draws`), called batch by batch
    with each batch's own generator, so every batch gets exactly the pixels it would get alone.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images of shape (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
    generators = [generator] if isinstance(generator, torch.Generator) else list(generator)
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
                out[idx_dev] = TABLE[op_id].kernel(out[idx_dev], m, ctx)
    return out
