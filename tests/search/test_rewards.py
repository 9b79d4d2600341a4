"""Rewards with less noise and the re-evaluation before export (issue #10, items 1 and 2):
every policy of a controller batch trains on the batch's seed next to a reference child, the
store keeps raw and paired rewards, advantages are centred within the batch, a search killed
mid-round resumes to the same store, and the export re-trains the best candidates on fresh
seeds (resumably) and picks the final K by their mean.

Children are real and tiny (1 epoch on 160 images, scored on 200), as in test_search.py.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import torch

from autoaug import cli
from autoaug.errors import ConfigError
from autoaug.search.config import load_config
from autoaug.search.export import ExportOptions, export_policy, reevaluation_seed
from autoaug.search.rewards import REFERENCE_KEY
from autoaug.search.search import Sampler, batch_seed, run_search
from autoaug.search.rundir import CHECKPOINT_FILENAME
from autoaug.search.store import STORE_FILENAME, TrialStore
from tests.conftest import torch_threads

pytestmark = pytest.mark.usefixtures("one_thread")

# One rung (fidelity lists emptied): these tests count a one-rung search's trials; the default's
# halving has its own tests in test_fidelity.py.
TINY = ["fidelity.train_subset=", "fidelity.image_size=", "child.epochs=1", "child.batch_size=32", "train_subset=160", "val_subset=200",
        "backend=inline", "batch_size=3"]


def _config(run: Path, *overrides: str):
    return load_config(None, [f"out={run}", *TINY, *overrides])


def _search_rows(run: Path) -> list[tuple]:
    with TrialStore(run / STORE_FILENAME) as store:
        return [(t.round, t.slot, t.key, t.seed, t.role, t.status, t.reward, t.paired)
                for t in store.rows(phase="search")]


@pytest.fixture(scope="module")
def paired_run(tmp_path_factory) -> Path:
    """A finished paired search: 2 rounds of 3 policies + a reference each, no re-evaluation."""
    run = tmp_path_factory.mktemp("paired") / "run"
    with torch_threads(1):  # as the tests that compare against it (tests/conftest.py)
        run_search(_config(run, "budget=6", "export.reevaluate_top=0"), progress=False)
    return run


def test_the_run_records_the_childs_cutout_in_pixels(paired_run: Path) -> None:
    # The default child's Cutout 'auto' is 16 px on CIFAR's 32x32 images, as before issue #20, and
    # a resume that asks for 'auto' again (or for 16) is the same search.
    assert load_config(None, []).child.cutout == "auto"
    assert load_config(paired_run / "config.toml", complete=True).child.cutout == 16
    run_search(_config(paired_run, "budget=6", "export.reevaluate_top=0"), progress=False)
    run_search(_config(paired_run, "budget=6", "export.reevaluate_top=0", "child.cutout=16"), progress=False)
    with pytest.raises(ConfigError, match="child.cutout"):
        run_search(_config(paired_run, "budget=6", "export.reevaluate_top=0", "child.cutout=14"), progress=False)


def test_a_batch_shares_one_seed_and_a_reference_child(paired_run: Path) -> None:
    rows = _search_rows(paired_run)
    assert [(r[0], r[1], r[4]) for r in rows] == [
        (0, 0, "policy"), (0, 1, "policy"), (0, 2, "policy"), (0, 3, "reference"),
        (1, 0, "policy"), (1, 1, "policy"), (1, 2, "policy"), (1, 3, "reference")]
    for round_ in (0, 1):
        batch = [r for r in rows if r[0] == round_]
        assert {r[3] for r in batch} == {batch_seed(0, round_)}  # one seed for the whole batch
        reference = batch[-1]
        assert reference[2] == REFERENCE_KEY and reference[5] == "done" and reference[7] is None
        for r in batch[:-1]:  # paired = raw - the reference's raw, both kept
            assert r[5] == "done" and r[7] == pytest.approx(r[6] - reference[6])
    assert batch_seed(0, 0) != batch_seed(0, 1)


def test_advantages_are_centred_within_the_batch() -> None:
    """Paired: adding a constant to a batch's rewards (a luckier seed) changes nothing; with
    the paper's EMA baseline it changes the update."""
    for paired, same in ((True, True), (False, False)):
        # norm_adv off: standardising the advantages would centre them on the batch by itself.
        config = load_config(None, [f"reward.paired={str(paired).lower()}", "ppo.norm_adv=false"])
        a, b = Sampler(config), Sampler(config)
        tokens, logprobs = a.sample(4)
        b.sample(4)
        rewards = [0.25, 0.5, 0.375, 0.625]  # exact in float32, and so are their means
        a.update(tokens, logprobs, rewards)
        b.update(tokens, logprobs, rewards)
        tokens, logprobs = a.sample(4)
        b.sample(4)
        a.update(tokens, logprobs, rewards)
        b.update(tokens, logprobs, [r + 0.25 for r in rewards])
        equal = all(torch.allclose(p, q) for p, q in
                    zip(a.controller.parameters(), b.controller.parameters()))
        assert equal is same


