"""Every generator of tests/test_fuzz.py at a multiple of its CI size (issue #23: 5x), counting
per category how many cases were rejected in one line, accepted (and then checked), ended in a
traceback, or were accepted wrongly (accepted, but the check of what accepting means failed).
The target is 0 tracebacks and 0 wrong accepts. The first few failures of a category are printed.

    python experiments/fuzz_scale.py [--scale 5]

Writes experiments/results/fuzz_scale.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests"), str(HERE)]

import test_fuzz as fuzz  # noqa: E402 - the tests' generators, not a copy of them
from hostinfo import describe  # noqa: E402

from autoaug.training.data import load  # noqa: E402

OUTCOMES = ("rejected", "accepted", "traceback", "wrong accept")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=5, help="multiple of the CI sizes (default 5)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "fuzz_scale.md")
    args = parser.parse_args()
    torch.set_num_threads(1)
    images = load("cifar10-reduced", "test")[0][:4].copy()  # (4, 32, 32, 3), as the tests' cifar_images[:4]
    groups = [
        ("policy files", fuzz.POLICY_CASES, lambda n, d: fuzz.run_policies(n, d, images, strict=False)),
        ("datasets", fuzz.DATASET_CASES, lambda n, d: fuzz.run_datasets(n, d, strict=False)),
        ("configs", fuzz.CONFIG_CASES, lambda n, d: fuzz.run_configs(n, d, strict=False)),
        ("whole pipelines", fuzz.PIPELINE_CASES, lambda n, d: fuzz.run_pipelines(n, d, images, strict=False)),
        ("trial stores", fuzz.STORE_CASES, lambda n, d: fuzz.run_stores(n, d, strict=False)),
        ("special-file outputs", fuzz.OUTPUT_CASES, lambda n, d: fuzz.run_outputs(n, d, strict=False)),
    ]
    rows, totals = [], Counter()
    started = time.perf_counter()
    for name, ci_size, run in groups:
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            outcomes = run(ci_size * args.scale, Path(tmp))
            seconds = time.perf_counter() - t0
        for (kind, outcome), count in sorted(outcomes.items()):
            rows.append((name, kind, outcome, count))
            totals[outcome] += count
        print(f"{name}: {ci_size * args.scale} cases in {seconds:.0f} s: "
              + ", ".join(f"{o} {sum(c for (k, oo), c in outcomes.items() if oo == o)}" for o in OUTCOMES),
              flush=True)
    lines = [
        f"# Fuzzing at {args.scale}x the CI size (issue #23)",
        "",
        f"`python experiments/fuzz_scale.py --scale {args.scale}` on {describe('cpu')}, "
        f"{time.perf_counter() - started:.0f} s, seed {fuzz.SEED}.",
        "",
        "| generator | kind | cases | rejected | accepted | traceback | wrong accept |",
        "|---|---|---|---|---|---|---|",
    ]
    table: dict[tuple[str, str], Counter] = {}
    for name, kind, outcome, count in rows:
        table.setdefault((name, kind), Counter())[outcome] += count
    for (name, kind), counts in table.items():
        lines.append(f"| {name} | {kind} | {sum(counts.values())} | "
                     + " | ".join(str(counts[o]) for o in OUTCOMES) + " |")
    lines.append(f"| **all** | | {sum(totals.values())} | " + " | ".join(str(totals[o]) for o in OUTCOMES) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if totals["traceback"] == totals["wrong accept"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
