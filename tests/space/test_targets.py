"""Masks, boxes and keypoints move with their image, on both executions (issue #25).

The scene: real CIFAR-10 images (upscaled to 64 px, so a pixel of quantisation is small beside the
object) with one rectangular object painted in, its box, its mask (1 on the object) and four
keypoints, each drawn into the mask as a 3x3 blob of its own value (2..5). The object is painted
once red and once blue on the same background: where the two transformed images differ is where
the image put the object, whatever the background does. After a transform, on each execution:

- the mask's object and the image's object agree (IoU >= 0.95: the image is resampled
  bilinearly and the mask by nearest neighbour, so they can differ on the boundary only;
  measured >= 0.985 over every geometric op, bin and sign);
- the box agrees with the rectangle around the mask's object: each side within 1 px (the mask is
  whole pixels: a pixel belongs to it when its centre lands inside the moved shape, so a side of
  the rectangle lies up to a pixel inside the box's exact edge; measured <= 0.66 px) and IoU >= 0.9;
- every keypoint that stays lies within 1 px of its blob, and one that goes had its blob leave;
- and the two executions agree with each other: the same boxes and keypoints within 1e-3 px
  (float32 against float64), the same ones dropped, masks equal on all but 1% of pixels (OpenCV's
  nearest neighbour quantises source positions to 1/1024 px, so a pixel whose source lies that
  close to half-way picks the other neighbour; measured 0.34%).
"""

from __future__ import annotations

import json

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from albumentations.augmentations.dropout import functional as fdropout

from autoaug.errors import PolicyError, TargetError
from autoaug.space.albu import load_pipeline, normalization, seed_pipeline, set_image_pool
from autoaug.space.augment import augment
from autoaug.space.export import AlbumentationsFile
from autoaug.space.ops import FILL, MAGNITUDE_BINS, TABLE, TABLE_NAMES, op_transform
from autoaug.space.pipeline import load_pipeline_file, train_pipeline
from autoaug.space.policy import Operation, Policy, published_policy
from autoaug.space.randaugment import RandAugment, TrivialAugment
from autoaug.space.targets import GEOMETRIC, IMAGE_ONLY, OCCLUDES, PIXEL, TargetParams

SIDE = 64
BOX = (18.0, 14.0, 46.0, 42.0)  # pascal_voc: pixel edges
KEYPOINTS = [(20.0, 16.0), (43.0, 39.0), (30.0, 27.0), (44.0, 17.0)]  # pixel centres
PARAMS = TargetParams(bbox_format="pascal_voc", bbox_labels=("labels",), keypoint_format="xy")
GEOMETRIC_OPS = [op.name for op in TABLE if op.targets == GEOMETRIC]
PIXEL_OPS = [op.name for op in TABLE if op.targets in (PIXEL, IMAGE_ONLY)]


def _scene(backgrounds: np.ndarray, box=BOX, keypoints=KEYPOINTS):
    """(red images, blue images, mask): the object painted on each background, and its mask."""
    x0, y0, x1, y1 = (int(v) for v in box)
    red, blue = backgrounds.copy(), backgrounds.copy()
    red[:, y0:y1, x0:x1] = (255, 0, 0)
    blue[:, y0:y1, x0:x1] = (0, 0, 255)
    mask = np.zeros(backgrounds.shape[1:3], np.uint8)
    mask[y0:y1, x0:x1] = 1
    for k, (kx, ky) in enumerate(keypoints):
        mask[int(ky) - 1:int(ky) + 2, int(kx) - 1:int(kx) + 2] = 2 + k
    return red, blue, mask


@pytest.fixture(scope="module")
def backgrounds(cifar_images) -> np.ndarray:
    """Two real CIFAR-10 images at 64x64, (2, 64, 64, 3) uint8."""
    return np.stack([cv2.resize(img, (SIDE, SIDE), interpolation=cv2.INTER_LINEAR) for img in cifar_images[:2]])


