"""The density-matching reward (issue #10, item 4): policies per CPU hour, and its noise.

Runs the default search (the cpu-quick preset: PPO, `tiny` recipe with 8 epochs, 2,000
child-train images of the embedded reduced CIFAR-10) with `reward.kind = "density"` in one
process and one thread (backend inline), into a fresh run directory: first the 5 fold models
(trained once; the search reuses them), then `--budget` policies through the whole search loop
(controller, PPO updates, trial store, TensorBoard, export). Policies per CPU hour = policies /
the process's CPU time for the search. The peer, measured in the same run: one child of the
default child reward (the same recipe on all 2,000 images, published AutoAugment CIFAR-10 policy).

Then the noise of the reward: the density reward of the published AutoAugment CIFAR-10 policy
and of a uniformly random policy over `--noise-seeds` augmentation seeds, with 1, 2 and 4
augmented draws per held-out image, and the CPU time per evaluation.

    python experiments/density.py [--budget 320] [--noise-seeds 10] [--out experiments/results/density.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import shutil
import statistics
import time
from pathlib import Path

import torch

from hostinfo import describe, load_average

from autoaug.search.config import load_config
from autoaug.search.density import FOLD_DIRNAME, DensityTask, ensure_fold_models, evaluate_density
from autoaug.search.trials import ChildTask
from autoaug.search.search import run_search, uniform_tokens
from autoaug.search.workers import WorkerPool
from autoaug.space.policy import Policy, published_policy
from autoaug.training.loop import train_child
from autoaug.training.subsets import device_data


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=320)
    ap.add_argument("--noise-seeds", type=int, default=10)
    ap.add_argument("--run", default="runs/density-experiment", help="run directory (recreated)")
    ap.add_argument("--out", default="experiments/results/density.md")
    args = ap.parse_args()
    torch.set_num_threads(1)

    run = Path(args.run)
    shutil.rmtree(run, ignore_errors=True)
    config = load_config(None, ["reward.kind=density", "backend=inline", f"out={run}",
                                f"budget={args.budget}"])
    child_task = ChildTask.from_config(config)
    task = DensityTask(config.dataset, config.train_subset, config.val_subset, config.child,
                       config.reward.folds, config.reward.draws, str((run / FOLD_DIRNAME).resolve()))

    def fn(payload, seed, device):  # inline pool: a closure is fine
        return evaluate_density(task, payload, seed, device)

    c0 = time.process_time()
    with WorkerPool(fn, backend="inline", devices=["cpu"]) as pool:
        fold_accs = ensure_fold_models(task, config.seed, pool)
    fold_cpu = time.process_time() - c0

    c0, w0 = time.process_time(), time.perf_counter()
    result = run_search(config, progress=False)
    search_cpu, search_wall = time.process_time() - c0, time.perf_counter() - w0
    rate = result.completed / (search_cpu / 3600)

    published = published_policy("autoaugment-cifar10")
    data = device_data(child_task.dataset, "cpu", child_task.train_subset, child_task.val_subset)
    c0 = time.process_time()
    child_acc = train_child(published, data, dataclasses.replace(child_task.child, device="cpu"), 0)
    child_cpu = time.process_time() - c0

    random_policy = Policy.from_tokens(uniform_tokens(1, torch.Generator().manual_seed(0))[0].tolist())
    noise_rows = []
    for draws in (1, 2, 4):
        task_d = dataclasses.replace(task, draws=draws)
        for name, policy in (("autoaugment-cifar10", published), ("random policy (seed 0)", random_policy)):
            c0 = time.process_time()
            rewards = [100 * evaluate_density(task_d, {"policy": policy.to_json()}, s, "cpu")
                       for s in range(args.noise_seeds)]
            per_eval = (time.process_time() - c0) / args.noise_seeds
            noise_rows.append(f"| {name} | {draws} | {statistics.mean(rewards):.2f} | "
                              f"{statistics.stdev(rewards):.2f} | {per_eval:.2f} |")
    clean = 100 * evaluate_density(task, {"policy": None}, 0, "cpu")

    lines = [
        "# Density-matching reward: cost and noise (issue #10, item 4)",
        "",
        f"Machine: {describe('cpu')}; load average at the end {load_average()} (a shared 2-core "
        f"box: CPU times are per process and one thread, so other jobs inflate them only a little). "
        f"Command: `python experiments/density.py --budget {args.budget} --noise-seeds {args.noise_seeds}`.",
        f"Setup: the cpu-quick preset with `reward.kind = \"density\"`: {config.reward.folds} fold "
        f"models (`{child_task.child.model}`, {child_task.child.epochs} epochs, plain pad-crop + flip) "
        f"on folds of the {child_task.train_subset} child-train images of `{child_task.dataset}`, "
        f"each scored on its {child_task.train_subset // config.reward.folds} held-out images "
        f"augmented by the policy, {config.reward.draws} draw(s) per image (the default).",
        "",
        "| what | CPU seconds | figure |",
        "|---|---|---|",
        f"| train the {config.reward.folds} fold models (once per run) | {fold_cpu:.1f} | clean held-out "
        f"accuracy {', '.join(f'{100 * a:.1f}%' for a in fold_accs)} |",
        f"| density search, {result.completed} policies (PPO, store, TensorBoard, export; "
        f"{search_wall:.0f} s wall) | {search_cpu:.1f} | **{rate:,.0f} policies per CPU hour** "
        f"({search_cpu / result.completed:.2f} CPU s per policy) |",
        f"| peer: one child of the child reward (same recipe, all {child_task.train_subset} images, "
        f"autoaugment-cifar10, val acc {100 * child_acc:.1f}%) | {child_cpu:.1f} | "
        f"{3600 / child_cpu:,.0f} policies per CPU hour at best; density is "
        f"{child_cpu / (search_cpu / result.completed):.0f}x cheaper per policy |",
        "",
        f"Search rewards of the {len(result.best)} exported policies (chosen by the re-evaluation "
        f"before export): {', '.join(f'{100 * t.reward:.2f}' for t in result.best)} "
        f"(un-augmented held-out images: {clean:.2f}). The search's CPU time includes the "
        f"round's reference evaluations and the re-evaluation before export "
        f"({config.export.reevaluate_top} policies x {config.export.reevaluate_seeds} seeds + "
        f"references).",
        "",
        f"Noise: the density reward (%) of one policy over augmentation seeds 0..{args.noise_seeds - 1}.",
        "",
        "| policy | draws per image | mean | std over seeds | CPU s per evaluation |",
        "|---|---|---|---|---|",
        *noise_rows,
        "",
        "A density reward only says how far a policy moves images from what the fold models learned; "
        "it does not measure whether training with the policy helps (Fast AutoAugment's assumption). "
        "Whether it ranks policies like the final-training regime does is item 5 of issue #10.",
    ]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
