"""`autoaug compare`: policies in the final regime on the same seeds, and the verdict
(`autoaug.search.compare`)."""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

from autoaug.cli.common import add_child_arguments, add_dataset_arguments, child_config
from autoaug.cli.pool import RESUME_NOTE, add_pool_arguments, pool_options
from autoaug.search.compare import COMPARE_JSON, COMPARE_MD, COMPARE_PNG, FINAL_EPOCHS, FREE_ALTERNATIVES, CompareSpec, run_compare
from autoaug.search.verdict import table
from autoaug.training.config import TrainConfig


def cmd_compare(args: argparse.Namespace) -> int:
    if args.epochs is None and not any(s.startswith("child.epochs=") for s in args.set or []):
        args.epochs = FINAL_EPOCHS  # also with --model, which would start from that network's recipe
    spec = CompareSpec(
        dataset=args.dataset,
        image_size=args.image_size,
        policies=tuple(args.policies),
        free=not args.no_free,
        seeds=args.seeds,
        first_seed=args.first_seed,
        train=child_config(args, TrainConfig()),
    )
    started = time.perf_counter()
    command = "autoaug compare " + " ".join(shlex.quote(a) for a in sys.argv[2:]) if sys.argv[1:2] == ["compare"] else ""
    result = run_compare(spec, args.out, **pool_options(args), retry_failed=args.retry_failed,
                         progress=not args.no_progress, command=command)
    out = Path(args.out)
    print("\n".join(table(result.verdict, "test accuracy")))
    print()
    print(result.verdict.line())
    trained = len(result.rows) * spec.seeds
    print(f"trained {result.trained} of {trained} children now ({trained - result.trained} from the store) in "
          f"{time.perf_counter() - started:.0f}s; wrote {out / COMPARE_MD}, {out / COMPARE_JSON}, {out / COMPARE_PNG}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "compare",
        help="train policies and the free alternatives on the same seeds; the verdict on which is better",
        description="Train every POLICY (a policy spec, a policy file, or a search's run directory: its exported "
        f"policy) on the same --seeds seeds in the final regime (default `tiny`, {FINAL_EPOCHS} epochs), score each "
        "on the test split, and say whether each learned policy is better, worse or not resolved against the best "
        f"free alternative at 2 standard errors of the paired difference. The free alternatives are always trained "
        f"too ({', '.join(FREE_ALTERNATIVES)}) unless --no-free. Writes OUT/compare.md, compare.json and "
        "compare.png; rerun with the same --out to resume or to add policies or seeds.",
    )
    p.add_argument("policies", nargs="*", metavar="POLICY",
                   help="policy spec, policy file or search run directory, trained next to the free alternatives "
                   "(name them all together, before the options)")
    p.add_argument("--no-free", action="store_true",
                   help="train only the POLICYs named, not the free alternatives (name the ones you want)")
    add_dataset_arguments(p)
    p.add_argument("--seeds", type=int, default=3, help="seeds per policy, at least 2 (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="first seed; seeds are S..S+K-1 (default 0)")
    p.add_argument("--out", default="runs/compare", help="output directory (default runs/compare)")
    add_child_arguments(p, device=False)  # each worker's device comes from --devices
    add_pool_arguments(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_compare, on_interrupt=RESUME_NOTE)
