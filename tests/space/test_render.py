"""space/render.py's targets (issue #25): the default target, and that what `show --targets`
draws is what the albumentations export did to the mask, boxes and keypoints."""

from __future__ import annotations

import numpy as np
import pytest

from autoaug.errors import TargetError
from autoaug.space.export import to_albumentations
from autoaug.space.policy import Policy
from autoaug.space.render import (BOX_COLOUR, KEYPOINT_COLOUR, MASK_COLOUR, Targets, augment_targets,
                                  default_targets, draw_targets, target_pipeline)
from autoaug.space.albu import seed_pipeline


def one_op(op: str, magnitude_bin: int = 9) -> Policy:
    return Policy.from_json({"format": "autoaug.policy", "version": 1, "kind": "policy", "sub_policies": [
        [{"op": op, "prob": 1.0, "magnitude_bin": magnitude_bin}]]})


def test_the_default_target_is_an_ellipse_with_its_tight_box_and_keypoints_on_its_outline():
    t = default_targets(32, 40)
    ys, xs = np.nonzero(t.mask)
    assert t.mask.shape == (32, 40) and 0.15 < t.mask.mean() < 0.35
    assert t.boxes.tolist() == [[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]]
    assert abs(xs.mean() - 20) < 1 and abs(ys.mean() - 16) < 1  # around the centre
    assert len(t.keypoints) == 4
    for x, y in t.keypoints:  # on the outline: inside and outside within a pixel and a half
        near = t.mask[max(int(y) - 1, 0): int(y) + 2, max(int(x) - 1, 0): int(x) + 2]
        assert near.min() == 0 and near.max() == 1
    with pytest.raises(TargetError, match="at least 8x8 pixels"):
        default_targets(6, 32)


def test_draw_targets_draws_each_target_in_its_colour_where_it_is():
    img = np.full((32, 32, 3), 128, np.uint8)
    t = Targets(np.pad(np.ones((10, 10), np.uint8), 11), np.array([[4.0, 6.0, 20.0, 30.0]]), np.array([[28.0, 2.0]]))
    big = draw_targets(img, t, scale=3)
    assert big.shape == (96, 96, 3)
    where = lambda colour: np.argwhere((big == colour).all(axis=2))  # noqa: E731  (row, col)
    box, mask, point = where(BOX_COLOUR), where(MASK_COLOUR), where(KEYPOINT_COLOUR)
    assert box.min(axis=0).tolist() == [18, 12] and box.max(axis=0).tolist() == [89, 59]
    assert mask.min(axis=0).tolist() == [33, 33] and mask.max(axis=0).tolist() == [62, 62]
    assert np.abs(point.mean(axis=0) - [6, 84]).max() < 0.5


@pytest.mark.parametrize("op", ["Rotate", "ShearX", "ShearY", "TranslateX", "TranslateY"])
def test_the_targets_move_with_the_image_through_the_export(op):
    """The image is the target's own mask painted white: after the op, the mask must still cover
    the white pixels, the box hold the mask, and the keypoints sit on its outline."""
    t = default_targets(32, 32)
    image = np.repeat(t.mask[..., None] * 255, 3, axis=2).astype(np.uint8)
    pipeline = target_pipeline(list(to_albumentations(one_op(op)).transforms))
    for seed in range(4):  # both signs
        seed_pipeline(pipeline, seed)
        out, moved = augment_targets(pipeline, image, t)
        white = out[..., 0] > 200  # the fill of the uncovered corners is grey 128
        assert (white & (moved.mask > 0)).sum() / (white | (moved.mask > 0)).sum() > 0.85, (op, seed)
        assert not np.array_equal(moved.mask, t.mask)  # the op did move it
        ys, xs = np.nonzero(moved.mask)
        (x0, y0, x1, y1), = moved.boxes
        assert x0 <= xs.min() + 1 and y0 <= ys.min() + 1 and x1 >= xs.max() and y1 >= ys.max()
        for x, y in moved.keypoints:
            near = moved.mask[max(int(y) - 2, 0): int(y) + 3, max(int(x) - 2, 0): int(x) + 3]
            assert near.min() == 0 and near.max() == 1, (op, seed, x, y)
