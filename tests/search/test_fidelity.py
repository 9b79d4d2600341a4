"""Successive halving inside a controller batch (issue #21, `[fidelity]`): the config's checks, the
promotion and PPO rules as known answers, then real tiny searches in two rungs: promotion on the
same seed, resume mid-rung after SIGKILL (the same store as an uninterrupted run), export from a
multi-fidelity store, and the one-rung default left as it was.

Children are real but tiny (rung 0: 1 epoch on 80 images, rung 1: 2 epochs on 160, batch 32,
scored on 200 val images); nothing is stubbed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autoaug.errors import ConfigError
from autoaug.search import search as search_module
from autoaug.search.config import CONFIG_FILENAME, FidelityConfig, load_config
from autoaug.search.export import ExportOptions, distinct_best, export_policy
from autoaug.search.fidelity import RUNG_KEY, ppo_rewards, promote, promoted_count, without_rung
from autoaug.search.rewards import REFERENCE_KEY, evaluate_policy
from autoaug.search.search import batch_seed, plan, run_search
from autoaug.search.store import STORE_FILENAME, Trial, TrialStore
from autoaug.search.trials import FUSED, ChildTask
from autoaug.space.policy import Policy
from autoaug.training.loop import train_child
from autoaug.training.subsets import device_data
from tests.conftest import torch_threads

REPO = Path(__file__).resolve().parents[2]
TINY = ["child.epochs=2", "child.batch_size=32", "train_subset=160", "val_subset=200", "export.reevaluate_top=0"]
# No rungs but the ones a test names (the default's fractions left out).
ONE_RUNG = ["fidelity.train_subset=", "fidelity.image_size=", "fidelity.trunk="]
# Two rungs: every policy at 1 epoch on 80 images, the best half at the search's own child.
RUNGS = [*ONE_RUNG, "fidelity.epochs=1,2", "fidelity.train_subset=80,160", "fidelity.promote=0.5"]
BUDGET = ["budget=8", "batch_size=4"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(run: Path, *overrides: str):
    return load_config(None, [f"out={run}", "backend=inline", *TINY, *overrides])


def _store_rows(run: Path) -> list[tuple]:
    """(round, rung, slot, key, seed, status, reward, paired) of every search trial, in order."""
    with TrialStore(run / STORE_FILENAME, read_only=True) as store:
        return [(t.round, t.rung, t.slot, t.key, t.seed, t.status, t.reward, t.paired)
                for t in store.rows(phase="search")]


def _spy_on_ppo(patch: pytest.MonkeyPatch) -> list[list[float]]:
    """The rewards each controller update of a search gets, in order."""
    learned: list[list[float]] = []
    update = search_module.Sampler.update

    def spy(self, tokens, old_logprobs, rewards):
        learned.append(list(rewards))
        return update(self, tokens, old_logprobs, rewards)

    patch.setattr(search_module.Sampler, "update", spy)
    return learned


LEARNED: list[list[float]] = []  # what PPO learned from in the `two_rungs` search


@pytest.fixture(scope="module")
def two_rungs(tmp_path_factory) -> Path:
    """An uninterrupted search of 2 rounds of 4 policies in 2 rungs, promote 1/2, paired."""
    run = tmp_path_factory.mktemp("fidelity") / "clean"
    with pytest.MonkeyPatch.context() as patch, torch_threads(1):  # as the tests that retrain its children
        LEARNED[:] = []
        learned = _spy_on_ppo(patch)
        run_search(_config(run, *BUDGET, *RUNGS), progress=False)
        LEARNED.extend(learned)
    return run


# --- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    (["fidelity.epochs=10,5,40"], r"rung 1 \(epochs 5\) does not cost more than rung 0 \(epochs 10\)"),
    (["fidelity.epochs=10,10,40"], r"rung 1 \(epochs 10\) does not cost more than rung 0"),
    (["fidelity.epochs=10,20,40", "fidelity.train_subset=1000,500,1000"], r"rung 1 \(epochs 20, train_subset 500\)"),
    (["fidelity.epochs=10,20"], r"fidelity.epochs = '10,20' must end at child.epochs = 40"),
    (["fidelity.train_subset=250,500"], r"must end at train_subset = 1000"),
    (["fidelity.epochs=10,40", "fidelity.train_subset=250,500,1000"], r"must name the same number of rungs"),
    (["fidelity.epochs=ten,40"], r"fidelity.epochs must be integers >= 1 separated by commas"),
    (["fidelity.epochs=0,40"], r"fidelity.epochs must be integers >= 1"),
    (["fidelity.promote=0"], r"fidelity.promote must be a fraction in \(0, 1\]"),
    (["fidelity.promote=1.5"], r"fidelity.promote must be a fraction in \(0, 1\]"),
    (["fidelity.rungs=3"], r"unknown key 'fidelity.rungs'.*valid keys: fidelity.epochs, fidelity.train_subset, "
                           r"fidelity.image_size, fidelity.promote"),
    (["fidelity.image_size=32,16"], r"rung 1 \(image_size 16\) does not cost more than rung 0 \(image_size 32\)"),
    (["fidelity.image_size=16,32", "fidelity.epochs=40,20"],
     r"rung 1 \(epochs 20, image_size 32\) does not cost more than rung 0 \(epochs 40, image_size 16\)"),
    (["fidelity.image_size=16,24", "image_size=32"], r"fidelity.image_size = '16,24' must end at image_size = 32"),
    (["fidelity.image_size=16,x"], r"fidelity.image_size must be integers >= 1 separated by commas"),
    (["fidelity.image_size=16,32", "fidelity.epochs=10,20,40"],
     r"fidelity.epochs \(3 rungs\) and fidelity.image_size \(2 rungs\) must name the same number of rungs"),
    (["fidelity.image_size=16,32", "reward.kind=density"], r"reward.kind 'density' trains none per trial"),
    (["fidelity.train_subset=16,1000"], r"starts below child.batch_size = 128"),
    (["fidelity.epochs=10,40", "reward.kind=density"], r"reward.kind 'density' trains none per trial"),
    (["fidelity.image_size=0.5,0.9"], r"fidelity.image_size as fractions of the search's own value must lie in \(0, 1\] and end at 1"),
    (["fidelity.train_subset=0,1.0"], r"fidelity.train_subset as fractions"),
    (["fidelity.epochs=0.5,x"], r"fidelity.epochs as fractions"),
])
def test_bad_fidelity_config_is_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config(None, [*ONE_RUNG, *overrides])
    assert "\n" not in str(err.value)
    # Rungs in units next to the default's fractions: the same error, as the fractions do not adapt them away.
    if "reward.kind=density" in overrides:
        with pytest.raises(ConfigError, match=message):
            load_config(None, overrides)


def test_image_size_rungs_from_the_config_scale_the_cutout() -> None:
    config = load_config(None, ["fidelity.image_size=16,32", "fidelity.train_subset=500,1000", "fidelity.trunk="])
    assert config.fidelity.rungs == 2
    # The 16px rung cuts out 8 px ('auto' at 16), before and after run_search turns 'auto' into pixels.
    expected = ({"epochs": 40, "train_subset": 500, "image_size": 16, "cutout": 8},
                {"epochs": 40, "train_subset": 1000, "image_size": 32, "cutout": 16})
    assert config.rung_settings == expected == config.for_images((32, 32)).rung_settings
    assert [r["cutout"] for r in load_config(None, [*ONE_RUNG, "fidelity.image_size=16,32", "child.cutout=0"]).rung_settings] == [0, 0]
    assert [r["cutout"] for r in load_config(None, [*ONE_RUNG, "fidelity.image_size=14,28", "child.cutout=10"]).rung_settings] == [5, 10]


def test_image_size_rungs_must_end_at_the_datasets_side(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"fidelity.image_size = '16,24' must end at the side of the search's "
                                          r"images, which are 32x32 \(cifar10-reduced\): end it at 32") as err:
        run_search(_config(tmp_path / "run", "fidelity.image_size=16,24"), progress=False)
    assert "\n" not in str(err.value) and not (tmp_path / "run").exists()


def test_rungs_from_the_config() -> None:
    assert load_config(None, ONE_RUNG).rung_settings == ({"epochs": 40, "train_subset": 1000},)
    config = load_config(None, [*ONE_RUNG, "fidelity.epochs=10, 20,40", "fidelity.train_subset=250,500,1000"])
    assert config.fidelity.rungs == 3
    assert [r["epochs"] for r in config.rung_settings] == [10, 20, 40]
    assert [r["train_subset"] for r in config.rung_settings] == [250, 500, 1000]
    only_images = load_config(None, [*ONE_RUNG, "fidelity.train_subset=250,1000"])
    assert only_images.rung_settings == ({"epochs": 40, "train_subset": 250}, {"epochs": 40, "train_subset": 1000})


def test_the_time_to_go_counts_each_child_at_its_rungs_time() -> None:
    cifar = load_config(None, ["budget=144"]).for_images((32, 32), 4000)
    children = plan(cifar, (32, 32))
    # 9 rounds of 16 policies + a reference at rung 0, 4 + a reference at rung 1; the re-evaluation and
    # the verdict train the search's own child, the top rung's.
    assert children.search_by_rung == (9 * 17, 9 * 5) and children.search == 9 * 22
    assert children.by_rung == (9 * 17, 9 * 5 + children.reevaluation + children.verdict)
    one_rung = load_config(None, ONE_RUNG)
    assert plan(one_rung, (32, 32)).search_by_rung == (plan(one_rung, (32, 32)).search,)
    # After round 0 of the default: 17 cheap children of 2.4 s and 5 of 13.4 s, two at a time.
    seconds = {0: [2.4] * 17, 1: [13.4] * 5}
    left = (9 * 17 - 17) * 2.4 + (children.by_rung[1] - 5) * 13.4
    line = search_module._time_to_go(children, seconds, 2.0)
    assert f"about {left / 2 / 60:.0f} min to go in all ({children.total - 22} children left" in line
    assert "2.0 at a time" in line
    # Counted as equal, the cheap children's many would read as typical: far less time.
    assert round(left / 2 / 60) > round((children.total - 22) * statistics.fmean([2.4] * 17 + [13.4] * 5) / 2 / 60)
    # A rung not measured yet counts at the mean of every child measured.
    only_cheap = search_module._time_to_go(children, {0: [2.4] * 17}, 2.0)
    assert f"about {(136 * 2.4 + children.by_rung[1] * 2.4) / 2 / 60:.0f} min" in only_cheap
    assert search_module._time_to_go(children, {}, 2.0) == ""  # nothing finished yet


def test_the_default_halves_side_and_images_where_the_data_allow() -> None:
    config = load_config(None, [])
    assert config.budget == 256 and config.fidelity.fractional and config.fidelity.promote == 0.25
    # CIFAR: the schedule experiments/results/halving.md measured, in the units config.toml records.
    cifar = config.for_images((32, 32), 4000)
    assert (cifar.fidelity.train_subset, cifar.fidelity.image_size) == ("500,1000", "16,32")
    assert cifar.rung_settings == ({"epochs": 40, "train_subset": 500, "image_size": 16, "cutout": 8},
                                   {"epochs": 40, "train_subset": 1000, "image_size": 32, "cutout": 16, "trunk": 20})
    assert cifar.for_images((32, 32), 4000) == cifar  # units stay units
    # 28x28 digits: tiny does not take 14x14; 15x15 is the smallest side it takes.
    assert config.for_images((28, 28), 2000).fidelity.image_size == "15,28"
    assert config.for_images((32, 32), 600).fidelity.train_subset == "300,1000"  # half the images there are
    assert load_config(None, ["fidelity.epochs=0.25,1.0"]).for_images((32, 32), 4000).fidelity.epochs == "10,40"
    # One rung where the data cannot take the cheaper one: no smaller side tiny takes within half-way to
    # 16 px, images not square, fewer images than a batch, or a reward that trains no child.
    for shape, images, overrides in [((16, 16), 1000, []), ((32, 48), 1000, []), ((32, 32), 100, []),
                                     ((32, 32), 1000, ["reward.kind=density"])]:
        resolved = load_config(None, overrides).for_images(shape, images).fidelity
        assert (resolved.rungs, resolved.train_subset, resolved.image_size) == (1, "", "")
    with pytest.raises(ConfigError, match=r"fidelity.epochs \(3 rungs\) and fidelity.train_subset \(2 rungs\) and "
                                          r"fidelity.image_size \(2 rungs\) must name the same number of rungs, or some "
                                          r'of them none \(""\)'):
        load_config(None, ["fidelity.epochs=10,20,40"])
    with pytest.raises(ConfigError, match=r"names fractions: SearchConfig.for_images turns them into units"):
        config.rung_settings


def test_a_default_search_records_its_rungs_in_units_and_resumes(tmp_path: Path) -> None:
    run = tmp_path / "default"
    config = _config(run, "budget=4", "batch_size=4")
    result = run_search(config, progress=False)
    saved = load_config(run / CONFIG_FILENAME, complete=True)
    assert (saved.fidelity.train_subset, saved.fidelity.image_size) == ("80,160", "16,32")
    with TrialStore(run / STORE_FILENAME, read_only=True) as store:
        assert [(t.rung, t.role) for t in store.rows(phase="search")] == [(0, "policy")] * 4 + [(0, "reference"), (1, "policy"), (1, "reference")]
        done = len(store.rows())
    again = run_search(config, progress=False)  # the same command: fractions resolve to the same units
    assert again.resumed and again.policy == result.policy
    with TrialStore(run / STORE_FILENAME, read_only=True) as store:
        assert len(store.rows()) == done


# --- promotion and the PPO rule: known answers ------------------------------------------------


def _trial(slot: int, reward: float | None, status: str = "done") -> Trial:
    return Trial(id=slot + 1, key=f"p{slot}", round=0, slot=slot, tokens=None, payload={}, seed=7, status=status,
                 reward=reward, error=None, traceback=None, worker=None, started=None, finished=None, duration=None)


def test_promotion_takes_the_best_fraction_ties_to_the_lower_slot_and_skips_failures() -> None:
    assert [promoted_count(n, 0.25) for n in (16, 4, 1, 3)] == [4, 1, 1, 1]
    assert promoted_count(10, 0.1) == 1 and promoted_count(10, 1.0) == 10
    rung = [_trial(0, 0.5), _trial(1, 0.7), _trial(2, None, "failed"), _trial(3, 0.7), _trial(4, 0.6),
            _trial(5, 0.1), _trial(6, 0.2), _trial(7, 0.3)]
    assert promote(rung, 0.25) == [1, 3]  # 0.7 and 0.7; the failed one is never promoted
    assert promote(rung, 0.5) == [0, 1, 3, 4]
    assert promote([_trial(0, None, "failed")], 0.5) == []


def test_ppo_rewards_chain_the_rungs() -> None:
    # One rung: the rewards themselves (the search as it was).
    assert ppo_rewards([{0: 0.5}, {0: 0.25}, {0: 0.75}]) == [0.5, 0.25, 0.75]
    # Policy 1 and 2 promoted to rung 1 (their rung-0 values 0.60 and 0.65), policy 2 to rung 2.
    values = ppo_rewards([{0: 0.50}, {0: 0.60, 1: 0.70}, {0: 0.65, 1: 0.68, 2: 0.80}, {0: 0.40}])
    # Rung 1 shifted by min(0.60, 0.65) - min(0.70, 0.68) = -0.08: 0.62 and 0.60; rung 2 by 0.60 - 0.80.
    assert values == pytest.approx([0.50, 0.62, 0.60, 0.40])
    # A promoted policy whose rung-1 child failed keeps its rung-0 value.
    assert ppo_rewards([{0: 0.5}, {0: 0.6}, {0: 0.7, 1: 0.2}]) == pytest.approx([0.5, 0.6, 0.7])


def test_a_promoted_policy_never_ranks_below_one_that_stopped_earlier() -> None:
    import random

    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(1, 16)
        by_rung = [{0: rng.random()} for _ in range(n)]
        alive = list(range(n))
        for rung in range(1, 4):  # promote the best half by the reward at the rung below, as the search does
            alive = sorted(alive, key=lambda i: (-by_rung[i][rung - 1], i))[:promoted_count(len(alive), 0.5)]
            for i in alive:
                by_rung[i][rung] = rng.random() * 0.5 + rung  # higher rungs on another scale
        values = ppo_rewards(by_rung)
        for i in range(n):
            for j in range(n):
                if max(by_rung[i]) > max(by_rung[j]):
                    assert values[i] >= values[j] - 1e-12


# --- a real search in two rungs ---------------------------------------------------------------


def test_promotion_trains_the_best_half_again_on_the_same_seed(two_rungs: Path) -> None:
    config = _config(two_rungs, *BUDGET, *RUNGS)
    with TrialStore(two_rungs / STORE_FILENAME, read_only=True) as store:
        trials = store.rows(phase="search")
        assert len(trials) == plan(config, (32, 32)).search == 2 * (4 + 1 + 2 + 1)
        for round_ in (0, 1):
            seed = batch_seed(config.seed, round_)
            rung0 = store.rows(round=round_, phase="search", rung=0)
            rung1 = store.rows(round=round_, phase="search", rung=1)
            assert [t.slot for t in rung0] == [0, 1, 2, 3, 4] and rung0[-1].key == REFERENCE_KEY
            policies = [t for t in rung0 if t.role == "policy"]
            best_two = sorted(sorted(policies, key=lambda t: (-t.reward, t.slot))[:2], key=lambda t: t.slot)
            assert [t.slot for t in rung1] == [t.slot for t in best_two] + [4]
            assert [t.key for t in rung1[:2]] == [t.key for t in best_two]
            # rung 1's reference needs no promotion: it was stored and trained first, with rung 0
            assert rung1[-1].id < min(t.id for t in rung0) < max(t.id for t in rung0) < rung1[0].id
            assert rung1[-1].started <= min(t.started for t in rung0)
            assert {t.seed for t in rung0 + rung1} == {seed}  # the promoted trial's seed is its rung-0 seed
            # Rung 0 trains the cheap child, rung 1 the search's own (its payload as a one-rung search's).
            assert all(t.payload[RUNG_KEY] == {"epochs": 1, "train_subset": 80} for t in rung0)
            assert all(RUNG_KEY not in t.payload for t in rung1)
            # Each rung is paired with its own reference child.
            for rung in (rung0, rung1):
                reference = rung[-1].reward
                assert all(t.paired == pytest.approx(t.reward - reference) for t in rung[:-1])
        # The stored reward is what the rung's child gets: retrain one of each rung.
        task = ChildTask.from_config(config.for_images((32, 32)))
        cheap, full = store.rows(round=0, phase="search", rung=0)[0], store.rows(round=0, phase="search", rung=1)[0]
        assert evaluate_policy(task, cheap.payload, cheap.seed, "cpu") == cheap.reward
        assert evaluate_policy(task, full.payload, full.seed, "cpu") == full.reward
        assert evaluate_policy(task, without_rung(cheap.payload), cheap.seed, "cpu") != cheap.reward


def test_ppo_learns_the_promoted_policies_reward_at_the_top_rung_chained(two_rungs: Path) -> None:
    with TrialStore(two_rungs / STORE_FILENAME, read_only=True) as store:
        for round_, learned in enumerate(LEARNED):
            rung0 = {t.slot: t.reward for t in store.rows(round=round_, role="policy", rung=0)}
            rung1 = {t.slot: t.reward for t in store.rows(round=round_, role="policy", rung=1)}
            shift = min(rung0[s] for s in rung1) - min(rung1.values())
            assert learned == pytest.approx([rung1[s] + shift if s in rung1 else rung0[s] for s in sorted(rung0)])
            assert min(learned[s] for s in rung1) >= max(learned[s] for s in rung0 if s not in rung1)
    assert len(LEARNED) == 2


def test_a_fused_group_of_a_rung_trains_at_that_rung(two_rungs: Path) -> None:
    """On a GPU the rung's children of one seed train as one fused network (`fuse`): with the
    rung's epochs and images, the rewards the store holds to float rounding (tests/search/test_pool.py:
    a few of 200 val images may flip), not the search child's."""
    config = _config(two_rungs, *BUDGET, *RUNGS).for_images((32, 32))
    task = ChildTask.from_config(config)
    with TrialStore(two_rungs / STORE_FILENAME, read_only=True) as store:
        for rung in (0, 1):
            trials = store.rows(round=0, phase="search", rung=rung)
            fused = evaluate_policy(task, {FUSED: [[t.payload, t.seed] for t in trials]}, 0, "cpu")
            assert fused == pytest.approx([t.reward for t in trials], abs=(6 + 0.01) / 200)


