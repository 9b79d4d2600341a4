"""The policy search (issue #4): the loop that samples policies, trains children and updates
the controller, and the run directory's layout (ARCHITECTURE.md names the pieces it drives).
Paired rewards (issue #10) are `RewardConfig.paired`.

A run directory holds:

    config.toml           the resolved configuration (resuming checks it)
    trials.sqlite         every policy evaluated: tokens, policy JSON, seed, reward, status, ...
    checkpoint.pt         controller, optimiser, baseline and RNG states after the last update
    tensorboard/          rewards, baseline, entropy, approx KL, clip fraction, op frequencies,
                          a picture of the best policy so far
    policy.json           the exported final policy (+ policy.albumentations.json)
    trunks/               the shared trunks of each round and re-evaluation seed (fidelity.trunk,
                          autoaug.search.trunks)
    density/              reward.kind "density" only: the fold models (autoaug.search.density)

Multi-fidelity rounds (issue #21, `[fidelity]`, `autoaug.search.fidelity`): a round's policies
train at rung 0, the best fraction of them again at each rung above on the same seed (each rung
of each policy one trial, each rung with its own reference child when rewards are paired), and PPO
learns from `fidelity.ppo_rewards`: the reward at the highest rung each policy reached, chained
onto the cheapest rung's scale. The budget counts policies sampled (rung-0 trials). A rung's
epochs, images, image side and shared trunk go into its trials' payloads (`fidelity.rung_payload`).
A rung's reference child trains with rung 0 (`evaluate_round`), the rung then holds the promoted.

Resume: the checkpoint is written after each controller update, and the round after it is
sampled from the checkpointed controller with the checkpointed generator, so a restarted search
re-draws exactly the round it was killed in; `TrialStore.add_pending` then returns the stored
rows and only their unfinished trials are evaluated. Completed trials are never repeated, and a
rung's promotion, which depends only on the stored rewards of the rung below, comes out the same.

A failed trial (the child raised, diverged to a non-finite reward, its worker died or timed out)
stays in the store with its error but is left out of the PPO batch: there is no honest reward to
give it, and a made-up one (0, or the baseline) would teach the controller something about the
policy that the policy did not earn. A round in which every trial failed stops the search.
"""

from __future__ import annotations

import dataclasses
import itertools
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from autoaug.errors import AutoaugError, ConfigError, shown
from autoaug.search.alternatives import SearchVerdict, free_payload, free_specs, is_reference
from autoaug.search.config import SearchConfig
from autoaug.search.controller import Controller
from autoaug.search.export import ExportOptions, Reevaluation, export_from_store
from autoaug.search.fidelity import ppo_rewards, promote, rung_payload, rung_sizes
from autoaug.search.pool import LazyPool, evaluate_trials
from autoaug.search.ppo import make_optimizer, ppo_update
from autoaug.search.rewards import rank_by, reference_spec, small_val_warning, trial_key
from autoaug.search.rundir import CHECKPOINT_FILENAME, CHECKPOINT_VERSION, open_search, save_checkpoint
from autoaug.search.store import Trial, TrialSpec, TrialStore
from autoaug.search.tasks import Result
from autoaug.search.trials import ChildTask, derive_seed
from autoaug.space.ops import OP_NAMES
from autoaug.space.policy import DECISIONS_PER_OP, SEARCH_NVEC, Policy
from autoaug.space.render import render_grid
from autoaug.training.models import build_model, check_image_size
from autoaug.training.subsets import load_data

TENSORBOARD_DIRNAME = "tensorboard"
# Images in the TensorBoard picture of the best policy (one row per sub-policy).
_PICTURE_IMAGES = 8


# --- seeds and sampling -----------------------------------------------------------------------


def trial_seed(seed: int, round: int, slot: int) -> int:
    """The child seed of trial (`round`, `slot`) of a search seeded `seed` (stored with it)."""
    return derive_seed(seed, "trial", round, slot)


def batch_seed(seed: int, round: int) -> int:
    """The child seed every trial of round `round` shares when `reward.paired` (issue #10)."""
    return derive_seed(seed, "batch", round)


