"""What an augmentation does to the targets that come with an image (issue #25).

Segmentation masks, bounding boxes and keypoints must move with their image, or a learned policy
silently corrupts the labels it trains on. Every row of the op table (`autoaug.space.ops`) states
its effect on targets (`OpSpec.targets`, one of `EFFECTS`), and every geometric row gives the 2x3
matrix its kernel applies (`OpSpec.matrix`), so both executions move targets exactly as the image:

- the batched torch path (`Policy.__call__(images, g, masks=..., boxes=..., keypoints=...)`):
  `TargetBatch` carries the batch's targets through `autoaug.space.augment.apply_ops` and
  `Augmented` is what comes out;
- the albumentations export (`TargetParams.bbox_params` / `keypoint_params` on the `A.Compose`,
  autoaug's transforms in `autoaug.space.albu` as `DualTransform`s).

Rules, the same in both executions (albumentations 2.0.8's where it has one):
- a geometric op warps masks through the image's matrix, nearest neighbour, `mask_fill` where the
  image gets its grey fill; boxes become the rectangle enclosing their 4 transformed corners, then
  are clipped to the image and dropped by albumentations' rules (`BboxParams`: wholly outside, zero
  area, under `min_area` pixels or `min_visibility` of their unclipped area), after every op as
  albumentations' `check_each_transform` does; keypoints move as points and are dropped once
  outside the image (albumentations' `remove_invisible`);
- pixel ops (colour, contrast, Solarize, ...) and SamplePairing leave every target alone;
- Cutout follows albumentations' `CoarseDropout`, which the policy's Cutout exports as: the mask
  stays unless `cutout_mask_fill` asks for the hole to be filled (with that value); every box of
  the image is cut to whole pixels (its coordinates truncated) and shrunk to the rectangle around
  its visible pixels, and goes when no pixel, under `min_area` pixels or under `min_visibility` of
  it stays visible; keypoints under the hole go.

Box coordinates are pixel edges (a box of pixel (0, 0) alone is (0, 0, 1, 1)); keypoint
coordinates are pixel centres (that pixel's keypoint is (0, 0)), as in albumentations, so a box
moves about the centre (W/2, H/2) and a keypoint about (W/2 - 0.5, H/2 - 0.5).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import albumentations as A
import numpy as np
import torch

from autoaug.errors import TargetError, shown

# What an op does to the targets of its image (`OpSpec.targets`).
PIXEL = "pixel"
GEOMETRIC = "geometric"
OCCLUDES = "occludes"
IMAGE_ONLY = "image-only"
EFFECTS = {
    PIXEL: "changes pixel values only: masks, boxes and keypoints stay",
    GEOMETRIC: "moves pixels: masks (nearest neighbour), boxes and keypoints move with them",
    OCCLUDES: "hides a region: boxes shrink to their visible part, keypoints under it go, the mask stays "
              "unless cutout_mask_fill fills its hole",
    IMAGE_ONLY: "blends in another image: this image's targets stay",
}

BBOX_FORMATS = ("pascal_voc", "coco", "yolo", "albumentations")  # albumentations 2.0.8's
KEYPOINT_FORMATS = ("xy", "yx", "xya", "xys", "xyas", "xysa", "xyz")  # albumentations 2.0.8's
TORCH_KEYPOINT_FORMAT = "xy"  # the batched path takes (x, y) in pixels
_EPS = 1e-7  # albumentations' own epsilon in filter_bboxes


def _check_int(value: Any, what: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TargetError(f"{what}: expected a mask value (an int >= 0){' or None' if optional else ''}, "
                          f"got {shown(value)}")


@dataclass(frozen=True)
class TargetParams:
    """How targets are read and treated, for both executions.

    A user states the formats once; the export writes them as the `A.Compose`'s `bbox_params` /
    `keypoint_params`, and the torch path reads boxes in `bbox_format` (pascal_voc when None).
    """

    mask_fill: int = 0
    """Mask value where a geometric op uncovers pixels (the image gets grey there)."""
    cutout_mask_fill: int | None = None
    """None: Cutout leaves the mask alone; a value: Cutout's hole is filled with it in the mask."""
    bbox_format: str | None = None
    """An albumentations box format (`BBOX_FORMATS`); None: the export takes no boxes."""
    bbox_labels: tuple[str, ...] = ()
    """The export's `label_fields`: names of the per-box label lists passed with bboxes= (the torch
    path needs none: `Augmented.box_index` says which input box each output box is)."""
    keypoint_format: str | None = None
    """An albumentations keypoint format (`KEYPOINT_FORMATS`); None: the export takes no keypoints."""
    keypoint_labels: tuple[str, ...] = ()
    """The export's keypoint `label_fields` (which keypoints stayed: the torch path says it with
    `Augmented.keypoint_index`)."""
    min_area: float = 0.0
    """A box whose clipped area falls under this many pixels is dropped (albumentations' min_area)."""
    min_visibility: float = 0.0
    """A box with less than this fraction of itself left inside the image is dropped."""

    def __post_init__(self) -> None:
        _check_int(self.mask_fill, "mask_fill")
        _check_int(self.cutout_mask_fill, "cutout_mask_fill", optional=True)
        if self.bbox_format is not None and self.bbox_format not in BBOX_FORMATS:
            raise TargetError(f"bbox format: expected one of {', '.join(BBOX_FORMATS)}, got {shown(self.bbox_format)}")
        if self.keypoint_format is not None and self.keypoint_format not in KEYPOINT_FORMATS:
            raise TargetError(f"keypoint format: expected one of {', '.join(KEYPOINT_FORMATS)}, "
                              f"got {shown(self.keypoint_format)}")
        for kind, fmt in (("bbox", self.bbox_format), ("keypoint", self.keypoint_format)):
            labels = tuple(getattr(self, f"{kind}_labels"))
            if any(not isinstance(name, str) or not name.isidentifier() for name in labels) or \
                    len(set(labels)) < len(labels):
                raise TargetError(f"{kind} labels: expected distinct names (letters, digits, _), got {shown(list(labels))}")
            if labels and fmt is None:
                raise TargetError(f"{kind} labels name the label lists of {kind}s: expected a {kind} format with them")
            object.__setattr__(self, f"{kind}_labels", labels)
        if set(self.bbox_labels) & set(self.keypoint_labels):
            raise TargetError(f"bbox and keypoint labels share {sorted(set(self.bbox_labels) & set(self.keypoint_labels))}: "
                              "expected a name for each list")
        for name, value, top in (("min_area", self.min_area, math.inf), ("min_visibility", self.min_visibility, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= top:
                raise TargetError(f"{name}: expected a number in [0, {top}], got {shown(value)}")

    def bbox_params(self) -> A.BboxParams | None:
        """The `A.Compose(bbox_params=...)` of the export, None without a box format."""
        if self.bbox_format is None:
            return None
        return A.BboxParams(format=self.bbox_format, label_fields=list(self.bbox_labels),
                            min_area=float(self.min_area), min_visibility=float(self.min_visibility))

    def keypoint_params(self) -> A.KeypointParams | None:
        """The `A.Compose(keypoint_params=...)` of the export (keypoints leaving the image are removed)."""
        if self.keypoint_format is None:
            return None
        return A.KeypointParams(format=self.keypoint_format, label_fields=list(self.keypoint_labels),
                                remove_invisible=True)

    def compose_args(self) -> dict[str, Any]:
        """bbox_params / keypoint_params for `A.Compose`, only those that are set."""
        args = {"bbox_params": self.bbox_params(), "keypoint_params": self.keypoint_params()}
        return {key: value for key, value in args.items() if value is not None}


DEFAULT_TARGETS = TargetParams()


# --- box formats of the torch path: all become pascal_voc (pixel edges x_min, y_min, x_max, y_max) ---

def _to_pascal_voc(boxes: torch.Tensor, fmt: str, h: int, w: int) -> torch.Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    if fmt == "coco":  # x_min, y_min, width, height in pixels
        x1, y1 = x0 + x1, y0 + y1
    elif fmt == "yolo":  # centre x, centre y, width, height as fractions of the image
        x0, y0, x1, y1 = (x0 - x1 / 2) * w, (y0 - y1 / 2) * h, (x0 + x1 / 2) * w, (y0 + y1 / 2) * h
    elif fmt == "albumentations":  # pascal_voc as fractions of the image
        x0, y0, x1, y1 = x0 * w, y0 * h, x1 * w, y1 * h
    return torch.stack((x0, y0, x1, y1), dim=-1)


def _from_pascal_voc(boxes: torch.Tensor, fmt: str, h: int, w: int) -> torch.Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    if fmt == "coco":
        x1, y1 = x1 - x0, y1 - y0
    elif fmt == "yolo":
        x0, y0, x1, y1 = (x0 + x1) / (2 * w), (y0 + y1) / (2 * h), (x1 - x0) / w, (y1 - y0) / h
    elif fmt == "albumentations":
        x0, y0, x1, y1 = x0 / w, y0 / h, x1 / w, y1 / h
    return torch.stack((x0, y0, x1, y1), dim=-1)


def _flatten(items: Any, b: int, width: int, what: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image rows -> (rows (M, width) float32, index (M, 2) long: [image, position in its list]).

    `items`: a sequence of B (N_i, width) arrays / tensors / lists, or one (B, N, width) tensor
    whose all-NaN rows are padding."""
    if isinstance(items, (torch.Tensor, np.ndarray)) and items.ndim == 3:
        items = torch.as_tensor(items)
        if items.shape[0] != b or items.shape[2] != width:
            raise TargetError(f"{what}: expected a (B={b}, N, {width}) tensor or a list of {b} (N, {width}) "
                              f"arrays, got shape {tuple(items.shape)}")
        return _flatten_padded(items.float(), what, device)
    if isinstance(items, (str, bytes)) or not isinstance(items, (Sequence, torch.Tensor, np.ndarray)) or len(items) != b:
        raise TargetError(f"{what}: expected a list of {b} (N, {width}) arrays (one per image) or a "
                          f"(B, N, {width}) tensor, got {shown(items)}")
    rows, index = [], []
    for i, per_image in enumerate(items):
        try:
            t = torch.as_tensor(np.asarray(per_image, dtype=np.float32) if not isinstance(per_image, torch.Tensor)
                                else per_image.float().cpu())
        except (TypeError, ValueError):
            raise TargetError(f"{what}[{i}]: expected numbers, got {shown(per_image)}") from None
        t = t.reshape(0, width) if t.numel() == 0 else t
        if t.ndim != 2 or t.shape[1] != width or not torch.isfinite(t).all():
            raise TargetError(f"{what}[{i}]: expected an (N, {width}) array of finite numbers, got "
                              f"shape {tuple(t.shape)}" + ("" if torch.isfinite(t).all() else " with NaN / inf"))
        rows.append(t)
        index.append(torch.stack((torch.full((len(t),), i), torch.arange(len(t))), dim=1))
    return torch.cat(rows).to(device), torch.cat(index).to(device)


def _flatten_padded(items: torch.Tensor, what: str, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """`_flatten` of a (B, N, width) tensor in one step (a loop over images cost 70% of the
    batched call with boxes, experiments/bench_augment.py): its rows that are not all NaN, each
    indexed by its position among its image's kept rows."""
    keep = ~torch.isnan(items).all(dim=2)
    rows = items[keep]
    if not torch.isfinite(rows).all():
        raise TargetError(f"{what}: expected finite numbers in every row that is not padding (all NaN), got NaN / inf")
    index = torch.stack((keep.nonzero()[:, 0], (keep.cumsum(dim=1) - 1)[keep]), dim=1)
    return rows.to(device), index.to(device)


def _transform_points(points: torch.Tensor, matrix: torch.Tensor, offset: float) -> torch.Tensor:
    """points (M, K, 2) through matrices (M, 2, 3) given in pixel-centre coordinates; `offset`
    0.5 for pixel-edge coordinates (boxes), 0 for pixel centres (keypoints)."""
    p = points - offset
    out = torch.einsum("mij,mkj->mki", matrix[:, :, :2], p) + matrix[:, None, :, 2]
    return out + offset


def warp_masks(masks: torch.Tensor, matrix: torch.Tensor, fill: int) -> torch.Tensor:
    """Masks (n, K, H, W) of any dtype moved by forward matrices (n, 2, 3) in pixel-centre
    coordinates, each output pixel copying the source pixel nearest its inverse-mapped position
    (half-way rounds up, as OpenCV's INTER_NEAREST does); `fill` where that falls outside."""
    n, k, h, w = masks.shape
    # double precision where the device has it (MPS has not): a half-way source position then
    # rounds as OpenCV's does, up to its own 1/1024 px quantisation
    dtype = torch.float32 if masks.device.type == "mps" else torch.float64
    lin, t = matrix[:, :, :2].to(dtype), matrix[:, :, 2].to(dtype)
    inv = torch.linalg.inv(lin)  # (n, 2, 2)
    ys, xs = torch.meshgrid(torch.arange(h, device=masks.device, dtype=dtype),
                            torch.arange(w, device=masks.device, dtype=dtype), indexing="ij")
    dst = torch.stack((xs, ys), dim=-1).reshape(1, h * w, 2) - t[:, None, :]  # (n, HW, 2)
    src = torch.einsum("nij,npj->npi", inv, dst)  # (n, HW, 2) source x, y
    sx, sy = torch.floor(src[..., 0] + 0.5).long(), torch.floor(src[..., 1] + 0.5).long()
    valid = (sx >= 0) & (sx < w) & (sy >= 0) & (sy < h)  # (n, HW)
    idx = (sy.clamp(0, h - 1) * w + sx.clamp(0, w - 1))[:, None, :].expand(n, k, h * w)
    out = masks.reshape(n, k, h * w).gather(2, idx)
    out = torch.where(valid[:, None, :], out, torch.full_like(out, fill))
    return out.reshape(n, k, h, w)


def keep_boxes(after: torch.Tensor, h: int, w: int, params: TargetParams) -> torch.Tensor:
    """Which moved boxes (M, 4 pascal_voc) survive, by albumentations 2.0.8's rules: an affine
    transform drops a box wholly outside the image (`validate_bboxes`), then `filter_bboxes`
    drops zero-area boxes and those whose clipped area is under `min_area` or under
    `min_visibility` of their moved, unclipped area."""
    x0, y0, x1, y1 = after.unbind(-1)
    inside = (x1 > 0) & (y1 > 0) & (x0 < w) & (y0 < h)
    area = (x1 - x0) * (y1 - y0)
    clipped = clip_boxes(after, h, w)
    clipped_area = (clipped[:, 2] - clipped[:, 0]) * (clipped[:, 3] - clipped[:, 1])
    return (inside & (area >= _EPS) & (clipped_area >= params.min_area - _EPS)
            & (clipped_area / (area + _EPS) >= params.min_visibility))


def clip_boxes(boxes: torch.Tensor, h: int, w: int) -> torch.Tensor:
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack((x0.clamp(0, w), y0.clamp(0, h), x1.clamp(0, w), y1.clamp(0, h)), dim=-1)


@dataclass(frozen=True)
class Augmented:
    """What an augmenter returns when targets come with the images.

    `boxes` (M, 4) float32 in the format they came in and `keypoints` (P, 2) float32 (x, y) hold
    every survivor of the batch; row r belongs to image `box_index[r, 0]` and was entry
    `box_index[r, 1]` of that image's input list (so its label is `labels[i][box_index[r, 1]]`);
    the same for `keypoint_index`. A target not given is None."""

    images: torch.Tensor  # (B, C, H, W) uint8
    masks: torch.Tensor | None  # as given: (B, H, W) or (B, K, H, W)
    boxes: torch.Tensor | None  # (M, 4)
    box_index: torch.Tensor | None  # (M, 2) long
    keypoints: torch.Tensor | None  # (P, 2)
    keypoint_index: torch.Tensor | None  # (P, 2) long

    def boxes_of(self, i: int) -> torch.Tensor:
        """The boxes of image i that stayed, (N_i, 4), in their input order."""
        if self.boxes is None or self.box_index is None:
            raise TargetError("boxes_of: no boxes were given with the images")
        return self.boxes[self.box_index[:, 0] == i]

    def keypoints_of(self, i: int) -> torch.Tensor:
        """The keypoints of image i still inside it, (N_i, 2), in their input order."""
        if self.keypoints is None or self.keypoint_index is None:
            raise TargetError("keypoints_of: no keypoints were given with the images")
        return self.keypoints[self.keypoint_index[:, 0] == i]


class TargetBatch:
    """The targets of one batch on their way through `apply_ops`, moved op by op with the images."""

    def __init__(self, images: torch.Tensor, masks: Any = None, boxes: Any = None, keypoints: Any = None,
                 params: TargetParams | None = None) -> None:
        self.params = params or DEFAULT_TARGETS
        if not isinstance(self.params, TargetParams):
            raise TargetError(f"target params: expected a TargetParams, got {type(self.params).__name__}")
        b, _, self.h, self.w = images.shape
        dev = images.device
        self.mask_shape = None
        self.masks = None
        if masks is not None:
            self.masks = self._check_masks(masks, b, dev)
        self.boxes = self.box_index = None
        if boxes is not None:
            fmt = self.params.bbox_format or "pascal_voc"
            rows, self.box_index = _flatten(boxes, b, 4, "boxes", dev)
            self.boxes = _to_pascal_voc(rows, fmt, self.h, self.w)
            self._check_boxes(rows, fmt)
        self.keypoints = self.keypoint_index = None
        if keypoints is not None:
            if self.params.keypoint_format not in (None, TORCH_KEYPOINT_FORMAT):
                raise TargetError(f"keypoint format: the batched torch path takes (x, y) keypoints "
                                  f"(format 'xy'), got {shown(self.params.keypoint_format)}")
            self.keypoints, self.keypoint_index = _flatten(keypoints, b, 2, "keypoints", dev)
            x, y = self.keypoints.unbind(-1)
            bad = torch.nonzero((x < 0) | (x >= self.w) | (y < 0) | (y >= self.h)).flatten()
            if len(bad):
                i, j = self.keypoint_index[bad[0]].tolist()
                raise TargetError(f"keypoints[{i}][{j}] = {self.keypoints[bad[0]].tolist()}: expected x in "
                                  f"[0, {self.w}) and y in [0, {self.h}) (pixels of the {self.w}x{self.h} image)")

    def _check_masks(self, masks: Any, b: int, dev: torch.device) -> torch.Tensor:
        if not isinstance(masks, torch.Tensor) or masks.ndim not in (3, 4) or masks.shape[0] != b \
                or tuple(masks.shape[-2:]) != (self.h, self.w) or masks.is_floating_point() or masks.is_complex():
            got = f"{masks.dtype} {tuple(masks.shape)}" if isinstance(masks, torch.Tensor) else type(masks).__name__
            raise TargetError(f"masks: expected an integer or bool tensor of shape (B={b}, H={self.h}, W={self.w}) "
                              f"or (B, K, H, W), got {got}")
        self.mask_shape = masks.shape
        return masks.reshape(b, -1, self.h, self.w).to(dev).clone()  # moved in place: never the caller's

    def _check_boxes(self, rows: torch.Tensor, fmt: str) -> None:
        """albumentations' check of boxes as they come: inside the image, non-empty."""
        x0, y0, x1, y1 = self.boxes.unbind(-1)
        bad = torch.nonzero((x0 < 0) | (y0 < 0) | (x1 > self.w) | (y1 > self.h) | (x1 <= x0) | (y1 <= y0)).flatten()
        if len(bad):
            i, j = self.box_index[bad[0]].tolist()
            raise TargetError(f"boxes[{i}][{j}] = {[round(v, 4) for v in rows[bad[0]].tolist()]}: expected a "
                              f"{fmt} box inside the {self.w}x{self.h} image with x_min < x_max and y_min < y_max")

    def move(self, idx: torch.Tensor, matrix: torch.Tensor) -> None:
        """Images `idx` (n,) went through forward matrices (n, 2, 3): their targets follow."""
        if self.masks is not None:
            self.masks[idx] = warp_masks(self.masks[idx], matrix, self.params.mask_fill)
        full = _per_image(idx, matrix)
        if self.boxes is not None:
            sel = torch.nonzero(torch.isin(self.box_index[:, 0], idx)).flatten()
            if len(sel):
                x0, y0, x1, y1 = self.boxes[sel].unbind(-1)
                corners = torch.stack((torch.stack((x0, y0), -1), torch.stack((x1, y0), -1),
                                       torch.stack((x1, y1), -1), torch.stack((x0, y1), -1)), dim=1)  # (S, 4, 2)
                moved = _transform_points(corners, full(self.box_index[sel, 0]), 0.5)
                after = torch.cat((moved.amin(dim=1), moved.amax(dim=1)), dim=1)  # (S, 4) enclosing rectangle
                keep = keep_boxes(after, self.h, self.w, self.params)
                self.boxes[sel] = clip_boxes(after, self.h, self.w)
                self.boxes, self.box_index = _kept(self.boxes, self.box_index, sel, keep)
        if self.keypoints is not None:
            sel = torch.nonzero(torch.isin(self.keypoint_index[:, 0], idx)).flatten()
            if len(sel):
                moved = _transform_points(self.keypoints[sel][:, None], full(self.keypoint_index[sel, 0]), 0.0)[:, 0]
                self.keypoints[sel] = moved
                x, y = self.keypoints.unbind(-1)
                alive = (x >= 0) & (x < self.w) & (y >= 0) & (y < self.h)
                self.keypoints, self.keypoint_index = self.keypoints[alive], self.keypoint_index[alive]

    def occlude(self, idx: torch.Tensor, region: torch.Tensor) -> None:
        """Cutout hid `region` (n, H, W), one rectangle per image, of images `idx`."""
        if self.masks is not None and self.params.cutout_mask_fill is not None:
            m = self.masks[idx]
            self.masks[idx] = torch.where(region[:, None], torch.full_like(m, self.params.cutout_mask_fill), m)
        rows, cols = region.any(dim=2), region.any(dim=1)  # (n, H), (n, W)
        has = rows.any(dim=1)
        if not has.any() or (self.boxes is None and self.keypoints is None):
            return
        hole = torch.stack((_first(cols), _first(rows), _end(cols), _end(rows)), dim=1).float()  # (n, 4) x0 y0 x1 y1
        holes = _per_image(idx[has], hole[has][:, None])  # image -> (1, 4) hole
        if self.boxes is not None:
            sel = torch.nonzero(torch.isin(self.box_index[:, 0], idx[has])).flatten()
            if len(sel):
                self._shrink_boxes(sel, holes(self.box_index[sel, 0])[:, 0])
        if self.keypoints is not None:
            sel = torch.nonzero(torch.isin(self.keypoint_index[:, 0], idx[has])).flatten()
            if len(sel):
                hx0, hy0, hx1, hy1 = holes(self.keypoint_index[sel, 0])[:, 0].unbind(-1)
                x, y = self.keypoints[sel].unbind(-1)
                under = (x >= hx0) & (x < hx1) & (y >= hy0) & (y < hy1)
                self.keypoints, self.keypoint_index = _kept(self.keypoints, self.keypoint_index, sel, ~under)

    def _shrink_boxes(self, sel: torch.Tensor, hole: torch.Tensor) -> None:
        """albumentations 2.0.8's `filter_bboxes_by_holes` for one rectangular hole (S, 4) per box:
        boxes truncated to whole pixels, dropped unless visible pixels remain (>= min_area, >=
        min_visibility of the box), then shrunk to the rectangle around their visible pixels."""
        bx0, by0, bx1, by1 = self.boxes[sel].trunc().unbind(-1)
        hx0, hy0, hx1, hy1 = hole.unbind(-1)
        area = (bx1 - bx0) * (by1 - by0)
        hidden = ((torch.minimum(bx1, hx1) - torch.maximum(bx0, hx0)).clamp_min(0)
                  * (torch.minimum(by1, hy1) - torch.maximum(by0, hy0)).clamp_min(0))
        left = area - hidden
        keep = (left >= self.params.min_area) & (left / area >= self.params.min_visibility) & (left > 0)
        # whole rows of the box are hidden only where the hole spans its width (columns alike)
        full_w, full_h = (hx0 <= bx0) & (hx1 >= bx1), (hy0 <= by0) & (hy1 >= by1)
        new = torch.stack((
            torch.where(full_h & (hx0 <= bx0) & (hx1 > bx0), hx1, bx0),
            torch.where(full_w & (hy0 <= by0) & (hy1 > by0), hy1, by0),
            torch.where(full_h & (hx1 >= bx1) & (hx0 < bx1), hx0, bx1),
            torch.where(full_w & (hy1 >= by1) & (hy0 < by1), hy0, by1),
        ), dim=-1)
        self.boxes[sel] = new
        self.boxes, self.box_index = _kept(self.boxes, self.box_index, sel, keep)

    @property
    def occlusion_matters(self) -> bool:
        """Whether Cutout changes any target: boxes and keypoints always can, masks when asked."""
        return self.boxes is not None or self.keypoints is not None or \
            (self.masks is not None and self.params.cutout_mask_fill is not None)

    def result(self, images: torch.Tensor) -> Augmented:
        boxes = None
        if self.boxes is not None:
            fmt = self.params.bbox_format or "pascal_voc"
            keep = keep_boxes(self.boxes, self.h, self.w, self.params)  # albumentations' last filter
            self.boxes, self.box_index = self.boxes[keep], self.box_index[keep]
            boxes = _from_pascal_voc(self.boxes, fmt, self.h, self.w)
        masks = self.masks.reshape(self.mask_shape) if self.masks is not None else None
        return Augmented(images, masks, boxes, self.box_index, self.keypoints, self.keypoint_index)


def _kept(rows: torch.Tensor, index: torch.Tensor, sel: torch.Tensor,
          keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """`rows` and their `index` without the rows `sel` whose `keep` is False (the others stay)."""
    alive = torch.ones(len(rows), dtype=torch.bool, device=rows.device)
    alive[sel] = keep
    return rows[alive], index[alive]


def _per_image(idx: torch.Tensor, values: torch.Tensor):
    """A lookup image position -> its row of `values` (n, ...), for the images `idx`."""
    size = int(idx.max()) + 1 if len(idx) else 0
    table = torch.zeros(size, *values.shape[1:], dtype=values.dtype, device=values.device)
    table[idx] = values
    return lambda owners: table[owners]


def _first(any_: torch.Tensor) -> torch.Tensor:
    """(n, L) bool -> (n,) the first True position (0 where none)."""
    return any_.int().argmax(dim=1)


def _end(any_: torch.Tensor) -> torch.Tensor:
    """(n, L) bool -> (n,) one past the last True position."""
    return any_.shape[1] - any_.flip(1).int().argmax(dim=1)