# --- a rung at a smaller image side (fidelity.image_size) ---------------------------------------


SMALL_RUNG = [*ONE_RUNG, "fidelity.image_size=16,32", "fidelity.promote=0.5"]


@pytest.fixture(scope="module")
def small_images(tmp_path_factory) -> Path:
    """One round of 4 policies in 2 rungs: all at 16x16, the best half at the search's 32x32."""
    run = tmp_path_factory.mktemp("fidelity") / "16px"
    with torch_threads(1):
        run_search(_config(run, "budget=4", "batch_size=4", *SMALL_RUNG), progress=False)
    return run


def test_a_16px_rung_promotes_on_the_same_seed(small_images: Path) -> None:
    with TrialStore(small_images / STORE_FILENAME, read_only=True) as store:
        rung0, rung1 = (store.rows(round=0, phase="search", rung=r) for r in (0, 1))
    assert [t.slot for t in rung0] == [0, 1, 2, 3, 4] and rung0[-1].key == REFERENCE_KEY
    best_two = sorted(sorted(rung0[:-1], key=lambda t: (-t.reward, t.slot))[:2], key=lambda t: t.slot)
    assert [t.key for t in rung1] == [t.key for t in best_two] + [REFERENCE_KEY]
    assert {t.seed for t in rung0 + rung1} == {batch_seed(0, 0)}
    # Rung 0 at 16x16 with the Cutout of 16x16 ('auto': 8 px); the top rung's payload as a one-rung search's.
    assert all(t.payload[RUNG_KEY] == {"image_size": 16, "cutout": 8} for t in rung0)
    assert all(RUNG_KEY not in t.payload for t in rung1)


