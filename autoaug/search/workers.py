"""Evaluation workers: run `fn(payload, seed, device) -> reward` for a batch of tasks.

Where and how trials are evaluated, not what an evaluation is (a policy, a RandAugment grid
point). Three backends behind one `WorkerPool.run`:

- "process" (default): long-lived local worker processes started with the "spawn" context
  (CUDA cannot survive fork), one per entry of `devices`, e.g. ["cuda:0", "cuda:0", "cuda:1"]
  for two workers on GPU 0 and one on GPU 1, or ["cpu", "cpu"]. Workers outlive a batch, so
  `fn` may cache per-process state (the dataset already on the device) in a module global.
- "inline": the calling process, one task after another (tests, debugging, pdb).
- "ray": Ray tasks on an existing cluster, for more than one machine (`autoaug.search.ray_pool`).

Faults are results, not exceptions (`autoaug.search.tasks`): a worker that dies (os._exit,
SIGKILL, segfault, the OOM killer), times out or raised a CUDA error (which spoils its CUDA
context) is replaced and the pool carries on. A task whose worker died is reported failed, not
retried: a deterministic crash (a policy that makes the child diverge into a native error, an
OOM for one config) would only crash again and double the cost. Results stream to `on_result`
the moment they arrive so the caller can commit each one before the next.
"""

from __future__ import annotations

import math
import multiprocessing
import multiprocessing.util
import os
import pickle
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from typing import Any

import torch

from autoaug.errors import AutoaugError
from autoaug.search.ray_pool import RayOptions, RayPool
from autoaug.search.tasks import EvalFn, OnResult, OnTask, Result, Task, evaluate, one_line

__all__ = ["BACKENDS", "EvalFn", "RayOptions", "Result", "Task", "WorkerPool", "check_timeout", "default_devices"]

BACKENDS = ("process", "inline", "ray")

# How long close() lets idle workers exit on their own before killing them.
_CLOSE_GRACE_S = 5.0


def check_timeout(timeout_s: float | None) -> None:
    """AutoaugError unless `timeout_s` is None or a finite number of seconds > 0."""
    if timeout_s is not None and not 0 < timeout_s < math.inf:  # NaN and inf too
        raise AutoaugError(f"timeout_s must be > 0 seconds and finite, got {timeout_s}")


def default_devices() -> list[str]:
    """One worker per visible GPU, else one CPU worker."""
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]


