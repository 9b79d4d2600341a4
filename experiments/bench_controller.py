"""PPO vs random search on rewards with a known answer: does the controller learn within its budget?

Issue #10, item 3. Three synthetic rewards over the 30 decisions of a policy (tokens in
`MultiDiscrete([16, 11, 10] * 10)`), each with a noise-free true value on a 0-100 scale:

- `additive`: 100 x the fraction of the 30 decisions equal to a target token vector, plus
  Gaussian noise of 2 points (the seed noise of a child's accuracy, bench_child.md).
- `low-snr`: the same true value, noise twice the spread (std) of the true value between
  uniformly random policies.
- `non-additive`: like the real space, decisions that do nothing and decisions that only matter
  jointly. Each of the 10 ops contributes `prob * (base[op] + gain[op] * peak(magnitude_bin -
  best_bin[op]))`; ops without a magnitude (AutoContrast, Invert, Equalize: the op table's
  `has_magnitude`) have no magnitude term, so their magnitude bin does nothing, and an op at
  probability 0 contributes nothing whatever its op and magnitude; some ops hurt (base < 0).
  Noise of 2 points.

The target / landscape is drawn from the seed, so PPO and random search with the same seed
face the same problem (paired by seed). Each run is the search's own `Sampler` (the real
`Controller`, `ppo_update`, EMA baseline and advantage code of `autoaug search`) for one preset's
`batch_size` and `[ppo]` table, fed rewards as fractions (the scale of an accuracy, as children
return them) and run to the largest budget; a smaller budget is the run's prefix, which is what a
search with that budget draws (the loop does not depend on the budget except for the size of its
last round: exactly so when the batch size divides the budget; with paper's 30, a budget's last
policies are the first of a full round, drawn from the same controller). What a method picks at a budget is its best *observed* (noisy) policy so far; the
table reports that policy's true value.

    nice -n 5 python experiments/bench_controller.py                       # the three presets
    nice -n 5 python experiments/bench_controller.py --presets cpu-quick,gpu,paper@3 \
        --variant "gpu-batch32=gpu:batch_size=32"     # the committed table (NAME@K: K seeds)

Every run is cached in --cache (one JSON file per reward, algo, settings and seed), so a rerun
only computes what is missing: add seeds, presets or variants and run again.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hostinfo import describe, load_average

from autoaug.stats import paired_difference
from autoaug.search.config import SearchConfig, load_config
from autoaug.search.search import Sampler
from autoaug.space.ops import OPS
from autoaug.space.policy import SEARCH_NVEC

BUDGETS = (64, 160, 320, 640, 1280)  # 64: the default search's budget
TARGET_BUDGET = 320  # issue #10: PPO beats random at every budget from here on
PRESETS = ("cpu-quick", "gpu", "paper")
NVEC = np.array(SEARCH_NVEC)  # (30,)
OP_HAS_MAGNITUDE = np.array([op.has_magnitude for op in OPS])  # (16,)
CHILD_NOISE = 2.0  # points: seed noise of one child's accuracy (issue #10)
VERSION = 1  # bump when a reward's definition changes: it is part of every cache key


# --- the rewards ------------------------------------------------------------------------------


class Reward:
    """A known-answer reward: `true(tokens)` (n, 30) -> (n,) points, plus `noise` points of std."""

    name: str
    noise: float

    def true(self, tokens: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class Additive(Reward):
    """100 x the fraction of decisions equal to a target drawn from the seed."""

    def __init__(self, seed: int, noise: float | None) -> None:
        rng = np.random.default_rng([seed, 1])
        self.target = rng.integers(0, NVEC)  # (30,)
        # Std of the true value between uniform random policies: a sum of 30 independent
        # Bernoulli(1 / nvec[t]) decisions, times 100 / 30.
        p = 1.0 / NVEC
        self.spread = 100.0 / len(NVEC) * float(np.sqrt((p * (1 - p)).sum()))
        self.noise = CHILD_NOISE if noise is None else noise

    def true(self, tokens: np.ndarray) -> np.ndarray:
        return 100.0 * (tokens == self.target).mean(1)


class NonAdditive(Reward):
    """Sum over the 10 ops of `prob * value(op, magnitude_bin)`, scaled so the optimum is 100."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng([seed, 2])
        self.base = rng.uniform(-1.0, 0.5, size=len(OPS))  # value of an op at its worst magnitude
        self.gain = np.where(OP_HAS_MAGNITUDE, rng.uniform(0.0, 1.0, size=len(OPS)), 0.0)
        self.best_bin = rng.integers(0, 10, size=len(OPS))
        # The best op at its best bin, at probability 1, in all 10 slots scores 100 (0 = nothing).
        self.scale = 100.0 / (10 * float((self.base + self.gain).max()))
        self.noise = CHILD_NOISE

    def true(self, tokens: np.ndarray) -> np.ndarray:
        ops = tokens.reshape(len(tokens), 10, 3)  # (n, 10 ops, op/prob/magnitude)
        op, prob, magnitude_bin = ops[..., 0], ops[..., 1] / 10.0, ops[..., 2]  # (n, 10) each
        # A peak of width ~3 bins around the op's best magnitude: 1 there, 0 four bins away.
        peak = np.clip(1.0 - np.abs(magnitude_bin - self.best_bin[op]) / 4.0, 0.0, 1.0)  # (n, 10)
        value = self.base[op] + self.gain[op] * peak  # (n, 10); gain is 0 without a magnitude
        return self.scale * (prob * value).sum(1)


