"""The ruler: 30 policies in the final regime on 2 seeds, against which every proxy is scored (issue #21, item 1)

A cheap child (a proxy) is worth what its ranking of policies agrees with the final regime's.
`proxy_rank.py` measured that on 15 policies and one final seed, too few to tell proxies apart:
Spearman's standard error over 15 policies is about 0.27. This script trains a larger ruler
once and keeps it in the repository, so that every later proxy is scored against the same
numbers without retraining them.

The policies: 24 drawn the way the search draws its first batch (`uniform_tokens`, every
decision uniform over its bins, generator seed 2026; the first 6 are proxy_rank.py's random
policies), and 6 anchors: `none`, `cutout`, `trivialaugment` and the three published
AutoAugment policies. The search-space policies are what a search compares, so proxies are
scored on them alone as well as on all 30.

The final regime is `regimes.final_job`: `tiny`, 80 epochs on the 4,000 reduced CIFAR-10 train
images with the policy, pad-crop + flip and Cutout 16, test accuracy on the 10,000 test images;
seeds 0 and 1. Seed 0 of every policy is trained before any seed 1, so a ruler cut short still
covers every policy.

The children are cached in experiments/results/ruler/children.jsonl (one JSON line per child,
keyed by what it trains; a policy file by its content) and the policy files beside it, both
committed: a killed run resumes, and `--report` rewrites ruler.md from the cache alone.

    python experiments/ruler.py [--parallel 2] [--report]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from hostinfo import describe, load_average
from regimes import FINAL_EPOCHS, final_job, load_cache, run_jobs, spearman

from autoaug.search.search import uniform_tokens
from autoaug.space.policy import Policy

HERE = Path(__file__).resolve().parent
RULER_DIR = HERE / "results" / "ruler"
CACHE = RULER_DIR / "children.jsonl"
ANCHORS = ["none", "cutout", "trivialaugment", "autoaugment-cifar10", "autoaugment-svhn", "autoaugment-imagenet"]
RANDOM_POLICIES = 24
RANDOM_SEED = 2026
SEEDS = (0, 1)


def policy_specs() -> dict[str, str]:
    """name -> spec, anchors first; the random policies are files in experiments/results/ruler/policies."""
    specs = {name: name for name in ANCHORS}
    tokens = uniform_tokens(RANDOM_POLICIES, torch.Generator().manual_seed(RANDOM_SEED))
    folder = RULER_DIR / "policies"
    folder.mkdir(parents=True, exist_ok=True)
    for k, t in enumerate(tokens):
        path = folder / f"random-{k}.json"
        if not path.is_file():
            meta = {"source": f"experiments/ruler.py random policy {k} (uniform_tokens, seed {RANDOM_SEED})"}
            Policy.from_tokens(t.tolist(), meta).save(path)
        specs[f"random-{k}"] = str(path)
    return specs


def searchable(names: Sequence[str]) -> list[str]:
    """The policies a search could draw (not the anchors)."""
    return [n for n in names if n.startswith("random-")]


def load_ruler(seeds: Sequence[int] = SEEDS) -> dict[str, list[float]]:
    """name -> test accuracies in [0, 1] of the cached seeds (in `seeds` order), for every policy
    with at least one; no training."""
    specs = policy_specs()
    rows = load_cache(CACHE)
    ruler = {}
    for name, spec in specs.items():
        accs = [rows[k]["acc"] for s in seeds if (k := final_job(spec, s).key) in rows]
        if accs:
            ruler[name] = accs
    return ruler


def average_ranks(v: np.ndarray) -> np.ndarray:
    """Ranks along the last axis, ties sharing their mean rank (as `regimes.spearman`)."""
    below = (v[..., :, None] > v[..., None, :]).sum(-1)
    tied = (v[..., :, None] == v[..., None, :]).sum(-1)
    return below + (tied - 1) / 2


def bootstrap_rhos(truth: Sequence[float], values: np.ndarray, draws: int = 4000, seed: int = 0) -> np.ndarray:
    """(draws, P) Spearman's rho of each row of values (P, n) with truth (n,) on the same
    bootstrap resamples of the n policies (drawn with replacement), vectorised, so that a proxy
    can be compared with another on the same resamples; a resample whose values are all tied
    gives NaN."""
    truth, values = np.asarray(truth, dtype=float), np.asarray(values, dtype=float)
    index = np.random.default_rng(seed).integers(0, len(truth), (draws, len(truth)))  # (D, n)
    rt = average_ranks(truth[index])  # (D, n)
    rv = average_ranks(values[:, index])  # (P, D, n)
    rt, rv = rt - rt.mean(-1, keepdims=True), rv - rv.mean(-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):  # an all-tied draw: nan, dropped below
        return ((rv * rt).sum(-1) / np.sqrt((rv**2).sum(-1) * (rt**2).sum(-1))).T  # (D, P)


def interval_of(rhos: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of bootstrap rhos, the NaN of all-tied resamples left out."""
    lo, hi = np.nanquantile(rhos, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def bootstrap_spearman(
    a: Sequence[float], b: Sequence[float], draws: int = 4000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Spearman's rho of a and b, and a percentile bootstrap interval over the paired items
    (policies resampled with replacement; a draw whose values are all tied is skipped)."""
    rhos = bootstrap_rhos(a, np.asarray([b], dtype=float), draws, seed)[:, 0]
    return (spearman(a, b), *interval_of(rhos, level))


def report(started: float | None = None) -> str:
    ruler = load_ruler()
    rows = load_cache(CACHE)
    specs = policy_specs()
    both = [n for n in ruler if len(ruler[n]) == len(SEEDS)]
    cpu = [r["cpu_s"] for r in rows.values()]
    lines = [
        "# The ruler: policies in the final regime (issue #21, item 1)",
        "",
        f"`python experiments/ruler.py` on {describe('cpu')}; load average at the end {load_average()}"
        + (f"; {(time.time() - started) / 60:.0f} min wall for what was not cached." if started else "."),
        "",
        f"Final regime: `tiny`, {FINAL_EPOCHS} epochs on the 4,000 reduced CIFAR-10 train images with the "
        "policy, pad-crop + flip and Cutout 16; test accuracy (%) on the 10,000 test images; seeds "
        f"{', '.join(map(str, SEEDS))} (the same seeds for every policy). {len(ruler)} of {len(specs)} "
        f"policies trained, {len(both)} on every seed; {statistics.mean(cpu) if cpu else 0:.0f} CPU s per "
        "child, measured while other jobs shared the two cores. The children: "
        "`experiments/results/ruler/children.jsonl`; score a proxy against them with "
        "`ruler.load_ruler()` and `ruler.bootstrap_spearman()`.",
        "",
    ]
    if len(both) >= 3:
        a = [ruler[n][0] for n in both]
        b = [ruler[n][1] for n in both]
        rho, lo, hi = bootstrap_spearman(a, b)
        space = searchable(both)
        lines += [
            "How well does the ruler agree with itself? Seed 0 against seed 1, Spearman over the "
            f"{len(both)} policies with both: {rho:+.2f} (95% bootstrap interval {lo:+.2f} to {hi:+.2f})"
            + (f"; over the {len(space)} search-space policies: "
               "{:+.2f} ({:+.2f} to {:+.2f})".format(*bootstrap_spearman([ruler[n][0] for n in space],
                                                                         [ruler[n][1] for n in space]))
               if len(space) >= 3 else "")
            + ". A proxy cannot agree with the mean of two seeds much better than one seed agrees with another.",
            "",
        ]
    lines += ["| policy | mean test accuracy (%) | " + " | ".join(f"seed {s}" for s in SEEDS) + " |",
              "|---|---|" + "---|" * len(SEEDS)]
    for name in sorted(ruler, key=lambda n: -statistics.mean(ruler[n])):
        accs = ruler[name] + [None] * (len(SEEDS) - len(ruler[name]))
        lines.append(f"| {name} | {100 * statistics.mean(ruler[name]):.2f} | "
                     + " | ".join("" if a is None else f"{100 * a:.2f}" for a in accs) + " |")
    lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", type=int, default=2, help="children at a time (one torch thread each)")
    ap.add_argument("--report", action="store_true", help="only rewrite ruler.md from the cache")
    ap.add_argument("--out", default=str(HERE / "results" / "ruler.md"))
    args = ap.parse_args()
    started = None
    if not args.report:
        started = time.time()
        specs = policy_specs()
        jobs = [final_job(spec, seed) for seed in SEEDS for spec in specs.values()]
        run_jobs(jobs, CACHE, args.parallel)
    text = report(started)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
