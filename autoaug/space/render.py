"""Pictures of what an augmenter does to real images (`autoaug show`, the search's TensorBoard)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from autoaug.space.augment import Augmenter
from autoaug.space.policy import Policy


def _label(img: np.ndarray, text: str) -> np.ndarray:
    """A strip with each line of `text` above `img` (HWC uint8 RGB); lines too long are cut."""
    lines = text.splitlines()
    strip = np.full((14 * len(lines), img.shape[1], 3), 255, np.uint8)
    for k, line in enumerate(lines):
        cv2.putText(strip, line[: img.shape[1] // 6], (2, 11 + 14 * k), cv2.FONT_HERSHEY_PLAIN, 0.8,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, img], axis=0)


def sub_policy_label(index: int, sub, reading: str = "paper") -> str:
    """One line per op of a sub-policy: its probability and its magnitude, as the bin and the
    value in the op's unit under the policy's range reading (`Rotate(p=0.7, bin 2 = +/-6.67 degrees)`)."""
    return "\n".join(f"{index}: " + op.describe(reading) if k == 0 else "  > " + op.describe(reading)
                     for k, op in enumerate(sub))


def render_grid(policy: Augmenter, images: np.ndarray, seed: int = 0, scale: int = 3) -> np.ndarray:
    """One row per sub-policy (each image augmented by that sub-policy alone), the originals first.

    For RandAugment / TrivialAugment, which have no sub-policies, each row is a fresh draw.
    """
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    g = torch.Generator().manual_seed(seed)
    rows, labels = [x], ["original"]
    if isinstance(policy, Policy):
        for i, sub in enumerate(policy.sub_policies):
            rows.append(Policy((sub,), range_reading=policy.range_reading)(x, g))
            labels.append(sub_policy_label(i, sub, policy.range_reading))
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
