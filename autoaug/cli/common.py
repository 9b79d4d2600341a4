"""What several commands share: the child's settings, read the one way a search reads them."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass, field

from autoaug.settings import load_settings
from autoaug.training.config import TrainConfig
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


@dataclass(frozen=True)
class ChildSettings:
    """What `autoaug train` and `autoaug randaugment` read from `--set`: the child's [child] table,
    spelled as in a search (`--set child.epochs=8`)."""

    child: TrainConfig = field(default_factory=TrainConfig)
    """How the network trains (table [child])."""


def child_settings(base: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """`base` with the `child.KEY=VALUE` overrides applied, read like a search's."""
    return load_settings(ChildSettings(base), None, overrides).child
