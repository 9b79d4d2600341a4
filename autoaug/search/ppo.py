"""PPO for the policy controller: small pure functions and one update step.

This module owns how the controller learns from rewards; the network is `autoaug.search.controller`
and the loop that samples, evaluates and calls `ppo_update()` is the search's. Every sampled
policy is one action with one reward (a one-step episode), so there is no critic and no GAE:
the advantage is the reward minus an exponential moving average of earlier rewards, as in the
AutoAugment paper (Cubuk et al. 2019, Sec. 3). Names follow CleanRL's ppo.py (`b_` for the
batch, `mb_` for a minibatch, TensorBoard tags such as `losses/approx_kl`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from autoaug.errors import ConfigError
from autoaug.search.controller import Controller


@dataclass(frozen=True)
class PPOConfig:
    """Controller training hyperparameters; the defaults are the AutoAugment paper's where it has one."""

    learning_rate: float = 3.5e-4
    """Adam learning rate of the controller (AutoAugment paper, Sec. 3: 0.00035)."""
    adam_eps: float = 1e-8
    """Adam epsilon (the paper does not give one; PyTorch's default)."""
    clip_coef: float = 0.2
    """Surrogate clipping range epsilon (the paper gives none; Schulman et al. 2017's 0.2)."""
    ent_coef: float = 1e-5
    """Weight of the entropy bonus (AutoAugment paper, Sec. 3: 0.00001)."""
    baseline_decay: float = 0.95
    """Decay of the reward moving-average baseline (AutoAugment paper, Sec. 3: 0.95)."""
    update_epochs: int = 4
    """Passes over each batch of policies per update (the paper gives none; CleanRL's 4)."""
    minibatch_size: int | None = None
    """Policies per gradient step; None means the whole batch in one step."""
    max_grad_norm: float | None = 0.5
    """Clip the controller's gradient to this global norm; None disables (CleanRL's 0.5)."""
    norm_adv: bool = False
    """Standardise advantages over the batch; off because the paper uses the raw advantage."""
    ent_floor: float = 0.0
    """Entropy floor, as a fraction of the uniform controller's entropy: while the batch's mean
    entropy is below it, a penalty of `ent_floor_coef` per unit of that fraction pulls it back
    (`entropy_floor_penalty`). 0 = off (the paper has none)."""
    ent_floor_coef: float = 10.0
    """Weight of the entropy floor's penalty, in units of (standardised) advantage; 1 did not
    hold the floor at lr 1e-2 in experiments/bench_controller.py, 10 does."""

    def __post_init__(self) -> None:
        for name in ("learning_rate", "adam_eps", "clip_coef", "ent_coef", "baseline_decay", "max_grad_norm"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise ConfigError(f"ppo.{name} must be a finite number, got {value!r}")
        for rule, (ok, names) in _RANGES.items():
            for name in names:
                if not ok(getattr(self, name)):
                    raise ConfigError(f"ppo.{name} must be {rule}, got {getattr(self, name)}")


# What each number of PPOConfig must be; the rule is also the error's wording.
_RANGES = {
    "> 0": (lambda v: v > 0, ("learning_rate", "adam_eps", "clip_coef", "update_epochs")),
    ">= 0": (lambda v: v >= 0, ("ent_coef", "ent_floor_coef")),
    "in [0, 1)": (lambda v: 0 <= v < 1, ("ent_floor", "baseline_decay")),
    ">= 1 or None": (lambda v: v is None or v >= 1, ("minibatch_size",)),
    "> 0 or None": (lambda v: v is None or v > 0, ("max_grad_norm",)),
}


def make_optimizer(controller: Controller, config: PPOConfig) -> torch.optim.Adam:
    """The controller's Adam optimiser with the config's learning rate and epsilon."""
    return torch.optim.Adam(controller.parameters(), lr=config.learning_rate, eps=config.adam_eps)


def advantages(rewards: torch.Tensor, baseline: float) -> torch.Tensor:
    """Advantage of each policy: its reward minus the baseline. (n,) -> (n,)."""
    return rewards - baseline


def update_baseline(baseline: float | None, rewards: torch.Tensor | Sequence[float], decay: float) -> float:
    """One EMA step with the batch's mean reward: `decay * baseline + (1 - decay) * mean(rewards)`.

    One step per batch, not per reward, so the result does not depend on the order in which a
    batch's rewards arrive from the workers. On the first batch (`baseline is None`) there is
    nothing to average yet and the baseline starts at that batch's mean reward.
    """
    mean = float(torch.as_tensor(rewards, dtype=torch.float64).mean())
    if baseline is None:
        return mean
    return decay * baseline + (1.0 - decay) * mean


def policy_loss(
    new_logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    clip_coef: float,
) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate loss (to minimise) and its diagnostics.

    `loss = mean(max(-A * r, -A * clip(r, 1 - eps, 1 + eps)))` with `r = exp(new - old)`.
    Stats: `approx_kl`, the `(r - 1) - log r` estimator of KL(old || new) (non-negative,
    low variance); `clipfrac`, the fraction of policies with `|r - 1| > eps`.
    """
    logratio = new_logprobs - old_logprobs  # (n,)
    ratio = logratio.exp()  # (n,)
    pg_loss1 = -advantages * ratio  # (n,)
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)  # (n,)
    loss = torch.max(pg_loss1, pg_loss2).mean()
    with torch.no_grad():
        stats = {
            "approx_kl": float(((ratio - 1) - logratio).mean()),
            "clipfrac": float(((ratio - 1.0).abs() > clip_coef).float().mean()),
        }
    return loss, stats


def entropy_bonus(entropies: torch.Tensor, ent_coef: float) -> torch.Tensor:
    """The term subtracted from the loss to keep the controller exploring: `ent_coef * mean(entropies)`."""
    return ent_coef * entropies.mean()


def entropy_floor_penalty(
    entropies: torch.Tensor, max_entropy: float, floor: float, coef: float
) -> torch.Tensor:
    """The term added to the loss to stop the controller collapsing:
    `coef * relu(floor - mean(entropies) / max_entropy)`.

    Zero (and no gradient) while the mean entropy is above `floor` times the uniform
    controller's `max_entropy`, so unlike the entropy bonus it does not pull a controller that
    still explores towards uniform; below the floor it is an entropy bonus of weight
    `coef / max_entropy`. (n,) -> scalar.
    """
    return coef * torch.relu(floor - entropies.mean() / max_entropy)


def ppo_update(
    controller: Controller,
    optimizer: torch.optim.Optimizer,
    tokens: torch.Tensor,
    old_logprobs: torch.Tensor,
    rewards: torch.Tensor | Sequence[float],
    baseline: float | None,
    config: PPOConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """Train `controller` on one batch of sampled policies and their rewards.

    `tokens` (n, T) and `old_logprobs` (n,) come from `controller.sample()`, `rewards` (n,) from
    the children. `baseline` is the EMA of the rewards of earlier batches (None before the
    first batch, when this batch's mean is used). The minibatch order of every epoch is drawn
    from `generator`. Returns TensorBoard-ready stats; `stats["charts/baseline"]` is the
    baseline updated with this batch, to pass to the next call (and to checkpoint).
    """
    device = old_logprobs.device
    b_tokens = torch.as_tensor(tokens, device=device)  # (n, T)
    b_logprobs = old_logprobs.detach()  # (n,)
    b_rewards = torch.as_tensor(rewards, dtype=torch.float32, device=device)  # (n,)
    n = b_tokens.shape[0]
    if b_logprobs.shape != (n,) or b_rewards.shape != (n,):
        raise ValueError(f"expected tokens (n, T), old_logprobs (n,), rewards (n,), got "
                         f"{tuple(b_tokens.shape)}, {tuple(b_logprobs.shape)}, {tuple(b_rewards.shape)}")
    if not torch.isfinite(b_rewards).all():
        raise ValueError(f"rewards must be finite, got {b_rewards.tolist()}")

    # Advantages are fixed for the whole update and measured against earlier batches only;
    # the first batch has none and is centred on its own mean (what update_baseline starts at).
    if baseline is None:
        baseline_before = update_baseline(None, b_rewards, config.baseline_decay)
    else:
        baseline_before = baseline
    b_advantages = advantages(b_rewards, baseline_before)  # (n,)
    if config.norm_adv and n > 1:
        # Over the whole batch, not per minibatch: batches of policies are small.
        b_advantages = (b_advantages - b_advantages.mean()) / (b_advantages.std() + 1e-8)

    minibatch_size = n if config.minibatch_size is None else min(config.minibatch_size, n)
    max_entropy = float(torch.tensor(controller.nvec, dtype=torch.float64).log().sum())
    totals = {"policy_loss": 0.0, "entropy": 0.0, "approx_kl": 0.0, "clipfrac": 0.0}
    steps = 0
    controller.train()
    for _ in range(config.update_epochs):
        b_inds = torch.randperm(n, generator=generator, device=generator.device).to(device)  # (n,)
        for start in range(0, n, minibatch_size):
            mb_inds = b_inds[start : start + minibatch_size]  # (mb,)
            new_logprobs, entropies = controller.evaluate(b_tokens[mb_inds])  # (mb,), (mb,)
            pg_loss, mb_stats = policy_loss(
                new_logprobs, b_logprobs[mb_inds], b_advantages[mb_inds], config.clip_coef
            )
            loss = pg_loss - entropy_bonus(entropies, config.ent_coef)
            if config.ent_floor > 0:
                loss = loss + entropy_floor_penalty(
                    entropies, max_entropy, config.ent_floor, config.ent_floor_coef
                )

            optimizer.zero_grad()
            loss.backward()
            if config.max_grad_norm is not None:
                torch.nn.utils.clip_grad_norm_(controller.parameters(), config.max_grad_norm)
            optimizer.step()

            totals["policy_loss"] += float(pg_loss.detach())
            totals["entropy"] += float(entropies.detach().mean())
            totals["approx_kl"] += mb_stats["approx_kl"]
            totals["clipfrac"] += mb_stats["clipfrac"]
            steps += 1

    stats = {f"losses/{k}": v / steps for k, v in totals.items()}
    stats["charts/reward_mean"] = float(b_rewards.mean())
    stats["charts/reward_max"] = float(b_rewards.max())
    stats["charts/advantage_mean"] = float(b_advantages.mean())
    stats["charts/baseline"] = update_baseline(baseline, b_rewards, config.baseline_decay)
    return stats
