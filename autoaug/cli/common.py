"""What several commands share: the child's settings, read the one way a search reads them."""

from __future__ import annotations

import argparse

from autoaug.search.config import child_settings
from autoaug.search.workers import BACKENDS, RayOptions
from autoaug.training.loop import TrainConfig
from autoaug.training.models import MODEL_NAMES

# flag -> the [child] key it is shorthand for
_CHILD_FLAGS = {"model": "model", "epochs": "epochs", "device": "device"}


def add_child_arguments(parser: argparse.ArgumentParser, *, device: bool) -> None:
    """--model, --epochs (and --device): shorthand for `--set child.KEY=VALUE`, and --set itself."""
    parser.add_argument("--model", help=f"network, one of {', '.join(MODEL_NAMES)} (default tiny); "
                        "= --set child.model=NAME, which starts from that network's recipe")
    parser.add_argument("--epochs", type=int, help="epochs (default: the model's recipe); = --set child.epochs=N")
    if device:
        parser.add_argument("--device", help="auto, cpu, cuda or cuda:N (default auto); = --set child.device=DEV")
    parser.add_argument("--set", nargs="+", action="extend", metavar="KEY=VALUE",
                        help="override a training setting of the [child] table, as in `autoaug search`, "
                        "e.g. --set child.lr=0.05 child.label_smoothing=0; child.flip=false trains without "
                        "horizontal flips (digits, text), child.cutout=N sets the Cutout side in pixels "
                        "(0 = off; 'auto' = half the image side, 16 on 32x32, what policies and the "
                        "`cutout` baseline get)")


def child_config(args: argparse.Namespace, base: TrainConfig) -> TrainConfig:
    """`base` with the child flags and `--set` overrides of `args` applied (the flags first)."""
    flags = [f"child.{key}={vars(args)[flag]}" for flag, key in _CHILD_FLAGS.items()
             if vars(args).get(flag) is not None]
    return child_settings(base, flags + list(args.set or []))


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
    """The `autoaug.search.trials.make_pool` arguments of `add_pool_arguments`' flags."""
    devices = [d.strip() for d in args.devices.split(",") if d.strip()] if args.devices else ["auto"]
    return dict(backend=args.backend, devices=devices, workers=args.workers or 1, timeout_s=args.timeout,
                ray_options=RayOptions(address=args.ray_address, num_gpus=args.ray_gpus))
