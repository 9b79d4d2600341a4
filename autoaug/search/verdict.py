"""The verdict (issue #20): does a learned policy beat the free alternatives on the same seeds?

One reading for `autoaug compare` (the final regime, test accuracy) and for the search's own
closing verdict (`autoaug.search.export`, the child regime, validation accuracy): rows of
accuracies by seed, some free (a name anyone can use without a search: `standard`, `cutout`,
`trivialaugment`, a published policy, ...) and some learned. The best free alternative is the
free row with the highest mean; every row gets its paired difference against it (the seeds both
finished, mean +/- standard error); each learned row is better, worse or not resolved against
it at `autoaug.stats.RESOLVE_AT` standard errors. The table, the one-line verdict and the
picture are written from those same numbers, so they cannot disagree.

Choosing the best free row by its mean over the same seeds it is then compared on favours it
slightly (the largest of several noisy means): a learned policy has to beat the luckiest of the
free ones.
"""

from __future__ import annotations

import math
import statistics
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoaug.errors import AutoaugError
from autoaug.files import atomic_write
from autoaug.stats import BETTER, NOT_RESOLVED, RESOLVE_AT, WORSE, judge, paired_difference


@dataclass(frozen=True)
class Row:
    """One policy's accuracies on the seeds it finished."""

    name: str
    """As shown in tables and verdicts."""
    free: bool
    """A free alternative (named, no search needed) or a learned policy."""
    values: dict[int, float]
    """seed -> accuracy in [0, 1]."""
    failed: int = 0
    """Seeds whose training failed."""
    description: str = ""

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values()) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values.values()) if len(self.values) > 1 else math.nan


@dataclass(frozen=True)
class Difference:
    """A row minus the best free alternative on their common seeds, in points (percent)."""

    mean: float
    se: float
    seeds: int
    judgement: str
    """BETTER, WORSE or NOT_RESOLVED at RESOLVE_AT standard errors."""


@dataclass(frozen=True)
class Verdict:
    rows: tuple[Row, ...]
    """Every row with a result, highest mean first."""
    reference: Row | None
    """The best free alternative (None: no free row finished)."""
    differences: dict[str, Difference] = field(default_factory=dict)
    """Row name -> its difference against `reference` (the reference itself has none)."""

    @property
    def best(self) -> Row:
        return self.rows[0]

    @property
    def learned(self) -> list[Row]:
        return [r for r in self.rows if not r.free]

    def line(self, what: str = "") -> str:
        """The one-line verdict: the best row, and each learned row against the best free one."""
        best = f"best row `{self.best.name}` ({pct(self.best.mean)}%)"
        if self.reference is None:
            return f"Verdict{what}: {best}; no free alternative finished, nothing to compare against."
        ref = f"`{self.reference.name}`"
        learned = self.learned
        if not learned:
            return f"Verdict{what}: {best}, the best free alternative."
        parts = [f"`{r.name}` {self._against(r)}" for r in learned]
        better = [r for r in learned if self.differences[r.name].judgement == BETTER]
        unresolved = [r for r in learned if self.differences[r.name].judgement == NOT_RESOLVED]
        if better:
            use = f"use `{better[0].name}`: it beats the best free alternative {ref}"
        elif unresolved:
            use = (f"no learned policy beats {ref}, the best free alternative, by more than the seeds' "
                   f"noise: {ref} is as good and free")
        else:
            use = f"use {ref}: the best free alternative beats every learned policy"
        return f"Verdict{what}: {best}; " + "; ".join(parts) + f". So {use}."

    def _against(self, row: Row) -> str:
        d = self.differences[row.name]
        ref = f"`{self.reference.name}`" if self.reference else "-"
        text = f"{d.mean:+.2f} +/- {d.se:.2f} points" if math.isfinite(d.se) else f"{d.mean:+.2f} points (one seed)"
        if d.judgement == BETTER:
            return f"is better than {ref} ({text} over {d.seeds} seeds)"
        if d.judgement == WORSE:
            return f"is worse than {ref} ({text} over {d.seeds} seeds)"
        return f"is not resolved against {ref} ({text} over {d.seeds} seeds, within {RESOLVE_AT:g} standard errors)"