def round_specs(
    config: SearchConfig, round: int, tokens: torch.Tensor, rung: int = 0, slots: Sequence[int] | None = None,
) -> tuple[list[int], list[TrialSpec]]:
    """The trials of one controller batch (tokens (n, T)) at `rung`, and their slots: the
    policies of `slots` (default all n; a rung above 0 holds the promoted ones), with
    `reward.paired` every one on the batch's seed and a reference child after them (slot n);
    otherwise each on its own slot's seed. A policy has the same slot and seed at every rung."""
    paired = config.reward.paired
    slots = list(range(len(tokens))) if slots is None else list(slots)
    specs = [
        TrialSpec(key=trial_key(tokens[slot]),
                  seed=batch_seed(config.seed, round) if paired else trial_seed(config.seed, round, slot),
                  payload=rung_payload(config, rung, {"policy": Policy.from_tokens(tokens[slot].tolist()).to_json()}),
                  tokens=tokens[slot].tolist())
        for slot in slots
    ]
    if paired:
        reference = reference_spec(batch_seed(config.seed, round))
        specs.append(dataclasses.replace(reference, payload=rung_payload(config, rung, reference.payload)))
        slots.append(len(tokens))
    return slots, specs


def evaluate_round(
    store: TrialStore, pool: LazyPool, config: SearchConfig, round: int, tokens: torch.Tensor,
    after: Callable[[Trial, Result], None],
) -> None:
    """Train the round's policies rung by rung (one rung without [fidelity]): all of them at rung
    0, then the best `fidelity.promote` of each rung's at the next, on the same seeds (issue #21).
    Already stored rungs are returned by `add_pending` as they are, so a resumed round trains only
    what is unfinished and promotes what it promoted before.

    The reference child of a rung above 0 depends on the round's seed alone, so it trains with
    rung 0, first (with its rung's shared trunk, which it trains, it is the round's longest
    child); its rung then holds just the promoted policies, and their trunk is ready. With 16
    policies and promote 0.25 on two workers, the top rung is 4 children instead of 5: no worker
    waits through a fifth alone."""
    early: list[Trial] = []  # the references of the rungs above, which need no promotion
    for rung in range(1, config.fidelity.rungs if config.reward.paired else 1):
        slots, [reference] = round_specs(config, round, tokens, rung, [])
        early += store.add_pending(round, [reference], rung=rung, slots=slots, partial=True)
    slots = None
    for rung in range(config.fidelity.rungs):
        if rung:
            below = store.rows(round=round, phase="search", role="policy", rung=rung - 1)
            slots = promote(below, config.fidelity.promote)
            if not slots:  # every policy of the rung below failed
                return
        slots, specs = round_specs(config, round, tokens, rung, slots)
        trials = store.add_pending(round, specs, rung=rung, slots=slots, partial=rung > 0)
        evaluate_trials(store, pool, early + trials if rung == 0 else trials, after)


def round_rewards(store: TrialStore, round: int) -> tuple[list[int], list[float]]:
    """The slots of a round's policies that have a reward (failed ones are left out of the PPO
    batch) and the reward PPO learns from for each: `fidelity.ppo_rewards` over their rungs."""
    by_slot: dict[int, dict[int, float]] = {}
    for trial in store.rows(round=round, phase="search", role="policy", status="done"):
        by_slot.setdefault(trial.slot, {})[trial.rung] = trial.reward
    ok = sorted(slot for slot, rewards in by_slot.items() if 0 in rewards)
    return ok, ppo_rewards([by_slot[slot] for slot in ok])


def uniform_tokens(n: int, generator: torch.Generator) -> torch.Tensor:
    """`n` uniformly random policies as tokens (n, T) int64: each decision uniform over its bins."""
    nvec = torch.tensor(SEARCH_NVEC)  # (T,)
    u = torch.rand(n, len(nvec), generator=generator)  # (n, T)
    return (u * nvec).long().clamp_max(nvec - 1)  # (n, T)