def _nchw(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()


def _object(red: np.ndarray, blue: np.ndarray) -> np.ndarray:
    """Where the transformed image shows the object: (H, W) bool."""
    return np.abs(red.astype(int) - blue.astype(int)).max(axis=-1) > 127


def _rect(pixels: np.ndarray) -> np.ndarray | None:
    ys, xs = np.nonzero(pixels)
    return None if len(ys) == 0 else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], float)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _check_consistent(shown: np.ndarray, mask: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray,
                      kept: list[int], where: str, tight: bool = True, hidden: np.ndarray | None = None) -> None:
    """The image's object, the mask, the box and the keypoints of one transformed image agree.

    `tight` False: after two geometric ops the box is the rectangle around the corners of the
    rectangle around the corners, looser than the object (albumentations' rule too), so it must
    only hold the mask's rectangle, each side at most 1 px inside it. `hidden`: pixels Cutout hid
    (a keypoint under them goes, its blob's rim may stay)."""
    fg = (mask >= 1) & (mask <= 5)
    union = (shown | fg).sum()
    assert union == 0 or (shown & fg).sum() / union >= 0.95, f"{where}: image and mask disagree"
    rect = _rect(fg)
    if rect is None:
        assert len(boxes) == 0, f"{where}: the object left the image but its box stayed"
    else:
        assert len(boxes) == 1, f"{where}: the box went while {fg.sum()} object pixels stayed"
        if tight:
            assert np.abs(boxes[0] - rect).max() <= 1.0 and _iou(boxes[0], rect) >= 0.9, (where, boxes[0], rect)
        else:
            inside = np.array([1, 1, -1, -1]) * (boxes[0] - rect)  # > 0 where the box's side is inside
            assert inside.max() <= 1.0, (where, boxes[0], rect)
    h, w = mask.shape
    edge = np.ones((h, w), np.uint8)
    edge[1:-1, 1:-1] = 0 if hidden is None else hidden[1:-1, 1:-1]
    near_edge = cv2.dilate(edge, np.ones((3, 3), np.uint8)) > 0  # within 1 px of the border or a hidden pixel
    for k in range(len(KEYPOINTS)):
        ys, xs = np.nonzero(mask == 2 + k)
        if k in kept:
            x, y = keypoints[kept.index(k)]
            assert len(xs) and np.hypot(xs - x, ys - y).min() <= 1.0, f"{where}: keypoint {k} left its blob"
        else:  # its blob went, or only its rim stayed at the border or beside Cutout's hole
            assert near_edge[ys, xs].all(), f"{where}: keypoint {k} was dropped but its blob is inside the image"


def _run_torch(name: str, m: float, images: np.ndarray, mask: np.ndarray, params=PARAMS, box=BOX, kps=KEYPOINTS):
    b = len(images)
    drawn = (torch.full((b, 1), TABLE_NAMES.index(name)), torch.full((b, 1), m), torch.ones(b, 1, dtype=torch.bool))
    return augment(_nchw(images), drawn, torch.Generator().manual_seed(0), torch.from_numpy(np.stack([mask] * b)),
                   [[box]] * b, [kps] * b, params)


def _run_albu(name: str, m: float, image: np.ndarray, mask: np.ndarray, params=PARAMS, box=BOX, kps=KEYPOINTS):
    pipeline = A.Compose([op_transform(name, m, 1.0, params)], strict=True, **params.compose_args())
    extra = {"labels": [7]} if params.bbox_labels else {}
    if params.keypoint_format:
        extra["keypoints"] = kps
    return pipeline(image=image, mask=mask, bboxes=[box], **extra)


@pytest.mark.parametrize("name", GEOMETRIC_OPS)
def test_geometric_op_moves_targets_with_the_image_on_both_paths_every_bin_and_sign(name, backgrounds):
    red, blue, mask = _scene(backgrounds)
    op = TABLE[TABLE_NAMES.index(name)]
    for magnitude_bin in range(MAGNITUDE_BINS):
        for sign in (1, -1):
            m = sign * op.magnitude(magnitude_bin)
            ours, ours_blue = _run_torch(name, m, red, mask), _run_torch(name, m, blue, mask)
            assert torch.equal(ours.masks, ours_blue.masks)  # targets do not depend on the pixels
            for i in range(len(red)):
                where = f"{name} bin {magnitude_bin} sign {sign:+d} image {i}"
                kept_ours = ours.keypoint_index[ours.keypoint_index[:, 0] == i, 1].tolist()
                shown = _object(ours.images[i].permute(1, 2, 0).numpy(), ours_blue.images[i].permute(1, 2, 0).numpy())
                _check_consistent(shown, ours.masks[i].numpy(), ours.boxes_of(i).numpy(),
                                  ours.keypoints_of(i).numpy(), kept_ours, "torch " + where)

                theirs, theirs_blue = _run_albu(name, m, red[i], mask), _run_albu(name, m, blue[i], mask)
                boxes = np.array(theirs["bboxes"], float).reshape(-1, 4)
                kps = np.array(theirs["keypoints"], float).reshape(-1, 2)
                kept = [k for k in range(len(KEYPOINTS)) if k in kept_ours]  # checked equal below
                assert len(kps) == len(kept), f"{where}: the executions keep different keypoints"
                _check_consistent(_object(theirs["image"], theirs_blue["image"]), theirs["mask"], boxes, kps, kept,
                                  "albumentations " + where)
                # the two executions agree
                assert (theirs["mask"] != ours.masks[i].numpy()).mean() <= 0.01, where
                np.testing.assert_allclose(boxes, ours.boxes_of(i).numpy(), atol=1e-3, err_msg=where)
                np.testing.assert_allclose(kps, ours.keypoints_of(i).numpy(), atol=1e-3, err_msg=where)
                assert list(theirs["labels"]) == [7] * len(boxes)


