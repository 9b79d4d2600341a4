"""What several commands share: the child's settings, read the one way a search reads them."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

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


DEFAULT_DATASET = "cifar10-reduced"
IMAGE_SIZE_HELP = ("resize every image to PIXELS x PIXELS (a folder of images of mixed sizes needs it); "
                   "= image_size in a search's config")


def add_dataset_arguments(parser: argparse.ArgumentParser, *, from_policy: bool = False) -> None:
    """--dataset and --image-size, the one image-size setting of every command that reads a dataset.
    `from_policy`: both default to what the policy file records it was searched on."""
    if from_policy:
        parser.add_argument("--dataset", default=None, metavar="SPEC",
                            help="dataset spec (default: the dataset the policy file records it was "
                            f"searched on, else {DEFAULT_DATASET})")
        parser.add_argument("--image-size", type=int, default=None, metavar="PIXELS",
                            help=IMAGE_SIZE_HELP + " (default: the policy file's, else the source size)")
    else:
        parser.add_argument("--dataset", default=DEFAULT_DATASET, metavar="SPEC",
                            help=f"dataset spec (default {DEFAULT_DATASET})")
        parser.add_argument("--image-size", type=int, default=None, metavar="PIXELS",
                            help=IMAGE_SIZE_HELP + " (default: the source size)")


@dataclass(frozen=True)
class DatasetChoice:
    """The dataset a command reads for a policy, and why."""

    dataset: str
    image_size: int | None
    warning: str | None = None
    """Set when --dataset differs from the dataset the policy was searched on."""


def recorded_dataset(provenance: Mapping[str, Any] | None) -> tuple[str | None, int | None]:
    """(dataset, image_size) a policy file records it was searched on (its provenance), or Nones."""
    info = provenance or {}
    dataset = info.get("dataset")
    size = info.get("image_size")
    return (dataset if isinstance(dataset, str) and dataset else None,
            size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None)


def choose_dataset(args: argparse.Namespace, provenance: Mapping[str, Any] | None, policy: str) -> DatasetChoice:
    """--dataset / --image-size where given, else the policy file's recorded dataset (issue #22:
    a policy searched on a folder is shown and trained on that folder, not on CIFAR-10)."""
    recorded, recorded_size = recorded_dataset(provenance)
    if args.dataset is None:
        if recorded is None:
            return DatasetChoice(DEFAULT_DATASET, args.image_size)
        return DatasetChoice(recorded, args.image_size if args.image_size is not None else recorded_size)
    warning = None
    if recorded is not None and args.dataset != recorded:
        warning = (f"warning: {policy} was searched on {recorded}; using --dataset {args.dataset} as given "
                   "(leave --dataset out to use the policy's)")
    return DatasetChoice(args.dataset, args.image_size, warning)
