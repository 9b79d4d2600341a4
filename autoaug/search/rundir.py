"""The rest of a run directory's durable state: the controller checkpoint and the run lock.

- `save_checkpoint` / `load_checkpoint`: controller, optimiser, baseline and RNG state written
  with `autoaug.files.atomic_write` (temp file + fsync + rename), read with
  `torch.load(weights_only=True)`.
- `RunLock`: one search (or grid) per run directory at a time, so two processes can't evaluate
  the same pending trials of its store (`autoaug.search.store`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from autoaug.errors import AutoaugError
from autoaug.files import atomic_write

CHECKPOINT_FILENAME = "checkpoint.pt"
LOCK_FILENAME = ".autoaug.lock"


# -- checkpoints -------------------------------------------------------------------------------


def save_checkpoint(path: str | os.PathLike[str], state: Mapping[str, Any]) -> None:
    """Write `state` to `path` so that `path` always holds a whole checkpoint (`atomic_write`).

    Keep `state` to what `torch.load(weights_only=True)` accepts: tensors, dicts, lists, tuples,
    numbers, strings (a `torch.Generator`'s `get_state()` is a uint8 tensor).
    """
    atomic_write(path, lambda handle: torch.save(dict(state), handle), "checkpoint")


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The state saved at `path`, or None if there is no checkpoint yet.

    Loaded onto the CPU so a run checkpointed on a GPU resumes anywhere; the caller moves what
    it needs. weights_only=True: a checkpoint is data, never code.
    """
    path = Path(path)
    if not path.exists():
        return None
    try:
        with warnings.catch_warnings():
            # torch warns about a plain-pickle file before refusing it; the refusal is our one line.
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises UnpicklingError, RuntimeError, EOFError, ...
        raise AutoaugError(
            f"checkpoint {path} cannot be read: {_checkpoint_problem(err)}; the trial store next "
            "to it keeps every finished trial: delete the checkpoint to replay the search from "
            "the store, or use another --out"
        ) from None
    if not isinstance(state, dict):
        raise AutoaugError(f"checkpoint {path} holds a {type(state).__name__}, expected a dict of state")
    return state


def _checkpoint_problem(err: Exception) -> str:
    """What is wrong with a checkpoint, in words that fit one line.

    Never torch's own advice for a refused file (retry with weights_only=False): a checkpoint
    that holds more than tensors and plain data is not one this search wrote, and loading it
    that way could run code from the file.
    """
    text = str(err)
    if "Weights only load failed" in text or "weights_only" in text:
        return "it holds objects other than tensors and plain data (not a checkpoint autoaug wrote)"
    if "central directory" in text or isinstance(err, EOFError) or "zip archive" in text:
        return "not a complete checkpoint file (truncated or damaged)"
    first = (text.strip().splitlines() or [type(err).__name__])[0]
    return first if len(first) <= 120 else first[:117] + "..."


# -- run lock ----------------------------------------------------------------------------------


class RunLock:
    """An exclusive lock on a run directory, held for as long as a search runs in it.

    `flock` on a file in the directory: the kernel drops the lock when the holder exits, even
    by SIGKILL, so a killed search never leaves a stale lock behind. Two searches in one run
    directory would pick up the same pending trials, which is exactly the double evaluation
    the store exists to prevent. On platforms without `fcntl` (Windows) the lock is a no-op.
    """

    def __init__(self, run_dir: str | os.PathLike[str]) -> None:
        self.path = Path(run_dir) / LOCK_FILENAME
        self._fd: int | None = None

    def acquire(self) -> None:
        try:
            import fcntl  # POSIX only: on Windows the lock is a no-op
        except ImportError:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise AutoaugError(
                f"cannot create run directory lock {self.path}: {err.strerror or err}"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise AutoaugError(f"run directory {self.path.parent} is in use by another autoaug process "
                               f"(pid {holder}); wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