def test_a_search_killed_mid_round_resumes_to_the_same_store(paired_run: Path, tmp_path: Path) -> None:
    # Round 0 done, round 1 interrupted: the checkpoint is the one written after round 0, and
    # round 1 holds one finished policy, one left running, and an unfinished reference.
    run = tmp_path / "killed"
    run_search(_config(run, "budget=3", "export.reevaluate_top=0"), progress=False)
    after_round_0 = (run / CHECKPOINT_FILENAME).read_bytes()
    run_search(_config(run, "budget=6", "export.reevaluate_top=0"), progress=False)
    (run / CHECKPOINT_FILENAME).write_bytes(after_round_0)
    conn = sqlite3.connect(run / STORE_FILENAME)
    with conn:
        conn.execute("UPDATE trials SET status = 'running', reward = NULL, paired = NULL "
                     "WHERE round = 1 AND slot = 1")
        conn.execute("UPDATE trials SET status = 'pending', reward = NULL, paired = NULL "
                     "WHERE round = 1 AND slot = 3")
        conn.execute("UPDATE trials SET paired = NULL WHERE round = 1")
    conn.close()
    run_search(_config(run, "budget=6", "export.reevaluate_top=0"), progress=False)
    rows, clean = _search_rows(run), _search_rows(paired_run)
    assert [r[:6] for r in rows] == [r[:6] for r in clean]  # same policies, seeds, statuses
    np.testing.assert_allclose([r[6] for r in rows], [r[6] for r in clean])
    np.testing.assert_allclose([np.nan if r[7] is None else r[7] for r in rows],
                               [np.nan if r[7] is None else r[7] for r in clean])


def _reeval_rows(run: Path, verdict: bool = False) -> list[tuple]:
    """The re-evaluation's rows: the candidates' and references (`verdict`: those of the
    exported policy and the free alternatives, test_alternatives.py, instead)."""
    with TrialStore(run / STORE_FILENAME) as store:
        return [(t.id, t.key, t.seed, t.role, t.status, t.reward, t.paired, t.finished)
                for t in store.rows(phase="reeval") if t.key.startswith(("exported:", "free:")) == verdict]