class WorkerPool:
    """Evaluate batches of tasks with `fn`, reusing the same workers across batches.

    ```
    with WorkerPool(evaluate_policy, devices=["cuda:0", "cuda:0"], timeout_s=600) as pool:
        for round in ...:
            results = pool.run(tasks, on_start=..., on_result=...)
    ```
    Any exception that escapes `run` (KeyboardInterrupt, an error raised by a callback) kills
    every worker before it propagates and leaves the pool closed: nothing is orphaned, and
    the tasks that were in flight simply never got a result.
    """

    def __init__(
        self,
        fn: EvalFn,
        *,
        backend: str = "process",
        devices: Sequence[str] | None = None,
        timeout_s: float | None = None,
        ray_options: RayOptions | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise AutoaugError(f"unknown backend {backend!r}, expected one of {', '.join(BACKENDS)}")
        check_timeout(timeout_s)
        if ray_options is not None and backend != "ray":
            raise ValueError(f"ray_options only apply to the ray backend, not {backend!r}")
        self.fn = fn
        self.backend = backend
        self.timeout_s = timeout_s
        self._closed = False
        self._workers: list[_Worker] = []
        self._ray: RayPool | None = None
        if backend == "ray":
            if devices is not None:
                raise ValueError("the ray backend places tasks itself; set RayOptions.num_gpus, not devices")
            self.devices: list[str] = []
            self._ray = RayPool(fn, ray_options or RayOptions(), timeout_s)
            return
        if devices is None:
            devices = ["cpu"] if backend == "inline" else default_devices()
        self.devices = [_check_device(d) for d in devices]
        if not self.devices:
            raise AutoaugError("devices is empty, expected at least one device such as 'cpu'")
        if backend == "inline":
            if len(self.devices) != 1:
                raise ValueError(
                    f"the inline backend runs one task at a time on one device, got {self.devices}"
                )
            return
        try:
            self._fn_blob = pickle.dumps(fn)
        except Exception as err:
            raise TypeError(f"fn must be a top-level function that worker processes can import, got "
                            f"{fn!r} ({err})") from None
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        # Workers share the machine's cores; without this each would start a thread per core
        # and n workers would oversubscribe the CPU n times over.
        self._threads = max(1, (cores or 1) // len(self.devices))
        self._context = multiprocessing.get_context("spawn")
        # If the owner drops the pool or exits without close(), still kill the workers. Not
        # weakref.finalize: multiprocessing's exit hook joins non-daemonic children (forever,
        # they wait for work) and may run before it; its own Finalize with an exit priority
        # runs first, the way multiprocessing.Pool cleans up after itself.
        self._finalizer = multiprocessing.util.Finalize(
            self, _kill_all, args=(self._workers,), exitpriority=10
        )
        for index, device in enumerate(self.devices):
            self._workers.append(self._start_worker(index, device))

    # -- public ----------------------------------------------------------------------------

    def run(
        self,
        tasks: Sequence[Task],
        *,
        on_start: OnTask | None = None,
        on_result: OnResult | None = None,
        on_retry: OnTask | None = None,
    ) -> list[Result]:
        """Evaluate `tasks`; returns one Result per task, in the order of `tasks`.

        `on_start(task, worker)` is called when a task is handed to a worker,
        `on_result(result)` the moment its result arrives (arrival order) and, on the Ray
        backend, `on_retry(task, error)` when a task whose worker died is resubmitted (see
        `RayOptions.retries`); all in the calling thread, so they may write to a `TrialStore`
        opened in that thread.
        """
        if self._closed:
            raise RuntimeError("this WorkerPool is closed")
        ids = [task.id for task in tasks]
        if len(set(ids)) != len(ids):
            raise ValueError("task ids must be unique within one run")
        if not tasks:
            return []
        results: dict[int, Result] = {}

        def deliver(result: Result) -> None:
            results[result.task_id] = result
            if on_result is not None:
                on_result(result)

        def started(task: Task, worker: str) -> None:
            if on_start is not None:
                on_start(task, worker)

        if self.backend == "inline":
            self._run_inline(tasks, started, deliver)
        else:
            try:
                if self.backend == "process":
                    self._run_processes(tasks, started, deliver)
                else:
                    assert self._ray is not None
                    self._ray.run(tasks, started, deliver, on_retry)
            except BaseException:
                self._abort()
                raise
        return [results[task.id] for task in tasks]

    def close(self) -> None:
        """Stop the workers: idle ones exit on their own, anything left after a grace is killed."""
        if self._closed:
            return
        self._closed = True
        if self.backend == "process":
            # A worker still starting up has nothing to lose; waiting for its imports would
            # only delay the exit.
            _kill_all([w for w in self._workers if not w.ready])
            for worker in self._workers:
                if worker.ready and worker.task is None:
                    try:
                        worker.conn.send(None)
                    except OSError:
                        pass  # already gone
            deadline = time.monotonic() + _CLOSE_GRACE_S
            for worker in self._workers:
                worker.process.join(max(0.0, deadline - time.monotonic()))
            _kill_all(self._workers)
            self._finalizer.cancel()
        elif self._ray is not None:
            self._ray.close()

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._abort()

    # -- inline ----------------------------------------------------------------------------

    def _run_inline(self, tasks: Sequence[Task], started: OnTask, deliver: OnResult) -> None:
        device = self.devices[0]
        name = f"inline@{device} pid {os.getpid()}"
        for task in tasks:
            started(task, name)
            (status, reward, error, tb, duration), _ = evaluate(self.fn, task.payload, task.seed, device)
            # fn can't be interrupted in this process, so the timeout is applied after the fact:
            # the same trial is "failed" under every backend.
            if self.timeout_s is not None and duration > self.timeout_s:
                status, reward = "failed", None
                error, tb = f"timed out after {self.timeout_s:g}s (inline: fn ran {duration:.1f}s)", None
            deliver(Result(task.id, status, reward, error, tb, name, duration))

    # -- local processes -------------------------------------------------------------------

    def _start_worker(self, index: int, device: str) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main,
            args=(child_conn, self._fn_blob, device, self._threads),
            name=f"autoaug-worker{index}",
            # Not daemonic: fn may start processes of its own (DataLoader workers), which
            # daemonic processes are not allowed to do. The finalizer and the workers' parent
            # watch make sure they still end with us.
            daemon=False,
        )
        process.start()
        child_conn.close()  # the child holds its end; closing ours makes its death an EOF here
        return _Worker(index=index, device=device, process=process, conn=parent_conn)

    def _run_processes(self, tasks: Sequence[Task], started: OnTask, deliver: OnResult) -> None:
        queue = deque(tasks)
        while queue or any(w.task is not None for w in self._workers):
            for worker in self._workers:
                if queue and worker.ready and worker.task is None:
                    task = queue.popleft()
                    try:
                        worker.conn.send((task.id, task.payload, task.seed))
                    except (BrokenPipeError, ConnectionResetError, EOFError):
                        # Died while idle: the task never started, so it goes back in the
                        # queue and the death is handled by the sentinel below.
                        queue.appendleft(task)
                        continue
                    worker.task = task
                    worker.started = time.monotonic()
                    started(task, worker.name)

            timeout = None
            busy = [w for w in self._workers if w.task is not None]
            if self.timeout_s is not None and busy:
                first_deadline = min(w.started for w in busy) + self.timeout_s
                timeout = max(0.0, first_deadline - time.monotonic())
            waitables: list[Any] = []
            for worker in self._workers:
                waitables += [worker.conn, worker.process.sentinel]
            ready = set(wait(waitables, timeout))

            for i, worker in enumerate(self._workers):
                if worker.conn in ready or worker.process.sentinel in ready:
                    self._workers[i] = self._service(worker, deliver)
            if self.timeout_s is not None:
                now = time.monotonic()
                for i, worker in enumerate(self._workers):
                    if worker.task is not None and now - worker.started >= self.timeout_s:
                        self._workers[i] = self._replace(
                            worker, deliver, f"timed out after {self.timeout_s:g}s"
                        )

    def _service(self, worker: _Worker, deliver: OnResult) -> _Worker:
        """Read what `worker` sent; replace it if it died. Returns the worker now in its slot."""
        dead = False
        # Drain first: a result may sit in the pipe ahead of the worker's exit.
        while True:
            try:
                if not worker.conn.poll():
                    break
                message = worker.conn.recv()
            except (EOFError, OSError):
                dead = True
                break
            kind = message[0]
            if kind == "ready":
                worker.ready = True
            elif kind == "fatal":
                raise RuntimeError(f"{worker.name} could not start: {message[1]}\n{message[2]}")
            else:  # "result"
                _, task_id, status, reward, error, tb, duration, spoilt = message
                assert worker.task is not None and worker.task.id == task_id, (worker, task_id)
                worker.task = None
                deliver(Result(task_id, status, reward, error, tb, worker.name, duration))
                if spoilt:
                    return self._replace(worker, deliver, None)
        if dead or not worker.process.is_alive():
            worker.process.join(1.0)
            if not worker.ready:
                _kill_all([worker])
                # Dying before the handshake is not about any task (a broken environment, a
                # bad device); replacing it would only loop.
                raise RuntimeError(
                    f"{worker.name} exited ({_describe_exit(worker.process.exitcode)}) before it "
                    "was ready; its stderr above says why"
                )
            return self._replace(
                worker, deliver, f"{worker.name} died ({_describe_exit(worker.process.exitcode)})"
            )
        return worker

    def _replace(self, worker: _Worker, deliver: OnResult, error: str | None) -> _Worker:
        """Kill `worker`, fail its task (if any) with `error`, and start a fresh one in its slot."""
        _kill_all([worker])
        if worker.task is not None:
            assert error is not None, worker
            duration = time.monotonic() - worker.started
            task, worker.task = worker.task, None
            deliver(Result(task.id, "failed", None, error, None, worker.name, duration))
        return self._start_worker(worker.index, worker.device)

    def _abort(self) -> None:
        """Kill everything now (an exception is on its way out)."""
        if self._closed:
            return
        self._closed = True
        if self.backend == "process":
            _kill_all(self._workers)
            self._finalizer.cancel()
        elif self._ray is not None:
            self._ray.abort()


# -- the local worker processes ------------------------------------------------------------------


@dataclass
class _Worker:
    """The parent's handle on one local worker process."""

    index: int
    device: str
    process: BaseProcess
    conn: Connection
    ready: bool = False
    task: Task | None = None
    started: float = 0.0  # time.monotonic() when `task` was handed over

    @property
    def name(self) -> str:
        return f"worker{self.index}@{self.device} pid {self.process.pid}"


def _describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


def _check_device(device: str) -> str:
    """'cpu', 'cuda' or 'cuda:N' (N a visible GPU); returns the canonical spelling."""
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise AutoaugError(f"unknown device {device!r}, expected 'cpu' or 'cuda:N' ({err})") from None
    if parsed.type == "cuda":
        count = torch.cuda.device_count()
        index = 0 if parsed.index is None else parsed.index
        if index >= count:
            raise AutoaugError(f"device {device!r} is not available: this machine has {count} CUDA device(s)")
        return f"cuda:{index}"
    return str(parsed)


def _kill_all(workers: Sequence[_Worker]) -> None:
    for worker in workers:
        if worker.process.is_alive():
            worker.process.kill()
    for worker in workers:
        worker.process.join()
        worker.conn.close()


def _worker_main(conn: Connection, fn_blob: bytes, device: str, num_threads: int) -> None:
    """A worker process: handshake, then evaluate tasks until told to stop or orphaned."""
    # Ctrl-C reaches the whole process group; the parent decides what happens (it kills us),
    # so workers don't each print a KeyboardInterrupt traceback or die mid-result.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    try:
        torch.set_num_threads(num_threads)
        if device.startswith("cuda"):
            torch.cuda.set_device(torch.device(device))
        fn = pickle.loads(fn_blob)
    except Exception as err:
        conn.send(("fatal", one_line(err), traceback.format_exc()))
        return
    conn.send(("ready", os.getpid()))
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        task_id, payload, seed = message
        outcome, spoilt = evaluate(fn, payload, seed, device)
        conn.send(("result", task_id, *outcome, spoilt))
        if spoilt:
            return  # the parent replaces us; it was told in the message, so it sends nothing more


def _exit_with_parent() -> None:
    """End this worker as soon as its parent is gone, even mid-task.

    A search killed with SIGKILL can't stop its workers; without this they would go on
    training children (holding GPU memory) until their task ended. The parent sentinel is
    a pipe that becomes readable when the parent process exits, however it exits.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="autoaug-parent-watch", daemon=True).start()
