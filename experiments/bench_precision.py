"""Does bf16 autocast make a CPU child faster without changing what it measures?

`TrainConfig.precision = "bf16"` runs the training steps under bf16 autocast on any device. On a
CPU with AMX (Intel Sapphire Rapids and later) oneDNN's bf16 convolutions are much faster than
fp32 ones; on other CPUs they can be slower. This trains the same children in fp32 and in bf16,
on the same seeds, and reports per (policy, seed) pair the accuracy difference and the ratio of
CPU seconds, in two settings:

- `search child`: the cpu-quick preset's child (`tiny`, 40 epochs on 1,000 train images,
  Cutout 16 after the policy, val accuracy on 2,000 val images), i.e. one search reward;
- `final regime`: `tiny`, 80 epochs on the 4,000 train images, test accuracy on the 10,000
  test images (experiments/regimes.py), where the search's result is judged.

The fp32 and bf16 children of a pair run back to back in one process pool (`--parallel`, one
torch thread each), so load from other jobs hits both; the ratio is the peer measure, not the
seconds. Children are cached in runs/bench_precision/children.jsonl (JSON lines: a killed run
resumes), apart from other experiments' caches, so that both columns come from this script's runs.

A third section trains the search child on this CPU with torch's kernels and oneDNN capped at
AVX2 (`ATEN_CPU_CAPABILITY=avx2`, `ONEDNN_MAX_CPU_ISA=AVX2`): a CPU without bf16 instructions,
where bf16 is emulated, and where `precision = "native"` (the search's default) stays in fp32.
Its children are cached apart (children-avx2.jsonl beside --cache): the cache key does not see
the environment.

    python experiments/bench_precision.py [--seeds 4] [--final-seeds 3] [--avx2-seeds 2] [--parallel 2]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from pathlib import Path
from unittest import mock

import torch

from hostinfo import describe, load_average
from regimes import FINAL_EPOCHS, Job, run_jobs

from autoaug.stats import paired_difference

POLICIES = ["cutout", "autoaugment-cifar10", "trivialaugment"]
PRECISIONS = ("fp32", "bf16")


def search_child(spec: str, seed: int, precision: str) -> Job:
    recipe = {"epochs": 40} | ({} if precision == "fp32" else {"precision": precision})
    return Job(spec, recipe, seed, train_subset=1000, val_subset=2000, score="val")


def final_child(spec: str, seed: int, precision: str) -> Job:
    recipe = {"epochs": FINAL_EPOCHS} | ({} if precision == "fp32" else {"precision": precision})
    return Job(spec, recipe, seed)


def section(title: str, make, specs: list[str], seeds: list[int], cache: Path, parallel: int) -> list[str]:
    jobs = [make(spec, seed, p) for spec in specs for seed in seeds for p in PRECISIONS]
    rows = run_jobs(jobs, cache, parallel)
    lines = [f"## {title}", "",
             "| policy | fp32 (mean +/- std) | bf16 (mean +/- std) | bf16 - fp32 (SE) | CPU s fp32 / bf16 |",
             "|---|---|---|---|---|"]
    all_diffs, ratios = [], []
    for spec in specs:
        acc = {p: [100 * rows[make(spec, s, p).key]["acc"] for s in seeds] for p in PRECISIONS}
        cpu = {p: [rows[make(spec, s, p).key]["cpu_s"] for s in seeds] for p in PRECISIONS}
        d, se = paired_difference(acc["bf16"], acc["fp32"])
        all_diffs += [b - a for a, b in zip(acc["fp32"], acc["bf16"])]
        ratios += [a / b for a, b in zip(cpu["fp32"], cpu["bf16"])]
        cells = [f"{statistics.mean(v):.2f} +/- {statistics.stdev(v) if len(v) > 1 else 0:.2f}" for v in acc.values()]
        lines.append(f"| {spec} | {cells[0]} | {cells[1]} | {d:+.2f} +/- {se:.2f} | "
                     f"{statistics.mean(cpu['fp32']):.0f} / {statistics.mean(cpu['bf16']):.0f} |")
    se_all = statistics.stdev(all_diffs) / math.sqrt(len(all_diffs)) if len(all_diffs) > 1 else float("nan")
    geo = math.exp(statistics.mean(math.log(r) for r in ratios))
    lines += ["", f"All {len(all_diffs)} pairs: bf16 - fp32 = {statistics.mean(all_diffs):+.2f} +/- {se_all:.2f} "
              f"points; fp32 CPU s / bf16 CPU s = **{geo:.2f}x** (geometric mean, range "
              f"{min(ratios):.2f}-{max(ratios):.2f}).", ""]
    return lines


# This CPU as one without bf16 instructions: torch's own kernels and oneDNN's both capped at AVX2.
AVX2_ONLY = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def capped_section(seeds: list[int], cache: Path, parallel: int) -> list[str]:
    """`section` for the search child with the worker processes capped at AVX2 (AVX2_ONLY; they
    are spawned, so they read the environment when torch starts)."""
    with mock.patch.dict(os.environ, AVX2_ONLY):  # restored afterwards, as it was
        return section("Search child on this CPU capped at AVX2 (no bf16 instructions: "
                       + ", ".join(f"{k}={v}" for k, v in AVX2_ONLY.items()) + "); val accuracy %",
                       search_child, POLICIES[1:2], seeds, cache, parallel)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=4, help="seeds per policy, search child")
    ap.add_argument("--final-seeds", type=int, default=3, help="seeds per policy, final regime (0: skip)")
    ap.add_argument("--avx2-seeds", type=int, default=2, help="seeds, search child capped at AVX2 (0: skip)")
    ap.add_argument("--parallel", type=int, default=2)
    ap.add_argument("--cache", default="runs/bench_precision/children.jsonl")
    ap.add_argument("--out", default="experiments/results/bench_precision.md")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    cache = Path(args.cache)
    load_before = load_average()
    body = section("Search child (cpu-quick: 40 epochs, 1,000 images; val accuracy %)", search_child,
                   POLICIES, list(range(args.seeds)), cache, args.parallel)
    if args.final_seeds:
        body += section(f"Final regime ({FINAL_EPOCHS} epochs, 4,000 images; test accuracy %)", final_child,
                        POLICIES[:2], list(range(args.final_seeds)), cache, args.parallel)
    if args.avx2_seeds:
        body += capped_section(list(range(args.avx2_seeds)), cache.with_name(cache.stem + "-avx2.jsonl"),
                               args.parallel)
    lines = ["# bf16 autocast against fp32 on the CPU", "",
             f"`python experiments/bench_precision.py --seeds {args.seeds} --final-seeds {args.final_seeds} "
             f"--avx2-seeds {args.avx2_seeds} --parallel {args.parallel}` on {describe('cpu')}; load average before "
             f"{load_before}, after {load_average()}; {(time.time() - started) / 60:.0f} min wall for what was "
             "not cached.", "",
             "Same policy, seed and recipe in both columns; only the training steps' arithmetic differs "
             "(evaluation is fp32 in both). CPU s: the child's process time, training and evaluation.", "",
             *body]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
