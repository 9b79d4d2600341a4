"""Evaluation workers: local process results match inline ones, and every fault (exception, NaN,
os._exit, segfault, timeout, unimportable fn, interrupted or killed parent) ends as a failed
result or a clear error, never a hang or an orphan process.

Spawned workers import torch and the package (seconds each), so the fault tests share one pool
and one batch."""

from __future__ import annotations

import importlib.util
import multiprocessing
import os
import signal
import sys
import time
import types
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
import torch

from autoaug.errors import AutoaugError
from autoaug.search.ray_pool import RayOptions
from autoaug.search.tasks import Result, Task
from autoaug.search.workers import WorkerPool, default_devices

TIMEOUT_S = 4.0  # the shared pool's limit; its ordinary tasks take microseconds


def probe(payload: dict, seed: int, device: str) -> float:
    """The evaluation function of these tests; `payload["op"]` picks a behaviour."""
    op = payload.get("op", "square")
    if op == "raise":
        raise ValueError(f"bad payload {payload['x']}\nsecond line")
    if op == "exit":
        os._exit(3)
    if op == "segv":
        os.kill(os.getpid(), signal.SIGSEGV)
    if op == "sleep":
        time.sleep(payload["s"])
        return 0.0
    if op == "nan":
        return float("nan")
    if op == "cuda-error":  # what torch raises after a device-side assert, minus the GPU
        raise RuntimeError("CUDA error: device-side assert triggered")
    if op == "threads":
        return float(torch.get_num_threads())
    if op == "pid":
        return float(os.getpid())
    assert device == "cpu", device
    return payload["x"] ** 2 + seed / 1000


@pytest.fixture(scope="module")
def pool() -> WorkerPool:
    with WorkerPool(probe, devices=["cpu", "cpu"], timeout_s=TIMEOUT_S) as shared:
        yield shared


def _square_tasks(n: int) -> list[Task]:
    return [Task(id=100 + i, payload={"x": i}, seed=7 * i) for i in range(n)]


def test_process_results_match_inline(pool: WorkerPool) -> None:
    tasks = _square_tasks(8)
    starts: list[tuple[int, str]] = []
    arrivals: list[int] = []
    results = pool.run(tasks, on_start=lambda task, worker: starts.append((task.id, worker)),
                       on_result=lambda result: arrivals.append(result.task_id))
    with WorkerPool(probe, backend="inline") as inline_pool:
        inline = inline_pool.run(tasks)
    assert [r.task_id for r in results] == [t.id for t in tasks]  # task order, not arrival order
    assert [r.reward for r in results] == [r.reward for r in inline]
    assert [r.reward for r in results] == [i**2 + 7 * i / 1000 for i in range(8)]
    assert all(r.ok and r.error is None and r.duration >= 0 for r in results)
    assert sorted(arrivals) == sorted(t.id for t in tasks)
    assert sorted(task_id for task_id, _ in starts) == sorted(t.id for t in tasks)
    assert all("@cpu pid" in worker for _, worker in starts)
    assert all(r.worker.startswith("inline@cpu") for r in inline)