@pytest.mark.parametrize("name", GEOMETRIC_OPS)
def test_several_masks_per_image_move_as_one_mask_does(name, backgrounds):
    red, _, mask = _scene(backgrounds)
    m = -TABLE[TABLE_NAMES.index(name)].magnitude(8)
    params = TargetParams(mask_fill=7)
    one = _run_torch(name, m, red, mask, params, kps=[]).masks  # (2, H, W)
    drawn = (torch.full((2, 1), TABLE_NAMES.index(name)), torch.full((2, 1), m), torch.ones(2, 1, dtype=torch.bool))
    stacked = torch.from_numpy(np.stack([np.stack([mask, 3 * mask])] * 2))  # (2, 2, H, W)
    two = augment(_nchw(red), drawn, torch.Generator(), stacked, target_params=params).masks
    assert torch.equal(two[:, 0], one) and (one == 7).any()  # 7: the fill where nothing moved in
    assert torch.equal(two[:, 1], torch.where(one == 7, 7, 3 * one))
    pipeline = A.Compose([op_transform(name, m, 1.0, params)], strict=True)
    single = pipeline(image=red[0], mask=mask)["mask"]
    several = pipeline(image=red[0], masks=[mask, 3 * mask])["masks"]
    assert np.array_equal(several[0], single) and (single == 7).any()
    assert (np.asarray(several[0]) != one[0].numpy()).mean() <= 0.01


def test_a_box_moved_out_of_the_image_is_dropped_on_both_paths(backgrounds):
    box, kps = (2.0, 20.0, 12.0, 30.0), [(5.0, 25.0), (40.0, 25.0)]
    red, _, mask = _scene(backgrounds, box, kps)
    m = -TABLE[TABLE_NAMES.index("TranslateX")].magnitude(9)  # 29 px to the left
    ours = _run_torch("TranslateX", m, red, mask, box=box, kps=kps)
    theirs = _run_albu("TranslateX", m, red[0], mask, box=box, kps=kps)
    assert len(ours.boxes) == 0 and theirs["bboxes"] == [] and theirs["labels"] == []
    # the first keypoint left with its box; the second moved 29 px to 11
    assert ours.keypoint_index[:, 1].tolist() == [1, 1] and ours.keypoints[:, 0].tolist() == [11.0, 11.0]
    assert np.array(theirs["keypoints"]).tolist() == [[11.0, 25.0]]
    assert not (ours.masks == 1).any() and not (theirs["mask"] == 1).any()


@pytest.mark.parametrize("min_visibility, kept", [(0.5, False), (0.15, True)])
def test_min_visibility_drops_or_clips_a_box_half_outside_alike_on_both_paths(backgrounds, min_visibility, kept):
    box = (34.0, 10.0, 54.0, 30.0)  # 20 px wide
    red, _, mask = _scene(backgrounds, box, [])
    params = TargetParams(bbox_format="pascal_voc", min_visibility=min_visibility)
    m = 26 / SIDE  # TranslateX by 26 px: 60..80, 4 of its 20 px (0.2) inside
    ours = _run_torch("TranslateX", m, red, mask, params, box=box, kps=[])
    theirs = _run_albu("TranslateX", m, red[0], mask, params, box=box, kps=[])
    expected = [[60.0, 10.0, 64.0, 30.0]] if kept else []
    assert ours.boxes_of(0).tolist() == expected
    assert np.array(theirs["bboxes"]).reshape(-1, 4).tolist() == expected


