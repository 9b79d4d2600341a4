"""The Ray backend for real (issue #11): a local Ray instance with 2 CPUs started by the test,
a small search through it, a Ray worker killed in the middle of a trial, and a resumed run.

CI installs the `ray` extra, so these run there; without Ray installed they are skipped.
Children are the smallest real ones (1 epoch on 160 images), nothing is stubbed.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import sys
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")

from autoaug.search.config import load_config  # noqa: E402
from autoaug.search.search import run_search  # noqa: E402
from autoaug.search.store import STORE_FILENAME, TrialSpec, TrialStore  # noqa: E402
from autoaug.search.trials import run_trials  # noqa: E402
from autoaug.search.ray_pool import RayOptions  # noqa: E402
from autoaug.search.workers import WorkerPool  # noqa: E402

# The paper's per-trial seeds and no re-evaluation before export: every row a search policy.
# One rung (fidelity lists emptied): these tests count a one-rung search's trials; the default's
# halving has its own tests in test_fidelity.py.
TINY = ["fidelity.train_subset=", "fidelity.image_size=", "child.epochs=1", "child.batch_size=32", "train_subset=160", "val_subset=200", "batch_size=2",
        "reward.paired=false", "export.reevaluate_top=0"]


@pytest.fixture(scope="module")
def local_ray():
    """A private one-machine Ray instance with 2 CPUs, as `ray start --head --num-cpus 2` gives."""
    # Ray workers inherit this process's environment: one torch thread each, this checkout first.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    # The test's own evaluation functions travel by value: Ray workers cannot import this file.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    yield
    ray.shutdown()


def _rows(run: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{run / STORE_FILENAME}?mode=ro", uri=True)
    try:
        return conn.execute(
            "SELECT round, slot, key, seed, status, reward FROM trials ORDER BY round, slot"
        ).fetchall()
    finally:
        conn.close()


def _search(run: Path, backend: str, budget: int) -> None:
    config = load_config(None, [f"out={run}", f"backend={backend}", f"budget={budget}", *TINY])
    run_search(config, progress=False)


def test_ray_search_stores_the_same_trials_as_local_processes(local_ray, tmp_path: Path) -> None:
    _search(tmp_path / "process", "process", budget=4)
    _search(tmp_path / "ray", "ray", budget=4)
    process, on_ray = _rows(tmp_path / "process"), _rows(tmp_path / "ray")
    assert len(on_ray) >= 4 and all(row[4] == "done" for row in on_ray)
    # Same policies, same seeds, and (one thread each, on the CPU) the same rewards to the bit.
    assert on_ray == process


def test_a_resumed_ray_search_continues(local_ray, tmp_path: Path) -> None:
    run = tmp_path / "run"
    _search(run, "ray", budget=2)
    first = _rows(run)
    _search(run, "ray", budget=4)
    both = _rows(run)
    assert both[: len(first)] == first  # nothing re-evaluated or replaced
    assert {row[0] for row in both} > {row[0] for row in first}  # a later round ran
    assert all(row[4] == "done" for row in both)


def _die_once(payload: dict, seed: int, device: str) -> float:
    """The first attempt announces its pid and waits to be killed; a retry returns at once."""
    marker = Path(payload["marker"])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        time.sleep(120)
    return 0.25


def _kill_when_announced(marker: Path) -> threading.Thread:
    def kill() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if marker.exists() and marker.read_text():
                os.kill(int(marker.read_text()), signal.SIGKILL)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=kill, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("retries", [1, 0])
def test_a_killed_ray_worker_is_recorded_and_retried(local_ray, tmp_path: Path, retries: int) -> None:
    marker = tmp_path / "pid"
    with TrialStore(tmp_path / STORE_FILENAME) as store:
        trials = store.add_pending(0, [TrialSpec("victim", {"marker": str(marker)}, seed=7)])
        pool = WorkerPool(_die_once, backend="ray",
                          ray_options=RayOptions(address=None, retries=retries))
        killer = _kill_when_announced(marker)
        try:
            [trial] = run_trials(store, pool, trials)
        finally:
            pool.close()
        killer.join(timeout=5)
    assert "died" in trial.error  # the killed attempt is on record either way
    if retries:
        assert (trial.status, trial.reward) == ("done", 0.25)
        assert "retried" in trial.error
    else:
        assert (trial.status, trial.reward) == ("failed", None)


def test_compare_on_ray_trains_the_same_children_as_local_processes(local_ray, tmp_path: Path, tiny_npz) -> None:
    """`autoaug compare --backend ray` (issue #20): the same rows, seeds and test accuracies."""
    from autoaug.search.compare import CompareSpec, run_compare
    from autoaug.training.config import TrainConfig

    spec = CompareSpec(dataset=f"npz:{tiny_npz}", policies=("standard", "trivialaugment"), free=False, seeds=2,
                       train=TrainConfig(epochs=1, batch_size=12))
    local = run_compare(spec, tmp_path / "process", backend="process", devices=["cpu"], progress=False)
    on_ray = run_compare(spec, tmp_path / "ray", backend="ray", ray_options=RayOptions(address=None), progress=False)
    assert [(r.name, r.values) for r in on_ray.rows] == [(r.name, r.values) for r in local.rows]
    assert on_ray.trained == 4 and on_ray.verdict.line() == local.verdict.line()