def test_workers_are_separate_processes_sharing_the_cores(pool: WorkerPool) -> None:
    pid, threads = pool.run([Task(0, {"op": "pid"}, 0), Task(1, {"op": "threads"}, 0)])
    assert pid.reward != os.getpid()
    cores = len(os.sched_getaffinity(0))
    assert threads.reward == max(1, cores // 2)


@pytest.fixture(scope="module")
def faults(pool: WorkerPool) -> dict[str, Result]:
    """One batch with every kind of fault among ordinary tasks (spawning is the slow part)."""
    tasks = [
        Task(1, {"op": "exit"}, 0),
        Task(2, {"op": "segv"}, 0),
        Task(3, {"op": "raise", "x": 3}, 0),
        Task(4, {"op": "nan"}, 0),
        Task(5, {"op": "sleep", "s": 600}, 0),
        Task(6, {"op": "cuda-error"}, 0),
        *_square_tasks(6),
    ]
    results = pool.run(tasks)
    names = ["exit", "segv", "raise", "nan", "sleep", "cuda-error"] + [f"square{i}" for i in range(6)]
    return dict(zip(names, results))


def test_exception_in_fn_is_a_failed_result(faults: dict[str, Result]) -> None:
    raised = faults["raise"]
    assert (raised.status, raised.reward) == ("failed", None)
    assert raised.error == "ValueError: bad payload 3"  # one line
    assert "Traceback" in raised.traceback and "in probe" in raised.traceback
    assert "second line" in raised.traceback
    cuda = faults["cuda-error"]
    assert cuda.status == "failed" and cuda.error == "RuntimeError: CUDA error: device-side assert triggered"
    nan = faults["nan"]
    assert nan.status == "failed" and nan.error == "ValueError: fn returned nan, expected a finite number"


def test_dead_worker_fails_its_task_only(faults: dict[str, Result]) -> None:
    exited, crashed = faults["exit"], faults["segv"]
    assert exited.status == "failed" and exited.error.endswith("died (exit code 3)")
    assert crashed.status == "failed" and crashed.error.endswith("died (killed by SIGSEGV)")
    assert exited.traceback is None
    assert [faults[f"square{i}"].reward for i in range(6)] == [i**2 + 7 * i / 1000 for i in range(6)]


def test_timeout_kills_the_task(faults: dict[str, Result]) -> None:
    slow = faults["sleep"]
    assert slow.status == "failed" and slow.error == f"timed out after {TIMEOUT_S:g}s"
    assert slow.duration >= TIMEOUT_S


def test_pool_works_after_faults(pool: WorkerPool, faults: dict[str, Result]) -> None:
    results = pool.run(_square_tasks(4))
    assert [r.reward for r in results] == [i**2 + 7 * i / 1000 for i in range(4)]
    # Workers that died, timed out or hit a (sticky) CUDA error were replaced.
    retired = {faults[name].worker.rsplit("pid ", 1)[1]
               for name in ("exit", "segv", "sleep", "cuda-error")}
    assert not retired & {r.worker.rsplit("pid ", 1)[1] for r in results}
    # An ordinary exception does not cost the worker: the pool still has exactly two.
    assert len(pool._workers) == 2 and all(w.process.is_alive() for w in pool._workers)


def test_fn_workers_cannot_import_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    # Importable here (sys.modules), not in a fresh worker process.
    ghost = types.ModuleType("autoaug_test_ghost_module")

    def fn(payload: dict, seed: int, device: str) -> float:
        return 0.0

    fn.__module__, fn.__qualname__ = ghost.__name__, "fn"
    ghost.fn = fn  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, ghost.__name__, ghost)
    broken = WorkerPool(fn, devices=["cpu"])
    with pytest.raises(RuntimeError, match="could not start: ModuleNotFoundError"):
        broken.run([Task(0, {}, 0)])
    assert not any(w.process.is_alive() for w in broken._workers)
    with pytest.raises(RuntimeError, match="closed"):
        broken.run([Task(0, {}, 0)])


# -- the parent going away ---------------------------------------------------------------------

# The pool's owner is a forked copy of this process (no second interpreter start-up); its
# worker is spawned as usual.
_FORK = multiprocessing.get_context("fork")


_FORGOTTEN: list[WorkerPool] = []


def _own_a_pool(conn: Connection, how: str) -> None:
    # Ctrl-C as at a terminal: a suite started as a background job of a non-interactive shell
    # inherits SIGINT ignored (POSIX), and the owner would then never see the signal.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if how == "forgets close":
        forgotten = WorkerPool(probe, devices=["cpu"])
        _FORGOTTEN.append(forgotten)  # still referenced when the interpreter exits
        forgotten.run([Task(0, {"x": 1}, 0)], on_start=lambda task, worker: conn.send(worker))
        return
    with WorkerPool(probe, devices=["cpu"]) as owned:
        owned.run([Task(0, {"op": "sleep", "s": 600}, 0)],
                  on_start=lambda task, worker: conn.send(worker))


