"""PolicySearchEnv: Gymnasium's own checker, bad actions, the info contract, random search."""

from __future__ import annotations

import math
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from autoaug.search.controller import Controller
from autoaug.search.config import load_config
from autoaug.search.env import PolicySearchEnv, child_reward
from autoaug.errors import AutoaugError, PolicyError
from autoaug.space.policy import SEARCH_NVEC, Policy


def rotate_fraction(policy: Policy) -> float:
    """Stub reward: the fraction of the policy's ops that are Rotate."""
    ops = [op for sub in policy.sub_policies for op in sub]
    return sum(op.name == "Rotate" for op in ops) / len(ops)


def test_spaces() -> None:
    env = PolicySearchEnv(rotate_fraction)
    assert tuple(env.action_space.nvec) == SEARCH_NVEC == (16, 11, 10) * 10
    assert env.observation_space.n == 1
    assert PolicySearchEnv(rotate_fraction, num_sub_policies=2).action_space.shape == (12,)


def test_check_env_passes_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Gymnasium reports most API problems as warnings
        check_env(PolicySearchEnv(rotate_fraction), skip_render_check=True)


def test_step_contract() -> None:
    env = PolicySearchEnv(rotate_fraction)
    obs, info = env.reset(seed=0)
    assert obs == 0 and info == {}
    action = np.array([4, 10, 9, 0, 5, 3] * 5)  # Rotate p=1.0 bin 9, then ShearX p=0.5 bin 3
    obs, reward, terminated, truncated, info = env.step(action)
    assert (obs, reward, terminated, truncated) == (0, 0.5, True, False)
    assert info["tokens"] == action.tolist()
    policy = Policy.from_json(info["policy"])
    assert policy.to_tokens() == action.tolist()
    assert policy.sub_policies[0][0].name == "Rotate" and policy.sub_policies[0][0].prob == 1.0
    assert policy.sub_policies[0][1].name == "ShearX" and policy.sub_policies[0][1].prob == 0.5


def test_reward_fn_gets_the_decoded_policy() -> None:
    seen: list[Policy] = []

    def reward_fn(policy: Policy) -> float:
        seen.append(policy)
        return 0.25

    env = PolicySearchEnv(reward_fn)
    env.reset(seed=0)
    action = env.action_space.sample()
    _, reward, _, _, _ = env.step(action)
    assert reward == 0.25
    assert seen == [Policy.from_tokens(action.tolist())]


@pytest.mark.parametrize(
    "action, message",
    [
        (np.zeros(29, dtype=np.int64), r"expected shape \(30,\), got \(29,\)"),
        (np.zeros((1, 30), dtype=np.int64), r"expected shape \(30,\), got \(1, 30\)"),
        (np.zeros(30), "expected integer tokens, got dtype float64"),
        ([0] * 29 + [10], r"action\[29\]: expected 0..9, got 10"),
        ([16] + [0] * 29, r"action\[0\]: expected 0..15, got 16"),
        ([0, -1] + [0] * 28, r"action\[1\]: expected 0..10, got -1"),
    ],
)
def test_bad_actions(action: object, message: str) -> None:
    env = PolicySearchEnv(rotate_fraction)
    env.reset(seed=0)
    with pytest.raises(PolicyError, match=message):
        env.step(action)


@pytest.mark.parametrize("bad", [math.nan, math.inf, "0.5", None])
def test_bad_reward_is_an_error(bad: object) -> None:
    env = PolicySearchEnv(lambda policy: bad)  # type: ignore[arg-type, return-value]
    env.reset(seed=0)
    with pytest.raises(ValueError, match="reward_fn: expected a finite number"):
        env.step(env.action_space.sample())


def test_random_search() -> None:
    def search(seed: int) -> tuple[list[list[int]], float, dict]:
        env = PolicySearchEnv(rotate_fraction)
        env.action_space.seed(seed)
        actions, best_reward, best_policy = [], -1.0, {}
        for episode in range(200):
            env.reset(seed=seed + episode)
            action = env.action_space.sample()
            _, reward, terminated, _, info = env.step(action)
            assert terminated
            actions.append(action.tolist())
            if reward > best_reward:
                best_reward, best_policy = reward, info["policy"]
        return actions, best_reward, best_policy

    actions, best_reward, best_policy = search(0)
    assert actions == search(0)[0]  # seeded action space: the same policies again
    assert actions != search(1)[0]
    assert len({tuple(a) for a in actions}) == 200
    # 200 draws of 10 ops at 1/16 each: the best has 3 or more Rotates with probability ~0.98
    # (seeded, so this is one fixed draw that does).
    assert best_reward >= 0.3
    assert rotate_fraction(Policy.from_json(best_policy)) == best_reward


def test_controller_tokens_are_actions() -> None:
    env = PolicySearchEnv(rotate_fraction)
    tokens, _, _ = Controller().sample(16, torch.Generator().manual_seed(0))
    for row in tokens.numpy():
        assert env.action_space.contains(row)
        env.step(row)


def test_child_reward_trains_a_real_child_on_one_seed(tiny_npz):
    """Issue #22: the public helper gives the env the reward a search trial gets."""
    config = load_config(None, [f"dataset=npz:{tiny_npz}", "child.epochs=1", "child.batch_size=12",
                                "train_subset=none", "val_subset=none"])
    reward_fn = child_reward(config, seed=3)
    env = PolicySearchEnv(reward_fn)
    env.reset(seed=0)
    action = env.action_space.sample()
    _, reward, terminated, _, info = env.step(action)
    assert terminated and 0.0 <= reward <= 1.0 and reward * 36 == pytest.approx(round(reward * 36))  # of 36 val images
    assert env.step(action)[1] == reward  # the same policy on the same seed: the same child
    with pytest.raises(AutoaugError):
        child_reward(load_config(None, ["dataset=npz:/nonexistent.npz"]))


def test_readme_env_example_runs_as_written(capsys, one_thread):
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    found = re.search(r"<!-- example: env -->\s*```python\n(.*?)```", text, re.S)
    assert found, "README.md lost its environment example (marker `<!-- example: env -->`)"
    exec(compile(found.group(1), "README.md example", "exec"), {})
    assert re.fullmatch(r"reward \d\.\d{3} for 5 sub-policies\n", capsys.readouterr().out)
