"""`autoaug compare` (issue #20): every policy on the same seeds through the trial store, a real
CLI run killed with SIGKILL that resumes without retraining, the results files, and bad input
as one line with exit code 2.

Real children are the smallest there are (16x16 crops of 36 CIFAR images, a few epochs); the
protocol tests use a stub evaluation that records what it was asked to train.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from autoaug import cli
from autoaug.errors import AutoaugError, ConfigError, PolicyError
from autoaug.search.compare import FREE_ALTERNATIVES, CompareSpec, candidate, run_compare
from autoaug.space.policy import published_policy
from autoaug.training.config import TrainConfig

ROOT = Path(__file__).resolve().parents[2]
TINY = TrainConfig(epochs=1, batch_size=12)


class _Stub:
    """A compare evaluation without training: a known accuracy per row and seed; records calls."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[tuple[object, int]] = []
        self.stop_at = stop_at

    def __call__(self, payload, seed, device) -> float:
        self.calls.append((payload["policy"] is None and (payload["standard"], payload["cutout"]), seed))
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        base = 0.5 if payload["policy"] is None else 0.6
        return base + 0.01 * (payload["cutout"] > 0) + 0.001 * seed


def _policy_file(tmp_path: Path) -> Path:
    path = tmp_path / "mine.json"
    published_policy("autoaugment-svhn").save(path)
    return path


def _rows(out: Path) -> list[tuple]:
    conn = sqlite3.connect(f"file:{out / 'trials.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT id, key, seed, status, reward, finished FROM trials ORDER BY id").fetchall()
    finally:
        conn.close()


def test_every_row_trains_on_the_same_seeds_seed_by_seed_and_resumes(tmp_path, tiny_npz) -> None:
    mine = _policy_file(tmp_path)
    spec = CompareSpec(dataset=f"npz:{tiny_npz}", policies=("none", "cutout", str(mine)), free=False,
                       seeds=3, first_seed=5, train=TINY)
    out = tmp_path / "cmp"
    first = _Stub(stop_at=5)
    with pytest.raises(KeyboardInterrupt):
        run_compare(spec, out, backend="inline", fn=first, progress=False)
    # Seed by seed: a stopped compare leaves every row on the same seeds.
    assert [seed for _, seed in first.calls] == [5, 5, 5, 6, 6]
    second = _Stub()
    result = run_compare(spec, out, backend="inline", fn=second, progress=False)
    assert result.trained == 5 and len(second.calls) == 5  # 9 - the 4 finished
    assert [r.name for r in result.rows] == ["none", "cutout", str(mine)]
    for row in result.rows:
        assert sorted(row.values) == [5, 6, 7]  # paired: the same seeds in every row
    assert result.verdict.reference.name == "cutout" and result.verdict.best.name == str(mine)
    assert result.verdict.differences[str(mine)].judgement == "better"
    # Growing: one more policy trains only its own seeds; nothing else is retrained.
    third = _Stub()
    grown = run_compare(CompareSpec(**{**spec.__dict__, "policies": (*spec.policies, "standard")}), out,
                        backend="inline", fn=third, progress=False)
    assert third.calls == [((True, 0), 5), ((True, 0), 6), ((True, 0), 7)] and grown.trained == 3
    doc = json.loads((out / "compare.json").read_text())
    assert doc["best_free"] == "cutout" and doc["verdict"] == grown.verdict.line()
    assert [r["name"] for r in doc["rows"]] == ["none", "cutout", str(mine), "standard"]
    assert doc["rows"][2]["test_acc"] == pytest.approx({"5": 0.615, "6": 0.616, "7": 0.617})
    assert grown.verdict.line() in (out / "compare.md").read_text()
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_default_rows_are_the_free_alternatives_then_the_named_ones(tmp_path) -> None:
    mine = _policy_file(tmp_path)
    rows = CompareSpec(policies=(str(mine), "standard")).candidates()
    assert [r.name for r in rows] == [*FREE_ALTERNATIVES, str(mine)]  # standard only once
    assert [r.free for r in rows] == [True] * len(FREE_ALTERNATIVES) + [False]
    assert rows[1].payload((32, 32)) == {"policy": None, "standard": True, "cutout": 0}
    # a policy gets what `autoaug train` adds after it: Cutout at the image's scale
    assert rows[-1].payload((32, 32))["cutout"] == 16 and rows[-1].payload((28, 28))["cutout"] == 14
    with pytest.raises(ConfigError, match="nothing to compare"):
        CompareSpec(free=False).candidates()