def test_a_16px_rung_trains_frontiers_16px_child(small_images: Path) -> None:
    """The stored reward of a 16x16 rung is the child experiments/frontier.py's `16px` proxy
    trains: the data loaded at 16x16, the recipe's Cutout 'auto' (8 px) and pad (2 px) at that
    side, the same seed."""
    config = _config(small_images, "budget=4", "batch_size=4", *SMALL_RUNG).for_images((32, 32))
    task = ChildTask.from_config(config)
    with TrialStore(small_images / STORE_FILENAME, read_only=True) as store:
        cheap = store.rows(round=0, phase="search", rung=0)  # 4 policies and the reference child
    stored = [t.reward for t in cheap]
    assert [evaluate_policy(task, t.payload, t.seed, "cpu") for t in cheap] == stored
    data = device_data(config.dataset, "cpu", config.train_subset, config.val_subset, 16)
    recipe = dataclasses.replace(config.child, device="cpu", cutout="auto")
    policies = [None if t.payload["policy"] is None else Policy.from_json(t.payload["policy"]) for t in cheap]
    assert [train_child(p, data, recipe, t.seed) for p, t in zip(policies, cheap)] == stored
    # Near chance (2 epochs on 160 images) a child may tie another: the 5 rewards tell them apart.
    assert [evaluate_policy(task, without_rung(t.payload), t.seed, "cpu") for t in cheap] != stored  # at 32x32
    unscaled = [{**t.payload, RUNG_KEY: {"image_size": 16}} for t in cheap]  # the top's 16 px Cutout at 16x16
    assert [evaluate_policy(task, p, t.seed, "cpu") for p, t in zip(unscaled, cheap)] != stored


