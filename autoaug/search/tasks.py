"""A task, its result, and one evaluation of it: what every backend of `autoaug.search.workers`
(local processes, inline, Ray in `autoaug.search.ray_pool`) shares.

Faults are results, not exceptions: an exception in `fn` or a non-finite reward gives a `Result`
with status "failed" and a one-line error.
"""

from __future__ import annotations

import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

EvalFn = Callable[[dict[str, Any], int, str], float]
"""`fn(payload, seed, device) -> reward`; a top-level function for the process backend. A
fused group's fn returns a list of rewards, one per trial of the group."""

# Error lines stay short enough for a progress bar and a store column; the traceback has the rest.
_MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Task:
    """One evaluation: `fn(payload, seed, device)`. `id` is the caller's (a trial row id)."""

    id: int
    payload: dict[str, Any]
    seed: int


@dataclass(frozen=True)
class Result:
    """The outcome of one task."""

    task_id: int
    status: str
    """"done" (reward is a finite float) or "failed" (error says why)."""
    reward: float | None
    error: str | None
    """One line: exception type and message, "timed out after 30s", "worker ... died (...)"."""
    traceback: str | None
    """The full traceback text when fn raised, else None."""
    worker: str
    """Which worker ran it, e.g. "worker1@cuda:0 pid 4242"."""
    duration: float
    """Seconds from the start of the evaluation to its result (or to the failure)."""

    @property
    def ok(self) -> bool:
        return self.status == "done"


OnTask = Callable[[Task, str], None]
"""`on_start(task, worker)` / `on_retry(task, error)`: told about a task with a line of text."""
OnResult = Callable[[Result], None]

Outcome = tuple[str, float | None, str | None, str | None, float]
"""(status, reward, error, traceback, duration): a `Result` without its task and worker."""


def evaluate(fn: EvalFn, payload: dict[str, Any], seed: int, device: str) -> tuple[Outcome, bool]:
    """Run fn once: (its outcome, whether the process is spoilt)."""
    start = time.perf_counter()
    try:
        value = fn(payload, seed, device)
        if isinstance(value, (list, tuple)):
            # A fused group of trials (autoaug.search.trials.run_trials with fuse > 1): one
            # reward per trial, each checked when the group is split into its trials.
            reward = [float(v) for v in value]
        else:
            reward = float(value)
            if not math.isfinite(reward):
                # A NaN reward would poison the baseline and every later PPO update.
                raise ValueError(f"fn returned {reward}, expected a finite number")
    except Exception as err:
        outcome = ("failed", None, one_line(err), traceback.format_exc(), time.perf_counter() - start)
        return outcome, _spoils_process(err)
    return ("done", reward, None, None, time.perf_counter() - start), False


def _spoils_process(err: BaseException) -> bool:
    """A CUDA error (device-side assert, illegal address) is sticky: every later CUDA call in
    the process fails too, so the worker must not take another task. Out-of-memory is not
    sticky (the caching allocator recovers) and keeps the worker."""
    if isinstance(err, torch.OutOfMemoryError):
        return False
    accelerator_error = getattr(torch, "AcceleratorError", None)  # torch >= 2.8
    if accelerator_error is not None and isinstance(err, accelerator_error):
        return True
    return isinstance(err, RuntimeError) and "CUDA error" in str(err)


def one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
    return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 3] + "..."
