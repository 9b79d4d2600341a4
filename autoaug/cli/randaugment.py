"""`autoaug randaugment`: the RandAugment grid search over N and M (`autoaug.search.grid`)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from typing import Any, Sequence

from autoaug.errors import ConfigError
from autoaug.search.grid import BEST_JSON, GRID_JSON, GRID_MD, GridSpec, grid_markdown, policy_training, run_grid
from autoaug.search.workers import RayOptions, default_devices
from autoaug.space.randaugment import DEFAULT_OPS, IDENTITY
from autoaug.training.loop import TrainConfig


def _number_list(text: str, kind: type, flag: str) -> tuple:
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated {kind.__name__}s such as 1,2,3, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag}: expected at least one value, got {text!r}")
    return values


def train_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> TrainConfig overrides, each value read as its field's type."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in defaults:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(defaults))}")
        default = defaults[key]
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[key] = value.lower() in ("true", "1")
            else:
                out[key] = type(default)(value)
        except ValueError:
            raise ConfigError(f"--set {pair!r}: expected {key} as {type(default).__name__}, got {value!r}") from None
    return out


def cmd_randaugment(args: argparse.Namespace) -> int:
    overrides = {**policy_training(), **train_overrides(args.set or [])}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    spec = GridSpec(
        dataset=args.dataset,
        ns=_number_list(args.n, int, "--n"),
        ms=_number_list(args.m, float, "--m"),
        seeds=args.seeds,
        first_seed=args.first_seed,
        ops=tuple(args.ops.split(",")) if args.ops else DEFAULT_OPS,
        train=TrainConfig.for_model(args.model, **overrides),
        save_outputs=not args.no_test,
    )
    devices = None
    ray_options = None
    if args.backend == "ray":
        ray_options = RayOptions(address=args.ray_address, num_gpus=args.ray_gpus)
    elif args.devices:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    elif args.backend == "process":
        devices = default_devices(args.workers)
    started = time.perf_counter()
    result = run_grid(
        spec, args.out, backend=args.backend, devices=devices, timeout_s=args.timeout,
        ray_options=ray_options, retry_failed=args.retry_failed,
    )
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
    p.add_argument("--dataset", default="cifar10-reduced", help="dataset spec (default cifar10-reduced)")
    p.add_argument("--n", default="1,2,3", help="values of N, ops per image (default 1,2,3)")
    p.add_argument("--m", default="3,6,9,12", help="values of M on the 0..30 scale (default 3,6,9,12)")
    p.add_argument("--seeds", type=int, default=1, help="children per grid point (default 1)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first child of each point (default 0)")
    p.add_argument("--ops", help=f"comma-separated candidate ops (default: {','.join(DEFAULT_OPS)}; "
                   f"also Invert, SamplePairing, {IDENTITY})")
    p.add_argument("--out", default="runs/randaugment", help="run directory (default runs/randaugment)")
    p.add_argument("--model", default="tiny", help="child network (default tiny)")
    p.add_argument("--epochs", type=int, help="epochs per child (default: the model's recipe)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training setting, e.g. --set lr=0.1 (children train like `autoaug train "
                   "--policy randaugment:...`: standard augmentation and Cutout 16 after RandAugment)")
    p.add_argument("--backend", default="process", choices=("process", "inline", "ray"), help="where children train")
    p.add_argument("--workers", type=int, help="local worker processes (default: one per GPU, else 1)")
    p.add_argument("--devices", help="comma-separated worker devices, e.g. cuda:0,cuda:0,cuda:1 (overrides --workers)")
    p.add_argument("--ray-address", default="auto", help="Ray cluster address (backend ray; default auto)")
    p.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per child on Ray (default 0)")
    p.add_argument("--timeout", type=float, help="seconds after which a child counts as failed")
    p.add_argument("--retry-failed", action="store_true", help="train failed children again")
    p.add_argument("--no-test", action="store_true", help="skip test accuracy and the saved softmax (no ensembles)")
    p.set_defaults(func=cmd_randaugment)