class Sampler:
    """Where policies come from: the PPO-trained controller, or uniform random ('random').

    Both draw from their own `torch.Generator`, and both save and restore everything they draw
    with, so a resumed search continues the same stream.
    """

    def __init__(self, config: SearchConfig) -> None:
        self.config = config
        self.nvec = torch.tensor(SEARCH_NVEC)  # (T,)
        self.sample_rng = torch.Generator().manual_seed(derive_seed(config.seed, "sample"))
        self.update_rng = torch.Generator().manual_seed(derive_seed(config.seed, "update"))
        self.baseline: float | None = None
        self.controller = None
        self.optimizer = None
        if config.algo == "ppo":
            init = torch.Generator().manual_seed(derive_seed(config.seed, "controller"))
            self.controller = Controller(SEARCH_NVEC, generator=init)
            self.optimizer = make_optimizer(self.controller, config.ppo)

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """`n` policies: tokens (n, T) int64 and their log-probabilities (n,)."""
        if self.controller is None:
            tokens = uniform_tokens(n, self.sample_rng)  # (n, T)
            logprobs = torch.full((n,), -float(torch.log(self.nvec.double()).sum()))  # (n,)
            return tokens, logprobs
        tokens, logprobs, _ = self.controller.sample(n, self.sample_rng)  # (n, T), (n,), (n,)
        return tokens, logprobs

    def update(
        self, tokens: torch.Tensor, old_logprobs: torch.Tensor, rewards: Sequence[float]
    ) -> dict[str, float]:
        """One PPO update on the round's completed policies; TensorBoard-ready stats."""
        rewards_t = torch.tensor(rewards, dtype=torch.float32)  # (n,)
        if self.controller is None:
            return {"charts/reward_mean": float(rewards_t.mean()),
                    "charts/reward_max": float(rewards_t.max())}
        # Paired rewards: the batch shares one seed, so its own mean is the baseline that
        # cancels the seed (ppo_update centres on the batch when given no baseline); an EMA
        # over earlier batches would carry their seeds' luck into this batch's advantages.
        paired = self.config.reward.paired
        stats = ppo_update(self.controller, self.optimizer, tokens, old_logprobs, rewards_t,
                           None if paired else self.baseline, self.config.ppo, self.update_rng)
        if not paired:
            self.baseline = stats["charts/baseline"]
        return stats

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "sample_rng": self.sample_rng.get_state(),
            "update_rng": self.update_rng.get_state(),
            "baseline": self.baseline,
        }
        if self.controller is not None:
            state["controller"] = self.controller.state_dict()
            state["optimizer"] = self.optimizer.state_dict()
        return state

    def restore(self, state: dict[str, Any], path: Path) -> None:
        """`load_state_dict` of checkpoint `path`; an AutoaugError if it does not fit this sampler."""
        try:
            self.load_state_dict(state)
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            raise AutoaugError(f"checkpoint {path} does not fit this search's "
                               f"controller ({type(err).__name__}: {' '.join(str(err).split())[:120]}); "
                               "delete it to replay the search from its trial store") from None

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.sample_rng.set_state(state["sample_rng"])
        self.update_rng.set_state(state["update_rng"])
        self.baseline = state["baseline"]
        if self.controller is not None:
            self.controller.load_state_dict(state["controller"])
            self.optimizer.load_state_dict(state["optimizer"])


# --- the loop ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchResult:
    """What `run_search` did."""

    run_dir: Path
    completed: int
    """Trials evaluated in this run directory (done + failed), over every invocation."""
    failed: int
    best: list[Trial]
    """The best `export.top` done trials, best first."""
    policy: Policy
    """The exported final policy: the sub-policies of `best`, concatenated."""
    policy_path: Path
    albumentations_path: Path
    seconds: float
    """Wall time of this invocation."""
    resumed: bool
    reevaluation: list[Reevaluation] | None = None
    """The re-evaluated candidates, best mean first (None when export.reevaluate_top is 0)."""
    verdict: SearchVerdict | None = None
    """The exported policy against the free alternatives (None when export.reevaluate_top is 0)."""
    config: SearchConfig | None = None
    """The search's config (its Cutout 'auto' in pixels of the dataset's images)."""
    pipeline_paths: dict[str, Path] = field(default_factory=dict)
    """The whole train and eval pipelines written beside the policy."""


@dataclass(frozen=True)
class Plan:
    """The children a whole search trains, by phase (issue #22: the start header and the estimate)."""

    search: int
    """The budget's policies, plus a reference child per round when rewards are paired; with
    [fidelity] rungs, the promoted policies' children at every rung above 0 (and a reference each)."""
    reevaluation: int
    """The best export.reevaluate_top policies x export.reevaluate_seeds (+ a reference per seed)."""
    verdict: int
    """The exported policy and the free alternatives on the re-evaluation's seeds (the cutout
    alternative is the reference child, already trained)."""
    search_by_rung: tuple[int, ...]
    """`search` by rung, cheapest first (one rung: `search` alone)."""

    @property
    def total(self) -> int:
        return self.search + self.reevaluation + self.verdict

    @property
    def by_rung(self) -> tuple[int, ...]:
        """Every child by the rung it trains at: re-evaluation and verdict train the top rung's child."""
        *below, top = self.search_by_rung
        return (*below, top + self.reevaluation + self.verdict)


