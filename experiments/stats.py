"""The paired difference of seeded runs: what every "is it better?" of the experiments rests on."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence


def paired_difference(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Mean of a[i] - b[i] (run i of both on the same seed) and its standard error (NaN for one
    pair: one difference says nothing of its spread)."""
    if len(a) != len(b) or not a:
        raise ValueError(f"paired difference: expected two equally long, non-empty lists, got {len(a)} and {len(b)}")
    d = [x - y for x, y in zip(a, b)]
    se = statistics.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    return statistics.mean(d), se
