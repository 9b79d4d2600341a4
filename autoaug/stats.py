"""The paired difference of seeded runs and the rule that reads it: what every "is it better?"
of autoaug rests on (`autoaug compare`, the search's verdict, the experiments)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

RESOLVE_AT = 2.0
"""A paired difference counts as resolved when it is at least this many standard errors from 0."""

BETTER, WORSE, NOT_RESOLVED = "better", "worse", "not resolved"


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of a[i] - b[i] (run i of both on the same seed) and its standard error (NaN for one
    pair: one difference says nothing of its spread)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired difference: expected two equally long, non-empty lists, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return statistics.mean(d), se


def judge(difference: float, se: float, at: float = RESOLVE_AT) -> str:
    """BETTER or WORSE when `difference` lies more than `at` standard errors above or below 0,
    else NOT_RESOLVED (also when the standard error is unknown: NaN, from one pair)."""
    if not math.isfinite(se):
        return NOT_RESOLVED
    if difference > at * se:
        return BETTER
    if difference < -at * se:
        return WORSE
    return NOT_RESOLVED
