"""Batched torch kernels of the ops whose exact rule is Pillow's (issue #8).

AutoContrast and Equalize follow `PIL.ImageOps` to the grey level, and TranslateX/Y move whole
pixels rounded as the reference code's integer shifts are. albumentations 2.0.8 has no transform
with these rules, so the albumentations export (`autoaug.space.albu`) runs these same kernels on
the one image it is given; the op table (`autoaug.space.ops`) uses them for the batched
execution. Kernels take uint8 (N, C, H, W) images and per-image magnitudes (N,), as every
kernel of the table does.
"""

from __future__ import annotations

import torch

FILL = 128  # grey, for pixels an affine op uncovers and for Cutout


def _shift(img: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """Move each image by whole pixels (dx right, dy down), FILL where nothing moves in.

    A translation by whole pixels is an exact copy, so this gather is what the table's affine
    warp (`autoaug.space.ops._affine`) would give, at a fraction of its cost.
    """
    n, c, h, w = img.shape
    ys = torch.arange(h, device=img.device)[None, :, None] - dy.long()[:, None, None]  # (N, H, 1) source rows
    xs = torch.arange(w, device=img.device)[None, None, :] - dx.long()[:, None, None]  # (N, 1, W) source cols
    valid = (ys >= 0) & (ys < h) & (xs >= 0) & (xs < w)  # (N, H, W)
    idx = (ys.clamp(0, h - 1) * w + xs.clamp(0, w - 1)).reshape(n, 1, h * w).expand(n, c, h * w)
    out = img.reshape(n, c, h * w).gather(2, idx).reshape(n, c, h, w)
    return torch.where(valid[:, None], out, torch.full_like(out, FILL))


def whole_pixels(fraction: torch.Tensor, size: int) -> torch.Tensor:
    """A fraction of the side -> whole pixels, rounded half away from zero (issue #8: truncating,
    as albumentations' `Affine` does, fell a pixel short on 5 of the 10 bins)."""
    px = fraction * size
    return torch.sign(px) * torch.floor(px.abs() + 0.5)


def translate_x(img, m, ctx):
    # m is a fraction of the width; a positive m moves the content right
    return _shift(img, whole_pixels(m, img.shape[-1]), torch.zeros_like(m))


def translate_y(img, m, ctx):
    return _shift(img, torch.zeros_like(m), whole_pixels(m, img.shape[-2]))


def _histograms(img: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) uint8 -> (N * C, 256) long: one histogram per image and channel."""
    n, c, h, w = img.shape
    flat = img.reshape(n * c, h * w).long()  # (NC, HW)
    offsets = torch.arange(n * c, device=img.device)[:, None] * 256
    return torch.bincount((flat + offsets).reshape(-1), minlength=n * c * 256).reshape(n * c, 256)


def _apply_luts(img: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Map every channel of every image through its own (N * C, 256) table."""
    n, c, h, w = img.shape
    out = lut.clamp(0, 255).gather(1, img.reshape(n * c, h * w).long())  # (NC, HW)
    return out.reshape(n, c, h, w).to(torch.uint8)


def auto_contrast(img, m, ctx):
    """PIL's `ImageOps.autocontrast` (cutoff 0): per image and channel, stretch [lo, hi] to [0, 255].

    As PIL: lo and hi are the darkest and brightest values present (255 included), the table is
    int(v * scale + offset) in double precision (truncated, and exactly PIL's float rounding at
    whole numbers), and a flat channel is left alone. albumentations' `AutoContrast` leaves 255
    out of the range and rounds, so the export is autoaug's own transform.
    """
    hist = _histograms(img)  # (NC, 256)
    idx = torch.arange(256, device=img.device)
    present = hist > 0
    lo = torch.where(present, idx, 256).amin(dim=1, keepdim=True)  # (NC, 1)
    hi = torch.where(present, idx, -1).amax(dim=1, keepdim=True)
    flat = hi <= lo
    span = (hi - lo).clamp_min(1).double()
    scale = torch.full_like(span, 255.0) / span  # a true division: `255.0 / span` multiplies by 1 / span
    lut = (idx.double() * scale - lo.double() * scale).trunc().long()  # (NC, 256); int() truncates
    return _apply_luts(img, torch.where(flat, idx, lut))


def equalize(img, m, ctx):
    """PIL's `ImageOps.equalize`, per image and channel.

    step = (pixels - count of the brightest value present) // 255; value v maps to
    (step // 2 + pixels darker than v) // step, clipped at 255; a channel with one value or a
    zero step is left alone. albumentations' `Equalize(mode="pil")` differs (its lookup counts
    the value itself), so the export is autoaug's own transform.
    """
    n, c, h, w = img.shape
    hist = _histograms(img)  # (NC, 256)
    idx = torch.arange(256, device=img.device)
    last = torch.where(hist > 0, idx, -1).amax(dim=1)  # (NC,) brightest value present
    step = (h * w - hist.gather(1, last[:, None]).squeeze(1)) // 255  # (NC,)
    keep = ((hist > 0).sum(dim=1) <= 1) | (step == 0)
    safe_step = step.clamp_min(1)[:, None]
    darker = hist.cumsum(dim=1) - hist  # (NC, 256) pixels below each value
    lut = (safe_step // 2 + darker) // safe_step
    return _apply_luts(img, torch.where(keep[:, None], idx[None], lut))
