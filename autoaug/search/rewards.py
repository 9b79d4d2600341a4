"""What a trial of the search is and how its reward is measured, for both the search loop
(`autoaug.search.search`) and the re-evaluation before export (`autoaug.search.export`)."""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from autoaug.search.config import SearchConfig
from autoaug.search.density import FOLD_DIRNAME, DensityTask, evaluate_density
from autoaug.search.fidelity import RUNG_KEY
from autoaug.search.store import TrialSpec
from autoaug.search.trials import FUSED, ChildTask
from autoaug.space.augment import Augmenter
from autoaug.space.specs import policy_from_json
from autoaug.training.fused import train_children
from autoaug.search.trunks import TRUNK_DIRNAME, shared_trunk, trunk_key
from autoaug.training.loop import TrainState, train_child, train_trunk

REFERENCE_KEY = "reference"


def evaluate_policy(task: ChildTask, payload: dict[str, Any], seed: int, device: str) -> float | list[float]:
    """A trial: train one child with the payload's policy (None: the reference child, no
    policy) on `device`; its val accuracy is the reward. A fused group of trials (payload
    `trials.FUSED`): their children trained as one network, a reward each. A payload's
    `fidelity.RUNG_KEY` trains it at a cheaper rung (fewer epochs, fewer or smaller images), or from
    the batch's shared trunk (`autoaug.search.trunks`, in `task.trunk_dir`). Top level so
    worker processes can unpickle it (as `functools.partial(evaluate_policy, task)`)."""
    config = dataclasses.replace(task.child, device=device)
    if FUSED in payload:
        members = payload[FUSED]
        rungs = {json.dumps(p.get(RUNG_KEY), sort_keys=True) for p, _ in members}
        if any(CHILD_KEY in p for p, _ in members) or len(rungs) > 1:  # recipes of their own: one by one
            return [_train_one(task, p, s, config) for p, s in members]
        first = members[0][0]
        starts = {s: _trunk(task, p, s, config) for p, s in members} if _trunk_epochs(first) else None
        return train_children([_policy(p) for p, _ in members], _data(task, first, device), _recipe(config, first),
                              [s for _, s in members], starts=starts)
    return _train_one(task, payload, seed, config)


def _train_one(task: ChildTask, payload: dict[str, Any], seed: int, config: Any) -> float:
    """One trial's child: from the batch's shared trunk where its rung has one (`autoaug.search.trunks`)."""
    data, recipe = _data(task, payload, config.device), _recipe(config, payload)
    return train_child(_policy(payload), data, recipe, seed, _trunk(task, payload, seed, config))


def _trunk(task: ChildTask, payload: dict[str, Any], seed: int, config: Any) -> TrainState | None:
    """The shared trunk a payload's child goes on from (None: its rung has none), from the run
    directory's trunks/ or trained (and kept there) now."""
    epochs = _trunk_epochs(payload)
    if not epochs:
        return None
    at_rung, recipe = _rung_task(task, payload), _recipe(config, payload)
    where = {k: getattr(at_rung, k) for k in ("dataset", "val_subset", "train_subset", "image_size")}
    return shared_trunk(task.trunk_dir, trunk_key(seed, epochs, recipe, where),
                        lambda: train_trunk(at_rung.data(config.device), recipe, seed, epochs))


def _trunk_epochs(payload: dict[str, Any]) -> int:
    """The epochs of the shared trunk a payload's child goes on from (0: none)."""
    return payload.get(RUNG_KEY, {}).get("trunk", 0)


CHILD_KEY = "child"
"""Payload key of the child settings a trial trains with instead of the search's (a free
alternative's pad-crop / flip / Cutout, `autoaug.search.alternatives`)."""


def recipe_of(payload: dict[str, Any]) -> str:
    """What a trial trains with besides its policy and seed (its rung's settings, a free
    alternative's child settings), as text: trials alike in it fuse into one network
    (`autoaug.search.trials.run_trials`)."""
    return json.dumps({key: payload.get(key) for key in (RUNG_KEY, CHILD_KEY)}, sort_keys=True)


def _recipe(config: Any, payload: dict[str, Any]) -> Any:
    """The child recipe a payload trains with: the search's, a free alternative's, or a rung's
    epochs and Cutout (the pad follows the rung's image side by itself)."""
    if CHILD_KEY in payload:
        config = dataclasses.replace(config, **payload[CHILD_KEY])
    rung = payload.get(RUNG_KEY, {})
    return dataclasses.replace(config, **{k: rung[k] for k in ("epochs", "cutout") if k in rung})


def _data(task: ChildTask, payload: dict[str, Any], device: str) -> Any:
    """The data a payload trains on: the search's, or a rung's first N child-train images of
    them and/or all of them resized to its side (as `device_data` resizes for `image_size`)."""
    return _rung_task(task, payload).data(device)


def _rung_task(task: ChildTask, payload: dict[str, Any]) -> ChildTask:
    """`task` with the train_subset and image_size of the payload's rung."""
    rung = payload.get(RUNG_KEY, {})
    return dataclasses.replace(task, **{k: rung[k] for k in ("train_subset", "image_size") if k in rung})


def _policy(payload: dict[str, Any]) -> Augmenter | None:
    """The payload's policy: a searched one, or a free alternative's (TrivialAugment, ...)."""
    doc = payload["policy"]
    return None if doc is None else policy_from_json(doc, "trial payload")


def trial_key(tokens: Sequence[int]) -> str:
    return "-".join(str(int(t)) for t in tokens)


def reference_spec(seed: int) -> TrialSpec:
    """The reference child of a paired batch: the same recipe and seed, no policy."""
    return TrialSpec(key=REFERENCE_KEY, payload={"policy": None}, seed=seed, role="reference")


# Seed-to-seed std of the default child's reward in points of val accuracy: 0.83 for the published
# CIFAR-10 policy over 10 seeds (experiments/results/reward_noise.md, issue #10).
REWARD_NOISE_POINTS = 0.83


def small_val_warning(val_images: int) -> str | None:
    """A warning when one val image moves the reward by more than its seed noise (issue #22), else None."""
    step = 100 / max(1, val_images)
    if step <= REWARD_NOISE_POINTS:
        return None
    return (f"warning: the reward is scored on {val_images} val images, so one image moves it by {step:.2f} "
            f"points, more than a reward's seed-to-seed noise ({REWARD_NOISE_POINTS} points, "
            "experiments/results/reward_noise.md): policies closer than that are told apart by luck; "
            f"more val images (val_subset, a larger val split; {math.ceil(100 / REWARD_NOISE_POINTS)} or more) help")


def rank_by(config: SearchConfig | None) -> str:
    """The store column that ranks a search's policies: "paired" when its rewards are paired
    (raw rewards of different batches carry different seeds), else "reward"."""
    return "paired" if config is not None and config.reward.paired else "reward"


def evaluator(config: SearchConfig, task: ChildTask, run_dir: Path) -> Callable[..., float]:
    """The workers' `fn(payload, seed, device) -> reward` for `config.reward.kind`."""
    if config.reward.kind == "density":
        density = DensityTask(config.dataset, config.train_subset, config.val_subset, config.child,
                              config.reward.folds, config.reward.draws,
                              str((run_dir / FOLD_DIRNAME).resolve()), image_size=config.image_size)
        return functools.partial(evaluate_density, density)
    return functools.partial(evaluate_policy, dataclasses.replace(task, trunk_dir=str((run_dir / TRUNK_DIRNAME).resolve())))