@pytest.mark.filterwarnings("ignore:Got processor for:UserWarning")  # no transform there moves targets: rightly
@pytest.mark.parametrize("name", PIXEL_OPS)
def test_pixel_ops_leave_every_target_alone_on_both_paths(name, backgrounds):
    red, _, mask = _scene(backgrounds)
    op = TABLE[TABLE_NAMES.index(name)]
    for magnitude_bin in ((0, 5, 9) if op.has_magnitude else (0,)):
        m = op.magnitude(magnitude_bin)
        ours = _run_torch(name, m, red, mask)
        assert torch.equal(ours.masks, torch.from_numpy(np.stack([mask] * 2)))
        assert ours.boxes.tolist() == [list(BOX)] * 2 and ours.keypoints.tolist() == [list(k) for k in KEYPOINTS] * 2
        pipeline = A.Compose([op_transform(name, m, 1.0, PARAMS)], strict=True, **PARAMS.compose_args())
        set_image_pool(pipeline, backgrounds)
        theirs = pipeline(image=red[0], mask=mask, bboxes=[BOX], labels=[7], keypoints=KEYPOINTS)
        assert np.array_equal(theirs["mask"], mask)
        assert np.array(theirs["bboxes"]).tolist() == [list(BOX)]
        assert np.array(theirs["keypoints"]).tolist() == [list(k) for k in KEYPOINTS]


def test_cutout_leaves_the_mask_alone_unless_asked_to_fill_its_hole(backgrounds):
    red, _, mask = _scene(backgrounds)
    m = TABLE[TABLE_NAMES.index("Cutout")].magnitude(5)  # a hole of trunc(64 * m) px square
    side = int(SIDE * m)
    images = np.concatenate([red] * 4)  # 8 images, 8 hole positions
    plain = _run_torch("Cutout", m, images, mask, TargetParams())
    assert torch.equal(plain.masks, torch.from_numpy(np.stack([mask] * 8)))
    filled = _run_torch("Cutout", m, images, mask, TargetParams(cutout_mask_fill=255))
    assert torch.equal(filled.images, plain.images)  # the same draw: the hole is where it was
    hole = filled.masks == 255  # (8, H, W)
    assert (hole.sum(dim=(1, 2)) == side * side).all()
    assert (filled.images.permute(0, 2, 3, 1)[hole] == FILL).all()
    assert torch.equal(filled.masks[~hole], plain.masks[~hole])
    for fill, expect_hole in ((None, False), (255, True)):
        t = op_transform("Cutout", m, 1.0, TargetParams(cutout_mask_fill=fill))
        out = A.Compose([t], strict=True)(image=red[0], mask=mask)
        grey = (out["image"] == FILL).all(axis=-1) & (red[0] != FILL).any(axis=-1)
        assert ((out["mask"] == 255).sum() == side * side) == expect_hole
        assert np.array_equal(out["mask"] == 255, grey) if expect_hole else np.array_equal(out["mask"], mask)


def test_cutout_treats_boxes_and_keypoints_as_albumentations_coarse_dropout_does(backgrounds):
    """The policy's Cutout exports as CoarseDropout: boxes shrink to their visible pixels or go,
    keypoints under the hole go. The torch path applies that rule to its own hole."""
    params = TargetParams(bbox_format="pascal_voc", keypoint_format="xy", cutout_mask_fill=255, min_visibility=0.3)
    boxes = [(18.0, 14.0, 46.0, 42.0), (3.3, 40.6, 20.9, 60.2), (40.0, 2.0, 62.5, 12.0)]
    kps = [(20.0, 16.0), (43.0, 39.0), (30.0, 27.0), (5.5, 50.2)]
    images = np.concatenate([backgrounds] * 12)  # 24 images, 24 holes
    b = len(images)
    m = TABLE[TABLE_NAMES.index("Cutout")].magnitude(9)
    drawn = (torch.full((b, 1), TABLE_NAMES.index("Cutout")), torch.full((b, 1), m), torch.ones(b, 1, dtype=torch.bool))
    out = augment(_nchw(images), drawn, torch.Generator().manual_seed(3), torch.zeros(b, SIDE, SIDE, dtype=torch.uint8),
                  [boxes] * b, [kps] * b, params)
    changed = 0
    for i in range(b):
        rows, cols = np.nonzero(out.masks[i].numpy() == 255)
        hole = np.array([[cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]])
        expected = fdropout.filter_bboxes_by_holes(np.array(boxes), hole, (SIDE, SIDE), 0.0, 0.3)
        np.testing.assert_array_equal(out.boxes_of(i).numpy(), expected, err_msg=f"image {i}")
        expected_kps = fdropout.filter_keypoints_in_holes(np.array(kps, np.float32), hole)
        np.testing.assert_array_equal(out.keypoints_of(i).numpy(), expected_kps, err_msg=f"image {i}")
        changed += len(expected) < len(boxes) or len(expected_kps) < len(kps)
    assert changed >= 5  # the holes did hit boxes and keypoints
    # and on the albumentations path a box is the rectangle around its object's visible pixels
    red, _, mask = _scene(backgrounds)
    pipeline = A.Compose([op_transform("Cutout", m, 1.0, params)], strict=True, **params.compose_args())
    for seed in range(8):
        seed_pipeline(pipeline, seed)
        r = pipeline(image=red[0], mask=mask, bboxes=[BOX], keypoints=KEYPOINTS)
        fg = (r["mask"] >= 1) & (r["mask"] <= 5)
        visible = fg.sum() / ((BOX[2] - BOX[0]) * (BOX[3] - BOX[1]))
        expected = [] if visible < 0.3 else [_rect(fg).tolist()]
        assert np.array(r["bboxes"]).reshape(-1, 4).tolist() == expected, f"seed {seed}"
        hole = r["mask"] == 255
        assert [k for k, (x, y) in enumerate(KEYPOINTS) if not hole[int(y), int(x)]] == \
            [KEYPOINTS.index(tuple(kp)) for kp in np.array(r["keypoints"]).tolist()]


