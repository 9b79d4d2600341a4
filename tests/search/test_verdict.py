"""The verdict's rule on synthetic results (issue #20): the best free alternative is the free row
with the highest mean; a learned row is better / worse / not resolved against it at 2 standard
errors of the paired difference; the table, the line and the picture say the same thing."""

from __future__ import annotations

import math

import pytest

from autoaug.errors import AutoaugError
from autoaug.search.alternatives import EXPORTED, plain
from autoaug.search.verdict import Row, decide, plot, table
from autoaug.stats import BETTER, NOT_RESOLVED, WORSE, judge, paired_difference


def _row(name: str, free: bool, *accs: float, failed: int = 0) -> Row:
    return Row(name, free, {seed: acc for seed, acc in enumerate(accs)}, failed)


def test_the_rule_at_two_standard_errors() -> None:
    assert judge(0.5, 0.2) == BETTER and judge(-0.5, 0.2) == WORSE
    assert judge(0.39, 0.2) == NOT_RESOLVED and judge(-0.39, 0.2) == NOT_RESOLVED
    assert judge(0.4, 0.2) == NOT_RESOLVED  # exactly 2 SE: not more than 2
    assert judge(5.0, math.nan) == NOT_RESOLVED  # one seed: no standard error
    d, se = paired_difference([1.0, 2.0, 3.0], [0.5, 1.0, 2.0])
    assert d == pytest.approx(5 / 6) and se == pytest.approx(math.sqrt(1 / 12) / math.sqrt(3))
    with pytest.raises(ValueError):
        paired_difference([1.0], [1.0, 2.0])


def test_best_free_is_the_free_row_with_the_highest_mean_and_each_learned_row_is_judged() -> None:
    verdict = decide([
        _row("standard", True, 0.690, 0.692, 0.688),
        _row("cutout", True, 0.700, 0.705, 0.698),      # the best free row
        _row("mine", False, 0.720, 0.721, 0.719),       # +2 points, tiny spread: better
        _row("theirs", False, 0.650, 0.655, 0.660),     # -4.6: worse
        _row("noisy", False, 0.740, 0.660, 0.700),      # +0.0 +/- 2.5: not resolved
    ])
    assert verdict.reference.name == "cutout"
    assert verdict.best.name == "mine"
    assert {r.name: verdict.differences[r.name].judgement for r in verdict.learned} == {
        "mine": BETTER, "theirs": WORSE, "noisy": NOT_RESOLVED}
    d = verdict.differences["mine"]
    assert (d.mean, d.se, d.seeds) == pytest.approx((*paired_difference([72.0, 72.1, 71.9], [70.0, 70.5, 69.8]), 3))
    line = verdict.line()
    assert line.startswith("Verdict: best row `mine` (72.00%)")
    assert "`mine` is better than `cutout`" in line and "`theirs` is worse than `cutout`" in line
    assert "`noisy` is not resolved against `cutout`" in line and line.endswith("So use `mine`: it beats the best free alternative `cutout`.")
    # The table says the same: one row per policy, the learned rows' judgements in the last column.
    rows = {cells.split("|")[1].strip(): cells for cells in table(verdict, "test accuracy")[2:]}
    assert rows["cutout"].count("best free alternative") == 1
    assert rows["mine"].rstrip(" |").endswith("better") and rows["theirs"].rstrip(" |").endswith("worse")
    assert rows["noisy"].rstrip(" |").endswith("not resolved")
    assert rows["standard"].endswith("| -1.10 +/- 0.10 |  |")  # a free row gets no judgement


def test_the_conclusion_names_the_free_row_when_no_learned_row_wins() -> None:
    worse = decide([_row("standard", True, 0.85, 0.86), _row("exported", False, 0.80, 0.81)])
    assert worse.line().endswith("So use `standard`: the best free alternative beats every learned policy.")
    unresolved = decide([_row("standard", True, 0.85, 0.86), _row("exported", False, 0.86, 0.85)])
    assert "`standard` is as good and free" in unresolved.line()
    assert decide([_row("a", True, 0.5, 0.6), _row("b", True, 0.7, 0.6)]).line() == (
        "Verdict: best row `b` (65.00%), the best free alternative.")


def test_a_row_with_one_common_seed_is_not_resolved_and_missing_rows_are_left_out() -> None:
    verdict = decide([
        Row("standard", True, {0: 0.60, 1: 0.62}),
        Row("mine", False, {1: 0.70}, failed=1),  # only seed 1 finished: one difference
        Row("broken", False, {}, failed=2),
    ])
    assert [r.name for r in verdict.rows] == ["mine", "standard"]
    d = verdict.differences["mine"]
    assert d.seeds == 1 and math.isnan(d.se) and d.judgement == NOT_RESOLVED
    assert "(1 failed)" in "\n".join(table(verdict, "acc"))
    with pytest.raises(AutoaugError, match="no row has a finished seed"):
        decide([Row("broken", False, {}, failed=2)])
    only_learned = decide([_row("mine", False, 0.5, 0.6)])
    assert only_learned.reference is None and "no free alternative finished" in only_learned.line()


def test_the_search_summary_says_plainly_what_won() -> None:
    lost = decide([_row("standard", True, 0.851, 0.852, 0.850), _row("cutout", True, 0.82, 0.81, 0.815),
                   _row(EXPORTED, False, 0.80, 0.805, 0.802)])
    text = plain(lost, 3)
    assert text.startswith("The exported policy did NOT beat the free alternatives") and "`standard` won" in text
    won = decide([_row("standard", True, 0.80, 0.81, 0.80), _row(EXPORTED, False, 0.83, 0.835, 0.832)])
    assert plain(won, 3).startswith("The exported policy beat every free alternative")
    tie = decide([_row("trivialaugment", True, 0.80, 0.81), _row(EXPORTED, False, 0.79, 0.815)])
    assert "by more than the seeds' noise" in plain(tie, 2) and "`trivialaugment` scored highest" in plain(tie, 2)


def test_the_picture_is_written(tmp_path) -> None:
    verdict = decide([_row("standard", True, 0.69, 0.70), _row("mine", False, 0.72, 0.71)])
    path = plot(verdict, tmp_path / "compare.png", "synthetic")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
