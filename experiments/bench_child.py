"""Child-training benchmark: how fast a child trains and how noisy its reward is.

For each model preset, trains children on the embedded reduced CIFAR-10 (4,000 train images,
reward measured on the 5,000 val images) with `autoaug.training.loop.train_child`, the function the
search calls, and reports

- seconds per child and children per hour (one process, evaluation included);
- the reward noise floor: the std of the validation accuracy over seeds, for the `none`,
  `standard` and `autoaugment-cifar10` policies (the last with its paper setup, standard +
  Cutout 16), and whether `standard` beats `none` by more than twice that std;
- optionally (--compare-paths) the `autoaugment-cifar10` children trained through the exported
  whole albumentations training pipeline in DataLoader workers next to the batched torch path
  (`experiments/compare_paths.py` is the paired, one-worker measurement of the same).

Prints a markdown table and writes it, with the machine named, into --out as one section per
device (re-running on the same device and thread count replaces that section, others stay).

    python experiments/bench_child.py                                  # CPU: tiny, 5 seeds
    python experiments/bench_child.py --device cuda --presets small,tiny   # GPU, ~4 minutes
"""

from __future__ import annotations

import argparse
import datetime as dt
import re
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autoaug.training.data import load_splits  # noqa: E402
from autoaug.training.models import MODEL_NAMES  # noqa: E402
from hostinfo import describe, load_average  # noqa: E402
from autoaug.space.specs import resolve  # noqa: E402
from autoaug.training.config import TrainConfig  # noqa: E402
from autoaug.training.device import prepare, resolve_device  # noqa: E402
from autoaug.training.loop import train_child  # noqa: E402
from autoaug.training.pipelines import albumentations_augment  # noqa: E402

POLICIES = ("none", "standard", "autoaugment-cifar10")


def children(augment, data, config: TrainConfig, seeds: list[int], label: str) -> tuple[list[float], list[float], list[float]]:
    """Train one child per seed: (val accuracies, wall seconds, CPU seconds of this process)."""
    accs, wall, cpu = [], [], []
    for seed in seeds:
        if data.device.type == "cuda":
            torch.cuda.synchronize(data.device)
        started, started_cpu = time.perf_counter(), time.process_time()
        accs.append(train_child(augment, data, config, seed))  # returns a float: synchronised
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        print(f"  {label} seed {seed}: {100 * accs[-1]:.2f}% in {wall[-1]:.1f} s", file=sys.stderr, flush=True)
    return accs, wall, cpu


def run(args: argparse.Namespace) -> str:
    device = resolve_device(args.device)
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    data = prepare(load_splits("cifar10-reduced"), device)
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    for preset in presets:
        if preset not in MODEL_NAMES:
            raise SystemExit(f"unknown preset {preset!r}; expected some of {', '.join(MODEL_NAMES)}")
    seeds = list(range(args.seeds))
    overrides = {"device": str(device)}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    load_before = load_average()
    rows = []  # (preset, policy, execution, epochs, accs, wall, cpu); accs None: a note row
    for preset in presets:
        # Warm-up child (not counted): cuDNN autotuning, allocator, first-call overheads.
        train_child(None, data, TrainConfig.for_model(preset, device=str(device), epochs=1), 0)
        results: dict[str, list[float]] = {}
        for spec in POLICIES:
            resolved = resolve(spec)
            config = TrainConfig.for_model(
                preset, **overrides, standard=resolved.standard, cutout=resolved.cutout
            )
            accs, wall, cpu = children(resolved.augmenter, data, config, seeds, f"{preset} {spec}")
            results[spec] = accs
            rows.append((preset, spec, "torch", config.epochs, accs, wall, cpu))
            if args.compare_paths and spec == "autoaugment-cifar10":
                pool = np.ascontiguousarray(data.train_x.permute(0, 2, 3, 1).cpu().numpy())  # SamplePairing partners
                alb = albumentations_augment(resolved, data, config, args.workers, pool)
                label = f"albumentations ({args.workers} workers)"
                accs, wall, cpu = children(alb, data, config, seeds, f"{preset} {spec} {label}")
                rows.append((preset, spec, label, config.epochs, accs, wall, cpu))
        gap = statistics.mean(results["standard"]) - statistics.mean(results["none"])
        noise = max(statistics.stdev(results["standard"]), statistics.stdev(results["none"]))
        note = f"standard - none = {100 * gap:+.2f} points = {gap / noise:.1f} x the larger of their seed stds"
        rows.append((preset, note, None, None, None, None, None))

    kind = (
        f"GPU ({torch.cuda.get_device_name(device)})"
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} torch thread{'s' if torch.get_num_threads() > 1 else ''}"
    )
    lines = [
        f"## {kind}",
        "",
        f"Machine: {describe(device)}.",
        f"Run {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}: `python experiments/bench_child.py "
        f"{' '.join(sys.argv[1:])}`; {len(seeds)} seeds per row; load average (1, 5, 15 min) "
        f"before {load_before}, after {load_average()}.",
        "",
        "| preset | policy | execution | epochs | val accuracy (mean +/- std) | s per child | "
        "CPU s per child | children per hour |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for preset, spec, path, epochs, accs, wall, cpu in rows:
        if accs is None:
            lines.append(f"| {preset} | {spec} | | | | | | |")
            continue
        mean_s = statistics.mean(wall)
        lines.append(
            f"| {preset} | {spec} | {path} | {epochs} | {100 * statistics.mean(accs):.2f}% +/- "
            f"{100 * statistics.stdev(accs):.2f} | {mean_s:.2f} | {statistics.mean(cpu):.2f} | "
            f"{3600 / mean_s:,.0f} |"
        )
    lines += [
        "",
        "s per child: wall time of `train_child` (training + evaluation on the 5,000 val images), "
        "one process; CPU s: that process's CPU time (DataLoader workers not included). "
        "Children per hour = 3600 / s per child.",
    ]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str) -> None:
    """Put `section` into the file at `path`, replacing a section with the same `## ` title."""
    title = section.splitlines()[0]
    header = (
        "# Child-training benchmark\n\n"
        "Written by `experiments/bench_child.py`: seconds per child and the reward noise floor "
        "(std of validation accuracy over seeds) on the embedded reduced CIFAR-10 "
        "(4,000 train images, 5,000 val images).\n"
    )
    text = path.read_text() if path.exists() else header
    parts = [p.rstrip("\n") for p in re.split(r"(?m)^(?=## )", text) if p.strip()]
    kept = [p for p in parts if p.splitlines()[0] != title]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join([*kept, section.rstrip("\n")]) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default=None, help="comma-separated presets (default: tiny on CPU, small,tiny on CUDA)")
    parser.add_argument("--seeds", type=int, default=5, help="seeds per policy (>= 2; default 5)")
    parser.add_argument("--epochs", type=int, default=None, help="override every preset's epochs")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--compare-paths", action="store_true", help="also train autoaugment-cifar10 through albumentations")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for --compare-paths")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default=str(REPO / "experiments/results/bench_child.md"), help="markdown file to update")
    args = parser.parse_args()
    if args.seeds < 2:
        raise SystemExit("--seeds must be >= 2 to measure a std")
    if args.presets is None:
        args.presets = "small,tiny" if resolve_device(args.device).type == "cuda" else "tiny"
    section = run(args)
    print(section)
    write_section(Path(args.out), section)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