# One geometric op per image (Invert keeps red and blue apart), then two in a row.
ONE_MOVE = Policy(((Operation("Rotate", 1.0, 9), Operation("Invert", 0.5, None)),
                   (Operation("TranslateY", 1.0, 7), Operation("Invert", 0.5, None)),
                   (Operation("Invert", 0.5, None), Operation("ShearX", 0.8, 9)),
                   (Operation("TranslateX", 1.0, 5),)))
TWO_MOVES = Policy(((Operation("Rotate", 1.0, 9), Operation("ShearX", 1.0, 6)),
                    (Operation("TranslateY", 1.0, 7), Operation("ShearY", 1.0, 9)),
                    (Operation("TranslateX", 1.0, 5), Operation("Rotate", 1.0, 4))))


@pytest.mark.parametrize("policy, tight", [(ONE_MOVE, True), (TWO_MOVES, False)], ids=["one-move", "two-moves"])
def test_a_policy_moves_targets_with_the_draws_of_its_images(backgrounds, policy, tight):
    red, blue, mask = _scene(np.concatenate([backgrounds] * 5))  # 10 images
    calls = []
    for images in (red, blue):
        g = torch.Generator().manual_seed(11)
        calls.append(policy(_nchw(images), g, masks=torch.from_numpy(np.stack([mask] * 10)),
                            boxes=[[BOX]] * 10, keypoints=[KEYPOINTS] * 10, target_params=PARAMS))
    ours, ours_blue = calls
    assert len({tuple(b) for b in ours.boxes.round().tolist()}) >= 4  # the images were moved differently
    for i in range(10):
        kept = ours.keypoint_index[ours.keypoint_index[:, 0] == i, 1].tolist()
        shown = _object(ours.images[i].permute(1, 2, 0).numpy(), ours_blue.images[i].permute(1, 2, 0).numpy())
        _check_consistent(shown, ours.masks[i].numpy(), ours.boxes_of(i).numpy(), ours.keypoints_of(i).numpy(),
                          kept, f"policy image {i}", tight)


@pytest.mark.parametrize("augmenter", [published_policy("autoaugment-cifar10"), RandAugment(n=3, m=20),
                                       TrivialAugment()], ids=["policy", "randaugment", "trivialaugment"])
def test_targets_change_neither_the_images_nor_the_draws(augmenter, cifar_batch):
    images = cifar_batch[:16]
    g_plain, g_targets = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    plain = augmenter(images, g_plain)
    masks = torch.ones(16, 32, 32, dtype=torch.long)
    boxes = torch.tensor([[[4.0, 4.0, 28.0, 28.0]]] * 16)
    out = augmenter(images, g_targets, masks=masks, boxes=boxes, keypoints=[[(16.0, 16.0)]] * 16)
    assert isinstance(plain, torch.Tensor) and torch.equal(out.images, plain)
    assert (masks == 1).all() and (boxes == torch.tensor([4.0, 4.0, 28.0, 28.0])).all()  # the caller's stay
    assert torch.equal(torch.rand(4, generator=g_plain), torch.rand(4, generator=g_targets))
    assert out.masks.dtype == torch.long and out.masks.shape == (16, 32, 32)


