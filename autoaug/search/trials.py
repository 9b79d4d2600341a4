"""The one trial loop: candidates with explicit seeds in, rewards out, every step in the store.

Both searches drive it: the policy search (`autoaug.search.search`, one batch per controller
round) and the RandAugment grid (`autoaug.search.grid`, one batch of the points the store lacks).
Each result is committed as it arrives (`autoaug.search.store`); failed trials keep their error.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from autoaug.errors import AutoaugError
from autoaug.search.config import SearchConfig
from autoaug.search.rundir import RunLock
from autoaug.search.store import STORE_FILENAME, UNFINISHED, Trial, TrialSpec, TrialStore
from autoaug.search.tasks import Result, Task
from autoaug.search.workers import WorkerPool
from autoaug.space.policy import _short
from autoaug.training.config import TrainConfig
from autoaug.training.device import DeviceData
from autoaug.training.subsets import device_data


@contextmanager
def open_run(run_dir: str | Path) -> Iterator[tuple[TrialStore, int]]:
    """The store of `run_dir`, held by this process alone, with interrupted trials requeued."""
    run_dir = Path(run_dir)
    with RunLock(run_dir), TrialStore(run_dir / STORE_FILENAME) as store:
        yield store, store.requeue_running()


def add_batch(store: TrialStore, specs: Sequence[TrialSpec]) -> list[Trial]:
    """`specs` as a new batch after the store's last one (nothing for no specs)."""
    if not specs:
        return []
    rounds = store.rounds()
    return store.add_pending(rounds[-1] + 1 if rounds else 0, specs)