def test_a_fused_group_of_two_image_sizes_trains_one_by_one(small_images: Path) -> None:
    """A group with a 16x16 and a 32x32 member has no one recipe to fuse: each trains as it was stored."""
    task = ChildTask.from_config(_config(small_images, "budget=4", "batch_size=4", *SMALL_RUNG).for_images((32, 32)))
    with TrialStore(small_images / STORE_FILENAME, read_only=True) as store:
        group = [store.rows(round=0, phase="search", rung=r)[-1] for r in (0, 1)]  # the reference of each rung
    assert evaluate_policy(task, {FUSED: [[t.payload, t.seed] for t in group]}, 0, "cpu") == [t.reward for t in group]


def test_export_ranks_the_highest_rung_first_and_reevaluates_the_search_child(two_rungs: Path) -> None:
    with TrialStore(two_rungs / STORE_FILENAME, read_only=True) as store:
        ranked = distinct_best(store, 8, "paired")
    top = [t for t in ranked if t.rung == 1]
    assert len(top) == 4 and ranked[:4] == top  # the 4 policies that reached rung 1 first
    assert [t.paired for t in top] == sorted((t.paired for t in top), reverse=True)
    # Without re-evaluation: the best 2 of the top rung.
    by_search = export_policy(two_rungs, ExportOptions(top=2, out=two_rungs / "by_search.json", progress=False))
    assert [t.id for t in by_search.trials] == [t.id for t in top[:2]]
    assert by_search.policy.provenance["trials"][0]["rung"] == 1
    # With it: the 4 of the top rung and the best of rung 0, all re-trained as the search's child.
    again = export_policy(two_rungs, ExportOptions(top=1, reevaluate_top=5, reevaluate_seeds=1, progress=False))
    assert sorted(r.trial.id for r in again.reevaluation) == sorted(t.id for t in ranked[:5])
    assert ranked[4].rung == 0 and RUNG_KEY in ranked[4].payload
    with TrialStore(two_rungs / STORE_FILENAME, read_only=True) as store:
        reeval = store.rows(phase="reeval", role="policy")  # the candidates, then the verdict's alternatives
        assert {t.key for t in reeval} >= {t.key for t in ranked[:5]}
        assert all(RUNG_KEY not in t.payload and t.rung == 0 for t in store.rows(phase="reeval"))
    expected = Policy.from_json(again.reevaluation[0].trial.payload["policy"]).sub_policies
    assert again.policy.sub_policies == expected