def plan(config: SearchConfig, image_size: tuple[int, int]) -> Plan:
    paired = config.reward.paired
    top, seeds = config.export.reevaluate_top, config.export.reevaluate_seeds
    verdict = 0
    if top and config.reward.kind == "child":
        extra = sum(not is_reference(free_payload(spec, config, image_size), config, image_size)
                    for spec in free_specs(config))
        verdict = seeds * (1 + extra)
    rounds = [config.batch_size] * (config.rounds - 1) + [config.budget - config.batch_size * (config.rounds - 1)]
    by_rung = [0] * config.fidelity.rungs
    for size in rounds:
        for rung, n in enumerate(rung_sizes(size, config)):
            by_rung[rung] += n + (1 if paired else 0)
    return Plan(sum(by_rung), top * seeds + (seeds if paired and top else 0), verdict, tuple(by_rung))


def start_header(config: SearchConfig, splits: Any, children: Plan) -> str:
    """What a search is about to do: its data, directory, child recipe and phases (issue #22)."""
    h, w = splits.image_shape
    child = config.child
    recipe = f"`{child.model}`, {child.epochs} epoch{'s' if child.epochs > 1 else ''}, batch {child.batch_size}"
    if child.standard:
        recipe += ", pad-crop" + (" + flip" if child.flip else " (no flip)")
    recipe += f", Cutout {child.cutout}" if child.cutout else ", no Cutout"
    paired = config.reward.paired
    top, seeds = config.export.reevaluate_top, config.export.reevaluate_seeds
    lines = [
        f"autoaug search on {config.dataset}: {h}x{w} images, {splits.num_classes} classes; each child trains "
        f"on {len(splits.train_y)} images and is scored on {len(splits.val_y)} val images",
        f"  run directory: {config.out} (trials, checkpoint, TensorBoard logs, the exported policy)",
        f"  child: {recipe}",
        f"  1. search: {config.budget} policies in {config.rounds} rounds of {config.batch_size}"
        + (_rungs_text(config) if config.fidelity.rungs > 1 else
           f" + {config.rounds} reference children (one per round: the paired reward)" if paired else "")
        + (f"; each round's children share their first {config.fidelity.trunk_list[0]} epochs (a trunk "
           "trained once per round, without a policy)" if config.fidelity.rungs == 1 and config.fidelity.trunk_list else "")
        + f" = {children.search} children",
    ]
    if top:
        trunk = config.rung_settings[-1].get("trunk")
        lines.append(f"  2. re-evaluation: the best {top} policies x {seeds} fresh seeds"
                     + (f" + {seeds} reference children" if paired else "")
                     + (f" (each seed's first {trunk} epochs shared, as at the search's top rung)" if trunk else "")
                     + f" = {children.reevaluation} children")
    if children.verdict:
        lines.append(f"  3. verdict: the exported policy and the free alternatives on those seeds = "
                     f"{children.verdict} children")
    lines.append(f"  {children.total} children in all; after each round: the time to go, measured on this machine")
    return "\n".join(lines)


def _rungs_text(config: SearchConfig) -> str:
    """', each round in 3 rungs of successive halving: 16 at 10 epochs on 250 images, 4 at ...'."""
    steps = [f"{n} at {rung['epochs']} epoch{'s' if rung['epochs'] > 1 else ''} on {rung['train_subset'] or 'all'} images"
             + (f" of {rung['image_size']}x{rung['image_size']}" if "image_size" in rung else "")
             + (f" (the first {rung['trunk']} epoch{'s' if rung['trunk'] > 1 else ''} shared)" if "trunk" in rung else "")
             for n, rung in zip(rung_sizes(config.batch_size, config), config.rung_settings)]
    seeds = "the round's seed" if config.reward.paired else "each policy's own seed"
    return (f", each round in {config.fidelity.rungs} rungs of successive halving on {seeds}: "
            + ", ".join(steps) + (" (+ a reference child per rung: the paired reward)" if config.reward.paired else ""))