def test_every_box_format_moves_alike_and_comes_back_in_its_format(backgrounds):
    red, _, mask = _scene(backgrounds)
    x0, y0, x1, y1 = BOX
    formats = {"coco": [x0, y0, x1 - x0, y1 - y0], "albumentations": [v / SIDE for v in BOX],
               "yolo": [(x0 + x1) / 2 / SIDE, (y0 + y1) / 2 / SIDE, (x1 - x0) / SIDE, (y1 - y0) / SIDE]}
    to_voc = {"coco": lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]],
              "albumentations": lambda b: [v * SIDE for v in b],
              "yolo": lambda b: [(b[0] - b[2] / 2) * SIDE, (b[1] - b[3] / 2) * SIDE,
                                 (b[0] + b[2] / 2) * SIDE, (b[1] + b[3] / 2) * SIDE]}
    m = TABLE[TABLE_NAMES.index("Rotate")].magnitude(7)
    voc = _run_torch("Rotate", m, red, mask).boxes_of(0).numpy()[0]
    for fmt, box in formats.items():
        params = TargetParams(bbox_format=fmt)
        ours = _run_torch("Rotate", m, red, mask, params, box=tuple(box), kps=[]).boxes_of(0).numpy()
        theirs = np.array(_run_albu("Rotate", m, red[0], mask, params, box=tuple(box), kps=[])["bboxes"])
        np.testing.assert_allclose(ours, theirs, atol=1e-5, err_msg=fmt)
        np.testing.assert_allclose(to_voc[fmt](ours[0]), voc, atol=1e-3, err_msg=fmt)


# --- the exported train pipeline, read back with plain A.load --------------------------------


TRANSLATES = Policy(((Operation("TranslateX", 0.8, 6),), (Operation("TranslateY", 0.8, 8),)))


# TRANSLATES keeps the object a rectangle, its box tight around it through pad, crop, flip and
# Cutout. After a rotation or a shear, Cutout shrinks the box by the box's hidden rows and columns,
# not the object's: a hidden corner of a rotated object leaves the box as it was (not tight).
@pytest.mark.parametrize("policy, tight", [(TRANSLATES, True), (ONE_MOVE, False)], ids=["translates", "one-move"])
def test_exported_train_pipeline_file_moves_targets_with_the_image(tmp_path, backgrounds, capsys, policy, tight):
    from autoaug import cli

    policy_path = tmp_path / "geo.json"
    policy.save(policy_path)
    out = tmp_path / "geo.train.albumentations.json"
    assert cli.main(["export-albumentations", str(policy_path), "--pipeline", "train", "--image-size", "64",
                     "--bbox-format", "coco", "--bbox-labels", "labels", "--keypoint-format", "xy",
                     "--keypoint-labels", "joints",
                     "--cutout-mask-fill", "255", "--out", str(out)]) == 0
    capsys.readouterr()
    doc = json.loads(out.read_text())["transform"]
    assert doc["bbox_params"]["format"] == "coco" and doc["keypoint_params"]["label_fields"] == ["joints"]
    pipeline = A.load(str(out), data_format="json")
    assert load_pipeline_file(out) is not None  # autoaug's own reader takes it too
    mean, std = (np.array(v) for v in normalization(pipeline))
    red, blue, mask = _scene(backgrounds)
    coco = [BOX[0], BOX[1], BOX[2] - BOX[0], BOX[3] - BOX[1]]
    for seed in range(8):
        results = []
        for images in (red, blue):
            seed_pipeline(pipeline, seed)
            results.append(pipeline(image=images[seed % 2], mask=mask, bboxes=[coco], labels=[3], keypoints=KEYPOINTS,
                                    joints=list(range(len(KEYPOINTS)))))
        pixels = [r["image"].permute(1, 2, 0).numpy() * std + mean for r in results]  # back to 0..255
        hidden = results[0]["mask"].numpy() == 255  # ClippedCutout's square hides the object in the image
        shown = _object(*pixels) & ~hidden
        x, y, w, h = np.array(results[0]["bboxes"]).reshape(-1, 4).T
        boxes = np.stack([x, y, x + w, y + h], axis=1)
        kps = np.array(results[0]["keypoints"]).reshape(-1, 2)
        mask_out = results[0]["mask"].numpy()
        kept = [int(k) for k in results[0]["joints"]]
        _check_consistent(shown, np.where(hidden, 0, mask_out), boxes, kps, kept, f"train pipeline seed {seed}", tight,
                          hidden.astype(np.uint8))


# --- bad input ---------------------------------------------------------------------------------


def test_unknown_box_format_is_refused_in_one_line(cli_fails, tmp_path):
    with pytest.raises(TargetError, match="bbox format: expected one of pascal_voc, coco, yolo, albumentations"):
        TargetParams(bbox_format="xyxy")
    cli_fails(["export-albumentations", "autoaugment-cifar10", "--bbox-format", "xyxy", "--out",
               str(tmp_path / "x.json")], "bbox format", "'xyxy'", "pascal_voc")
    cli_fails(["export-albumentations", "autoaugment-cifar10", "--keypoint-format", "uv", "--out",
               str(tmp_path / "x.json")], "keypoint format", "'uv'")
    assert not (tmp_path / "x.json").exists()


