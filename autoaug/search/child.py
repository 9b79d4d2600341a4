"""What a search trial evaluates with the child reward: the data every worker prepares once,
the child trained with a policy (or none: the reference child of a paired batch), and the
seed derivation every part of a search draws its seeds from.

`autoaug.search.search` drives the trials; `autoaug.search.density` is the other reward and
shares the data preparation.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from autoaug.search.config import SearchConfig
from autoaug.space.policy import Policy
from autoaug.training.data import Splits, load_splits
from autoaug.training.loop import DeviceData, TrainConfig, prepare, train_child


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from the search seed and a purpose, e.g. ("trial", round, slot).

    Hashing keeps the streams independent: seed + slot would give trial (r, 1) of seed 0 the
    same child as trial (r, 0) of seed 1.
    """
    text = ":".join(str(p) for p in ("autoaug", seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1



# --- what a worker evaluates ------------------------------------------------------------------


@dataclass(frozen=True)
class ChildTask:
    """What every trial of one search shares; pickled once into each worker with the function."""

    dataset: str
    train_subset: int | None
    val_subset: int | None
    child: TrainConfig

    @classmethod
    def from_config(cls, config: SearchConfig) -> ChildTask:
        return cls(config.dataset, config.train_subset, config.val_subset, config.child)


def balanced_head(y: np.ndarray, n: int | None) -> np.ndarray:
    """Indices of the first `n` images taking the classes in turn (the first image of every
    class, then the second of every class, ...), in their original order; all if n is None.

    A plain `[:n]` could be lopsided if a source is sorted by class; this needs no RNG, so every
    worker and every resumed run scores on the same images.
    """
    if n is None or n >= len(y):
        return np.arange(len(y))
    rank = np.empty(len(y), dtype=np.int64)  # position of each image within its class
    for c in np.unique(y):
        members = np.flatnonzero(y == c)
        rank[members] = np.arange(len(members))
    order = np.lexsort((y, rank))  # by rank, then class
    return np.sort(order[:n])


def load_search_data(task: ChildTask) -> Splits:
    """The dataset's splits with the child-train and reward-val subsets applied."""
    splits = load_splits(task.dataset)
    train = balanced_head(splits.train_y, task.train_subset)
    val = balanced_head(splits.val_y, task.val_subset)
    return dataclasses.replace(
        splits,
        train_x=splits.train_x[train], train_y=splits.train_y[train],
        val_x=splits.val_x[val], val_y=splits.val_y[val],
    )


# One prepared dataset per worker process, reused by every trial that process runs (the data go
# to the device once, airbench-style). Keyed by what it was built from; only the last is kept.
_DATA_CACHE: dict[tuple[Any, ...], Any] = {}


def _device_data(task: ChildTask, device: str) -> DeviceData:
    key = (task.dataset, task.train_subset, task.val_subset, device)
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = prepare(load_search_data(task), device)
    return _DATA_CACHE[key]


def evaluate_policy(task: ChildTask, payload: dict[str, Any], seed: int, device: str) -> float:
    """A trial: train one child with the payload's policy (None: the reference child, no
    policy) on `device`; its val accuracy is the reward. Top level so worker processes can
    unpickle it (as `functools.partial(evaluate_policy, task)`)."""
    doc = payload["policy"]
    policy = None if doc is None else Policy.from_json(doc, "trial payload")
    data = _device_data(task, device)
    return train_child(policy, data, dataclasses.replace(task.child, device=device), seed)
