"""The rest of a run directory's durable state: the controller checkpoint and the run lock, and
opening a search's run directory with every check that it holds this search (`open_search`).

- `save_checkpoint` / `load_checkpoint`: controller, optimiser, baseline and RNG state written
  with `autoaug.files.atomic_write` (temp file + fsync + rename), read with
  `torch.load(weights_only=True)`.
- `RunLock`: one search (or grid) per run directory at a time, so two processes can't evaluate
  the same pending trials of its store (`autoaug.search.store`).
- `open_search`: the run directory of a policy search, locked, its checkpoint, config, store
  and data checked against the config before anything is written; the store, the sampler's
  checkpointed state and the round to start from.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import torch

from autoaug.errors import AutoaugError
from autoaug.files import atomic_write
from autoaug.search.config import (
    CONFIG_FILENAME,
    SearchConfig,
    check_identity,
    check_resume,
    load_config,
    save_config,
    search_identity,
)
from autoaug.search.store import STORE_FILENAME, TrialStore, store_exists
from autoaug.training.data import Splits, fingerprint

CHECKPOINT_FILENAME = "checkpoint.pt"
CHECKPOINT_VERSION = 1
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


# -- a search's run directory ------------------------------------------------------------------


class OpenedSearch(NamedTuple):
    """What `open_search` hands the search loop."""

    store: TrialStore
    state: dict[str, Any] | None
    """The checkpoint: the sampler's state after the last update, or None for a new search."""
    next_round: int
    """The round to start from (0, or the round after the checkpointed update)."""
    requeued: int
    """Trials a killed run left running, pending again."""
    identity: dict[str, str]
    """The search's config and data fingerprint, which every checkpoint carries (issue #23)."""


@contextlib.contextmanager
def open_search(config: SearchConfig, splits: Splits) -> Iterator[OpenedSearch]:
    """The run directory `config.out` of a policy search on `splits`, locked for as long as the
    block runs: its checkpoint, saved config, store and data fingerprint checked against
    `config` (AutoaugError or ConfigError, before anything is written), then `config` saved and
    interrupted trials requeued."""
    run_dir = Path(config.out)
    _make_run_dir(run_dir)
    store_path = run_dir / STORE_FILENAME
    with contextlib.ExitStack() as held:
        held.enter_context(RunLock(run_dir))
        # Everything that could refuse this run reads only; nothing is written before it passed.
        state = load_checkpoint(run_dir / CHECKPOINT_FILENAME)
        if state is not None:
            _check_checkpoint(state, config, run_dir)
            if not store_exists(store_path):
                raise AutoaugError(
                    f"{store_path} is missing or empty, but checkpoint {CHECKPOINT_FILENAME} next "
                    f"to it says {state['step']} trials were finished: the store was deleted or "
                    "emptied; restore it (nothing was written), or use another --out"
                )
        store = held.enter_context(TrialStore(store_path))
        saved_path = run_dir / CONFIG_FILENAME
        if saved_path.is_file():
            check_resume(load_config(saved_path, complete=True), config, run_dir)
        identity = _check_same_search(store, state, config, splits, run_dir)
        save_config(config, saved_path)  # records a grown budget or new devices
        requeued = store.requeue_running()  # rows a killed run left running never finished
        yield OpenedSearch(store, state, 0 if state is None else state["next_round"], requeued, identity)


def _make_run_dir(run_dir: Path) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".autoaug-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise AutoaugError(f"cannot use run directory {run_dir}: {err.strerror or err} "
                           "(expected a directory this user can create and write)") from None


def _check_checkpoint(state: dict[str, Any], config: SearchConfig, run_dir: Path) -> None:
    """AutoaugError unless `state` is a checkpoint of this kind of search with usable counters."""
    path = run_dir / CHECKPOINT_FILENAME
    if state.get("version") != CHECKPOINT_VERSION or state.get("algo") != config.algo:
        raise AutoaugError(f"checkpoint {path} is not a checkpoint of this search "
                           f"(version {state.get('version')!r}, algo {state.get('algo')!r})")
    for key in ("next_round", "step"):
        value = state.get(key)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise AutoaugError(f"checkpoint {path}: {key} must be an integer >= 0, got {value!r}")


def _check_same_search(
    store: TrialStore, state: dict[str, Any] | None, config: SearchConfig, splits: Splits, run_dir: Path
) -> dict[str, str]:
    """AutoaugError unless the store, the checkpoint, the config and the data all belong to one
    search. The first run records the config's meaning and a fingerprint of the data; every
    resume compares (issue #12: a replaced npz file or a seed edited in config.toml would
    otherwise mix two searches in one store). The checkpoint carries the same two (issue #23: one
    copied from another search would resume with that search's controller): returned, for it."""
    if state is not None:
        finished = store.completed_count()
        if finished < state["step"]:
            raise AutoaugError(
                f"trial store {store.path} holds {finished} finished trials, but checkpoint "
                f"{CHECKPOINT_FILENAME} says {state['step']} were finished: the store was replaced "
                "or rolled back; restore it, or delete the checkpoint to continue from what the "
                "store holds"
            )
    identity = search_identity(config)
    recorded = store.record_meta("search_config", identity)
    if recorded is not None and recorded != identity:
        check_identity(recorded, config, store.path)
    data = fingerprint(splits.train_x, splits.train_y, splits.val_x, splits.val_y)
    recorded = store.record_meta("dataset_fingerprint", data)
    if recorded is not None and recorded != data:
        raise AutoaugError(
            f"trial store {store.path} holds rewards measured on other data than {config.dataset} "
            f"gives now (fingerprint of the child-train and reward-val images and labels: "
            f"recorded {recorded[7:19]}..., now {data[7:19]}...); the data behind the dataset "
            "spec changed: restore it, or use another --out for a new search"
        )
    if state is not None:  # a checkpoint written before it carried its identity has neither key
        path = run_dir / CHECKPOINT_FILENAME
        if "search_config" in state and state["search_config"] != identity:
            check_identity(str(state["search_config"]), config, path, holder="checkpoint")
        if "dataset_fingerprint" in state and state["dataset_fingerprint"] != data:
            raise AutoaugError(f"checkpoint {path} belongs to a search on other data than this run directory's "
                               "(its data fingerprint differs): it was copied from another search; delete it to "
                               "replay this search from its trial store")
    return {"search_config": identity, "dataset_fingerprint": data}