def changed_setup(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The settings that differ between a recorded setup `old` and `new`, each with its recorded
    value; the `train` table's keys are compared one by one and named `child.KEY`. A key that
    `old` lacks was added to autoaug after the run started: a top-level one counts as absent, a
    `train` one as TrainConfig's default, so a directory resumes across such a version when what
    it trains did not change."""
    diff = {k: old.get(k) for k in sorted(set(old) | set(new)) if k != "train" and old.get(k) != new.get(k)}
    default = dataclasses.asdict(TrainConfig())
    was, now = old.get("train", {}), new.get("train", {})
    for k in sorted(set(was) | set(now)):
        if was.get(k, default.get(k)) != now.get(k, default.get(k)):
            diff[f"child.{k}"] = was.get(k, default.get(k))
    return diff


def check_setup(store: TrialStore, name: str, setup: dict[str, Any], what: str) -> None:
    """Record `setup` (what must not change between runs in one directory) on the first run;
    on a later run, an AutoaugError naming the settings that changed (`changed_setup`)."""
    stored = store.get_meta(name)
    if stored is None:
        if store.rows():
            raise AutoaugError(f"{store.path.parent}: holds trials of something other than a {what}; use another --out")
        store.set_meta(name, json.dumps(setup, sort_keys=True))
        return
    diff = changed_setup(json.loads(stored), setup)
    if diff:
        first = next(iter(diff.values()))
        raise AutoaugError(f"{store.path.parent}: this {what} was started with another {', '.join(diff)} "
                           f"(stored: {_short(first)}); use another --out or the same setup")


FUSED = "fused"
"""Payload key of a fused group of trials: a list of [payload, seed], one per trial."""

def run_trials(
    store: TrialStore,
    pool: WorkerPool,
    trials: Sequence[Trial],
    on_result: Callable[[Result], None] | None = None,
    fuse: int = 1,
    recipe: Callable[[dict[str, Any]], str] | None = None,
) -> list[Trial]:
    """Evaluate the pending or running ones of `trials` on `pool`; returns all of `trials` as
    stored afterwards (done or failed), in the order given. `on_result` sees each result after
    the store has it. With `fuse` > 1 a worker gets up to `fuse` consecutive trials at once as
    one task (payload {FUSED: [[payload, seed], ...]}, its fn returning a reward per trial, as
    `autoaug.training.fused.train_children` trains them), of one seed and, given `recipe`, of one
    `recipe(payload)`; each trial is still stored alone."""
    groups: dict[int, list[Task]] = {}  # a group task's id (its first trial's) -> its trials

    def members(task_id: int) -> list[Task]:
        return groups.get(task_id) or [Task(task_id, {}, 0)]

    def on_start(task: Task, worker: str) -> None:
        for member in members(task.id):
            store.mark_running(member.id, worker)

    def record_one(result: Result) -> None:
        if result.ok:
            store.mark_done(result.task_id, result.reward, result.duration)
        else:
            store.mark_failed(result.task_id, result.error or "failed", result.duration, result.traceback)
            tqdm.write(f"trial {result.task_id} [{store.get(result.task_id).key}] failed: {result.error}", file=sys.stderr)
        if on_result is not None:
            on_result(result)

    def record(result: Result) -> None:
        if result.task_id not in groups:
            return record_one(result)
        group = groups[result.task_id]
        if result.ok and (not isinstance(result.reward, list) or len(result.reward) != len(group)):
            result = dataclasses.replace(result, status="failed", reward=None,
                                         error=f"a fused group of {len(group)} trials got {result.reward!r}, expected a reward per trial")
        # The group's time is shared by its trials: the cost of one child.
        share = result.duration / len(group)
        rewards = result.reward if result.ok else [None] * len(group)
        for member, reward in zip(group, rewards):
            if not result.ok:
                one = dataclasses.replace(result, task_id=member.id, duration=share)
            elif math.isfinite(reward):
                one = dataclasses.replace(result, task_id=member.id, reward=reward, duration=share)
            else:  # a diverged child fails alone; its group's other children are kept
                one = dataclasses.replace(result, task_id=member.id, status="failed", reward=None,
                                          error=f"fn returned {reward}, expected a finite number", duration=share)
            record_one(one)

    def note_retry(task: Task, error: str) -> None:
        for member in members(task.id):
            store.note_retry(member.id, error)
            tqdm.write(f"trial {member.id} [{store.get(member.id).key}] lost its worker, retrying: {error}", file=sys.stderr)

    todo = [Task(t.id, t.payload, t.seed) for t in trials if t.status in UNFINISHED]
    if fuse > 1:
        # Trials of one seed (and one `recipe`) together: fused, they share initial weights, batch
        # order and crops, and train as one network.
        def group_of(t: Task) -> tuple[int, Any]:
            return t.seed, recipe(t.payload) if recipe is not None else ""

        for _, alike in itertools.groupby(sorted(todo, key=group_of), key=group_of):
            alike = list(alike)
            for start in range(0, len(alike), fuse):
                group = alike[start : start + fuse]
                groups[group[0].id] = group
        todo = [Task(g[0].id, {FUSED: [[t.payload, t.seed] for t in g]}, g[0].seed) for g in groups.values()]
    if todo:
        pool.run(todo, on_start=on_start, on_result=record, on_retry=note_retry)
    return [store.get(t.id) for t in trials]


def derive_seed(seed: int, *parts: object) -> int:
    """A 63-bit seed from a run's seed and a purpose, e.g. ("trial", round, slot).

    Hashing keeps the streams independent: seed + slot would give trial (r, 1) of seed 0 the
    same child as trial (r, 0) of seed 1.
    """
    text = ":".join(str(p) for p in ("autoaug", seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") >> 1


@dataclass(frozen=True)
class ChildTask:
    """What every trial of one search shares, its data and its child's recipe; pickled once into
    each worker with the function."""

    dataset: str
    train_subset: int | None
    val_subset: int | None
    child: TrainConfig
    image_size: int | None = field(default=None, kw_only=True)
    """The side every image is resized to (SearchConfig.image_size); None keeps the source size."""
    trunk_dir: str | None = field(default=None, kw_only=True)
    """Where the workers keep the shared trunks of rungs that have one (`autoaug.search.trunks`,
    the run directory's trunks/); None: each worker trains them for itself."""

    @classmethod
    def from_config(cls, config: SearchConfig) -> ChildTask:
        return cls(config.dataset, config.train_subset, config.val_subset, config.child, image_size=config.image_size)

    def data(self, device: str) -> DeviceData:
        """The search's data on `device`, prepared once per worker process."""
        return device_data(self.dataset, device, self.train_subset, self.val_subset, self.image_size)
