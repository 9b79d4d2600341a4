"""Do the two executions of a policy train the same? The batched torch path of `autoaug train`
against the whole exported albumentations training pipeline (`--pipeline train`: policy,
Normalize, pad-crop, flip, Cutout 16, ToTensorV2, read back with `A.load` from the file the
export writes) in DataLoader workers, paired by seed.

Each seed trains one `tiny` child per path with `autoaug.training.loop.train_child` on the embedded
reduced CIFAR-10 (4,000 train images, val accuracy on 5,000), the same initial weights per seed.
Reports both means +/- std over the seeds, the difference of the means and its standard error
from the per-seed differences, and writes experiments/results/compare_paths.md.

    python experiments/compare_paths.py                          # 5 seeds, 20 epochs, 1 worker
    python experiments/compare_paths.py --seeds 2 --epochs 2     # a quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from autoaug.space.albu import set_image_pool  # noqa: E402
from autoaug.space.pipeline import load_pipeline_file, save_pipeline  # noqa: E402
from autoaug.training.data import load_splits  # noqa: E402
from autoaug.space.specs import resolve  # noqa: E402
from autoaug.training.config import TrainConfig  # noqa: E402
from autoaug.training.device import prepare  # noqa: E402
from autoaug.training.loop import train_child  # noqa: E402
from autoaug.training.pipelines import AlbumentationsAugment, training_pipeline  # noqa: E402
from hostinfo import describe, load_average  # noqa: E402
from autoaug.stats import paired_difference  # noqa: E402


def run(args: argparse.Namespace) -> str:
    torch.set_num_threads(args.threads)
    data = prepare(load_splits("cifar10-reduced"), "cpu")
    resolved = resolve(args.policy)
    config = TrainConfig.for_model(
        args.model, device="cpu", standard=resolved.standard, cutout=resolved.cutout,
        **({"epochs": args.epochs} if args.epochs is not None else {}),
    )
    with tempfile.TemporaryDirectory() as tmp:  # the file `autoaug train --augment albumentations` writes
        path = save_pipeline(training_pipeline(resolved, data, config), Path(tmp) / "train.albumentations.json")
        pipeline = load_pipeline_file(path)
    set_image_pool(pipeline, np.ascontiguousarray(data.train_x.permute(0, 2, 3, 1).numpy()))
    paths = {"torch": resolved.augmenter, "albumentations": AlbumentationsAugment(pipeline, args.workers)}
    load_before = load_average()
    accs: dict[str, list[float]] = {name: [] for name in paths}
    seconds: dict[str, list[float]] = {name: [] for name in paths}
    seeds = list(range(args.first_seed, args.first_seed + args.seeds))
    for seed in seeds:
        for name, augment in paths.items():
            started = time.perf_counter()
            accs[name].append(train_child(augment, data, config, seed))
            seconds[name].append(time.perf_counter() - started)
            print(f"seed {seed} {name}: {100 * accs[name][-1]:.2f}% in {seconds[name][-1]:.1f} s",
                  file=sys.stderr, flush=True)

    diffs = [a - t for a, t in zip(accs["albumentations"], accs["torch"])]
    mean_diff, se = paired_difference(accs["albumentations"], accs["torch"])
    lines = [
        "# The torch path and the exported albumentations training pipeline, paired by seed",
        "",
        f"Machine: {describe('cpu')}; albumentations in {args.workers} DataLoader worker "
        f"process{'es' if args.workers > 1 else ''}.",
        f"Run {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}: `python experiments/compare_paths.py "
        f"{' '.join(sys.argv[1:])}`; load average (1, 5, 15 min) before {load_before}, after {load_average()}.",
        "",
        f"Policy {args.policy} ({resolved.description}), model {config.model}, {config.epochs} epochs, "
        "embedded reduced CIFAR-10 (4,000 train images), val accuracy on its 5,000 val images. "
        "torch: `autoaug train` (batched kernels); albumentations: the whole pipeline of "
        "`autoaug export-albumentations --pipeline train`, read back with `A.load`.",
        "",
        "| seed | torch | albumentations | albumentations - torch | s torch | s albumentations |",
        "|---|---|---|---|---|---|",
    ]
    for i, seed in enumerate(seeds):
        lines.append(
            f"| {seed} | {100 * accs['torch'][i]:.2f}% | {100 * accs['albumentations'][i]:.2f}% | "
            f"{100 * diffs[i]:+.2f} | {seconds['torch'][i]:.1f} | {seconds['albumentations'][i]:.1f} |"
        )

    def summary(values: list[float]) -> str:
        spread = statistics.stdev(values) if len(values) > 1 else float("nan")
        return f"{100 * statistics.mean(values):.2f}% +/- {100 * spread:.2f}"

    lines += [
        f"| mean +/- std ({len(seeds)}) | {summary(accs['torch'])} | {summary(accs['albumentations'])} | "
        f"{100 * mean_diff:+.2f} +/- {100 * se:.2f} (SE) | {statistics.mean(seconds['torch']):.1f} | "
        f"{statistics.mean(seconds['albumentations']):.1f} |",
        "",
        f"Difference of the means (albumentations - torch): {100 * mean_diff:+.2f} points, standard "
        f"error {100 * se:.2f} from the {len(diffs)} per-seed differences "
        f"({abs(mean_diff) / se:.1f} standard errors)." if se == se else "",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--policy", default="autoaugment-cifar10", help="an `autoaug train --policy` spec")
    parser.add_argument("--model", default="tiny")
    parser.add_argument("--epochs", type=int, default=None, help="default: the model's recipe (tiny: 20)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers (default 1)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--out", default=str(REPO / "experiments/results/compare_paths.md"))
    args = parser.parse_args()
    text = run(args)
    print(text)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