def make_reward(name: str, seed: int) -> Reward:
    if name == "additive":
        reward = Additive(seed, None)
    elif name == "low-snr":
        reward = Additive(seed, 0.0)
        reward.noise = 2.0 * reward.spread
    elif name == "non-additive":
        reward = NonAdditive(seed)
    else:
        raise ValueError(f"unknown reward {name!r}")
    reward.name = name
    return reward


REWARDS = ("additive", "low-snr", "non-additive")


# --- one run ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What a run's controller does: a preset's batch size and [ppo] table (or random search)."""

    name: str
    config: SearchConfig
    seeds: int
    """Seeds 0..seeds-1 of this row (NAME@K on the command line; --seeds otherwise)."""

    def key(self, algo: str) -> dict:
        if algo == "random":
            return {"algo": "random"}  # uniform draws: the batch size changes nothing
        return {"algo": "ppo", "batch_size": self.config.batch_size,
                "ppo": dataclasses.asdict(self.config.ppo)}


def run_once(reward_name: str, settings: Settings, algo: str, seed: int, budget: int) -> dict:
    """One search on the synthetic reward: true and observed reward of every policy, entropy per update."""
    torch.manual_seed(0)  # nothing should use it; the Sampler has its own generators
    config = dataclasses.replace(settings.config, algo=algo, seed=seed, budget=budget)
    sampler = Sampler(config)
    reward = make_reward(reward_name, seed)
    noise_rng = np.random.default_rng([seed, 3, REWARDS.index(reward_name)])
    true, observed, entropy = [], [], []
    t0 = time.process_time()
    while len(true) < budget:
        n = min(config.batch_size, budget - len(true))
        tokens, logprobs = sampler.sample(n)  # (n, 30), (n,)
        r_true = reward.true(tokens.numpy())  # (n,) points
        r_obs = r_true + reward.noise * noise_rng.standard_normal(n)
        # The search's rewards are accuracies in [0, 1]: feed the same scale.
        stats = sampler.update(tokens, logprobs, (r_obs / 100.0).tolist())
        true += r_true.tolist()
        observed += r_obs.tolist()
        if sampler.controller is not None:
            entropy.append(stats["losses/entropy"])
    return {"true": true, "observed": observed, "entropy": entropy,
            "cpu_s": time.process_time() - t0}