def test_a_run_directory_means_its_exported_policy(tmp_path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    with pytest.raises(PolicyError, match=r"directory without an exported policy \(policy.json\)"):
        candidate(str(run))
    policy = published_policy("autoaugment-cifar10")
    policy.save(run / "policy.json")
    row = candidate(str(run))
    assert row.name == f"{run} (exported policy)" and not row.free
    assert row.key == candidate(str(run / "policy.json")).key  # the same policy, however named
    # re-exported with other provenance: still the same row (nothing is retrained)
    dataclasses.replace(policy, provenance={"source": "exported again"}).save(run / "policy.json")
    assert candidate(str(run)).key == row.key and "provenance" not in row.policy


def test_a_changed_policy_or_recipe_is_refused_and_nothing_is_lost(tmp_path, tiny_npz) -> None:
    mine = _policy_file(tmp_path)
    spec = CompareSpec(dataset=f"npz:{tiny_npz}", policies=("standard",), free=False, seeds=2, train=TINY)
    out = tmp_path / "cmp"
    run_compare(spec, out, backend="inline", fn=_Stub(), progress=False)
    before = _rows(out)
    with pytest.raises(AutoaugError, match="started with another child.epochs"):
        run_compare(CompareSpec(**{**spec.__dict__, "train": TrainConfig(epochs=2, batch_size=12)}), out,
                    backend="inline", fn=_Stub(), progress=False)
    published_policy("autoaugment-svhn").save(mine)
    run_compare(CompareSpec(**{**spec.__dict__, "policies": (str(mine),)}), out, backend="inline", fn=_Stub(),
                progress=False)
    published_policy("autoaugment-cifar10").save(mine)  # another policy in the same file: another row
    run_compare(CompareSpec(**{**spec.__dict__, "policies": (str(mine),)}), out, backend="inline", fn=_Stub(),
                progress=False)
    assert _rows(out)[: len(before)] == before and len(_rows(out)) == 6


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autoaug", *args]


@pytest.mark.usefixtures("one_thread")  # as the subprocess (OMP_NUM_THREADS=1): the same sums to the bit
def test_cli_killed_mid_run_resumes_without_retraining(tmp_path, tiny_npz, capsys, sigkill_cli) -> None:
    out = tmp_path / "cmp"
    mine = _policy_file(tmp_path)
    args = ["compare", "standard", "cutout", "trivialaugment", str(mine), "--no-free", "--dataset", f"npz:{tiny_npz}",
            "--seeds", "2", "--epochs", "3", "--set", "child.batch_size=12", "--backend", "inline",
            "--out", str(out), "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    sigkill_cli(args, out)
    finished = {r[0]: r for r in _rows(out) if r[3] == "done"}
    assert 2 <= len(finished) < 8

    run = subprocess.run(_cli(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"trained {8 - len(finished)} of 8 children now" in run.stdout
    rows = _rows(out)
    assert len(rows) == 8 and all(r[3] == "done" for r in rows)
    assert all(rows_by == finished[rows_by[0]] for rows_by in rows if rows_by[0] in finished)
    assert sorted((r[1], r[2]) for r in rows) == sorted((k, s) for k in {r[1] for r in rows} for s in (0, 1))
    verdict = next(line for line in run.stdout.splitlines() if line.startswith("Verdict: "))
    assert verdict in (out / "compare.md").read_text()
    assert json.loads((out / "compare.json").read_text())["verdict"] == verdict

    # A rerun trains nothing; the real test accuracies are those `autoaug train` reports for the
    # same policy, recipe and seeds.
    assert cli.main(args) == 0
    assert "trained 0 of 8 children now" in capsys.readouterr().out
    assert cli.main(["train", "--policy", "standard", "--dataset", f"npz:{tiny_npz}", "--seeds", "2", "--epochs", "3",
                     "--set", "child.batch_size=12", "--device", "cpu", "--out", str(tmp_path / "train")]) == 0
    trained = json.loads((tmp_path / "train" / "results.json").read_text())["seeds"]
    compared = json.loads((out / "compare.json").read_text())["rows"][0]["test_acc"]
    assert [compared[str(r["seed"])] for r in trained] == pytest.approx([r["test_acc"] for r in trained])


@pytest.mark.parametrize("args, message", [
    (["--seeds", "1"], "--seeds must be at least 2, got 1: one seed gives no standard error"),
    (["no-such-policy.json"], "no-such-policy.json"),
    (["--dataset", "bogus"], "unknown dataset spec 'bogus'"),
    (["{run}"], "is a directory without an exported policy (policy.json)"),
])
def test_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message) -> None:
    (tmp_path / "run").mkdir()
    argv = ["compare", *[a.format(run=tmp_path / "run") for a in args], "--out", str(tmp_path / "out")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "out").exists()  # refused before anything was written