def run_search(config: SearchConfig, *, progress: bool = True) -> SearchResult:
    """Search for a policy as `config` says, resuming whatever `config.out` already holds."""
    started = time.perf_counter()
    run_dir = Path(config.out)
    # A bad dataset fails here, before any directory or worker.
    splits = load_data(config.dataset, config.train_subset, config.val_subset, config.image_size)
    config = config.for_images(splits.image_shape, len(splits.train_y))  # Cutout 'auto' in pixels, [fidelity] fractions in units
    task = ChildTask.from_config(config)
    check_child_fits(config, splits)
    with open_search(config, splits) as (store, state, next_round, requeued, identity):
        sampler = Sampler(config)
        if state is not None:
            sampler.restore(state, run_dir / CHECKPOINT_FILENAME)
        resumed = state is not None or bool(store.rounds())
        step = store.completed_count()  # TensorBoard's x axis: policy children evaluated so far
        writer = _summary_writer(run_dir, purge_step=None if state is None else state["step"] + 1)
        best = store.best(1)
        best_reward = best[0].reward if best else None
        picture_images = splits.val_x[:_PICTURE_IMAGES]
        children = plan(config, splits.image_shape)
        tqdm.write(start_header(config, splits, children), file=sys.stderr)
        warning = small_val_warning(len(splits.val_y)) if config.reward.kind == "child" else None
        if warning:
            tqdm.write(warning, file=sys.stderr)
        sampled = _finished_policies(store)
        if resumed:  # the budget's policies: each counts once, whatever rungs it reached
            tqdm.write(f"resuming {run_dir}: {sampled} of {config.budget} policies evaluated"
                       + (f", {requeued} interrupted trials to redo" if requeued else ""),
                       file=sys.stderr)

        bar = tqdm(total=config.budget, initial=min(sampled, config.budget), unit="policy",
                   desc=f"search {config.algo}", disable=not progress, dynamic_ncols=True,
                   file=sys.stderr)
        pool = LazyPool(config, task, run_dir)
        loop_started = time.time()  # the store's clock
        try:
            for round_ in itertools.count(next_round):
                # 1. The round's policies: re-drawn identically if the round was started before.
                stored = store.rows(round=round_, phase="search", role="policy", rung=0)
                budget_left = config.budget - sum(store.counts(rung=0).values())  # every policy sampled counts
                n = len(stored) if stored else min(config.batch_size, budget_left)
                if n <= 0:
                    break
                tokens, old_logprobs = sampler.sample(n)  # (n, T), (n,)

                # 2. Evaluate what is unfinished, rung by rung; each result is committed the moment it arrives.
                def after(trial: Trial, result: Result) -> None:
                    nonlocal best_reward, step
                    if trial.role != "policy":
                        return  # the reference child: the budget and the charts count policies
                    top = trial.rung == config.fidelity.rungs - 1  # the search's own child
                    if top and result.ok and (best_reward is None or result.reward > best_reward):
                        best_reward = result.reward
                    step += 1
                    if writer is not None and result.ok:
                        writer.add_scalar("charts/trial_reward" + (f"/rung_{trial.rung}" if trial.rung else ""),
                                          result.reward, step)
                    if trial.rung == 0:  # the bar counts the budget's policies
                        bar.update(1)
                    if best_reward is not None:
                        bar.set_postfix(best=f"{best_reward:.4f}", round=round_)

                evaluate_round(store, pool, config, round_, tokens, after)

                # 3. Learn from the round's completed policies (failed ones are left out). With
                # paired rewards the raw ones serve: centred within the batch, they give the
                # same advantages, and need no reference that might have failed. With rungs,
                # each policy's reward at its highest rung, chained (fidelity.ppo_rewards).
                trials = store.rows(round=round_, phase="search", role="policy", rung=0)
                ok, rewards = round_rewards(store, round_)
                failed = len(trials) - len(ok)
                stats: dict[str, float] = {}
                if ok:
                    stats = sampler.update(tokens[ok], old_logprobs[ok], rewards)
                reference = store.rows(round=round_, phase="search", role="reference", rung=0)
                if reference and reference[0].status == "done":
                    stats["charts/reference_reward"] = reference[0].reward

                # 4. Log, then checkpoint: what the next round is drawn from.
                if writer is not None:
                    _log_round(writer, step, stats, tokens, failed, store, picture_images, config)
                save_checkpoint(run_dir / CHECKPOINT_FILENAME, {
                    **sampler.state_dict(), "version": CHECKPOINT_VERSION, "algo": config.algo,
                    "next_round": round_ + 1, "step": step, **identity,
                })
                above = [store.rows(round=round_, phase="search", role="policy", rung=r)
                         for r in range(1, config.fidelity.rungs)]
                tqdm.write(_round_line(round_, config, trials, stats, above)
                           + _time_to_go(children, *_child_seconds(store, config.fidelity.rungs, loop_started)),
                           file=sys.stderr)
                if not ok:
                    raise AutoaugError(
                        f"every trial of round {round_} failed; first error: {trials[0].error} "
                        f"(tracebacks are in {store.path}, table trials, column traceback)"
                    )
            bar.close()
            exported = export_from_store(run_dir, store, config, ExportOptions(
                top=config.export.top, reevaluate_top=config.export.reevaluate_top,
                reevaluate_seeds=config.export.reevaluate_seeds, progress=progress), pool)
        finally:
            bar.close()
            pool.close()
            if writer is not None:
                writer.close()

        counts = store.counts(rung=0)
        return SearchResult(
            run_dir=run_dir,
            completed=counts["done"] + counts["failed"],
            failed=counts["failed"],
            best=exported.trials,
            policy=exported.policy,
            policy_path=exported.policy_path,
            albumentations_path=exported.albumentations_path,
            seconds=time.perf_counter() - started,
            resumed=resumed,
            reevaluation=exported.reevaluation,
            verdict=exported.verdict,
            config=config,
            pipeline_paths=exported.pipeline_paths,
        )


