"""Sub-commands that look at a policy file: `validate`, `show`, `export-albumentations`."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2

from autoaug.errors import AutoaugError
from autoaug.space.augment import render_grid
from autoaug.space.export import AlbumentationsFile, loading_note, save_albumentations
from autoaug.space.specs import resolve
from autoaug.training.data import load


def cmd_validate(args: argparse.Namespace) -> int:
    policy = resolve(args.policy)
    print(f"{args.policy}: valid")
    print(policy.describe())
    source = getattr(policy, "provenance", {}).get("source")
    if source:
        print(f"source: {source}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    if args.samples < 1:
        raise AutoaugError(f"--samples: expected a positive number, got {args.samples}")
    policy = resolve(args.policy)
    images, _ = load(args.dataset, "test")
    grid = render_grid(policy, images[: args.samples], seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise AutoaugError(f"{out}: could not write the image (expected a writable path ending in .png)")
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0


def cmd_export_albumentations(args: argparse.Namespace) -> int:
    policy = resolve(args.policy)
    if isinstance(policy, AlbumentationsFile):
        raise AutoaugError(f"{args.policy} is already an albumentations export; expected a native policy file")
    path = save_albumentations(policy, args.out)
    print(f"wrote {path}")
    note = loading_note(policy)
    if note:
        print(note)
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("validate", help="check a policy file and summarise it")
    p.add_argument("policy", help="policy JSON file or published name (autoaugment-cifar10, -svhn, -imagenet)")
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser("show", help="draw a grid of what a policy does to real images")
    p.add_argument("policy", help="policy JSON file or published name")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--samples", type=int, default=8, help="images per row (default 8)")
    p.add_argument("--dataset", default="cifar10-reduced", help="dataset spec (default cifar10-reduced)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_show)

    p = subparsers.add_parser("export-albumentations", help="write a policy as albumentations JSON (A.load reads it)")
    p.add_argument("policy", help="policy JSON file or published name")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.set_defaults(func=cmd_export_albumentations)
