"""The flags of the commands that train many children through the worker pool (randaugment,
compare): where the children run. Apart from common.py, which `autoaug train` imports and which
must not reach into autoaug.search (tests/test_layers.py)."""

from __future__ import annotations

import argparse

from autoaug.search.ray_pool import RayOptions
from autoaug.search.store import STORE_FILENAME
from autoaug.search.workers import BACKENDS

# What Ctrl-C prints after "interrupted" for the commands whose trials live in a store (issue #22).
RESUME_NOTE = (f"every finished trial is saved in the run directory's {STORE_FILENAME}; "
               "run the same command again to resume where it stopped")


def add_pool_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the children of a command that trains many (randaugment, compare) run."""
    parser.add_argument("--backend", default="process", choices=BACKENDS, help="where children train")
    parser.add_argument("--workers", type=int, help="worker processes per device (default 1)")
    parser.add_argument("--devices", help="comma-separated worker devices, e.g. cuda:0,cuda:0,cuda:1 (overrides --workers)")
    parser.add_argument("--ray-address", default="auto", help="Ray cluster address (backend ray; default auto)")
    parser.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per child on Ray (default 0)")
    parser.add_argument("--timeout", type=float, help="seconds after which a child counts as failed")
    parser.add_argument("--retry-failed", action="store_true", help="train failed children again")


def pool_options(args: argparse.Namespace) -> dict:
    """The `autoaug.search.pool.make_pool` arguments of `add_pool_arguments`' flags."""
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else ["auto"]
    return dict(backend=args.backend, devices=devices, workers=args.workers or 1, timeout_s=args.timeout,
                ray_options=RayOptions(address=args.ray_address, num_gpus=args.ray_gpus))
