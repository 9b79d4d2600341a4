"""The density-matching reward (`reward.kind = "density"`): score a policy without training a child.

Fast AutoAugment (Lim et al. 2019, "Fast AutoAugment", NeurIPS, Sec. 3) treats a good policy as
one whose augmented images still look like the training distribution to a model that never saw
them: split the training images into K folds, train one model per fold on the other folds with
the plain recipe, and score a policy by those models' accuracy on their own held-out fold
augmented by the policy. No child is trained per policy, so a policy costs K forward passes
over the held-out images instead of a whole training run.

The fold models are trained once per run, through the search's worker pool, with the `[child]`
recipe and no policy, and saved in RUN_DIR/density/fold-K.pt (a killed run retrains only the
folds it had not saved). Otherwise the search treats this reward like the child reward: same
controller, workers, trial store, resume and export.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn

from autoaug.errors import AutoaugError, DataError
from autoaug.search.rundir import load_checkpoint, save_checkpoint
from autoaug.search.trials import ChildTask, derive_seed
from autoaug.search.tasks import Task
from autoaug.search.workers import WorkerPool
from autoaug.space.policy import Policy
from autoaug.training.device import DeviceData
from autoaug.training.loop import Augment, evaluate, train_model, val_accuracy
from autoaug.training.models import build_model
from autoaug.training.subsets import class_rank

FOLD_DIRNAME = "density"
FOLD_VERSION = 1


@dataclass(frozen=True)
class DensityTask(ChildTask):
    """A search's ChildTask for the density reward: the folds split its child-train images, and
    its `child` is the fold models' recipe (with no policy)."""

    folds: int
    draws: int
    fold_dir: str
    """Absolute path of RUN_DIR/density."""

    def fold_path(self, k: int) -> Path:
        return Path(self.fold_dir) / f"fold-{k}.pt"

    def setup(self, k: int, seed: int) -> str:
        """What fold model k is trained from, as one string stored with its weights."""
        child = {f: v for f, v in dataclasses.asdict(self.child).items() if f != "device"}
        sized = {} if self.image_size is None else {"image_size": self.image_size}  # older folds had none
        return json.dumps({"dataset": self.dataset, "train_subset": self.train_subset, **sized,
                           "child": child, "folds": self.folds, "fold": k, "seed": seed},
                          sort_keys=True)


def _listed(numbers: list[int]) -> str:
    """Fold numbers for a log line, at most 10 of them shown."""
    text = ", ".join(map(str, numbers[:10]))
    return text if len(numbers) <= 10 else f"{text}, ... ({len(numbers)} folds)"


def fold_seed(search_seed: int, k: int) -> int:
    """The training seed of fold model k of a search seeded `search_seed`."""
    return derive_seed(search_seed, "density-fold", k)


def fold_split(y: np.ndarray, k: int, folds: int) -> tuple[np.ndarray, np.ndarray]:
    """(train indices, held-out indices) of fold `k` of `folds`, stratified by class: image i is
    held out in fold (its rank within its class) % folds (no RNG: every worker agrees)."""
    held = class_rank(y) % folds == k
    if not held.any() or held.all():
        raise DataError(f"density reward: {len(y)} child-train images cannot make {folds} folds with images "
                        "on both sides; lower reward.folds or raise train_subset")
    return np.flatnonzero(~held), np.flatnonzero(held)


def fold_data(data: DeviceData, k: int, folds: int) -> DeviceData:
    """`data` with train = fold k's training images and val = its held-out images (the
    normalisation statistics stay those of all the child-train images)."""
    train, held = fold_split(data.train_y.cpu().numpy(), k, folds)
    train_t = torch.from_numpy(train).to(data.device)
    held_t = torch.from_numpy(held).to(data.device)
    return dataclasses.replace(
        data,
        train_x=data.train_x[train_t], train_y=data.train_y[train_t],
        val_x=data.train_x[held_t], val_y=data.train_y[held_t],
    )


def train_fold(task: DensityTask, k: int, seed: int, device: str) -> float:
    """Train fold model `k` with the plain recipe, save it, return its clean held-out accuracy."""
    data = fold_data(task.data(device), k, task.folds)
    config = dataclasses.replace(task.child, device=device)
    model, _ = train_model(None, data, config, seed)
    accuracy = val_accuracy(model, data, config)
    save_checkpoint(task.fold_path(k), {
        "version": FOLD_VERSION,
        "setup": task.setup(k, seed),
        "held_out_acc": accuracy,
        "num_classes": data.num_classes,
        "state_dict": {name: t.detach().cpu() for name, t in model.state_dict().items()},
    })
    return accuracy