def test_boxes_outside_the_image_are_refused_on_both_paths(cifar_batch, cifar_images):
    policy = published_policy("autoaugment-cifar10")
    with pytest.raises(TargetError, match=r"boxes\[1\]\[0\] = \[4.0, 4.0, 40.0, 20.0\]: expected a pascal_voc box "
                                          r"inside the 32x32 image") as err:
        policy(cifar_batch[:2], torch.Generator(), boxes=[[(1, 1, 5, 5)], [(4, 4, 40, 20)]])
    assert "\n" not in str(err.value)
    pipeline = policy.to_albumentations(targets=TargetParams(bbox_format="pascal_voc"))
    with pytest.raises(ValueError, match=r"Expected x_max for bbox .* to be in the range \[0.0, 1.0\]") as err:
        pipeline(image=cifar_images[0], bboxes=[(4, 4, 40, 20)])
    assert "\n" not in str(err.value)
    with pytest.raises(TargetError, match=r"keypoints\[0\]\[1\] = \[32.0, 3.0\]: expected x in \[0, 32\)"):
        policy(cifar_batch[:1], torch.Generator(), keypoints=[[(3, 3), (32, 3)]])


def test_keypoints_or_boxes_without_their_params_get_albumentations_one_line_error(tmp_path, cifar_images):
    from autoaug.space.export import save_albumentations

    path = save_albumentations(published_policy("autoaugment-cifar10"), tmp_path / "p.json")
    pipeline = A.load(str(path), data_format="json")  # plain A.load: the file says strict
    for kwargs, message in (({"keypoints": [(3, 3)]}, "keypoints_params must be specified"),
                            ({"bboxes": [(1, 1, 5, 5)]}, "bbox_params must be specified")):
        with pytest.raises(ValueError, match=message) as err:
            pipeline(image=cifar_images[0], **kwargs)
        assert "\n" not in str(err.value)


def test_bad_target_tensors_are_refused_with_what_was_expected(cifar_batch):
    policy, g = published_policy("autoaugment-cifar10"), torch.Generator()
    cases = [
        ({"masks": torch.zeros(2, 32, 31, dtype=torch.uint8)}, r"masks: expected an integer or bool tensor of shape \(B=2, H=32, W=32\)"),
        ({"masks": torch.zeros(2, 32, 32)}, "masks: expected an integer or bool tensor"),
        ({"boxes": [[(1, 1, 5, 5)]]}, "boxes: expected a list of 2"),
        ({"boxes": [[(1, 1, 5)], []]}, r"boxes\[0\]: expected an \(N, 4\) array"),
        ({"boxes": [[(1, 1, float("nan"), 5)], []]}, r"boxes\[0\]: expected an \(N, 4\) array of finite numbers"),
        ({"boxes": [[(5, 1, 1, 5)], []]}, "with x_min < x_max"),
        ({"keypoints": [[(1, 1)], [(1, 1)]], "target_params": TargetParams(keypoint_format="xyas")},
         "the batched torch path takes \\(x, y\\) keypoints"),
        ({"target_params": TargetParams()}, "expected masks=, boxes= or keypoints= with them"),
    ]
    for kwargs, message in cases:
        with pytest.raises(TargetError, match=message) as err:
            policy(cifar_batch[:2], g, **kwargs)
        assert "\n" not in str(err.value)


def test_padded_box_tensors_are_read_like_lists(cifar_batch):
    policy = Policy(((Operation("Rotate", 1.0, 9),),))
    padded = torch.tensor([[[4.0, 4.0, 20.0, 20.0], [float("nan")] * 4], [[2.0, 3.0, 9.0, 9.0], [10.0, 10.0, 30.0, 30.0]]])
    a = policy(cifar_batch[:2], torch.Generator().manual_seed(1), boxes=padded)
    b = policy(cifar_batch[:2], torch.Generator().manual_seed(1),
               boxes=[[(4.0, 4.0, 20.0, 20.0)], [(2.0, 3.0, 9.0, 9.0), (10.0, 10.0, 30.0, 30.0)]])
    assert torch.equal(a.boxes, b.boxes) and a.box_index.tolist() == [[0, 0], [1, 0], [1, 1]]
    # padding anywhere in an image's rows; a row half NaN is no padding but a mistake
    padded[0] = padded[0].flip(0)
    again = policy(cifar_batch[:2], torch.Generator().manual_seed(1), boxes=padded)
    assert torch.equal(again.boxes, b.boxes) and again.box_index.tolist() == [[0, 0], [1, 0], [1, 1]]
    padded[1, 1, 2] = float("nan")
    with pytest.raises(TargetError, match=r"boxes: expected finite numbers in every row that is not padding"):
        policy(cifar_batch[:2], torch.Generator().manual_seed(1), boxes=padded)


