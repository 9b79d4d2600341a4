"""The search's worker pool, in one place: how many children a worker trains at once
(`resolve_fuse`, `fuse_of`), the pool of workers evaluating a function (`make_pool`), and the
pool of a search or an export, started only when a trial needs it (`LazyPool`,
`evaluate_trials`). The policy search, the export's re-evaluation and the RandAugment grid run
their trials through it."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from autoaug.search.config import SearchConfig
from autoaug.search.density import ensure_fold_models
from autoaug.search.ray_pool import RayOptions
from autoaug.search.rewards import evaluator, recipe_of
from autoaug.search.store import UNFINISHED, Trial, TrialStore
from autoaug.search.tasks import EvalFn, Result
from autoaug.search.trials import ChildTask, run_trials
from autoaug.search.workers import WorkerPool, default_devices
from autoaug.settings import check_int

# Children per worker task when none is asked for, per device kind. CPU: see
# experiments/results/bench_workers.md (tiny children, 2 cores). CUDA: ../shared/REFERENCE.md
# measured 8 to 16 fused copies of a small CNN at about 4x one model's images per second on an
# H200; not measured by us (issue #11).
DEFAULT_FUSE = {"cpu": 1, "cuda": 8}


def default_fuse(backend: str, devices: Sequence[str], ray_gpus: float = 0.0) -> int:
    """`DEFAULT_FUSE` of the kind of device the workers train on (the first device's; 'auto'
    is every GPU, else the CPU; on Ray, a GPU when trials ask for one)."""
    if backend == "ray":
        cuda = ray_gpus > 0
    elif list(devices) == ["auto"]:
        cuda = torch.cuda.is_available()
    else:
        cuda = devices[0].startswith("cuda")
    return DEFAULT_FUSE["cuda" if cuda else "cpu"]


# Worker processes per GPU for workers = "auto": experiments/gpu.toml's count (a small child leaves
# most of a GPU idle; four fill it). On a CPU "auto" is one single-thread worker per core (issue
# #22: two workers of eight threads each on 16 cores train tiny children far slower).
GPU_WORKERS = 4


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask, as WorkerPool divides them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_workers(workers: int | str, backend: str, devices: Sequence[str]) -> int:
    """Worker processes per device: `workers`, or for "auto" one per core on the CPU (WorkerPool
    then gives each one thread) and GPU_WORKERS per GPU."""
    if workers != "auto":
        return workers  # type: ignore[return-value]  # SearchConfig checked it is an int >= 1
    if default_fuse(backend, devices) == DEFAULT_FUSE["cuda"]:  # the workers' device kind
        return GPU_WORKERS
    return max(1, usable_cores() // max(1, len(devices) if list(devices) != ["auto"] else 1))


def resolve_fuse(fuse: int | None, backend: str, devices: Sequence[str], ray_gpus: float = 0.0) -> int:
    """Children per worker task: `fuse` checked (an int >= 1), or `default_fuse` when None."""
    if fuse is None:
        return default_fuse(backend, devices, ray_gpus)
    check_int("fuse", fuse, low=1)
    return fuse


def fuse_of(config: SearchConfig) -> int:
    """Children per worker task: `config.fuse`, else the default of the workers' device kind."""
    if config.fuse is None and config.reward.kind != "child":
        return 1
    return resolve_fuse(config.fuse, config.backend, config.device_list, config.ray_gpus_per_trial)


def make_pool(
    fn: EvalFn,
    *,
    backend: str = "process",
    devices: Sequence[str] = ("auto",),
    workers: int = 1,
    timeout_s: float | None = None,
    ray_options: RayOptions | None = None,
) -> WorkerPool:
    """A pool evaluating `fn`: `workers` processes per device of `devices` ("auto": every GPU,
    else the CPU), one trial at a time in this process (inline), or Ray tasks."""
    if backend == "ray":
        return WorkerPool(fn, backend="ray", timeout_s=timeout_s, ray_options=ray_options or RayOptions())
    devices = list(devices)
    if devices == ["auto"]:
        devices = default_devices()
    if backend == "inline":
        devices = devices[:1]  # one trial at a time, in this process
    else:
        devices = [d for _ in range(workers) for d in devices]  # round-robin over devices
    return WorkerPool(fn, backend=backend, devices=devices, timeout_s=timeout_s)


class LazyPool:
    """The worker pool of a search or export, started by the first trial that needs it (the
    density reward's fold models are trained through it then): a finished run resumed or
    exported again starts no workers."""

    def __init__(self, config: SearchConfig, task: ChildTask, run_dir: Path) -> None:
        self.config = config
        self.fuse = fuse_of(config)
        self.fn = evaluator(config, task, run_dir)
        self._pool: WorkerPool | None = None

    def get(self) -> WorkerPool:
        if self._pool is None:
            config = self.config
            self._pool = make_pool(
                self.fn, backend=config.backend, devices=config.device_list,
                workers=resolve_workers(config.workers, config.backend, config.device_list),
                # a fused group of K children gets K times a child's time
                timeout_s=None if config.trial_timeout_s is None else config.trial_timeout_s * self.fuse,
                ray_options=RayOptions(address=config.ray_address, num_gpus=config.ray_gpus_per_trial),
            )
            if self.config.reward.kind == "density":
                ensure_fold_models(self.fn.args[0], self.config.seed, self._pool,
                                   log=lambda line: tqdm.write(line, file=sys.stderr))
        return self._pool

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


def evaluate_trials(
    store: TrialStore,
    pool: LazyPool,
    trials: Sequence[Trial],
    after: Callable[[Trial, Result], None] | None = None,
) -> None:
    """`run_trials` on the lazily started pool (started only if something is unfinished), with
    `after(trial, result)` told which trial each result belongs to."""
    by_id = {t.id: t for t in trials}
    if any(t.status in UNFINISHED for t in trials):
        run_trials(store, pool.get(), trials,
                   None if after is None else lambda result: after(by_id[result.task_id], result), fuse=pool.fuse,
                   recipe=recipe_of)
