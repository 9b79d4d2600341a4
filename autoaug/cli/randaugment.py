"""`autoaug randaugment`: the RandAugment grid search over N and M (`autoaug.search.grid`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from autoaug.cli.common import add_child_arguments, add_dataset_arguments, child_config
from autoaug.cli.pool import RESUME_NOTE, add_pool_arguments, pool_options
from autoaug.errors import ConfigError
from autoaug.search.grid import BEST_JSON, GRID_JSON, GRID_MD, GridSpec, grid_markdown, policy_training, run_grid
from autoaug.space.randaugment import DEFAULT_OPS, IDENTITY
from autoaug.training.config import TrainConfig
from autoaug.training.data import load_splits


def _number_list(text: str, kind: type, flag: str) -> tuple:
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated {kind.__name__}s such as 1,2,3, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag}: expected at least one value, got {text!r}")
    return values


def cmd_randaugment(args: argparse.Namespace) -> int:
    spec = GridSpec(
        dataset=args.dataset,
        image_size=args.image_size,
        ns=_number_list(args.n, int, "--n"),
        ms=_number_list(args.m, float, "--m"),
        seeds=args.seeds,
        first_seed=args.first_seed,
        ops=tuple(args.ops.split(",")) if args.ops else DEFAULT_OPS,
        # Cutout 'auto' in pixels of the dataset's images, as the grid's store records it.
        train=child_config(args, TrainConfig(**policy_training())).for_images(
            load_splits(args.dataset, image_size=args.image_size).image_shape),
        save_outputs=not args.no_test,
    )
    started = time.perf_counter()
    result = run_grid(spec, args.out, **pool_options(args), retry_failed=args.retry_failed, fuse=args.fuse)
    total = len(spec.points())
    print(grid_markdown(result))
    print(f"trained {result.evaluated} of {total} children now ({total - result.evaluated} from the store) "
          f"in {time.perf_counter() - started:.0f}s; wrote {Path(args.out) / GRID_MD}, {GRID_JSON}, {BEST_JSON}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "randaugment",
        help="RandAugment grid search over N and M (resumable); exports the best (N, M)",
        description="Train one child per (N, M, seed), report the validation accuracy table and export the "
        "best (N, M) as native and albumentations JSON. Rerun with the same --out to resume or extend the grid.",
    )
    add_dataset_arguments(p)
    p.add_argument("--n", default="1,2,3", help="values of N, ops per image (default 1,2,3)")
    p.add_argument("--m", default="3,6,9,12", help="values of M on the 0..30 scale (default 3,6,9,12)")
    p.add_argument("--seeds", type=int, default=1, help="children per grid point (default 1)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first child of each point (default 0)")
    p.add_argument("--ops", help=f"comma-separated candidate ops (default: {','.join(DEFAULT_OPS)}; "
                   f"also Invert, SamplePairing, {IDENTITY})")
    p.add_argument("--out", default="runs/randaugment", help="run directory (default runs/randaugment)")
    add_child_arguments(p, device=False)  # children train like `autoaug train --policy randaugment:...`
    add_pool_arguments(p)
    p.add_argument("--fuse", type=int, help="children a worker trains at once as one fused network "
                   "(default: 1 on the CPU, 8 on a GPU)")
    p.add_argument("--no-test", action="store_true", help="skip test accuracy and the saved softmax (no ensembles)")
    p.set_defaults(func=cmd_randaugment, on_interrupt=RESUME_NOTE)
