"""Pictures of what an augmenter does to real images (`autoaug show`, the search's TensorBoard),
and to a mask, a box and keypoints that come with them (`autoaug show --targets`, issue #25)."""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

from autoaug.errors import TargetError
from autoaug.space.albu import normalization, seed_pipeline
from autoaug.space.augment import Augmenter
from autoaug.space.export import AlbumentationsFile, to_albumentations
from autoaug.space.policy import Policy
from autoaug.space.targets import TargetParams


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


# --- targets: a mask, its box and keypoints drawn over the augmented images (issue #25) --------

MASK_COLOUR = (0, 255, 0)  # RGB: the mask's outline
BOX_COLOUR = (255, 0, 255)  # the bounding box
KEYPOINT_COLOUR = (255, 0, 0)  # the keypoints
TARGETS_LEGEND = "green: mask outline, magenta: box, red: keypoints"
MIN_TARGET_SIDE = 8  # pixels: below it the ellipse degenerates to a line or a dot


@dataclass(frozen=True)
class Targets:
    """What a segmentation / detection / pose dataset hands the pipeline beside one image, in the
    pixel coordinates of that image: mask (H, W) uint8, boxes (x_min, y_min, x_max, y_max) as
    albumentations' pascal_voc, keypoints (x, y)."""

    mask: np.ndarray
    boxes: np.ndarray  # (K, 4) float
    keypoints: np.ndarray  # (P, 2) float


def default_targets(height: int, width: int) -> Targets:
    """A tilted filled ellipse around the image centre, its tight box and four keypoints on its
    outline, unevenly spaced: a flip, a rotation or a shear each moves them in a way one can see."""
    if min(height, width) < MIN_TARGET_SIDE:
        raise TargetError(f"--targets: expected images of at least {MIN_TARGET_SIDE}x{MIN_TARGET_SIDE} pixels to "
                          f"draw a target on, got {width}x{height}")
    cx, cy, ax, ay, tilt = width / 2, height / 2, 0.32 * width, 0.2 * height, np.deg2rad(25)
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (round(cx), round(cy)), (round(ax), round(ay)), float(np.rad2deg(tilt)), 0, 360, 1, -1)
    ys, xs = np.nonzero(mask)
    box = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], np.float64)
    t = np.deg2rad([0.0, 80.0, 170.0, 290.0])  # angles along the ellipse
    keypoints = np.stack([cx + ax * np.cos(t) * np.cos(tilt) - ay * np.sin(t) * np.sin(tilt),
                          cy + ax * np.cos(t) * np.sin(tilt) + ay * np.sin(t) * np.cos(tilt)], axis=1)
    return Targets(mask, box, keypoints)


SHOW_TARGETS = TargetParams(bbox_format="pascal_voc", keypoint_format="xy")  # `Targets`' formats


@contextmanager
def _no_idle_processor_warning():
    """albumentations warns of a bbox / keypoint processor with no transform that moves them: a
    sub-policy of colour ops alone, which rightly leaves them where they are."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "Got processor for", UserWarning)
        yield


def target_pipeline(transforms: list[A.BasicTransform]) -> A.Compose:
    """`transforms` in a Compose that carries a mask, pascal_voc boxes and xy keypoints along
    with the image, as a user's detection or pose dataset would."""
    with _no_idle_processor_warning():
        return A.Compose(transforms, p=1.0, **SHOW_TARGETS.compose_args())


def draw_targets(image: np.ndarray, targets: Targets, scale: int = 3) -> np.ndarray:
    """`image` (HWC uint8 RGB) enlarged `scale` times, with the outline of the mask, the boxes
    and the keypoints drawn over it, each at the enlarged image's pixel precision."""
    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    mask = cv2.resize(targets.mask.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(big, contours, -1, MASK_COLOUR, 1)
    for x0, y0, x1, y1 in np.asarray(targets.boxes, np.float64).reshape(-1, 4) * scale:
        cv2.rectangle(big, (round(x0), round(y0)), (round(x1) - 1, round(y1) - 1), BOX_COLOUR, 1)
    for x, y in np.asarray(targets.keypoints, np.float64).reshape(-1, 2) * scale:
        cv2.circle(big, (round(x), round(y)), max(2, scale), KEYPOINT_COLOUR, -1)
    return big


def _pixels(image: np.ndarray | torch.Tensor, stats) -> np.ndarray:
    """A pipeline's output image as HWC uint8 to draw: a ToTensorV2 tensor back from its
    normalisation (`stats` = (mean, std) of the pipeline's Normalize, or None)."""
    if not isinstance(image, torch.Tensor):
        return image
    x = image.permute(1, 2, 0).numpy()
    if stats is not None:
        x = x * np.asarray(stats[1]) + np.asarray(stats[0])
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def augment_targets(pipeline: A.Compose, image: np.ndarray, targets: Targets) -> tuple[np.ndarray, Targets]:
    """One call of `pipeline` (from `target_pipeline`) on an image and its targets."""
    out = pipeline(image=image, mask=targets.mask, bboxes=targets.boxes, keypoints=targets.keypoints)
    return (_pixels(out["image"], normalization(pipeline)),
            Targets(np.asarray(out["mask"]), np.asarray(out["bboxes"]), np.asarray(out["keypoints"])))


def _row_transforms(policy: Augmenter | AlbumentationsFile, images: np.ndarray):
    """(label, transforms) per row of `render_targets`: a Policy's sub-policies alone, else five
    draws of the whole pipeline; each exported as `autoaug export-albumentations` would."""
    def export(augmenter) -> list[A.BasicTransform]:
        if isinstance(augmenter, AlbumentationsFile):
            return augmenter.to_albumentations_transforms(SHOW_TARGETS)
        with _no_idle_processor_warning():
            return list(to_albumentations(augmenter, image_pool=images, targets=SHOW_TARGETS).transforms)

    if isinstance(policy, Policy):
        return [(sub_policy_label(i, sub, policy.range_reading), export(Policy((sub,), range_reading=policy.range_reading)))
                for i, sub in enumerate(policy.sub_policies)]
    return [(f"draw {i}", export(policy)) for i in range(5)]


def render_targets(policy: Augmenter | AlbumentationsFile, images: np.ndarray, seed: int = 0,
                   scale: int = 3) -> np.ndarray:
    """`render_grid` with a target to follow: each image carries `default_targets` through the
    policy's albumentations export (the path one trains with), and the augmented mask's outline,
    box and keypoints are drawn over the augmented image. The originals come first."""
    h, w = images.shape[1:3]
    targets = default_targets(h, w)
    tiles = [_label(np.concatenate([draw_targets(img, targets, scale) for img in images], axis=1),
                    f"original ({TARGETS_LEGEND})")]
    for k, (label, transforms) in enumerate(_row_transforms(policy, images)):
        pipeline = target_pipeline(transforms)
        seed_pipeline(pipeline, seed + k)
        drawn = [draw_targets(*augment_targets(pipeline, img, targets), scale) for img in images]
        tiles.append(_label(np.concatenate(drawn, axis=1), label))
    return np.concatenate(tiles, axis=0)