def check_child_fits(config: SearchConfig, splits: Any) -> None:
    """An error unless a child can train on the search's data: its network must take the
    images' size, and its batch must fit the training set (with fewer images than one batch an
    epoch has no full batch to train on, and every reward would be chance)."""
    model = build_model(config.child.model, splits.num_classes)
    check_image_size(model, config.child.model, *splits.image_shape, where=config.dataset)
    sizes = config.fidelity.size_list
    if sizes and tuple(splits.image_shape) != (sizes[-1], sizes[-1]):
        height, width = splits.image_shape
        fix = f"end it at {height}" if height == width else "set image_size to make them square and end it there"
        raise ConfigError(f"fidelity.image_size = {shown(config.fidelity.image_size)} must end at the side of the "
                          f"search's images, which are {height}x{width} ({config.dataset}): {fix}; the top rung is "
                          "the search's own child")
    if sizes:
        check_image_size(model, config.child.model, sizes[0], sizes[0], where=f"fidelity.image_size rung 0 of {config.dataset}")
    train_images = len(splits.train_y)
    if config.child.batch_size > train_images:
        raise ConfigError(f"child.batch_size = {config.child.batch_size} is larger than the child's training "
                          f"set ({train_images} images of {config.dataset}"
                          f"{f' with train_subset = {config.train_subset}' if config.train_subset else ''}); "
                          f"set child.batch_size <= {train_images} or use more images")
    if config.reward.kind == "density":  # fold k holds out the images of rank k within their class
        largest = int(np.bincount(np.asarray(splits.train_y)).max())
        if config.reward.folds > largest:
            raise ConfigError(f"reward.folds = {config.reward.folds} is more than the child-train set's largest class "
                              f"holds ({largest} images of {train_images} in {config.dataset}); a fold beyond "
                              f"that holds no image out: set reward.folds <= {largest}")


def _finished_policies(store: TrialStore) -> int:
    """Policies sampled and evaluated (rung 0, done or failed): what the budget counts."""
    counts = store.counts(rung=0)
    return counts["done"] + counts["failed"]


def _child_seconds(store: TrialStore, rungs: int, since: float) -> tuple[dict[int, list[float]], float]:
    """The compute seconds of every finished child (done or failed) by the rung it trained at
    (re-evaluation and verdict: the top rung's child), and how many seconds of children a wall
    second has finished since `since` (time.time() when this run's loop started): the workers
    at work at once, measured."""
    seconds: dict[int, list[float]] = {}
    busy = 0.0
    for t in store.rows():  # every phase
        if t.status in ("done", "failed") and t.duration is not None:
            seconds.setdefault(t.rung if t.phase == "search" else rungs - 1, []).append(t.duration)
            if t.finished is not None and t.finished >= since:
                busy += t.duration
    return seconds, busy / max(time.time() - since, 1e-9)


