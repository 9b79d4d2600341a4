"""The data a child trains and is scored on: balanced subsets of a dataset's splits, and the
per-process cache of them on a device (the data go to the device once, airbench-style, and every
trial or experiment child a process runs reuses them)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from autoaug.training.data import Splits, load_splits
from autoaug.training.device import DeviceData, prepare


def balanced_head(y: np.ndarray, n: int | None) -> np.ndarray:
    """Indices of the first `n` images taking the classes in turn (the first image of every
    class, then the second of every class, ...), in their original order; all if n is None.

    A plain `[:n]` could be lopsided if a source is sorted by class; this needs no RNG, so every
    worker and every resumed run scores on the same images.
    """
    if n is None or n >= len(y):
        return np.arange(len(y))
    order = np.lexsort((y, class_rank(y)))  # by rank within the class, then class
    return np.sort(order[:n])


def class_rank(y: np.ndarray) -> np.ndarray:
    """(N,) int64: the position of each image within its class, in the original order."""
    rank = np.empty(len(y), dtype=np.int64)
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        rank[members] = np.arange(len(members))
    return rank


def load_data(
    dataset: str, train_subset: int | None = None, val_subset: int | None = None, image_size: int | None = None
) -> Splits:
    """The dataset's splits (resized to image_size x image_size unless None) with the child-train
    and reward-val subsets (`balanced_head`) applied."""
    splits = load_splits(dataset, image_size=image_size)
    train = balanced_head(splits.train_y, train_subset)
    val = balanced_head(splits.val_y, val_subset)
    return dataclasses.replace(
        splits,
        train_x=splits.train_x[train], train_y=splits.train_y[train],
        val_x=splits.val_x[val], val_y=splits.val_y[val],
    )


# Keyed by what the data were built from; the last KEEP are kept, most recent last: one dataset
# per worker, at each rung of a search's successive halving (its own images and side).
_DEVICE_DATA: dict[tuple[Any, ...], DeviceData] = {}
KEEP = 3


def device_data(
    dataset: str, device: str, train_subset: int | None = None, val_subset: int | None = None,
    image_size: int | None = None,
) -> DeviceData:
    """`load_data(...)` on `device`, prepared once per worker process and reused by every trial
    that process runs (the data go to the device once, airbench-style)."""
    key = (dataset, train_subset, val_subset, image_size, device)
    data = _DEVICE_DATA.pop(key, None)
    if data is None:
        while len(_DEVICE_DATA) >= KEEP:
            del _DEVICE_DATA[next(iter(_DEVICE_DATA))]  # the least recently used
        data = prepare(load_data(dataset, train_subset, val_subset, image_size), device)
    _DEVICE_DATA[key] = data
    return data
