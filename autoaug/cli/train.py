"""`autoaug train`: train a network with a policy over several seeds and report test accuracy."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from autoaug.cli.common import add_child_arguments, add_dataset_arguments, child_config, choose_dataset
from autoaug.errors import AutoaugError, ConfigError
from autoaug.files import atomic_write, save_json, shown_path
from autoaug.space import randaugment
from autoaug.space.albu import set_image_pool
from autoaug.space.export import AlbumentationsFile
from autoaug.space.pipeline import load_pipeline_file
from autoaug.space.specs import NAMES, resolve
from autoaug.training.data import load_splits
from autoaug.training.ensemble import accuracy, save_outputs
from autoaug.training.config import TrainConfig
from autoaug.training.device import prepare
from autoaug.training.loop import Augment, predict_proba, train_model
from autoaug.training.pipelines import AlbumentationsAugment, albumentations_file

AUGMENT_PATHS = ("torch", "albumentations")


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a network with a policy over several seeds and report test accuracy",
        description=(
            "Train --model with --policy on --dataset for --seeds seeds; report val and test "
            "accuracy (mean +/- std) on stdout and in OUT/results.json. Each seed leaves "
            "OUT/seed-S/ with model.pt (a state_dict), outputs.json + outputs.npz (val and test "
            "accuracy, test softmax: what `autoaug ensemble` reads) and TensorBoard logs (tb/)."
        ),
    )
    parser.add_argument(
        "--policy", required=True,
        help=f"a policy file (native or albumentations: trained inside the data's train recipe on either "
        f"--augment path), a whole pipeline file (export-albumentations --pipeline train; with "
        f"--augment albumentations) or one of: {', '.join(NAMES[:-1])}",
    )
    add_dataset_arguments(parser, from_policy=True)
    parser.add_argument("--seeds", type=int, default=1, help="number of seeds to train (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="first seed; seeds are SEED..SEED+K-1")
    parser.add_argument(
        "--augment", default="torch",
        help="torch (batched kernels on the device) or albumentations (the exported whole training "
        "pipeline, written to OUT/train.albumentations.json, in DataLoader workers)",
    )
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for --augment albumentations")
    parser.add_argument("--out", default=None, help="output directory (default runs/train-<policy>-<dataset>-<hash "
                        "of the policy file's path, the dataset and the image size>)")
    parser.add_argument("--adaptive-m", action="store_true", help="RandAugment only: raise M after an epoch whose "
                        "val accuracy falls below the best so far (autoaug.space.randaugment.adapt_magnitude)")
    parser.add_argument("--adaptive-step", type=float, default=30.0, help="M step per unit of relative val drop (default 30)")
    add_child_arguments(parser, device=True)
    parser.set_defaults(func=_cmd_train)


def _slug(spec: str) -> str:
    name = Path(spec).stem if spec.endswith(".json") else spec
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-") or "policy"


def default_out(policy: str, dataset: str, image_size: int | None) -> Path:
    """runs/train-<policy>-<dataset>-<8 hex>: readable, and distinct for different policy files
    of the same name (every search writes policy.json), datasets or sizes (issue #22)."""
    target = str(Path(policy).expanduser().resolve()) if policy.endswith(".json") else policy
    digest = hashlib.sha1(json.dumps([target, dataset, image_size]).encode()).hexdigest()[:8]
    return Path(f"runs/train-{_slug(policy)}-{_slug(dataset.rsplit('/', 1)[-1])}-{digest}")


def _mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std (0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    return float(arr.mean()), float(arr.std(ddof=1)) if len(arr) > 1 else 0.0


def _cmd_train(args: argparse.Namespace) -> int:
    from torch.utils.tensorboard import SummaryWriter  # tensorboard: ~0.25 s of start-up, only for commands that log

    if args.augment not in AUGMENT_PATHS:
        raise ConfigError(f"unknown --augment {args.augment!r}; expected one of {', '.join(AUGMENT_PATHS)}")
    if args.seeds < 1:
        raise ConfigError(f"--seeds must be >= 1, got {args.seeds}")
    resolved = resolve(args.policy)
    if resolved.pipeline_file is not None:
        if args.augment != "albumentations":
            raise ConfigError(
                f"{args.policy} is an albumentations pipeline file: it trains with --augment albumentations"
            )
        load_pipeline_file(resolved.pipeline_file)  # checked now, before any data are loaded: ends in ToTensorV2
    config = child_config(args, TrainConfig(standard=resolved.standard, flip=resolved.flip, cutout=resolved.cutout))
    # The split seed stays at its default: runs with other --seed values (an ensemble's
    # members) must share their val and test images.
    choice = choose_dataset(args, getattr(resolved.augmenter, "provenance", None), args.policy)
    if choice.warning:
        print(choice.warning, file=sys.stderr)
    args.dataset = choice.dataset  # what results.json and the summary name
    splits = load_splits(choice.dataset, image_size=choice.image_size)
    config = config.for_images(splits.image_shape)  # Cutout 'auto' in pixels, as results.json records it
    data = prepare(splits, config.device)
    augment: Augment | AlbumentationsAugment | None = resolved.augmenter
    if isinstance(augment, AlbumentationsFile):  # a policy-only file on the torch path: its SamplePairing's partners
        set_image_pool(augment.pipeline, splits.train_x)
    out = Path(args.out) if args.out is not None else default_out(args.policy, choice.dataset, choice.image_size)
    if args.augment == "albumentations":  # trains from OUT/train.albumentations.json, or the file given
        augment, warning = albumentations_file(resolved, data, config, args.workers, splits.train_x, out)
        if warning:
            print(warning, file=sys.stderr)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # a file where the directory goes, a name too long
        raise AutoaugError(f"cannot use --out {shown_path(out)}: {err.strerror or err}; expected a directory") from None

    if args.adaptive_m:  # checked before any training: RandAugment, batched torch path, step >= 0
        if args.augment != "torch":
            raise ConfigError("--adaptive-m changes M between epochs, which needs --augment torch")
        randaugment.adaptive_for_training(resolved.augmenter, args.adaptive_step)

    rows = []
    for seed in range(args.seed, args.seed + args.seeds):
        started = time.perf_counter()
        seed_dir = out / f"seed-{seed}"
        bar = tqdm(total=config.epochs, desc=f"seed {seed}", unit="epoch", leave=False, file=sys.stderr)
        with SummaryWriter(str(seed_dir / "tb")) as writer:
            adaptive = None
            if args.adaptive_m:  # a fresh M per seed; the hook of autoaug.space.randaugment (issue #5)
                adaptive = randaugment.adaptive_for_training(resolved.augmenter, args.adaptive_step, writer)

            def hook(epoch: int, val_acc: float | None, bar: Any = bar, adaptive: Any = adaptive) -> None:
                bar.set_postfix(val_acc=f"{val_acc:.4f}")
                bar.update(1)
                if adaptive is not None:
                    adaptive.on_epoch_end(epoch, val_acc)

            model, history = train_model(adaptive or augment, data, config, seed,
                                         on_epoch_end=hook, logger=writer)
            norm = dict(mean=data.mean, std=data.std, batch_size=config.eval_batch_size)
            val_acc = history[-1].val_acc  # measured after the last epoch (a logger is given)
            assert val_acc is not None
            test_proba = predict_proba(model, data.test_x, **norm).numpy()  # (N_test, K)
            test_labels = data.test_y.cpu().numpy()  # (N_test,)
            test_acc = accuracy(test_proba, test_labels)
            writer.add_scalar("test/acc", test_acc, config.epochs)
        bar.close()
        atomic_write(seed_dir / "model.pt", lambda handle: torch.save(model.state_dict(), handle), "model")
        # outputs.json + outputs.npz (test softmax): what `autoaug ensemble` reads.
        save_outputs(
            seed_dir, val_acc=val_acc, test_proba=test_proba, test_labels=test_labels, seed=seed,
            policy=args.policy, dataset=args.dataset, model=config.model, augment=args.augment,
        )
        rows.append(dict(
            seed=seed, val_acc=val_acc, test_acc=test_acc,
            seconds=round(time.perf_counter() - started, 2),
            final_train_loss=history[-1].train_loss, directory=seed_dir.name,
        ))
        if adaptive is not None:  # the final M goes into the exported policy (seed_dir/policy.json)
            randaugment.export_adaptive(adaptive, seed_dir, dataset=args.dataset, seed=seed)
            rows[-1]["final_m"] = adaptive.m

    val_mean, val_std = _mean_std([r["val_acc"] for r in rows])
    test_mean, test_std = _mean_std([r["test_acc"] for r in rows])
    results = dict(
        policy=args.policy, description=resolved.describe(splits.image_shape)
        + ("" if config.flip or not config.standard else ", without the flip (child.flip false)"), dataset=args.dataset,
        model=config.model, augment=args.augment, num_classes=data.num_classes,
        image_size=list(data.train_x.shape[2:]), device=str(data.device),
        config=dataclasses.asdict(config), seeds=rows,
        val_acc_mean=val_mean, val_acc_std=val_std,
        test_acc_mean=test_mean, test_acc_std=test_std,
    )
    save_json(results, out / "results.json")
    print(_table(results))
    print(f"wrote {out / 'results.json'}")
    return 0


def _table(results: dict[str, Any]) -> str:
    """The markdown table `autoaug train` prints: one row per seed, then mean +/- std."""
    lines = [
        f"{results['description']} | model {results['model']} | {results['config']['epochs']} epochs "
        f"| augment {results['augment']} | {results['dataset']} on {results['device']}",
        "",
        "| seed | val acc | test acc | seconds |",
        "|---|---|---|---|",
    ]
    for row in results["seeds"]:
        lines.append(
            f"| {row['seed']} | {100 * row['val_acc']:.2f}% | {100 * row['test_acc']:.2f}% | {row['seconds']:.1f} |"
        )
    lines.append(
        f"| mean +/- std ({len(results['seeds'])}) | {100 * results['val_acc_mean']:.2f}% +/- "
        f"{100 * results['val_acc_std']:.2f} | {100 * results['test_acc_mean']:.2f}% +/- "
        f"{100 * results['test_acc_std']:.2f} | |"
    )
    return "\n".join(lines)