def pct(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{100 * x:.2f}"


def decide(rows: Sequence[Row]) -> Verdict:
    """The verdict of `rows` (rows without any finished seed are left out)."""
    done = sorted((r for r in rows if r.values), key=lambda r: -r.mean)  # stable: ties keep their order
    if not done:
        raise AutoaugError("no row has a finished seed; nothing to compare")
    free = [r for r in done if r.free]
    reference = free[0] if free else None
    differences = {}
    if reference is not None:
        for row in done:
            if row is reference:
                continue
            common = sorted(set(row.values) & set(reference.values))
            if not common:
                continue
            d, se = paired_difference([100 * row.values[s] for s in common],
                                      [100 * reference.values[s] for s in common])
            differences[row.name] = Difference(d, se, len(common), judge(d, se))
    return Verdict(tuple(done), reference, differences)


def table(verdict: Verdict, metric: str) -> list[str]:
    """Markdown: one row per policy, mean +/- std, the paired difference against the best free
    alternative and, for learned rows, the judgement."""
    ref = verdict.reference.name if verdict.reference else "-"
    lines = [f"| policy | kind | {metric} (%), mean +/- std | seeds | - {ref} (points, mean +/- SE) | verdict |",
             "|---|---|---|---|---|---|"]
    for row in verdict.rows:
        d = verdict.differences.get(row.name)
        if row is verdict.reference:
            diff, judgement = "best free alternative", ""
        elif d is None:
            diff, judgement = "no common seed", ""
        else:
            diff = f"{d.mean:+.2f} +/- {d.se:.2f}" if math.isfinite(d.se) else f"{d.mean:+.2f} (one seed)"
            judgement = "" if row.free else d.judgement
        spread = f" +/- {100 * row.std:.2f}" if math.isfinite(row.std) else ""
        seeds = f"{len(row.values)}" + (f" ({row.failed} failed)" if row.failed else "")
        lines.append(f"| {row.name} | {'free' if row.free else 'learned'} | {pct(row.mean)}{spread} | {seeds} "
                     f"| {diff} | {judgement} |")
    return lines


def plot(verdict: Verdict, path: str | Path, title: str) -> Path:
    """The paired differences against the best free alternative with 2-standard-error bars, one
    line per row (learned rows in colour): what a user looks at first."""
    # matplotlib takes ~0.5 s to import: only the commands that draw pay for it.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in verdict.rows if r is verdict.reference or r.name in verdict.differences]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.6))
    for y, row in enumerate(reversed(rows)):
        d = verdict.differences.get(row.name)
        mean, se = (0.0, 0.0) if d is None else (d.mean, d.se if math.isfinite(d.se) else 0.0)
        colour = "black" if row is verdict.reference else "tab:grey" if row.free else {
            BETTER: "tab:green", WORSE: "tab:red", NOT_RESOLVED: "tab:blue"}[d.judgement]
        ax.errorbar(mean, y, xerr=RESOLVE_AT * se, fmt="o", color=colour, capsize=4)
    labels = [row.name + ("  (best free)" if row is verdict.reference else "" if row.free else
                          f"  [{verdict.differences[row.name].judgement}]") for row in reversed(rows)]
    ax.set_yticks(range(len(rows)), labels, fontsize=8)
    ax.axvline(0.0, color="black", linewidth=0.8)
    ref = verdict.reference.name if verdict.reference else "-"
    # Wrapped to the figure, not the axes: long row labels push the axes right, and a title or
    # label centred on them ran off the picture.
    ax.set_xlabel("\n".join(textwrap.wrap(
        f"paired difference against {ref} (points; bars: {RESOLVE_AT:g} standard errors)", 70)), fontsize=9)
    fig.suptitle("\n".join(textwrap.wrap(title, 80)), fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    atomic_write(path, lambda handle: fig.savefig(handle, format="png", dpi=110), "picture")
    plt.close(fig)
    return path