def _env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(REPO), NO_ALBUMENTATIONS_UPDATE="1", OMP_NUM_THREADS="1")


def _done_at_rung_1(run: Path) -> int:
    path = run / STORE_FILENAME
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute("SELECT COUNT(*) FROM trials WHERE rung = 1 AND status = 'done'").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is being created right now
        return 0
    finally:
        conn.close()


def test_resume_mid_rung_after_sigkill_gives_the_uninterrupted_store(tmp_path: Path, two_rungs: Path) -> None:
    run = tmp_path / "killed"
    args = [sys.executable, "-m", "autoaug", "search", "--out", str(run), "--no-progress", "--set", "backend=inline",
            *TINY, *BUDGET, *RUNGS]
    proc = subprocess.Popen(args, env=_env(), cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    # round 0's rung 1 has begun: its reference (trained with rung 0) and 1 of its 2 policies done
    while _done_at_rung_1(run) < 2:
        assert proc.poll() is None, f"the search ended before it could be stopped: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "the search made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    before = [r for r in _store_rows(run) if r[5] == "done"]
    assert sum(r[1] == 1 for r in before) >= 2 and len(before) < len(_store_rows(two_rungs))

    resumed = subprocess.run(args, env=_env(), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    after = _store_rows(run)
    # Nothing finished was trained again (a policy's paired reward may have come with its reference since).
    assert all(r[:7] in [a[:7] for a in after] for r in before)
    assert after == _store_rows(two_rungs)  # the same rungs, promotions, seeds and rewards
    assert "rung 1: 2 promoted" in resumed.stderr  # each round's line
    assert "best first by the highest rung reached, then the search's paired reward" in resumed.stdout
    assert "(round 1, rung 1): search reward" in resumed.stdout


def test_a_resume_keeps_the_rungs_and_an_old_config_means_one_rung(two_rungs: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"started with fidelity.promote = 0.5, now 0.25"):
        run_search(_config(two_rungs, *BUDGET, *RUNGS, "fidelity.promote=0.25"), progress=False)
    # A run directory's config.toml written before [fidelity] existed reads as one rung.
    saved = (two_rungs / CONFIG_FILENAME).read_text()
    old = tmp_path / CONFIG_FILENAME
    old.write_text(saved[:saved.index("[fidelity]")])
    assert load_config(old, complete=True).fidelity == FidelityConfig(train_subset="", image_size="", trunk="")


# --- one rung: the search as before rungs existed ----------------------------------------------


def test_one_rung_keeps_the_search_as_it_was(tmp_path: Path, monkeypatch) -> None:
    learned = _spy_on_ppo(monkeypatch)
    run = tmp_path / "default"
    config = _config(run, "budget=4", "batch_size=2", *ONE_RUNG)
    assert config.fidelity.rungs == 1
    run_search(config, progress=False)
    with TrialStore(run / STORE_FILENAME, read_only=True) as store:
        trials = store.rows(phase="search")
        assert [(t.round, t.rung, t.slot) for t in trials] == [(r, 0, s) for r in (0, 1) for s in (0, 1, 2)]
        assert all(set(t.payload) == {"policy"} for t in trials)  # no rung settings in any payload
        assert {t.seed for t in store.rows(round=1)} == {batch_seed(0, 1)}
        # PPO learned from the raw rewards of each round, as before rungs existed.
        assert learned == [[t.reward for t in store.rows(round=r, role="policy")] for r in (0, 1)]
    assert plan(config, (32, 32)).search == 4 + 2
