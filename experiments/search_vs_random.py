"""PPO search vs random search at the same budget, and what the found policies are worth.

Runs the default search (the cpu-quick preset) with `--algo ppo` and `--algo random` into two run
directories (resuming whatever they already hold), then re-trains children with the best single
policy and the exported top-5 policy of each, and with no policy (standard pad-crop + flip only),
on fresh seeds that no search saw, with the search's own child setup. A search's best reward is
the maximum of many noisy draws (winner's curse); the re-evaluation is what a policy is worth.

    python experiments/search_vs_random.py [--budget 160] [--seeds 3] [--out experiments/results/search.md]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import time
from pathlib import Path

import torch

from hostinfo import cpu_model

from autoaug.search.config import load_config
from autoaug.space.policy import Policy
from autoaug.search.export import export_policy
from autoaug.search.trials import ChildTask
from autoaug.search.search import run_search
from autoaug.search.trials import derive_seed
from autoaug.search.trials import device_data
from autoaug.training.loop import train_child


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=int, default=160)
    ap.add_argument("--seeds", type=int, default=3, help="fresh seeds for the re-evaluation")
    ap.add_argument("--runs", default="runs/experiment", help="parent of the two run directories")
    ap.add_argument("--out", default="experiments/results/search.md")
    args = ap.parse_args()

    rows, searches = [], {}
    for algo in ("ppo", "random"):
        config = load_config(None, [f"algo={algo}", f"budget={args.budget}", f"out={args.runs}/{algo}"])
        t0 = time.perf_counter()
        result = run_search(config, progress=False)
        searches[algo] = (config, result, time.perf_counter() - t0)

    config = searches["ppo"][0]
    task = ChildTask.from_config(config)
    torch.set_num_threads(max(1, (os.cpu_count() or 1)))
    device = "cuda" if torch.cuda.is_available() else "cpu"
    data = device_data(task.dataset, device, task.train_subset, task.val_subset)
    child = dataclasses.replace(task.child, device=device)
    seeds = [derive_seed(12345, "re-evaluation", k) for k in range(args.seeds)]

    def score(policy: Policy | None) -> tuple[float, float]:
        accs = [train_child(policy, data, child, s) * 100 for s in seeds]
        return statistics.mean(accs), statistics.stdev(accs)

    candidates: list[tuple[str, Policy | None]] = [("no policy (standard pad-crop + flip)", None)]
    for algo, (cfg, result, seconds) in searches.items():
        best = result.best[0]
        rows.append(f"| {algo} | {seconds / 60:.1f} min | {result.completed} | {best.reward * 100:.2f} | "
                    f"{statistics.mean(t.reward for t in result.best) * 100:.2f} |")
        candidates.append((f"{algo}: best single policy", Policy.from_json(best.payload["policy"])))
        candidates.append((f"{algo}: exported top-{cfg.export_top} policy", export_policy(cfg.out, cfg.export_top).policy))
    re_rows = []
    for name, policy in candidates:
        mean, std = score(policy)
        re_rows.append(f"| {name} | {mean:.2f} ± {std:.2f} |")

    lines = [
        f"# PPO search vs random search (budget {args.budget}, cpu-quick preset)",
        "",
        f"Machine: {cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"
        + (f", GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "") + ". "
        f"Command: `python experiments/search_vs_random.py --budget {args.budget} --seeds {args.seeds}`.",
        f"Child: `{task.child.model}`, {task.child.epochs} epochs, {task.train_subset} train / "
        f"{task.val_subset} val images of `{task.dataset}`; reward = val accuracy.",
        "",
        "| search | wall time | trials | best reward (%) | mean of the top 5 (%) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Re-evaluated on {args.seeds} fresh seeds (val accuracy %, mean ± std):",
        "",
        "| augmentation | val accuracy |",
        "|---|---|",
        *re_rows,
        "",
    ]
    text = "\n".join(lines)
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