def _time_to_go(children: Plan, seconds: dict[int, list[float]], at_once: float) -> str:
    """'; about N min to go ...': each child left at its rung's mean seconds so far, `at_once` at a
    time. A rung's own mean, not one for all: with rungs, a child of the search's size takes 5 or
    6 times a cheap one, and counting them as equal reads the cheap ones' many as typical."""
    finished = [len(seconds.get(rung, ())) for rung in range(len(children.by_rung))]
    if not sum(finished) or at_once <= 0:
        return ""
    everyone = [s for values in seconds.values() for s in values]  # a rung not yet measured
    left = [max(0, planned - done) for planned, done in zip(children.by_rung, finished)]
    work = sum(n * statistics.fmean(seconds.get(rung) or everyone) for rung, n in enumerate(left))
    return (f"; about {work / at_once / 60:.0f} min to go in all ({sum(left)} children left, re-evaluation and "
            f"verdict included, each at its rung's mean time so far, {at_once:.1f} at a time)")


def _round_line(round_: int, config: SearchConfig, trials: list[Trial], stats: dict[str, float],
                above: Sequence[list[Trial]] = ()) -> str:
    """One line per round: its rung-0 policies' rewards, then each rung above (the promoted)."""
    rewards = [t.reward for t in trials if t.status == "done"]
    failed = len(trials) - len(rewards)
    text = f"round {round_ + 1}/{config.rounds}: {len(trials)} policies"
    if rewards:
        text += f", reward mean {np.mean(rewards):.4f} max {max(rewards):.4f}"
    for rung, promoted in enumerate(above, start=1):
        done = [t.reward for t in promoted if t.status == "done"]
        text += f"; rung {rung}: {len(promoted)} promoted" + (f", max {max(done):.4f}" if done else "")
    if "charts/reference_reward" in stats:
        text += f", reference {stats['charts/reference_reward']:.4f}"
    if "charts/baseline" in stats:
        # approx_kl and clipfrac stay in TensorBoard (losses/): with 16 policies a round and the
        # controller's lr, a KL in the hundreds at clipfrac 0.75 is normal and alarmed users (issue #22).
        text += f", baseline {stats['charts/baseline']:.4f}, entropy {stats['losses/entropy']:.2f}"
    if failed:
        text += f", {failed} failed (left out of the update)"
    return text


# --- TensorBoard ------------------------------------------------------------------------------


def _summary_writer(run_dir: Path, purge_step: int | None):  # -> SummaryWriter | None
    try:
        from torch.utils.tensorboard import SummaryWriter  # tensorboard: ~0.25 s of start-up, only for commands that log
    except ImportError:  # tensorboard is a dependency; a broken install loses the logs only
        print("warning: tensorboard is not importable; no TensorBoard logs", file=sys.stderr)
        return None
    # purge_step: events a killed run logged after its last checkpoint are dropped on resume,
    # so a round redone after a restart is not plotted twice.
    return SummaryWriter(log_dir=str(run_dir / TENSORBOARD_DIRNAME), purge_step=purge_step)


def _log_round(
    writer: Any,
    step: int,
    stats: dict[str, float],
    tokens: torch.Tensor,
    failed: int,
    store: TrialStore,
    picture_images: np.ndarray,
    config: SearchConfig,
) -> None:
    for tag, value in stats.items():
        writer.add_scalar(tag, value, step)
    writer.add_scalar("charts/failed_trials", failed, step)
    by = rank_by(config)
    best = store.best(1, by=by)
    if best:
        writer.add_scalar(f"charts/best_{by}", getattr(best[0], by), step)
    # Op choices: one histogram per op position (decision 0, 3, 6, ... of the tokens), and the
    # share of each op over all positions.
    per_op = len(DECISIONS_PER_OP)
    op_tokens = tokens[:, ::per_op]  # (n, positions)
    edges = np.arange(len(OP_NAMES) + 1) - 0.5
    for position in range(op_tokens.shape[1]):
        writer.add_histogram(f"ops/position_{position}", op_tokens[:, position].numpy(), step, bins=edges)
    counts = torch.bincount(op_tokens.reshape(-1), minlength=len(OP_NAMES)).double()
    for op_id, name in enumerate(OP_NAMES):
        writer.add_scalar(f"ops/frequency/{name}", float(counts[op_id] / counts.sum()), step)
    if best:
        policy = Policy.from_json(best[0].payload["policy"], "trial payload")
        grid = render_grid(policy, picture_images, seed=0, scale=2)  # (H, W, 3) uint8
        writer.add_image("best_policy", grid, step, dataformats="HWC")
    writer.flush()
