"""Batched torch execution of a policy: a whole batch on its device, per-image choices, no loop over images.

For each image: draw a sub-policy uniformly, then for each of its ops in order draw whether it
fires (its probability) and, for signed ops, a sign. All draws come from the `torch.Generator`
passed in, so the same seed gives the same pixels. Images that share an op at the same stage are
processed by one kernel call, so a batch costs at most (ops per sub-policy) x 16 kernel calls
however many images or sub-policies there are.

`render_grid` draws what an augmenter does to a few images (`autoaug show`, TensorBoard).
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from autoaug.space.ops import OP_NAMES, OPS, OpContext
from autoaug.space.policy import Policy

_SIGNED = torch.tensor([op.signed for op in OPS])


class PolicyAugment:
    """Callable augmentation: `(uint8 (B, C, H, W), generator) -> uint8 (B, C, H, W)`."""

    def __init__(self, policy: Policy):
        self.policy = policy
        depth = max(len(sub) for sub in policy.sub_policies)
        s = len(policy.sub_policies)
        # (S, depth) tables; a sub-policy shorter than `depth` pads with probability 0
        self.op_ids = torch.zeros(s, depth, dtype=torch.long)
        self.probs = torch.zeros(s, depth)
        self.magnitudes = torch.zeros(s, depth)
        for i, sub in enumerate(policy.sub_policies):
            for k, op in enumerate(sub):
                self.op_ids[i, k] = OP_NAMES.index(op.name)
                self.probs[i, k] = op.prob
                self.magnitudes[i, k] = op.magnitude

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        b = images.shape[0]
        gdev = generator.device
        sub = torch.randint(len(self.policy.sub_policies), (b,), generator=generator, device=gdev).cpu()  # (B,)
        depth = self.op_ids.shape[1]
        fire_draw = torch.rand(b, depth, generator=generator, device=gdev).cpu()  # (B, depth)
        sign_draw = torch.randint(0, 2, (b, depth), generator=generator, device=gdev).cpu() * 2 - 1
        op_ids = self.op_ids[sub]  # (B, depth)
        fire = fire_draw < self.probs[sub]  # (B, depth)
        mags = self.magnitudes[sub] * torch.where(_SIGNED[op_ids], sign_draw, 1)  # (B, depth)
        return apply_ops(images, op_ids, mags, fire, generator)


def apply_ops(
    images: torch.Tensor,
    op_ids: torch.Tensor,
    magnitudes: torch.Tensor,
    fire: torch.Tensor,
    generator: torch.Generator,
) -> torch.Tensor:
    """Apply, stage by stage, op `op_ids[i, k]` at `magnitudes[i, k]` to image i where `fire[i, k]`.

    `op_ids`, `magnitudes`, `fire` are (B, depth) CPU tensors (choices are drawn on the CPU side
    so grouping needs no device sync per op); images stay on their device. Shared by the
    policy, RandAugment and TrivialAugment executions.
    """
    if images.dtype != torch.uint8 or images.ndim != 4:
        raise ValueError(f"expected uint8 images of shape (B, C, H, W), got {images.dtype} {tuple(images.shape)}")
    original = images
    out = images.clone()
    dev = images.device
    for k in range(op_ids.shape[1]):
        ids_k = torch.where(fire[:, k], op_ids[:, k], -1)
        for op_id in torch.unique(ids_k).tolist():
            if op_id < 0:
                continue
            idx = torch.nonzero(ids_k == op_id).squeeze(1)  # (n,) CPU
            idx_dev = idx.to(dev)
            ctx = OpContext(generator=generator, batch=original, index=idx_dev)
            m = magnitudes[idx, k].to(dev, torch.float32)
            out[idx_dev] = OPS[op_id].kernel(out[idx_dev], m, ctx)
    return out


def _label(img: np.ndarray, text: str) -> np.ndarray:
    """A strip with each line of `text` above `img` (HWC uint8 RGB); lines too long are cut."""
    lines = text.splitlines()
    strip = np.full((14 * len(lines), img.shape[1], 3), 255, np.uint8)
    for k, line in enumerate(lines):
        cv2.putText(strip, line[: img.shape[1] // 6], (2, 11 + 14 * k), cv2.FONT_HERSHEY_PLAIN, 0.8,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, img], axis=0)


def sub_policy_label(index: int, sub) -> str:
    """One line per op of a sub-policy: its probability and its magnitude, as the bin and the
    value in the op's unit (`Rotate(p=0.7, bin 2 = +/-6.67 degrees)`)."""
    return "\n".join(f"{index}: {op}" if k == 0 else f"  > {op}" for k, op in enumerate(sub))


def render_grid(policy, images: np.ndarray, seed: int = 0, scale: int = 3) -> np.ndarray:
    """One row per sub-policy (each image augmented by that sub-policy alone), the originals first.

    For RandAugment / TrivialAugment, which have no sub-policies, each row is a fresh draw.
    """
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    g = torch.Generator().manual_seed(seed)
    rows, labels = [x], ["original"]
    if isinstance(policy, Policy):
        for i, sub in enumerate(policy.sub_policies):
            rows.append(PolicyAugment(Policy((sub,)))(x, g))
            labels.append(sub_policy_label(i, sub))
    else:
        for i in range(5):
            rows.append(policy(x, g))
            labels.append(f"draw {i}")
    tiles = []
    for row, text in zip(rows, labels):
        strip = np.concatenate(list(row.permute(0, 2, 3, 1).numpy()), axis=1)  # (H, N*W, C)
        strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        tiles.append(_label(strip, text))
    return np.concatenate(tiles, axis=0)
