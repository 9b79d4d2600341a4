"""Sub-commands that look at a policy file: `validate`, `show`, `export-albumentations`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2

from autoaug.cli.common import DEFAULT_DATASET, IMAGE_SIZE_HELP, add_dataset_arguments, choose_dataset
from autoaug.errors import AutoaugError
from autoaug.files import atomic_write, shown_path
from autoaug.space.albu import DEFAULT_SIZE, check_runs, set_image_pool
from autoaug.space.export import AlbumentationsFile, loading_note, to_albumentations
from autoaug.space.pipeline import PIPELINES, save_pipeline
from autoaug.space.render import render_grid, render_targets
from autoaug.space.specs import NAMES, resolve, resolve_policy
from autoaug.space.targets import BBOX_FORMATS, KEYPOINT_FORMATS, TargetParams
from autoaug.training.data import load
from autoaug.training.pipelines import export_pipeline

MAX_CHECK_SIZE = 4096  # validate's sample images: a 4096x4096 RGB image is 48 MiB


def cmd_validate(args: argparse.Namespace) -> int:
    if args.image_size < 1 or args.image_size > MAX_CHECK_SIZE:
        raise AutoaugError(f"--image-size: expected pixels in 1..{MAX_CHECK_SIZE}, got {args.image_size}")
    resolved = resolve(args.policy)
    if isinstance(resolved.augmenter, AlbumentationsFile):
        # The whole pipeline runs on images of the size it is meant for (issue #23).
        check_runs(resolved.augmenter.pipeline, args.policy, (args.image_size, args.image_size))
        for note in resolved.augmenter.warnings:
            print(f"warning: {note}", file=sys.stderr)
    print(f"{args.policy}: valid")
    if resolved.augmenter is None:
        print(resolved.description)
        return 0
    print(resolved.augmenter.describe())
    source = resolved.augmenter.provenance.get("source")
    if source:
        print(f"source: {source}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if args.samples < 1:
        raise AutoaugError(f"--samples: expected a positive number, got {args.samples}")
    policy = resolve_policy(args.policy)
    choice = choose_dataset(args, getattr(policy, "provenance", None), args.policy)
    if choice.warning:
        print(choice.warning, file=sys.stderr)
    images, _ = load(choice.dataset, "test", image_size=choice.image_size)
    if isinstance(policy, AlbumentationsFile):
        set_image_pool(policy.pipeline, images)  # SamplePairing's partners, if it holds one
        check_runs(policy.pipeline, args.policy, images.shape[1:3])
    draw = render_targets if args.targets else render_grid
    grid = draw(policy, images[: args.samples], seed=args.seed)
    out = Path(args.out)
    # zlib's strongest level: a third of the default's bytes, in milliseconds for a grid this size
    ok, png = cv2.imencode(".png", cv2.cvtColor(grid, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise AutoaugError(f"{shown_path(out)}: could not encode the grid as PNG")
    atomic_write(out, lambda handle: handle.write(png.tobytes()), "image")
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]}, images of {choice.dataset})")
    return 0


def cmd_export_albumentations(args: argparse.Namespace) -> int:
    targets = target_params(args)
    resolved = resolve(args.policy)
    if isinstance(resolved.augmenter, AlbumentationsFile):
        raise AutoaugError(f"{args.policy} is already an albumentations export; expected a native policy file")
    if args.pipeline == "policy":
        if args.dataset is not None or args.image_size is not None:
            raise AutoaugError("--dataset sets the normalisation of --pipeline train / eval (--image-size its "
                               "size); the policy pipeline has none")
        if resolved.augmenter is None:
            raise AutoaugError(f"{args.policy} is a baseline without a policy; --pipeline train "
                               "writes its pad-crop / flip / Cutout")
        pipeline = to_albumentations(resolved.augmenter, targets=targets)
    else:
        choice = choose_dataset(args, getattr(resolved.augmenter, "provenance", None), args.policy)
        if choice.warning:
            print(choice.warning, file=sys.stderr)
        pipeline = export_pipeline(args.pipeline, resolved, choice.dataset, choice.image_size, targets)
    path = save_pipeline(pipeline, args.out)
    print(f"wrote {path} ({' > '.join(type(t).__name__ for t in pipeline.transforms)})")
    print_loading_note(pipeline)
    return 0


def print_loading_note(exported: Any) -> None:
    """What a user must do before `A.load` reads an export (autoaug's own transforms), if anything."""
    note = loading_note(exported)
    if note:
        print(note)


def target_params(args: argparse.Namespace) -> TargetParams | None:
    """The TargetParams of the target flags (`add_target_arguments`), None when none is given:
    the files are then what they were before targets existed."""
    given = {"bbox_format": args.bbox_format, "keypoint_format": args.keypoint_format,
             "mask_fill": args.mask_fill, "cutout_mask_fill": args.cutout_mask_fill,
             "min_area": args.bbox_min_area, "min_visibility": args.bbox_min_visibility}
    given = {key: value for key, value in given.items() if value is not None}
    for kind in ("bbox_labels", "keypoint_labels"):
        if getattr(args, kind) is not None:
            given[kind] = tuple(name.strip() for name in getattr(args, kind).split(","))
    return TargetParams(**given) if given else None


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags that make an exported pipeline carry masks, boxes and keypoints (issue #25),
    shared by `export-albumentations` and `export`."""
    group = parser.add_argument_group(
        "targets", "masks, boxes and keypoints move with the image (A.Compose's bbox_params / keypoint_params "
        "are written into the files; masks need no flag)")
    group.add_argument("--bbox-format", metavar="FORMAT",
                       help=f"boxes passed as bboxes= are in this format: {', '.join(BBOX_FORMATS)}")
    group.add_argument("--bbox-labels", metavar="NAME[,NAME]",
                       help="names of the per-box label lists passed beside bboxes= (label_fields), e.g. labels")
    group.add_argument("--bbox-min-area", type=float, metavar="PIXELS",
                       help="drop a box whose part inside the image is under this many pixels (default 0)")
    group.add_argument("--bbox-min-visibility", type=float, metavar="FRACTION",
                       help="drop a box with less than this fraction of it left inside the image (default 0)")
    group.add_argument("--keypoint-format", metavar="FORMAT",
                       help=f"keypoints passed as keypoints= are in this format: {', '.join(KEYPOINT_FORMATS)}")
    group.add_argument("--keypoint-labels", metavar="NAME[,NAME]",
                       help="names of the per-keypoint label lists passed beside keypoints= (which ones stayed)")
    group.add_argument("--mask-fill", type=int, metavar="VALUE",
                       help="mask value where a geometric op or the pad uncovers pixels (default 0)")
    group.add_argument("--cutout-mask-fill", type=int, metavar="VALUE",
                       help="fill Cutout's hole in the mask with this value (default: Cutout leaves the mask alone)")


def add_pipeline_arguments(parser: argparse.ArgumentParser, dataset_help: str) -> None:
    """--pipeline and --dataset, shared by `export-albumentations` and `export`."""
    parser.add_argument(
        "--pipeline", choices=PIPELINES, default="policy",
        help="policy: the policy alone (HWC uint8 -> uint8); train: the whole training recipe "
        "(policy, Normalize, pad-crop, flip, Cutout where the recipe has it, ToTensorV2); "
        "eval: Normalize + ToTensorV2 (default policy)",
    )
    parser.add_argument("--dataset", default=None, metavar="SPEC", help=dataset_help)
    parser.add_argument("--image-size", type=int, default=None, metavar="PIXELS",
                        help=IMAGE_SIZE_HELP + " (--pipeline train / eval; default: the policy's run's, "
                        "else the source size)")


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("validate", help="check a policy file and summarise it")
    p.add_argument("policy", help="a policy file or one of: " + ", ".join(NAMES[:-1]))
    p.add_argument("--image-size", type=int, default=DEFAULT_SIZE[0], metavar="PIXELS",
                   help="an albumentations file runs whole on square images of this size and must give "
                   f"what its kind gives (default {DEFAULT_SIZE[0]}, the size of {DEFAULT_DATASET})")
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser("show", help="draw a grid of what a policy does to real images")
    p.add_argument("policy", help="a policy file or name (as for validate)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--samples", type=int, default=8, help="images per row (default 8)")
    add_dataset_arguments(p, from_policy=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", action="store_true",
                   help="give each image a mask (an ellipse), its box and keypoints, run them through the "
                   "albumentations export with the image and draw them over the augmented image")
    p.set_defaults(func=cmd_show)

    p = subparsers.add_parser("export-albumentations", help="write a policy as albumentations JSON (A.load reads it)")
    p.add_argument("policy", help="a policy file or name, as for validate (with --pipeline train also "
                   "the baselines none / standard / cutout)")
    p.add_argument("--out", required=True, help="JSON file to write")
    add_pipeline_arguments(p, "dataset whose training split gives Normalize's mean and std "
                           "(--pipeline train / eval; default: the dataset the policy file records it was "
                           f"searched on, else {DEFAULT_DATASET})")
    add_target_arguments(p)
    p.set_defaults(func=cmd_export_albumentations)
