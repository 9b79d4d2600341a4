"""The density-matching reward (autoaug.density): folds, fold models cached in the run directory
and reused on resume, rewards in [0, 1], a policy that destroys images scoring below identity,
and bad settings -> one-line errors.

Real fold models, small: 2 folds of 400 child-train images, 12 epochs of batch 32 (about 4 s of
CPU for both), trained once per module by a real `run_search`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoaug.errors import AutoaugError, ConfigError, DataError
from autoaug.search.config import load_config
from autoaug.search.density import (
    FOLD_DIRNAME,
    DensityTask,
    evaluate_density,
    fold_seed,
    fold_split,
    read_fold,
)
from autoaug.search.search import run_search
from autoaug.search.store import STORE_FILENAME, TrialStore
from autoaug.space.policy import Operation, Policy

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = ["backend=inline", "batch_size=4", "train_subset=400", "val_subset=100",
         "child.epochs=12", "child.batch_size=32", "reward.kind=density", "reward.folds=2",
         "export.reevaluate_top=0"]


def _config(run: Path, budget: int):
    return load_config(None, [f"out={run}", f"budget={budget}", *SMALL])


def _task(config) -> DensityTask:
    config = config.for_images((32, 32))  # as run_search resolves it on CIFAR
    return DensityTask(config.dataset, config.train_subset, config.val_subset, config.child,
                       config.reward.folds, config.reward.draws,
                       str((Path(config.out) / FOLD_DIRNAME).resolve()))


@pytest.fixture(scope="module")
def density_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("density") / "run"
    run_search(_config(run, 4), progress=False)
    return run


def _mtimes(run: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((run / FOLD_DIRNAME).glob("fold-*.pt"))}


def test_fold_split_is_a_stratified_partition() -> None:
    y = np.repeat(np.arange(4), 6)  # 4 classes x 6 images
    held = [fold_split(y, k, 3)[1] for k in range(3)]
    assert sorted(np.concatenate(held).tolist()) == list(range(len(y)))  # each image held out once
    for k in range(3):
        train, out = fold_split(y, k, 3)
        assert not set(train) & set(out) and len(train) + len(out) == len(y)
        assert np.bincount(y[out]).tolist() == [2, 2, 2, 2]  # every class equally
    with pytest.raises(DataError, match="cannot make 5 folds"):
        fold_split(np.arange(3), 4, 5)  # 3 images: fold 4 holds nothing


def test_search_scores_policies_in_unit_interval(density_run: Path) -> None:
    assert set(_mtimes(density_run)) == {"fold-0.pt", "fold-1.pt"}
    with TrialStore(density_run / STORE_FILENAME) as store:
        done = store.rows(status="done")
        assert store.counts()["done"] == 4
    assert len(done) == 4 + 1  # and the round's reference: the un-augmented held-out images
    assert all(0.0 <= t.reward <= 1.0 for t in done)
    assert (density_run / "policy.json").is_file()


def test_destroying_policy_scores_below_identity(density_run: Path) -> None:
    task = _task(_config(density_run, 4))
    identity = Policy(((Operation("Invert", 0.0, None), Operation("Equalize", 0.0, None)),))
    destroy = Policy(((Operation("Invert", 1.0, None), Operation("Equalize", 1.0, None)),))
    clean = evaluate_density(task, {"policy": identity.to_json()}, 0, "cpu")
    ruined = evaluate_density(task, {"policy": destroy.to_json()}, 0, "cpu")
    # The un-augmented images score as the identity policy does: ops at probability 0 do nothing.
    assert evaluate_density(task, {"policy": None}, 0, "cpu") == clean
    assert 0.0 <= ruined < clean - 0.08 <= 1.0  # fold models at ~25% on clean images, chance 10%


def test_fold_models_of_another_setup_are_refused(density_run: Path) -> None:
    task = _task(_config(density_run, 4))
    assert read_fold(task, 0, seed=fold_seed(0, 0)) is not None
    with pytest.raises(AutoaugError, match="trained for another setup"):
        read_fold(task, 0, seed=fold_seed(0, 0) + 1)


def test_resume_reuses_fold_models_and_retrains_only_missing_ones(density_run: Path) -> None:
    before = _mtimes(density_run)
    run_search(_config(density_run, 8), progress=False)  # resume with a grown budget
    assert _mtimes(density_run) == before  # nothing retrained
    # A run killed while training fold models had saved some of them: only the rest retrain.
    (density_run / FOLD_DIRNAME / "fold-1.pt").unlink()
    run_search(_config(density_run, 12), progress=False)
    after = _mtimes(density_run)
    assert after["fold-0.pt"] == before["fold-0.pt"] and "fold-1.pt" in after
    with TrialStore(density_run / STORE_FILENAME) as store:
        assert store.counts()["done"] == 12


@pytest.mark.parametrize("override, message", [
    ("reward.kind=dense", "unknown reward.kind 'dense'; expected one of child, density"),
    ("reward.folds=1", "reward.folds must be an int >= 2, got 1"),
    ("reward.draws=0", "reward.draws must be an int >= 1, got 0"),
])
def test_bad_reward_settings_are_one_line_errors(override: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert str(info.value) == message