def test_reevaluation_picks_by_mean_and_resumes(paired_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(paired_run, run)
    exported = export_policy(run, ExportOptions(top=2, reevaluate_top=3, reevaluate_seeds=2, progress=False))
    rows = _reeval_rows(run)
    seeds = [reevaluation_seed(0, 0), reevaluation_seed(0, 1)]
    # 3 candidates x 2 fresh seeds + a reference per seed, none of them a search seed.
    assert sorted((r[3], r[2]) for r in rows) == sorted(
        [("policy", s) for s in seeds for _ in range(3)] + [("reference", s) for s in seeds])
    assert all(r[4] == "done" for r in rows)
    assert not {r[2] for r in rows} & {r[3] for r in _search_rows(run)}
    # The candidates are the search's best 3 by paired reward; the export is the best 2 of them
    # by the mean of their paired rewards on the fresh seeds.
    search = sorted((r for r in _search_rows(run) if r[4] == "policy"), key=lambda r: -r[7])
    candidates = [r[2] for r in search[:3]]
    means = {k: np.mean([r[6] for r in rows if r[1] == k]) for k in candidates}
    expected = sorted(candidates, key=lambda k: -means[k])[:2]
    assert [t.key for t in exported.trials] == expected
    assert [r.trial.key for r in exported.reevaluation] == sorted(candidates, key=lambda k: -means[k])
    provenance = exported.policy.provenance["reevaluation"]
    assert provenance["seeds"] == 2 and provenance["values"] == "paired"
    assert [c["mean"] for c in provenance["candidates"]] == pytest.approx(sorted(means.values(), reverse=True))

    # The verdict (issue #20): the exported policy, standard and trivialaugment on the same fresh
    # seeds; cutout (no policy, pad-crop + flip + Cutout 16) is each seed's reference child.
    verdict_rows = _reeval_rows(run, verdict=True)
    assert sorted((r[1].split(":")[0], r[2]) for r in verdict_rows) == sorted(
        (kind, s) for s in seeds for kind in ("exported", "free", "free"))
    assert {r[1] for r in verdict_rows if r[1].startswith("free:")} == {"free:standard", "free:trivialaugment"}
    assert all(r[4] == "done" for r in verdict_rows)
    v = exported.verdict
    rows_by_name = {r.name: r for r in v.verdict.rows}
    assert set(rows_by_name) == {"exported policy", "standard", "cutout", "trivialaugment"}
    assert rows_by_name["cutout"].values == {r[2]: r[5] for r in rows if r[3] == "reference"}
    assert v.verdict.reference.name == max((r for r in v.verdict.rows if r.free), key=lambda r: r.mean).name
    exported_values = {r[2]: r[5] for r in verdict_rows if r[1].startswith("exported:")}
    assert rows_by_name["exported policy"].values == exported_values
    d = v.verdict.differences["exported policy"]
    ref = v.verdict.reference.values
    assert d.mean == pytest.approx(np.mean([100 * (exported_values[s] - ref[s]) for s in seeds]))
    text = (run / "verdict.md").read_text()
    assert v.path == run / "verdict.md" and v.summary in text and v.compare_command in text
    assert v.compare_command == f"autoaug compare {run} --dataset cifar10-reduced --seeds 3 --out {run / 'compare'}"

    # A killed export: one child left running, one never started. The rerun evaluates those
    # two only and reaches the same choice; the other children are not trained again.
    conn = sqlite3.connect(run / STORE_FILENAME)
    with conn:
        conn.execute("UPDATE trials SET status = 'running', reward = NULL, paired = NULL "
                     "WHERE id = ?", (rows[0][0],))
        conn.execute("UPDATE trials SET status = 'pending', reward = NULL, paired = NULL "
                     "WHERE id = ?", (rows[-1][0],))
    conn.close()
    again = export_policy(run, ExportOptions(top=2, reevaluate_top=3, reevaluate_seeds=2, progress=False))
    rerun = _reeval_rows(run)
    assert [r[:4] for r in rerun] == [r[:4] for r in rows]
    assert [r[7] for r in rerun[1:-1]] == [r[7] for r in rows[1:-1]]  # untouched
    assert [t.key for t in again.trials] == expected
    assert _reeval_rows(run, verdict=True) == verdict_rows  # the same export: its verdict is not retrained

    # More candidates: only the new (policy, seed) pairs are added.
    export_policy(run, ExportOptions(top=2, reevaluate_top=4, reevaluate_seeds=2, progress=False))
    grown = _reeval_rows(run)
    assert len(grown) == 4 * 2 + 2 and [r for r in grown if r[0] in {row[0] for row in rerun}] == rerun


def test_export_settings_are_checked(paired_run: Path, capsys) -> None:
    with pytest.raises(ConfigError, match=r"export.reevaluate_top \(3\) must be 0 or at least export.top \(5\)"):
        load_config(None, ["export.reevaluate_top=3"])
    assert cli.main(["export", str(paired_run), "--top", "3", "--reevaluate-top", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith("--reevaluate-top (2) must be 0 or at least --top (3): the exported "
                        "policies are chosen among the re-evaluated ones") and "\n" not in err


def test_search_ends_with_a_verdict_and_the_compare_command(tmp_path: Path, capsys) -> None:
    run = tmp_path / "run"
    overrides = [*TINY, "budget=3", "export.top=2", "export.reevaluate_top=2",
                               "export.reevaluate_seeds=2", "export.free=autoaugment-cifar10 standard"]
    assert cli.main(["search", "--out", str(run), "--no-progress", "--set", *overrides]) == 0
    out = capsys.readouterr().out.splitlines()
    summary = next(line for line in out if line.startswith("The exported policy "))
    assert "free alternatives in the child regime (2 fresh seeds, validation accuracy)" in summary
    assert any(line.startswith("Verdict (child regime): best row ") for line in out)
    assert f"wrote {run / 'verdict.md'}" in out
    nexts = out[out.index("next:") + 1:]
    assert nexts[0].startswith(f"  autoaug compare {run} --dataset cifar10-reduced --seeds 3 --out {run / 'compare'}")
    with TrialStore(run / STORE_FILENAME) as store:
        keys = {t.key for t in store.rows(phase="reeval") if t.key.startswith("free:")}
    assert keys == {"free:standard", "free:trivialaugment", "free:autoaugment-cifar10"}  # standard once
    text = (run / "verdict.md").read_text()
    assert summary in text and "| autoaugment-cifar10 | free |" in text
