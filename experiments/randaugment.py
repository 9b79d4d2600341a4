"""RandAugment on the embedded reduced CIFAR-10: fixed M vs adaptive M vs the grid's best (issue #5).

Steps, all on the reduced CIFAR-10 that ships with the package (train 4,000 / val 5,000 / test 10,000):
1. A RandAugment grid (`autoaug.search.grid.run_grid`, the code behind `autoaug randaugment`),
   one child per (N, M) with seed 0; the best (N, M) by validation accuracy.
2. Arms trained with seeds 1..K (not the grid's seed, so the grid's pick is not scored on the
   run that picked it): RandAugment N=2 at a fixed M, the same N with the adaptive M starting from
   that M, the grid's best (N, M), TrivialAugment and the standard + Cutout baseline. Every arm
   trains like `autoaug train --policy ...`: the policy, then pad-crop + flip, then Cutout 16.
3. Test accuracy mean +/- std over seeds (the verdict uses test accuracy; validation accuracy
   chose the grid point and drives the adaptive M), the adaptive-minus-fixed difference paired by
   seed, the final M of every adaptive run, and a top-k ensemble of all arm runs.

Defaults (tiny model, 20 epochs, grid N 1,2 x M 3,6,9,12, 3 seeds) take about 10 minutes on 2
idle CPU cores; `--model small --epochs 40 --seeds 10` is a GPU-sized run. Finished runs are kept
in --out and skipped on a rerun, so an interrupted experiment resumes.

    python experiments/randaugment.py                 # writes experiments/results/randaugment.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hostinfo import describe

from autoaug.stats import paired_difference
from autoaug.training.data import load_splits
from autoaug.training.ensemble import find_members, save_outputs, top_k_ensemble
from autoaug.search.grid import GridSpec, grid_markdown, policy_training, run_grid
from autoaug.space.randaugment import AdaptiveRandAugment, RandAugment, TrivialAugment
from autoaug.training.config import TrainConfig
from autoaug.training.device import prepare
from autoaug.training.loop import evaluate, predict_proba, train_model

ROOT = Path(__file__).resolve().parents[1]
ARMS = ("fixed", "adaptive", "grid-best", "trivialaugment", "baseline")


@dataclass(frozen=True)
class Arm:
    slug: str
    label: str
    augment: object  # a RandAugment / TrivialAugment / None; AdaptiveRandAugment is built per seed
    adaptive: bool = False


def run_arm(arm: Arm, seed: int, data, config: TrainConfig, step: float, out: Path) -> dict:
    """Train one seed of one arm (or read it back if it already finished)."""
    directory = out / arm.slug / f"seed-{seed}"
    meta_path = directory / "outputs.json"
    if meta_path.is_file():
        return json.loads(meta_path.read_text())
    started = time.perf_counter()
    if arm.adaptive:
        augment = AdaptiveRandAugment(arm.augment, step=step)
        model, history = train_model(augment, data, config, seed, on_epoch_end=augment.on_epoch_end)
        extra = {"final_m": augment.m, "m_per_epoch": [h.m_before for h in augment.history]}
    else:
        model, history = train_model(arm.augment, data, config, seed)
        extra = {}
    norm = dict(mean=data.mean, std=data.std, batch_size=config.eval_batch_size)
    val_acc = evaluate(model, data.val_x, data.val_y, **norm)
    proba = predict_proba(model, data.test_x, **norm)  # (N_test, K)
    save_outputs(directory, val_acc=val_acc, test_proba=proba.numpy(), test_labels=data.test_y.cpu().numpy(),
                 seed=seed, arm=arm.label, seconds=round(time.perf_counter() - started, 1), **extra)
    return json.loads(meta_path.read_text())


def mean_std(values: list[float]) -> str:
    if len(values) == 1:
        return f"{100 * values[0]:.2f}"
    return f"{100 * statistics.fmean(values):.2f} ± {100 * statistics.stdev(values):.2f}"


def adaptive_section(results: dict[str, list[dict]], m0: float, seeds: list[int]) -> list[str]:
    """Adaptive minus fixed test accuracy, paired by seed, and the verdict."""
    diffs = [a["test_acc"] - f["test_acc"] for a, f in zip(results["adaptive"], results["fixed"])]
    mean_diff, se = paired_difference([a["test_acc"] for a in results["adaptive"]],
                                      [f["test_acc"] for f in results["fixed"]])
    if len(diffs) < 2 or abs(mean_diff) <= 2 * se:
        verdict = "no difference the seeds can resolve (|mean| <= 2 standard errors)"
    else:
        verdict = "adaptive M helped" if mean_diff > 0 else "adaptive M hurt"
    final_ms = [r["final_m"] for r in results["adaptive"]]
    return [
        "",
        "## Did adaptive M help?",
        "",
        "Adaptive minus fixed test accuracy, paired by seed: "
        + ", ".join(f"{100 * d:+.2f}" for d in diffs)
        + f" points; mean {100 * mean_diff:+.2f} ± {100 * se:.2f} (standard error over {len(diffs)} seeds): "
        f"**{verdict}**.",
        f"Final M of the adaptive runs (started at {m0:g}): " + ", ".join(f"{m:.2f}" for m in final_ms)
        + f". M per epoch, seed {seeds[0]}: " + ", ".join(f"{m:.1f}" for m in results["adaptive"][0]["m_per_epoch"]) + ".",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="cifar10-reduced")
    p.add_argument("--model", default="tiny")
    p.add_argument("--epochs", type=int, default=None, help="default: the model's recipe (tiny: 20)")
    p.add_argument("--seeds", type=int, default=3, help="seeds per arm (default 3; the grid uses seed 0)")
    p.add_argument("--first-seed", type=int, default=1, help="first seed of the arms (default 1)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"which arms (default all: {','.join(ARMS)})")
    p.add_argument("--grid-n", default="1,2")
    p.add_argument("--grid-m", default="3,6,9,12")
    p.add_argument("--n", type=int, default=2, help="N of the fixed and adaptive arms")
    p.add_argument("--m", type=float, default=5.0, help="M of the fixed arm and start of the adaptive one")
    p.add_argument("--step", type=float, default=30.0, help="adaptive-M step")
    p.add_argument("--top", type=int, default=3, help="models in the ensemble")
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--out", default="runs/experiment-randaugment", help="run directory (resumable)")
    p.add_argument("--results", default=str(ROOT / "experiments/results/randaugment.md"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    out = Path(args.out)
    overrides = dict(policy_training(), device=args.device)
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    config = TrainConfig.for_model(args.model, **overrides)

    wanted = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = sorted(set(wanted) - set(ARMS))
    if unknown:
        p.error(f"unknown arm(s) {', '.join(unknown)}; expected some of {', '.join(ARMS)}")

    # 1. the grid (inline: this process, its threads; resumable in out/grid), for the grid-best arm
    grid = None
    spec = GridSpec(
        dataset=args.dataset, ns=tuple(int(v) for v in args.grid_n.split(",")),
        ms=tuple(float(v) for v in args.grid_m.split(",")), seeds=1, first_seed=0,
        train=config, save_outputs=True,
    )
    devices = [str(torch.device(config.device if config.device != "auto" else
                                ("cuda:0" if torch.cuda.is_available() else "cpu")))]
    if "grid-best" in wanted:
        grid = run_grid(spec, out / "grid", backend="inline", devices=devices, progress=True)
        print(f"grid best: N={grid.best.n}, M={grid.best.m:g} (val {100 * grid.best.val_mean:.2f}%)", flush=True)

    # 2. the arms
    data = prepare(load_splits(args.dataset), config.device)
    arms = [
        Arm("fixed", f"RandAugment N={args.n}, M={args.m:g} (fixed)", RandAugment(args.n, args.m)),
        Arm("adaptive", f"RandAugment N={args.n}, M={args.m:g} → adaptive (step {args.step:g})",
            RandAugment(args.n, args.m), adaptive=True),
        *([Arm("grid-best", f"RandAugment N={grid.best.n}, M={grid.best.m:g} (grid's best)",
               RandAugment(grid.best.n, grid.best.m))] if grid else []),
        Arm("trivialaugment", "TrivialAugment", TrivialAugment()),
        Arm("baseline", "no policy (standard + Cutout 16 only)", None),
    ]
    arms = [arm for arm in arms if arm.slug in wanted]
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    results: dict[str, list[dict]] = {}
    for arm in arms:
        results[arm.slug] = []
        for seed in seeds:
            r = run_arm(arm, seed, data, config, args.step, out)
            results[arm.slug].append(r)
            print(f"{arm.label} seed {seed}: val {100 * r['val_acc']:.2f}% test {100 * r['test_acc']:.2f}%"
                  + (f" final M {r['final_m']:.2f}" if "final_m" in r else ""), flush=True)

    # 3. the report
    ensemble = top_k_ensemble(find_members([out / arm.slug for arm in arms]), min(args.top, len(arms) * len(seeds)))
    wall = time.perf_counter() - started

    lines = [
        "# RandAugment: fixed M vs adaptive M vs the grid's best",
        "",
        f"Produced by `python experiments/randaugment.py {' '.join(argv if argv is not None else sys.argv[1:])}`"
        f" in {wall / 60:.1f} min (runs already in `{out}` were read back, not retrained).",
        f"Machine: {describe()}.",
        "",
        f"Dataset `{args.dataset}`"
        + (" (reduced CIFAR-10: train 4,000, val 5,000, test 10,000)" if args.dataset == "cifar10-reduced" else "")
        + f". Model `{config.model}`, "
        f"{config.epochs} epochs, batch {config.batch_size}, lr {config.lr:g} ({config.schedule}); every arm trains like "
        "`autoaug train --policy ...`: the policy, then pad-crop + flip, then Cutout 16. "
        f"The grid uses seed 0; every arm uses seeds {seeds[0]}..{seeds[-1]}. M on the 0..30 scale.",
        "",
    ]
    if grid is not None:
        lines += ["## Grid (selects N and M by validation accuracy, seed 0)", ""]
        grid_md = grid_markdown(grid).split("\n")
        start = grid_md.index("## Validation accuracy (selects the best point)")
        lines += ["#" + line if line.startswith("## ") else line for line in grid_md[start:]]
    lines += [
        "## Arms (test accuracy decides; mean ± std over seeds, %)",
        "",
        "| arm | test acc | val acc | test per seed |",
        "|---|---|---|---|",
    ]
    for arm in arms:
        rs = results[arm.slug]
        per_seed = ", ".join(f"{100 * r['test_acc']:.2f}" for r in rs)
        lines.append(f"| {arm.label} | {mean_std([r['test_acc'] for r in rs])} | "
                     f"{mean_std([r['val_acc'] for r in rs])} | {per_seed} |")
    lines += adaptive_section(results, args.m, seeds) if {"fixed", "adaptive"} <= set(results) else []
    lines += [
        "",
        "## Ensemble",
        "",
        f"Top {len(ensemble.members)} of all {ensemble.candidates} arm runs by validation accuracy: test "
        f"{100 * ensemble.test_acc:.2f}% vs {100 * ensemble.best_single.test_acc:.2f}% for the best single model "
        f"({Path(ensemble.best_single.name).parent.name}/{Path(ensemble.best_single.name).name}) and "
        f"{100 * ensemble.member_test_mean:.2f}% for the members' mean.",
        "",
    ]
    path = Path(args.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    print("\n".join(lines))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
