"""`autoaug ensemble`: the top-k ensemble of trained models by validation accuracy."""

from __future__ import annotations

import argparse

from autoaug.files import save_json
from autoaug.training.ensemble import find_members, report, top_k_ensemble


def cmd_ensemble(args: argparse.Namespace) -> int:
    result = top_k_ensemble(find_members(args.run_dirs), args.top)
    print(report(result))
    if args.out:
        path = save_json(result.to_json(), args.out)
        print(f"wrote {path}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="average the softmax of the K models with the best validation accuracy; report test accuracy",
    )
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="model output directories, or directories holding some (a RandAugment grid, training runs)")
    p.add_argument("--top", type=int, default=3, help="how many models to average (default 3)")
    p.add_argument("--out", help="also write the result as JSON here")
    p.set_defaults(func=cmd_ensemble)
