"""Sub-commands that look at a policy file: `validate`, `show`, `export-albumentations`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

from autoaug.errors import AutoaugError
from autoaug.space.export import AlbumentationsFile, loading_note, save_albumentations
from autoaug.space.render import render_grid
from autoaug.space.specs import NAMES, resolve, resolve_policy
from autoaug.training.data import load


def cmd_validate(args: argparse.Namespace) -> int:
    resolved = resolve(args.policy)
    if isinstance(resolved.augmenter, AlbumentationsFile):
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
    images, _ = load(args.dataset, "test")
    grid = render_grid(policy, images[: args.samples], seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise AutoaugError(f"{out}: could not write the image (expected a writable path ending in .png)")
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0


def cmd_export_albumentations(args: argparse.Namespace) -> int:
    policy = resolve_policy(args.policy)
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
    p.add_argument("policy", help="a policy file or one of: " + ", ".join(NAMES[:-1]))
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser("show", help="draw a grid of what a policy does to real images")
    p.add_argument("policy", help="a policy file or name (as for validate)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--samples", type=int, default=8, help="images per row (default 8)")
    p.add_argument("--dataset", default="cifar10-reduced", help="dataset spec (default cifar10-reduced)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_show)

    p = subparsers.add_parser("export-albumentations", help="write a policy as albumentations JSON (A.load reads it)")
    p.add_argument("policy", help="a policy file or name (as for validate)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.set_defaults(func=cmd_export_albumentations)
