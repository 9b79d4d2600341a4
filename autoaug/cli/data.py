"""`autoaug data download` and `autoaug data info`."""

from __future__ import annotations

import argparse
from pathlib import Path

from autoaug.cli.common import IMAGE_SIZE_HELP
from autoaug.training import data, download


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """`autoaug data download cifar10|cifar100 --dest DIR` and `autoaug data info SPEC`."""
    group = subparsers.add_parser("data", help="download and inspect datasets")
    data_sub = group.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    dl = data_sub.add_parser("download", help="fetch the official CIFAR-10/100 python archive (MD5-checked)")
    dl.add_argument("name", choices=sorted(download.ARCHIVES), help="which dataset")
    dl.add_argument("--dest", required=True, type=Path, help="folder to download and extract into")
    dl.add_argument("--url", default=None, help="a mirror of the archive (the MD5 is still checked)")
    dl.add_argument("--timeout", type=float, default=30.0, help="network timeout in seconds")
    dl.set_defaults(func=_cmd_download)

    info = data_sub.add_parser("info", help="images per split and per class of a dataset")
    info.add_argument("spec", nargs="?", default=data.EMBEDDED_NAME, help=data.DATASET_SPECS)
    info.add_argument("--image-size", type=int, default=None, metavar="PIXELS", help=IMAGE_SIZE_HELP)
    info.add_argument("--seed", type=int, default=0, help="seed for carving missing splits")
    info.add_argument("--val-fraction", type=float, default=0.1,
                      help="fraction of each class carved out of train per missing split")
    info.set_defaults(func=_cmd_info)


def _cmd_download(args: argparse.Namespace) -> int:
    folder = download.download(args.name, args.dest, url=args.url, timeout=args.timeout)
    print(f"{folder}\nuse it as: --dataset {args.name}:{folder}")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    splits = data.load_splits(
        args.spec, image_size=args.image_size, seed=args.seed, val_fraction=args.val_fraction
    )
    h, w = splits.image_shape
    print(f"{splits.name}: {splits.num_classes} classes, images {h}x{w} RGB uint8")
    counts = {s: splits.class_counts(s) for s in data.SPLIT_NAMES}
    width = max(len("class"), *(len(n) for n in splits.class_names))
    print(f"{'class':<{width}}  " + "  ".join(f"{s:>7}" for s in data.SPLIT_NAMES))
    for c, name in enumerate(splits.class_names):
        print(f"{name:<{width}}  " + "  ".join(f"{counts[s][c]:>7}" for s in data.SPLIT_NAMES))
    print(f"{'total':<{width}}  " + "  ".join(f"{counts[s].sum():>7}" for s in data.SPLIT_NAMES))
    return 0