def read_fold(task: DensityTask, k: int, seed: int) -> dict[str, Any] | None:
    """Fold model k's saved state, None if it was never saved; AutoaugError if it was trained
    for another setup (another dataset, subset, recipe, fold count or seed)."""
    path = task.fold_path(k)
    state = load_checkpoint(path)
    if state is None:
        return None
    if state.get("version") != FOLD_VERSION or state.get("setup") != task.setup(k, seed):
        raise AutoaugError(f"{path} was trained for another setup than this search's; delete "
                           f"{Path(task.fold_dir)} to retrain the fold models")
    return state


def ensure_fold_models(
    task: DensityTask, search_seed: int, pool: WorkerPool, log: Callable[[str], None] = print
) -> list[float]:
    """Train (through `pool`) the fold models that RUN_DIR/density does not hold yet; returns
    every fold model's clean held-out accuracy."""
    missing = [k for k in range(task.folds) if read_fold(task, k, fold_seed(search_seed, k)) is None]
    if missing:
        log(f"density reward: training fold models {_listed(missing)} of {task.folds}")
        # Negative ids: these are not trials, and ids only need to be unique within one run().
        tasks = [Task(-1 - k, {"fold": k}, fold_seed(search_seed, k)) for k in missing]
        for result in pool.run(tasks):
            if not result.ok:
                k = -1 - result.task_id
                raise AutoaugError(f"training density fold model {k} failed: {result.error}")
    accuracies = []
    for k in range(task.folds):
        state = read_fold(task, k, fold_seed(search_seed, k))
        if state is None:  # a worker reported success without writing: not recoverable here
            raise AutoaugError(f"density fold model {k} was not saved to {task.fold_path(k)}")
        accuracies.append(float(state["held_out_acc"]))
    log("density reward: fold models' clean held-out accuracy "
        + ", ".join(f"{100 * a:.1f}%" for a in accuracies))
    return accuracies


@dataclass(frozen=True, eq=False)
class Fold:
    """One fold model, in eval mode, with its held-out images on its device."""

    model: nn.Module
    x: torch.Tensor
    """uint8 (n, C, H, W) held-out images."""
    y: torch.Tensor
    """int64 (n,) labels."""


# One set of fold models per worker process, loaded at its first density trial.
_FOLD_CACHE: dict[tuple[Any, ...], list[Fold]] = {}


def load_folds(task: DensityTask, device: str) -> list[Fold]:
    """The fold models of `task` on `device`, with their held-out images (cached per process)."""
    key = (task.fold_dir, task.folds, device)
    if key not in _FOLD_CACHE:
        data = task.data(device)
        folds = []
        for k in range(task.folds):
            state = load_checkpoint(task.fold_path(k))
            if state is None:
                raise AutoaugError(f"density fold model {task.fold_path(k)} is missing")
            model = build_model(task.child.model, int(state["num_classes"]))
            model.load_state_dict(state["state_dict"])
            model = model.to(device=data.device, memory_format=torch.channels_last).eval()
            held = fold_data(data, k, task.folds)
            folds.append(Fold(model, held.val_x, held.val_y))
        _FOLD_CACHE.clear()
        _FOLD_CACHE[key] = folds
    return _FOLD_CACHE[key]


def density_reward(
    augment: Augment | None,
    folds: list[Fold],
    data: DeviceData,
    draws: int,
    seed: int,
    batch_size: int = 1024,
) -> float:
    """The fold models' accuracy on `draws` augmented copies of their held-out images, over all
    folds' images, in [0, 1]. `augment` None scores the images as they are (one copy)."""
    generator = torch.Generator(device=data.device).manual_seed(seed)
    correct = total = 0.0
    for fold in folds:
        copies = 1 if augment is None else draws
        x = fold.x.repeat(copies, 1, 1, 1)  # (copies * n, C, H, W) uint8
        y = fold.y.repeat(copies)  # (copies * n,)
        if augment is not None:
            x = augment(x, generator)
        correct += evaluate(fold.model, x, y, mean=data.mean, std=data.std, batch_size=batch_size) * len(y)
        total += len(y)
    return correct / total


def evaluate_density(task: DensityTask, payload: dict[str, Any], seed: int, device: str) -> float:
    """The worker function of a density search: {"fold": k} trains fold model k (returns its
    clean held-out accuracy); {"policy": JSON or None} returns the policy's density reward."""
    if "fold" in payload:
        return train_fold(task, int(payload["fold"]), seed, device)
    doc = payload["policy"]
    augment = None if doc is None else Policy.from_json(doc, "trial payload")  # batched call
    data = task.data(device)
    return density_reward(augment, load_folds(task, device), data, task.draws, seed,
                          task.child.eval_batch_size)
