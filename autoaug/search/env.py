"""The search space as a Gymnasium environment, for agents from outside this package.

This module owns the translation between Gymnasium's contract and the search space: an action
is a policy's 30 tokens (`MultiDiscrete([16, 11, 10] * 10)` for 5 sub-policies), an episode is
one step, and the reward is whatever `reward_fn(policy)` returns. Random search is
`env.step(env.action_space.sample())`.

`autoaug search` does not run through it: the search evaluates a batch of policies per
controller round on a worker pool, gives every child its own recorded seed, and keeps every
trial in a store it resumes from (`autoaug.search.trials`), none of which a one-policy
`reward_fn` carries. With this env, `reward_fn` is the agent's own; `child_reward(config)` gives
the reward a search trial gets (a real child trained with the policy, its val accuracy), and
seeds, parallelism and resuming are the agent's business.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from autoaug.errors import PolicyError
from autoaug.search.config import SearchConfig
from autoaug.search.rewards import evaluate_policy
from autoaug.search.trials import ChildTask
from autoaug.space.policy import DECISIONS_PER_OP, NUM_SUB_POLICIES, OPS_PER_SUB_POLICY, Policy
from autoaug.training.subsets import load_data


def child_reward(config: SearchConfig | None = None, *, seed: int = 0, device: str = "cpu") -> Callable[[Policy], float]:
    """A `reward_fn` for `PolicySearchEnv`: train the search's child with the policy and return its
    val accuracy, the reward `autoaug search` gives a trial. `config` says the dataset, image size,
    subsets and [child] recipe (default: the cpu-quick preset, `SearchConfig()`). Every call trains
    on `seed`, so two policies' rewards differ by the policy and not by a seed's luck (issue #22).
    The data are loaded now: a bad dataset fails here, not at the first step."""
    config = config or SearchConfig()
    splits = load_data(config.dataset, config.train_subset, config.val_subset, config.image_size)
    task = ChildTask.from_config(config.for_images(splits.image_shape, len(splits.train_y)))

    def reward(policy: Policy) -> float:
        return float(evaluate_policy(task, {"policy": policy.to_json()}, seed, device))

    return reward


class PolicySearchEnv(gym.Env[int, np.ndarray]):
    """One-step episodes: choose a policy, get its reward.

    Observation: `Discrete(1)`, always 0. Nothing is observed before choosing a policy (the
    controller is an open-loop sequence model), and a single-value discrete space says exactly
    that; a zero `Box` would pass `check_env` too but suggests features that do not exist.

    `step(action)` returns `(0, reward, True, False, info)` with `info["policy"]` the policy's
    JSON document (`Policy.to_json()`) and `info["tokens"]` the action as a list of ints.
    Stepping again without `reset()` is allowed: episodes share no state.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        reward_fn: Callable[[Policy], float],
        num_sub_policies: int = NUM_SUB_POLICIES,
    ) -> None:
        if num_sub_policies < 1:
            raise PolicyError(f"num_sub_policies: expected >= 1, got {num_sub_policies}")
        self.reward_fn = reward_fn
        nvec = DECISIONS_PER_OP * (num_sub_policies * OPS_PER_SUB_POLICY)
        self.action_space = spaces.MultiDiscrete(np.array(nvec, dtype=np.int64))
        self.observation_space = spaces.Discrete(1)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        super().reset(seed=seed)  # seeds self.np_random; the env itself draws nothing
        return 0, {}

    def step(self, action: Any) -> tuple[int, float, bool, bool, dict[str, Any]]:
        tokens = self._check_action(action)
        policy = Policy.from_tokens(tokens)
        reward = self.reward_fn(policy)
        if isinstance(reward, bool) or not isinstance(reward, (int, float, np.number)) \
                or not math.isfinite(reward):
            # A NaN or non-number reward would poison the agent's update; fail where it came from.
            raise ValueError(f"reward_fn: expected a finite number, got {reward!r} for tokens {tokens}")
        return 0, float(reward), True, False, {"policy": policy.to_json(), "tokens": tokens}

    def _check_action(self, action: Any) -> list[int]:
        """The action as a list of ints, or a PolicyError naming what was expected and what came."""
        a = np.asarray(action)
        nvec = self.action_space.nvec
        if a.shape != nvec.shape:
            raise PolicyError(f"action: expected shape {nvec.shape}, got {a.shape}")
        if not np.issubdtype(a.dtype, np.integer):
            raise PolicyError(f"action: expected integer tokens, got dtype {a.dtype}")
        bad = np.flatnonzero((a < 0) | (a >= nvec))
        if bad.size:
            i = int(bad[0])
            raise PolicyError(f"action[{i}]: expected 0..{nvec[i] - 1}, got {a[i]}")
        return [int(v) for v in a]