def test_a_target_no_transform_can_move_is_refused_when_the_file_is_read():
    # an op the table does not have, in a hand-written policy
    doc = {"format": "autoaug.policy", "version": 1, "kind": "policy",
           "sub_policies": [[{"op": "Perspective", "prob": 0.5, "magnitude_bin": 3}]]}
    with pytest.raises(PolicyError, match="unknown op 'Perspective'; expected one of ShearX"):
        Policy.from_json(doc, "mine.json")
    # a transform albumentations does not know, in a pipeline file that takes boxes
    pipeline = A.Compose([A.HorizontalFlip(p=0.5)], bbox_params=A.BboxParams(format="coco"))
    file_doc = A.to_dict(pipeline)
    file_doc["transform"]["transforms"][0]["__class_fullname__"] = "MyWarp"
    with pytest.raises(PolicyError, match="mine.albumentations.json: unknown albumentations transform"):
        load_pipeline(file_doc, "mine.albumentations.json")
    # a transform that moves pixels but cannot move the file's boxes
    file_doc = A.to_dict(A.Compose([A.OverlayElements(p=1.0)], bbox_params=A.BboxParams(format="coco")))
    with pytest.raises(PolicyError, match="OverlayElements moves pixels but cannot move boxes"):
        load_pipeline(file_doc, "mine.albumentations.json")


def test_an_albumentations_file_refuses_the_batched_call_with_targets(tmp_path, cifar_batch):
    from autoaug.space.export import save_albumentations

    path = save_albumentations(published_policy("autoaugment-cifar10"), tmp_path / "p.json")
    augmenter = AlbumentationsFile(json.loads(path.read_text()), str(path))
    with pytest.raises(TargetError, match="call its .pipeline with image=, mask="):
        augmenter(cifar_batch[:2], torch.Generator(), masks=torch.zeros(2, 32, 32, dtype=torch.uint8))


@pytest.mark.parametrize("augmenter", [RandAugment(n=2, m=25), TrivialAugment()], ids=["randaugment", "trivialaugment"])
def test_randaugment_and_trivialaugment_exports_move_targets(augmenter, backgrounds):
    from autoaug.space.export import to_albumentations

    params = TargetParams(bbox_format="pascal_voc", keypoint_format="xy", cutout_mask_fill=255)
    pipeline = to_albumentations(augmenter, targets=params)
    red, _, mask = _scene(backgrounds)
    moved = 0
    for seed in range(16):
        seed_pipeline(pipeline, seed)
        r = pipeline(image=red[0], mask=mask, bboxes=[BOX], keypoints=KEYPOINTS)
        moved += not np.array_equal(np.isin(r["mask"], (0, 255)), np.isin(mask, (0, 255)))
        rect = _rect((r["mask"] >= 1) & (r["mask"] <= 5))
        boxes = np.array(r["bboxes"]).reshape(-1, 4)
        if rect is None:  # moved out or hidden whole
            continue
        assert len(boxes) == 1, f"seed {seed}: the box went while the object shows"
        # after up to two geometric ops the box holds the object, each side at most 1 px inside it
        assert (np.array([1, 1, -1, -1]) * (boxes[0] - rect)).max() <= 1.0, f"seed {seed}"
    assert moved >= 3  # some draws moved the object


def test_every_row_states_its_effect_on_targets_and_geometric_rows_their_matrix():
    effects = {op.name: op.targets for op in TABLE}
    assert [n for n, e in effects.items() if e == GEOMETRIC] == ["ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate"]
    assert [n for n, e in effects.items() if e == OCCLUDES] == ["Cutout"]
    assert [n for n, e in effects.items() if e == IMAGE_ONLY] == ["SamplePairing"]
    for op in TABLE:
        if op.targets == GEOMETRIC:
            # the matrix moves the image centre as the kernel does: identity at magnitude 0
            ident = op.matrix(torch.zeros(1), 32, 32)[0]
            assert torch.allclose(ident, torch.tensor([[1.0, 0, 0], [0, 1, 0]]), atol=1e-6)
            t = op_transform(op.name, op.magnitude(9), 1.0, TargetParams(mask_fill=7))
            assert isinstance(t, A.DualTransform) and t.fill_mask == 7.0
    # and a whole train pipeline's transforms can all carry boxes and keypoints
    pipeline = train_pipeline(published_policy("autoaugment-cifar10"), mean=(0, 0, 0), std=(1, 1, 1),
                              image_size=(32, 32), targets=PARAMS)
    load_pipeline(A.to_dict(pipeline), "train")
