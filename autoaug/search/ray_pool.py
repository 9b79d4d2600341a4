"""The "ray" backend of `autoaug.search.workers.WorkerPool`: Ray tasks on an existing cluster
(`pip install autoaug[ray]`), for more than one machine; Ray is the engine, nothing here
re-implements one. Ray is imported only when this backend starts (an optional dependency).
A timeout cancels the task and fails it, like a local worker's.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from autoaug.errors import AutoaugError
from autoaug.search.tasks import EvalFn, OnResult, OnTask, Result, Task, evaluate, one_line


@dataclass(frozen=True)
class RayOptions:
    """How the "ray" backend connects and what each task asks the cluster for."""

    address: str | None = "auto"
    """Passed to `ray.init(address=...)`: "auto" joins the local node's cluster; None starts
    a private one-machine Ray (handy to try the backend)."""
    num_gpus: float = 0.0
    """GPUs per task (0.5 runs two children per GPU); Ray sets CUDA_VISIBLE_DEVICES."""
    num_cpus: float = 1.0
    """CPUs per task."""
    max_in_flight: int | None = None
    """Tasks submitted at once; None: what the cluster's CPUs/GPUs can run concurrently.
    The timeout counts from submission, so keep this <= what can really run at once."""
    retries: int = 1
    """Resubmissions of a task whose Ray worker or node died under it (a preempted node, a
    killed process). Unlike a local worker's death, on a cluster that is usually the machine's
    fault, not the trial's. An exception raised by the trial itself is never retried."""

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int) or self.retries < 0:
            raise AutoaugError(f"RayOptions.retries must be an integer >= 0, got {self.retries!r}")
        for name, low in (("num_gpus", 0.0), ("num_cpus", 0.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < math.inf:
                raise AutoaugError(f"RayOptions.{name} must be a finite number >= {low:g}, got {value!r}")


class RayPool:
    """Connects to the cluster (or starts a private Ray) and runs batches of tasks on it."""

    def __init__(self, fn: EvalFn, options: RayOptions, timeout_s: float | None) -> None:
        try:
            import ray  # optional dependency: autoaug[ray]
        except ImportError:
            raise AutoaugError(
                "the ray backend needs `pip install autoaug[ray]` (ray is not installed)"
            ) from None
        self.ray = ray
        self.timeout_s = timeout_s
        self.owned = not ray.is_initialized()
        if self.owned:
            try:
                ray.init(address=options.address)
            except Exception as err:  # ConnectionError, ValueError for a bad address, ...
                raise AutoaugError(
                    f"cannot connect to the Ray cluster at {options.address!r}: {err}"
                ) from None
        # max_retries=0: Ray retries tasks whose worker died 3 times by default; retries are
        # counted here instead (RayOptions.retries), and only for a lost worker.
        self.remote = ray.remote(
            num_gpus=options.num_gpus, num_cpus=options.num_cpus, max_retries=0
        )(_ray_evaluate)
        self.retries = options.retries
        # Threads per child: what the task asked the cluster for (several children share a
        # machine's cores; Ray itself leaves torch at one thread per core of the machine).
        self.threads = max(1, int(options.num_cpus))
        self.fn_ref = ray.put(fn)
        limit = options.max_in_flight
        resources = ray.cluster_resources()
        if options.num_gpus > 0 and not resources.get("GPU"):
            raise AutoaugError(f"RayOptions.num_gpus is {options.num_gpus} but the Ray cluster at "
                               f"{options.address!r} has no GPUs; use num_gpus=0 to run on CPUs")
        if limit is None:
            by_cpu = resources.get("CPU", 1.0) / max(options.num_cpus, 1e-9)
            by_gpu = resources.get("GPU", 0.0) / options.num_gpus if options.num_gpus else by_cpu
            limit = max(1, int(min(by_cpu, by_gpu)))
        self.limit = limit
        self.in_flight: dict[Any, tuple[Task, float]] = {}

    def run(
        self,
        tasks: Sequence[Task],
        started: OnTask,
        deliver: OnResult,
        on_retry: OnTask | None = None,
    ) -> None:
        ray = self.ray
        queue = deque(tasks)
        in_flight = self.in_flight
        attempts: dict[int, int] = {}  # task id -> submissions so far
        while queue or in_flight:
            while queue and len(in_flight) < self.limit:
                task = queue.popleft()
                ref = self.remote.remote(self.fn_ref, task.payload, task.seed, self.threads)
                in_flight[ref] = (task, time.monotonic())
                if attempts.get(task.id, 0) == 0:
                    started(task, "ray")
                attempts[task.id] = attempts.get(task.id, 0) + 1
            timeout = None
            if self.timeout_s is not None:
                first_deadline = min(t0 for _, t0 in in_flight.values()) + self.timeout_s
                timeout = max(0.0, first_deadline - time.monotonic())
            done, _ = ray.wait(list(in_flight), num_returns=1, timeout=timeout)
            for ref in done:
                task, t0 = in_flight.pop(ref)
                try:
                    status, reward, error, tb, duration, worker = ray.get(ref)
                except ray.exceptions.RayError as err:
                    # The task never returned: its worker or node died, or Ray failed it.
                    status, reward, tb, worker = "failed", None, None, "ray"
                    error, duration = one_line(err), time.monotonic() - t0
                    if _lost_worker(ray, err) and attempts[task.id] <= self.retries:
                        if on_retry is not None:
                            on_retry(task, f"attempt {attempts[task.id]}: {error}")
                        queue.appendleft(task)  # the same payload and seed, so the same trial
                        continue
                deliver(Result(task.id, status, reward, error, tb, worker, duration))
            if self.timeout_s is not None:
                now = time.monotonic()
                for ref, (task, t0) in list(in_flight.items()):
                    if now - t0 >= self.timeout_s:
                        ray.cancel(ref, force=True)  # force: kill the worker process running it
                        del in_flight[ref]
                        deliver(Result(task.id, "failed", None,
                                       f"timed out after {self.timeout_s:g}s", None, "ray",
                                       now - t0))

    def close(self) -> None:
        if self.owned:
            self.ray.shutdown()

    def abort(self) -> None:
        """Cancel what is in flight and close (an exception is on its way out)."""
        for ref in list(self.in_flight):
            try:
                self.ray.cancel(ref, force=True)
            except Exception:
                pass  # best effort on the way out; the cluster outlives us anyway
        self.close()


def _lost_worker(ray: Any, err: BaseException) -> bool:
    """Whether a Ray error means the process or machine under the task went away (worth a
    retry), as opposed to the task failing by itself or being cancelled."""
    lost = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
            ray.exceptions.LocalRayletDiedError)
    return isinstance(err, lost)


def _ray_evaluate(
    fn: EvalFn, payload: dict[str, Any], seed: int, num_threads: int = 1
) -> tuple[str, float | None, str | None, str | None, float, str]:
    """The Ray task: evaluate on the GPU Ray assigned (it sets CUDA_VISIBLE_DEVICES) or CPU,
    with as many torch threads as CPUs the task asked for."""
    import ray  # optional dependency: runs only inside a Ray worker

    torch.set_num_threads(num_threads)
    device = "cuda:0" if ray.get_gpu_ids() else "cpu"
    worker = f"ray {socket.gethostname()} pid {os.getpid()} {device}"
    outcome, _ = evaluate(fn, payload, seed, device)
    return (*outcome, worker)