def cache_path(cache: Path, reward: str, settings: Settings, algo: str, seed: int, budget: int) -> Path:
    key = json.dumps({"v": VERSION, "reward": reward, "seed": seed, "budget": budget,
                      **settings.key(algo)}, sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache / f"{reward}-{algo}-{seed}-{digest}.json"


def get_run(cache: Path, reward: str, settings: Settings, algo: str, seed: int, budget: int) -> dict:
    path = cache_path(cache, reward, settings, algo, seed, budget)
    if path.is_file():
        return json.loads(path.read_text())
    result = run_once(reward, settings, algo, seed, budget)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(path)
    return result


# --- summaries --------------------------------------------------------------------------------


def picked(run: dict, budget: int) -> float:
    """True value of the policy with the best observed reward among the first `budget`."""
    observed = np.array(run["observed"][:budget])
    return float(np.array(run["true"])[int(observed.argmax())])


def last_batch(run: dict, budget: int, batch_size: int) -> float:
    start = (min(budget, len(run["true"])) - 1) // batch_size * batch_size
    return float(np.mean(run["true"][start:budget]))


def min_entropy(run: dict, budget: int, batch_size: int) -> float:
    updates = math.ceil(budget / batch_size)
    return float(min(run["entropy"][:updates])) if run["entropy"] else MAX_ENTROPY


MAX_ENTROPY = float(np.log(NVEC).sum())  # nats, summed over the 30 decisions


def mean_std(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.1f} +/- {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def split_seeds(name: str, default: int) -> tuple[str, int]:
    """'paper@3' -> ('paper', 3); 'paper' -> ('paper', default)."""
    name, _, seeds = name.partition("@")
    return name, int(seeds) if seeds else default


def parse_variant(text: str, default_seeds: int = 5) -> Settings:
    """'NAME[@K]=PRESET:key=value,key=value' -> Settings (the preset with the overrides)."""
    name, _, rest = text.partition("=")
    name, seeds = split_seeds(name, default_seeds)
    preset, _, overrides = rest.partition(":")
    config = preset_config(preset, [o for o in overrides.split(",") if o])
    return Settings(name, config, seeds)


def _preset_row(text: str, default_seeds: int) -> tuple[str, SearchConfig, int]:
    name, seeds = split_seeds(text, default_seeds)
    return name, preset_config(name), seeds


def preset_config(preset: str, overrides: list[str] = ()) -> SearchConfig:
    return load_config(Path(__file__).parent / f"{preset}.toml", list(overrides))


def describe_settings(settings: Settings) -> str:
    ppo = settings.config.ppo
    if ppo.norm_adv:
        rule = "advantage = (reward - batch mean) / batch std"
    else:
        rule = f"advantage = reward - EMA baseline (decay {ppo.baseline_decay:g}; the first batch: its mean)"
    floor = (f"entropy floor {ppo.ent_floor:g} of uniform (penalty weight {ppo.ent_floor_coef:g})"
             if ppo.ent_floor > 0 else "no entropy floor")
    return (f"batch {settings.config.batch_size}, lr {ppo.learning_rate:g}, {ppo.update_epochs} "
            f"Adam steps per batch, entropy bonus {ppo.ent_coef:g}, {floor}; {rule}")


NOTES = """
## How the presets' settings were chosen, and what the table does not show

- **The paper's constants** (row `paper`: lr 3.5e-4, 4 Adam steps per batch, raw advantage
  against an EMA baseline, entropy bonus 1e-5; 3 seeds, the machine was shared with other jobs
  and `paper@5` would not have finished in time) barely move the controller in a few hundred
  policies: its entropy stays near uniform and its picks are random search's until the budget
  is several times the default search's 64. `experiments/paper.toml` keeps them (15,000 policies).
- **The default search's 64 policies** (4 updates, set by issue #10's 15 minutes on 2 cores, not
  by what the controller needs): the cpu-quick rows at 64 show PPO no better than random search
  on any of the three rewards; it pulls ahead from 160 and reliably from 320.
- **Learning rate.** An exploratory sweep with this script (3 seeds; `--variant
  NAME=cpu-quick:ppo.norm_adv=true,ppo.learning_rate=LR` for LR in 3.5e-4, 1e-3, 3e-3, 1e-2)
  learned faster with every step up, and at 1e-2 collapsed (entropy ~0 by 640 policies) onto
  partly wrong tokens: on `additive` it stopped at about 84 of 100. The same with 3 seeds as
  `--variant "no-floor@3=cpu-quick:ppo.ent_floor=0"` (cpu-quick without its floor; only
  `additive` finished in the time this run had, so the row is not in the tables): min entropy
  0.0 nats by 1,280 policies, picked 84.4 +/- 6.9, PPO - random +60.0 +/- 3.8 (cpu-quick's
  row, with the floor, at 1,280 policies: see the `additive` table).
- **Entropy floor** (`ppo.ent_floor`, `autoaug.search.ppo.entropy_floor_penalty`): a hinge that
  is zero while the batch's mean entropy is above a fifth of the uniform controller's (74.7
  nats) and pulls it back below. Weight 1 did not hold it at lr 1e-2 (entropy 0.1 nats by 1,280
  policies on `additive`); weight 10 does (the min-entropy column stays near 0.2 x 74.7 = 14.9).
  The entropy bonus instead (ent_coef 0.01 at lr 1e-2) kept entropy at 45 nats but learned
  half as fast (`additive`, 1,280 policies: last batch 47 vs 85). More Adam steps per batch
  (8) did not help on `low-snr`.
- **Batch size.** Row `gpu-batch32` (the gpu preset's old batch): half the updates per policy,
  too few at 320 policies on `low-snr` and `non-additive`; the gpu preset now uses 16 as well.
- **Advantage rule measured**: for cpu-quick and gpu, the rewards of a batch minus their mean,
  divided by their std (`norm_adv = true`); any baseline (EMA or batch mean) cancels, so the
  settings do not change when the search centres advantages within the batch or feeds paired
  rewards, and the step does not depend on the reward's scale. For `paper`, reward minus the EMA
  baseline, on the accuracy scale (rewards fed as fractions, like a child's accuracy).
- **Not shown**: a real child's reward is not additive and its noise is not Gaussian; these
  rewards test whether the controller can learn at a given signal-to-noise ratio and budget,
  not what a search on CIFAR-10 finds (that is `experiments/search_quality.py`).
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds per row unless it says NAME@K")
    ap.add_argument("--presets", default=",".join(PRESETS),
                    help="comma-separated presets, each PRESET or PRESET@SEEDS")
    ap.add_argument("--variant", action="append", default=[], metavar="NAME[@K]=PRESET:K=V,K=V",
                    help="an extra setting: a preset with overrides (repeatable)")
    ap.add_argument("--rewards", default=",".join(REWARDS))
    ap.add_argument("--cache", default="runs/bench_controller")
    ap.add_argument("--out", default="experiments/results/bench_controller.md")
    args = ap.parse_args()
    torch.set_num_threads(1)

    budget = max(BUDGETS)
    settings = [Settings(*_preset_row(p, args.seeds)) for p in args.presets.split(",") if p]
    settings += [parse_variant(v, args.seeds) for v in args.variant]
    rewards = [r for r in args.rewards.split(",") if r]
    load_before, started = load_average(), time.strftime("%Y-%m-%d %H:%M")
    t0 = time.perf_counter()

    runs: dict[tuple[str, str, str, int], dict] = {}
    for reward in rewards:
        for s in settings:
            for algo in ("ppo", "random"):
                for seed in range(s.seeds):
                    runs[reward, s.name, algo, seed] = get_run(Path(args.cache), reward, s, algo, seed, budget)
            print(f"{reward} {s.name}: done ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)

    cpu_s = sum(r["cpu_s"] for r in runs.values())
    lines = [
        "# Controller benchmark: PPO vs random search on known-answer rewards",
        "",
        f"Written by `experiments/bench_controller.py` (issue #10, item 3). Machine: {describe()}.",
        f"Run {started}: `nice -n 5 python {' '.join(sys.argv)}`; "
        f"{', '.join(f'{s.name} {s.seeds}' for s in settings)} seeds per cell; "
        f"load average before {load_before}, after {load_average()}; "
        f"{cpu_s / 60:.1f} CPU minutes of runs in total (cached runs count their first time).",
        "",
        "Rewards (true value on a 0-100 scale; the controller is fed observed / 100, an accuracy's scale):",
    ]
    for reward in rewards:
        r = make_reward(reward, 0)
        spread = float(np.std(r.true(np.random.default_rng(0).integers(0, NVEC, size=(20000, 30)))))
        lines.append(f"- `{reward}`: noise {r.noise:.1f} points, std of the true value between "
                     f"random policies {spread:.1f} points (seed 0).")
    lines += ["", "Settings:"]
    for s in settings:
        lines.append(f"- `{s.name}`: {describe_settings(s)}")
    lines += [
        "",
        "Columns: *picked* = true value of the policy with the best observed reward so far (what "
        "the search would export); *last batch* = mean true value of the last batch's policies; "
        "both mean +/- std over seeds. *PPO - random* = paired difference of *picked* (same seed = "
        "same target or landscape), mean +/- standard error; *wins* = seeds where PPO's pick is "
        "better. *min entropy* = lowest batch-mean entropy of the controller so far, nats summed "
        f"over the 30 decisions (uniform = {MAX_ENTROPY:.1f}), min over seeds.",
    ]
    for reward in rewards:
        lines += ["", f"## {reward}", "",
                  "| settings | budget | random: picked | PPO: picked | PPO - random (SE) | wins | "
                  "random: last batch | PPO: last batch | PPO min entropy |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for s in settings:
            bs, seeds = s.config.batch_size, range(s.seeds)
            for b in BUDGETS:
                rnd = [picked(runs[reward, s.name, "random", k], b) for k in seeds]
                ppo = [picked(runs[reward, s.name, "ppo", k], b) for k in seeds]
                d, se = paired_difference(ppo, rnd)
                wins = sum(p > r for p, r in zip(ppo, rnd))
                lines.append(
                    f"| {s.name} | {b} | {mean_std(rnd)} | {mean_std(ppo)} | {d:+.1f} +/- {se:.1f} | "
                    f"{wins}/{len(seeds)} | "
                    f"{mean_std([last_batch(runs[reward, s.name, 'random', k], b, bs) for k in seeds])} | "
                    f"{mean_std([last_batch(runs[reward, s.name, 'ppo', k], b, bs) for k in seeds])} | "
                    f"{min(min_entropy(runs[reward, s.name, 'ppo', k], b, bs) for k in seeds):.1f} |"
                )
    lines += ["", "## Target check (issue #10: PPO beats random at every budget >= 320 on all three "
              "rewards, entropy never falls to zero)", "",
              "| settings | cells where PPO - random > 0 | cells where it is > 2 SE | worst cell | "
              "min entropy (nats, fraction of uniform) |", "|---|---|---|---|---|"]
    for s in settings:
        cells, seeds = [], range(s.seeds)
        for reward in rewards:
            for b in (b for b in BUDGETS if b >= TARGET_BUDGET):
                d, se = paired_difference([picked(runs[reward, s.name, "ppo", k], b) for k in seeds],
                             [picked(runs[reward, s.name, "random", k], b) for k in seeds])
                cells.append((d, se, reward, b))
        worst = min(cells, key=lambda c: c[0] - 2 * c[1])
        h = min(min_entropy(runs[reward, s.name, "ppo", k], max(BUDGETS), s.config.batch_size)
                for reward in rewards for k in seeds)
        lines.append(
            f"| {s.name} | {sum(d > 0 for d, *_ in cells)}/{len(cells)} | "
            f"{sum(d > 2 * se for d, se, *_ in cells)}/{len(cells)} | {worst[2]} at {worst[3]}: "
            f"{worst[0]:+.1f} +/- {worst[1]:.1f} | {h:.1f} ({h / MAX_ENTROPY:.2f}) |")
    lines += ["", NOTES.strip()]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