def _alive(pid: int) -> bool:
    """Running, as opposed to gone or a zombie waiting for a reaper that may never come."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("how", ["ctrl-c", "sigkill", "forgets close"])
def test_no_orphans_when_the_parent_goes_away(how: str) -> None:
    receiver, sender = _FORK.Pipe(duplex=False)
    owner = _FORK.Process(target=_own_a_pool, args=(sender, how))
    owner.start()
    sender.close()
    assert receiver.poll(120), "the worker never started its task"
    worker_pid = int(receiver.recv().rsplit("pid ", 1)[1])
    if how == "ctrl-c":
        os.kill(owner.pid, signal.SIGINT)
    elif how == "sigkill":
        os.kill(owner.pid, signal.SIGKILL)
    owner.join(60)
    # ctrl-c: the pool kills its worker on the way out. sigkill: the worker sees its parent
    # is gone and exits. forgets close: the pool's finalizer runs before multiprocessing's
    # exit hook would join the idle worker forever. All well before the 600 s task ends.
    assert owner.exitcode == {"ctrl-c": 1, "sigkill": -signal.SIGKILL, "forgets close": 0}[how]
    deadline = time.monotonic() + 60
    while _alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(worker_pid)


# -- inline backend and bad arguments -----------------------------------------------------------


def test_inline_faults_and_timeout() -> None:
    with WorkerPool(probe, backend="inline", timeout_s=0.05) as inline:
        results = inline.run(
            [Task(0, {"x": 2}, 0), Task(1, {"op": "raise", "x": 1}, 0), Task(2, {"op": "sleep", "s": 0.2}, 0)]
        )
    assert [r.status for r in results] == ["done", "failed", "failed"]
    assert results[0].reward == 4.0
    assert results[1].error == "ValueError: bad payload 1"
    assert results[2].error.startswith("timed out after 0.05s")


def test_bad_arguments_are_clear_errors() -> None:
    with pytest.raises(TypeError, match="top-level function"):
        WorkerPool(lambda payload, seed, device: 0.0, devices=["cpu"])
    with pytest.raises(AutoaugError, match="unknown backend 'threads', expected one of process, inline, ray"):
        WorkerPool(probe, backend="threads")
    with pytest.raises(AutoaugError, match="unknown device 'gpu0'"):
        WorkerPool(probe, backend="inline", devices=["gpu0"])
    with pytest.raises(AutoaugError, match="'cuda:99' is not available"):
        WorkerPool(probe, backend="inline", devices=["cuda:99"])
    with pytest.raises(AutoaugError, match="timeout_s must be > 0"):
        WorkerPool(probe, backend="inline", timeout_s=0)
    with pytest.raises(ValueError, match="unique"):
        WorkerPool(probe, backend="inline").run([Task(0, {"x": 1}, 0), Task(0, {"x": 2}, 0)])


def test_default_devices() -> None:
    gpus = torch.cuda.device_count()
    assert default_devices() == ([f"cuda:{i}" for i in range(gpus)] if gpus else ["cpu"])


@pytest.mark.skipif(importlib.util.find_spec("ray") is not None, reason="ray is installed")
def test_missing_ray_is_a_clear_error() -> None:
    with pytest.raises(AutoaugError, match=r"the ray backend needs `pip install autoaug\[ray\]`"):
        WorkerPool(probe, backend="ray")


@pytest.mark.parametrize("retries", [-1, 1.5, True])
def test_ray_retries_must_be_a_count(retries) -> None:
    with pytest.raises(AutoaugError, match="RayOptions.retries must be an integer >= 0"):
        RayOptions(retries=retries)
