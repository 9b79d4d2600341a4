"""The RandAugment grid search (issue #5): it resumes after an interruption (stub evaluation, same
code path) and after a SIGKILL of the real CLI, records failed points, and runs on workers."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import albumentations as A
import pytest

from autoaug.errors import AutoaugError
from autoaug.search.grid import GridSpec, run_grid
from autoaug.space.randaugment import RandAugment
from autoaug.space.specs import load_policy

ROOT = Path(__file__).resolve().parents[2]


def _stub_reward(payload, seed, device) -> float:
    """A grid evaluation without training: a known reward per (N, M, seed), best at N=2, M=6."""
    return 0.5 - 0.01 * abs(payload["n"] - 2) - 0.002 * abs(payload["m"] - 6) + 0.0001 * seed


class _Interrupt:
    """Evaluates like `_stub_reward` and raises KeyboardInterrupt at call number `stop_at`."""

    def __init__(self, stop_at: int | None = None, fail_key: str | None = None):
        self.calls: list[tuple[str, int]] = []
        self.stop_at = stop_at
        self.fail_key = fail_key

    def __call__(self, payload, seed, device):
        key = f"N={payload['n']},M={payload['m']:g}"
        self.calls.append((key, seed))
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        if key == self.fail_key:
            raise ValueError("diverged")
        return _stub_reward(payload, seed, device)


def _grid(**kw) -> GridSpec:
    from autoaug.training.config import TrainConfig

    base = dict(dataset="cifar10-reduced", ns=(1, 2, 3), ms=(3, 6, 9), seeds=2, save_outputs=False,
                train=TrainConfig.for_model("tiny", epochs=1))
    return GridSpec(**{**base, **kw})


def _rows(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "trials.sqlite") as conn:
        return conn.execute("SELECT id, key, seed, status, reward, finished FROM trials ORDER BY id").fetchall()


def test_grid_resumes_without_retraining_and_grows(tmp_path):
    out = tmp_path / "grid"
    first = _Interrupt(stop_at=7)
    with pytest.raises(KeyboardInterrupt):
        run_grid(_grid(), out, backend="inline", fn=first, progress=False)
    before = {r[0]: r for r in _rows(out)}
    assert len(before) == 18 and sum(r[3] == "done" for r in before.values()) == 6
    assert sum(r[3] == "running" for r in before.values()) == 1  # the one the interrupt hit

    second = _Interrupt()
    result = run_grid(_grid(), out, backend="inline", fn=second, progress=False)
    assert len(second.calls) == 12 and result.evaluated == 12  # 18 - 6 finished
    assert not set(second.calls) & set(first.calls[:6])
    after = {r[0]: r for r in _rows(out)}
    assert len(after) == 18 and all(r[3] == "done" for r in after.values())
    for trial_id, row in before.items():
        if row[3] == "done":
            assert after[trial_id] == row  # untouched: same reward, same finish time
    assert (result.best.n, result.best.m) == (2, 6)
    assert result.best.val_accs == pytest.approx([0.5, 0.5001])

    third = _Interrupt()
    again = run_grid(_grid(), out, backend="inline", fn=third, progress=False)
    assert third.calls == [] and again.evaluated == 0

    grown = _Interrupt()
    result = run_grid(_grid(ms=(3, 6, 9, 12), seeds=3), out, backend="inline", fn=grown, progress=False)
    assert len(grown.calls) == 3 * 4 * 3 - 18 and len(_rows(out)) == 36

    with pytest.raises(AutoaugError, match="started with another dataset"):
        run_grid(_grid(dataset="cifar10:/elsewhere"), out, backend="inline", fn=_Interrupt(), progress=False)
    with pytest.raises(AutoaugError, match="started with another ops"):
        run_grid(_grid(ops=("Rotate",)), out, backend="inline", fn=_Interrupt(), progress=False)


def test_grid_started_before_a_child_setting_existed_resumes(tmp_path):
    """A grid directory whose recorded child recipe lacks a setting added to autoaug later (here
    `flip`) resumes when the setting is at its default, and names `child.flip` when it is not."""
    out = tmp_path / "grid"
    run_grid(_grid(), out, backend="inline", fn=_Interrupt(), progress=False)
    with sqlite3.connect(out / "trials.sqlite") as db:
        (text,) = db.execute("SELECT value FROM meta WHERE name = 'randaugment_setup'").fetchone()
        setup = json.loads(text)
        del setup["train"]["flip"]
        db.execute("UPDATE meta SET value = ? WHERE name = 'randaugment_setup'", (json.dumps(setup),))
    again = _Interrupt()
    assert run_grid(_grid(), out, backend="inline", fn=again, progress=False).evaluated == 0
    grid = _grid()
    no_flip = dataclasses.replace(grid, train=dataclasses.replace(grid.train, flip=False))
    with pytest.raises(AutoaugError, match="started with another child.flip"):
        run_grid(no_flip, out, backend="inline", fn=_Interrupt(), progress=False)


def test_grid_outputs_and_failed_points(tmp_path):
    out = tmp_path / "grid"
    run = _Interrupt(fail_key="N=1,M=3")
    result = run_grid(_grid(ns=(1, 2), ms=(3, 6)), out, backend="inline", fn=run, progress=False)
    table = (out / "grid.md").read_text()
    assert "| 1 | failed | " in table and "Best: N=2, M=6" in table
    doc = json.loads((out / "grid.json").read_text())
    assert doc["best"]["n"] == 2 and doc["best"]["m"] == 6
    point = next(p for p in doc["points"] if (p["n"], p["m"]) == (2, 3))
    assert point["val_acc"] == pytest.approx([_stub_reward({"n": 2, "m": 3}, s, "") for s in (0, 1)])
    best = load_policy(out / "best.json")
    assert isinstance(best, RandAugment) and (best.n, best.m) == (2, 6)
    assert best.provenance["val_acc_mean"] == pytest.approx(result.best.val_mean)
    pipeline = A.load(str(out / "best.albumentations.json"), data_format="json")
    assert len(pipeline.transforms) == 2  # N = 2 OneOfs

    again = _Interrupt(fail_key="N=1,M=3")
    run_grid(_grid(ns=(1, 2), ms=(3, 6)), out, backend="inline", fn=again, progress=False)
    assert again.calls == []  # failed stays failed
    retry = _Interrupt()
    result = run_grid(_grid(ns=(1, 2), ms=(3, 6)), out, backend="inline", fn=retry, progress=False, retry_failed=True)
    assert sorted(retry.calls) == [("N=1,M=3", 0), ("N=1,M=3", 1)]
    assert all(not p.failed for p in result.points)


def test_every_point_failing_is_a_clear_error(tmp_path):
    def broken(payload, seed, device):
        raise RuntimeError("out of memory")

    with pytest.raises(AutoaugError, match="every child of the grid failed.*out of memory"):
        run_grid(_grid(ns=(1,), ms=(3,)), tmp_path, backend="inline", fn=broken, progress=False)


def test_grid_runs_on_worker_processes(tmp_path):
    result = run_grid(_grid(ns=(1, 2), ms=(6,), seeds=1), tmp_path, backend="process",
                      devices=["cpu"], fn=_stub_reward, progress=False)
    assert [p.val_accs for p in result.points] == [(0.49,), (0.5,)]
    assert all(r[3] == "done" and r[5] is not None for r in _rows(tmp_path))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autoaug", *args]


def test_grid_cli_killed_mid_run_resumes_then_ensembles(tmp_path, tiny_npz, capsys, sigkill_cli):
    out = tmp_path / "grid"
    args = ["randaugment", "--dataset", f"npz:{tiny_npz}", "--n", "1,2", "--m", "3,9,15", "--epochs", "2",
            "--set", "child.batch_size=12", "--backend", "inline", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    sigkill_cli(args, out)
    killed = _rows(out)
    finished = {r[0]: r for r in killed if r[3] == "done"}
    assert 2 <= len(finished) < 6

    run = subprocess.run(_cli(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"trained {6 - len(finished)} of 6 children now" in run.stdout
    rows = _rows(out)
    assert len(rows) == 6 and all(r[3] == "done" for r in rows)
    for row in rows:
        if row[0] in finished:
            assert row == finished[row[0]]
    assert len(list((out / "models").glob("*/outputs.json"))) == 6

    from autoaug.cli import main

    capsys.readouterr()
    assert main(["ensemble", str(out), "--top", "3", "--out", str(tmp_path / "ens.json")]) == 0
    assert "ensemble of the top 3" in capsys.readouterr().out
    doc = json.loads((tmp_path / "ens.json").read_text())
    vals = sorted((json.loads(p.read_text())["val_acc"] for p in (out / "models").glob("*/outputs.json")), reverse=True)
    assert [m["val_acc"] for m in doc["members"]] == vals[:3]

    assert main([*args, "--ops", "Rotate"]) == 2
    err = capsys.readouterr().err
    assert "started with another ops" in err and len(err.strip().splitlines()) == 1
