"""Which TranslateX/Y range should the published CIFAR-10 policy be read on? (issue #8)

The AutoAugment paper's table gives translate as [-150, 150] px of 331 px images (0.45 of the
side: 14.5 px at 32 px); the reference code that found the CIFAR-10 policy shifted by at most
10 px of 32 (`int_parameter(level, 10)`). `Policy.range_reading` switches between the two
("paper" and "reference"). This trains the published CIFAR-10 policy under each reading in the
regime where augmentation pays off (`tiny`, 80 epochs on the 4,000 reduced CIFAR-10 images,
standard augmentation + Cutout 16 after the policy, test accuracy on the 10,000 test images),
on the same seeds for both readings (paired), and writes the per-seed accuracies, the means and
the paired difference with its standard error.

Each run is one `autoaug train` subprocess with one torch thread; `--parallel` of them run at a
time. Finished runs (a results.json in their directory) are kept, so a killed run resumes.

    python experiments/translate_range.py [--seeds 5] [--parallel 2] [--runs runs/translate_range]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from hostinfo import cpu_model

from autoaug.stats import paired_difference
from autoaug.space.ops import RANGE_READINGS
from autoaug.space.policy import published_policy

ROOT = Path(__file__).resolve().parent.parent
POLICY = "autoaugment-cifar10"


def run_dir(runs: Path, reading: str, seed: int) -> Path:
    return runs / reading / f"seed-{seed}"


def command(policy_file: Path, out: Path, seed: int, epochs: int) -> list[str]:
    return [sys.executable, "-m", "autoaug", "train", "--policy", str(policy_file), "--model", "tiny",
            "--epochs", str(epochs), "--seed", str(seed), "--seeds", "1", "--out", str(out)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1, the same for both readings")
    ap.add_argument("--epochs", type=int, default=80)
    ap.add_argument("--parallel", type=int, default=2, help="runs at a time (one torch thread each)")
    ap.add_argument("--nice", type=int, default=5, help="niceness of the training processes")
    ap.add_argument("--runs", default="runs/translate_range", help="where the runs and their logs go")
    ap.add_argument("--out", default="experiments/results/translate_range.md")
    ap.add_argument("--report", action="store_true", help="only write the results of the pairs finished so far")
    args = ap.parse_args()
    if args.report:
        write_results(Path(args.runs), args)
        return

    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    policy_files = {}
    for reading in RANGE_READINGS:
        policy = dataclasses.replace(published_policy(POLICY), range_reading=reading)
        policy_files[reading] = policy.save(runs / f"{POLICY}-{reading}.json")

    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", NO_ALBUMENTATIONS_UPDATE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    todo = [(reading, seed) for seed in range(args.seeds) for reading in RANGE_READINGS
            if not (run_dir(runs, reading, seed) / "results.json").exists()]
    print(f"{len(todo)} of {args.seeds * len(RANGE_READINGS)} runs to do", flush=True)
    running: list[tuple[str, int, subprocess.Popen, float]] = []
    while todo or running:
        while todo and len(running) < args.parallel:
            reading, seed = todo.pop(0)
            out = run_dir(runs, reading, seed)
            log = open(runs / f"{reading}-seed-{seed}.log", "w")
            cmd = ["nice", "-n", str(args.nice), *command(policy_files[reading], out, seed, args.epochs)]
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
            running.append((reading, seed, proc, time.time()))
        time.sleep(2)
        for item in list(running):
            reading, seed, proc, started = item
            if proc.poll() is not None:
                running.remove(item)
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                print(f"{reading} seed {seed}: {status} in {time.time() - started:.0f} s", flush=True)
                if proc.returncode != 0:
                    raise SystemExit(f"see {runs / f'{reading}-seed-{seed}.log'}")

    write_results(runs, args)


def verdict(d_mean: float, d_se: float) -> str:
    """The reading the published policy keeps, and why (issue #8: the better one, or the
    reference code's when the seeds cannot tell them apart)."""
    if d_se > 0 and abs(d_mean) >= 2 * d_se:
        better = "reference" if d_mean > 0 else "paper"
        return (f"The {better} reading is better by more than twice the standard error: the published "
                f"CIFAR-10 policy keeps it.")
    return ("No difference the seeds can resolve (|difference| < 2 standard errors). The published "
            "CIFAR-10 and SVHN policies keep the reference reading: it is what the code that found "
            "them used, and it costs nothing measurable.")


def write_results(runs: Path, args: argparse.Namespace) -> None:
    acc: dict[str, list[float]] = {reading: [] for reading in RANGE_READINGS}
    seconds: list[float] = []
    # the seeds both readings have finished (all of them, unless --report runs before the end)
    seeds = [seed for seed in range(args.seeds)
             if all((run_dir(runs, r, seed) / "results.json").exists() for r in RANGE_READINGS)]
    if len(seeds) < 2:
        raise SystemExit(f"{len(seeds)} finished pairs in {runs}: need 2 for a standard error")
    for reading in RANGE_READINGS:
        for seed in seeds:
            row = json.loads((run_dir(runs, reading, seed) / "results.json").read_text())["seeds"][0]
            acc[reading].append(100 * row["test_acc"])
            seconds.append(row["seconds"])
    paper, reference = acc["paper"], acc["reference"]
    diffs = [r - p for r, p in zip(reference, paper)]
    d_mean, d_se = paired_difference(reference, paper)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                            cwd=ROOT).stdout.strip() or "unknown"
    rows = [f"| {s} | {p:.2f} | {r:.2f} | {r - p:+.2f} |" for s, p, r in zip(seeds, paper, reference)]
    lines = [
        "# TranslateX/Y range: the paper's 150/331 of the side vs the reference code's 10 px of 32",
        "",
        *([f"Partial: {len(seeds)} of the {args.seeds} seeds asked for had finished under both readings.", ""]
          if len(seeds) < args.seeds else []),
        f"Machine: {cpu_model()}, {os.cpu_count()} cores shared with other work, no GPU; one torch "
        f"thread per run, {args.parallel} runs at a time, {statistics.mean(seconds):.0f} s per run on average. "
        f"Code: commit {commit} when this file was written; a resumed or long experiment may have "
        "started earlier runs from earlier commits, but both readings of a seed always start together.",
        f"Command: `python experiments/translate_range.py --seeds {args.seeds} --epochs {args.epochs} "
        f"--parallel {args.parallel}`; each run is `autoaug train --policy "
        f"{args.runs}/{POLICY}-<reading>.json --model tiny --epochs {args.epochs} --seed S` (the "
        "published CIFAR-10 policy with `range_reading` set, then pad-crop + flip and Cutout 16), "
        "test accuracy on the 10,000 test images of reduced CIFAR-10 (trained on its 4,000).",
        "",
        "| seed | paper: 150/331 of the side (%) | reference: 10/32 of the side (%) | reference - paper |",
        "|---|---|---|---|",
        *rows,
        f"| mean +/- std | {statistics.mean(paper):.2f} +/- {statistics.stdev(paper):.2f} | "
        f"{statistics.mean(reference):.2f} +/- {statistics.stdev(reference):.2f} | "
        f"{d_mean:+.2f} +/- {d_se:.2f} (SE) |",
        "",
        f"Paired difference (reference - paper) over {len(diffs)} seeds: {d_mean:+.2f} points, standard "
        f"error {d_se:.2f}, t = {d_mean / d_se if d_se else float('inf'):.2f}.",
        "",
        verdict(d_mean, d_se),
    ]
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
