"""Shared trunks (issue #21, `FidelityConfig.trunk`): the first epochs of a batch's children,
trained once and read by every child of the batch that goes on from them.

A rung with a trunk trains its children from `autoaug.training.loop.train_trunk` of the batch's
seed with the reference child's recipe; each child adds its own policy in the epochs after it.
The trunk is the same for every child of that seed, rung and recipe, so the first worker that
needs it trains it and writes it to the run directory's `trunks/` (a file per key, written whole
by `autoaug.files.atomic_write`, under a file lock so that two workers wanting the same trunk
train it once). A killed worker leaves no half-written trunk and holds no lock (the OS drops it),
and a resumed search reads the trunks it trained before. A worker that cannot reach the run
directory (a Ray node on another machine without it) trains its own copy: the same seed gives the
same trunk, it only costs one trunk per node and batch. Each worker keeps the last trunk it used
in memory, so the children after the first read no file.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from autoaug.files import atomic_write
from autoaug.training.config import TrainConfig
from autoaug.training.loop import TrainState

TRUNK_DIRNAME = "trunks"

_last: dict[str, TrainState] = {}  # this process's last trunk, by key


def trunk_key(seed: int, epochs: int, recipe: TrainConfig, data: dict[str, Any]) -> str:
    """A name for the trunk of `epochs` epochs of `recipe` on `seed` and the data described by
    `data` (dataset, image counts, side): every setting that changes what the trunk holds, but
    not the device it trains on."""
    doc = {"seed": seed, "epochs": epochs, "data": data,
           "recipe": {k: v for k, v in dataclasses.asdict(recipe).items() if k != "device"}}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:24]


def shared_trunk(directory: str | None, key: str, train: Callable[[], TrainState]) -> TrainState:
    """The trunk named `key`: this process's last one, else the one in `directory`, else
    `train()`, written to `directory` for the other workers (directory None, or one whose parent,
    the run directory, is not on this machine: trained here and kept in memory only)."""
    if key in _last:
        return _last[key]
    if directory is None or not Path(directory).parent.is_dir():
        state = train()
    else:
        folder = Path(directory)
        folder.mkdir(exist_ok=True)
        path = folder / f"{key}.pt"
        with open(folder / f"{key}.lock", "a+b") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, or the process dies
            state = _read(path)
            if state is None:
                state = train()
                atomic_write(path, lambda handle: torch.save(state.to_dict(), handle), "trunk")
    _last.clear()
    _last[key] = state
    return state


def _read(path: Path) -> TrainState | None:
    """The trunk saved at `path`, or None if there is none or it cannot be read (it is trained
    again: nothing but this cache depends on the file)."""
    if not path.exists():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return TrainState.from_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception:  # a file from another torch, or damaged: torch raises many kinds
        return None
