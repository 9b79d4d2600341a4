"""PPO: known answers on hand-computed numbers, and the update step's contract."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from autoaug.search.controller import Controller
from autoaug.errors import ConfigError
from autoaug.search.ppo import (
    PPOConfig,
    advantages,
    entropy_bonus,
    entropy_floor_penalty,
    make_optimizer,
    policy_loss,
    ppo_update,
    update_baseline,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def t(*values: float) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64)


def ratio_logprobs(*ratios: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(new, old) log-probabilities whose ratio exp(new - old) is `ratios`."""
    return torch.log(t(*ratios)), torch.zeros(len(ratios), dtype=torch.float64)


# --- known answers -------------------------------------------------------------------------


def test_config_defaults_are_the_papers() -> None:
    config = PPOConfig()
    assert (config.learning_rate, config.ent_coef, config.baseline_decay) == (3.5e-4, 1e-5, 0.95)
    assert config.clip_coef == 0.2 and config.norm_adv is False


def test_advantages() -> None:
    assert torch.allclose(advantages(t(0.5, 0.7, 0.6), 0.6), t(-0.1, 0.1, 0.0))


def test_baseline_ema_sequence() -> None:
    b = update_baseline(None, [0.2, 0.4], 0.9)  # first batch: its mean
    assert b == pytest.approx(0.3)
    b = update_baseline(b, [1.0], 0.9)  # 0.9 * 0.3 + 0.1 * 1.0
    assert b == pytest.approx(0.37)
    b = update_baseline(b, t(0.0, 0.0), 0.9)  # 0.9 * 0.37
    assert b == pytest.approx(0.333)


def test_ratio_inside_clip_range_is_unclipped() -> None:
    new, old = ratio_logprobs(1.1)
    loss, _ = policy_loss(new, old, t(2.0), clip_coef=0.2)
    assert float(loss) == pytest.approx(-2.2)  # -A * r


def test_positive_advantage_clipped_above() -> None:
    new, old = ratio_logprobs(1.5)
    new.requires_grad_(True)
    loss, _ = policy_loss(new, old, t(1.0), clip_coef=0.2)
    assert float(loss.detach()) == pytest.approx(-1.2)  # max(-1.5, -1.2): gain stops at 1 + eps
    loss.backward()
    assert float(new.grad) == 0.0  # nothing pushes the ratio further up


def test_positive_advantage_below_range_is_not_clipped() -> None:
    new, old = ratio_logprobs(0.5)
    loss, _ = policy_loss(new, old, t(1.0), clip_coef=0.2)
    assert float(loss) == pytest.approx(-0.5)  # max(-0.5, -0.8): the pessimistic bound


def test_negative_advantage_clipped_below() -> None:
    new, old = ratio_logprobs(0.5)
    new.requires_grad_(True)
    loss, _ = policy_loss(new, old, t(-1.0), clip_coef=0.2)
    assert float(loss.detach()) == pytest.approx(0.8)  # max(0.5, 0.8)
    loss.backward()
    assert float(new.grad) == 0.0


def test_negative_advantage_above_range_is_not_clipped() -> None:
    new, old = ratio_logprobs(1.5)
    loss, _ = policy_loss(new, old, t(-2.0), clip_coef=0.2)
    assert float(loss) == pytest.approx(3.0)  # max(3.0, 2.4)


def test_loss_is_mean_over_policies() -> None:
    new, old = ratio_logprobs(1.1, 1.5, 0.5)
    loss, _ = policy_loss(new, old, t(2.0, 1.0, -1.0), clip_coef=0.2)
    assert float(loss) == pytest.approx((-2.2 - 1.2 + 0.8) / 3)


def test_gradient_of_unclipped_term() -> None:
    # d(-A * exp(new - old)) / d new = -A * r = -2 * 1.1, averaged over 1 policy.
    new, old = ratio_logprobs(1.1)
    new.requires_grad_(True)
    policy_loss(new, old, t(2.0), clip_coef=0.2)[0].backward()
    assert float(new.grad) == pytest.approx(-2.2)


def test_approx_kl() -> None:
    # (r - 1) - log r: r = 2 gives 1 - ln 2, r = 1/2 gives -1/2 + ln 2; their mean is 1/4.
    new, old = ratio_logprobs(2.0, 0.5)
    _, stats = policy_loss(new, old, t(1.0, 1.0), clip_coef=0.2)
    assert stats["approx_kl"] == pytest.approx(0.25)
    _, stats = policy_loss(*ratio_logprobs(1.0), t(1.0), clip_coef=0.2)
    assert stats["approx_kl"] == 0.0


def test_clipfrac() -> None:
    new, old = ratio_logprobs(1.0, 1.1, 1.3, 0.7, 0.79)  # |r - 1| > 0.2 for the last three
    _, stats = policy_loss(new, old, t(1, 1, 1, 1, 1), clip_coef=0.2)
    assert stats["clipfrac"] == pytest.approx(0.6)


def test_entropy_bonus() -> None:
    assert float(entropy_bonus(t(2.0, 4.0), 1e-5)) == pytest.approx(3e-5)


def test_entropy_floor_penalty() -> None:
    # Mean entropy 3 of a maximum 10 = 0.3 of uniform: 0.5 below a floor of 0.8, times coef 2.
    entropies = t(2.0, 4.0).requires_grad_(True)
    penalty = entropy_floor_penalty(entropies, max_entropy=10.0, floor=0.8, coef=2.0)
    assert float(penalty.detach()) == pytest.approx(1.0)
    penalty.backward()
    assert entropies.grad.tolist() == pytest.approx([-0.1, -0.1])  # -coef / max_entropy / n
    # Above the floor: nothing, and no gradient that would pull towards uniform.
    entropies = t(5.0, 7.0).requires_grad_(True)
    penalty = entropy_floor_penalty(entropies, max_entropy=10.0, floor=0.5, coef=2.0)
    penalty.backward()
    assert float(penalty.detach()) == 0.0 and entropies.grad.tolist() == [0.0, 0.0]


def test_controller_entropy_of_known_distribution() -> None:
    # One decision out of 4 with probabilities (1/2, 1/4, 1/8, 1/8): entropy 1.75 bits.
    controller = Controller(nvec=(4,))
    with torch.no_grad():
        controller.heads[0].weight.zero_()
        controller.heads[0].bias.copy_(torch.log(torch.tensor([0.5, 0.25, 0.125, 0.125])))
        logprobs, entropies = controller.evaluate(torch.tensor([[3], [0]]))
    assert entropies.tolist() == pytest.approx([1.75 * math.log(2)] * 2)
    assert logprobs.tolist() == pytest.approx([math.log(0.125), math.log(0.5)])


def test_uniform_controller_entropy_sums_over_decisions() -> None:
    controller = Controller(nvec=(16, 11, 10))
    with torch.no_grad():
        for head in controller.heads:
            head.weight.zero_()
            head.bias.zero_()
        _, logprobs, entropies = controller.sample(3, torch.Generator().manual_seed(0))
    expected = math.log(16) + math.log(11) + math.log(10)
    assert entropies.tolist() == pytest.approx([expected] * 3)
    assert logprobs.tolist() == pytest.approx([-expected] * 3)


# --- config --------------------------------------------------------------------------------


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        PPOConfig().learning_rate = 1.0  # type: ignore[misc]


@pytest.mark.parametrize(
    "field, value",
    [("learning_rate", 0.0), ("clip_coef", -0.1), ("ent_coef", -1e-5), ("baseline_decay", 1.0),
     ("update_epochs", 0), ("minibatch_size", 0), ("max_grad_norm", 0.0), ("ent_floor", 1.0),
     ("ent_floor", -0.1), ("ent_floor_coef", -1.0)],
)
def test_config_rejects_bad_values(field: str, value: float) -> None:
    with pytest.raises(ConfigError, match=f"ppo.{field} must be"):
        PPOConfig(**{field: value})


# --- the update step -----------------------------------------------------------------------


def small_setup(seed: int = 0) -> tuple[Controller, torch.optim.Optimizer, torch.Tensor, torch.Tensor]:
    controller = Controller(nvec=(4, 3, 5), hidden_size=16, embedding_dim=8)
    optimizer = make_optimizer(controller, PPOConfig(learning_rate=1e-2))
    tokens, logprobs, _ = controller.sample(8, torch.Generator().manual_seed(seed))
    return controller, optimizer, tokens, logprobs


def test_update_moves_probability_towards_rewarded_policies() -> None:
    controller, optimizer, tokens, logprobs = small_setup()
    tokens = torch.tensor([[0, 0, 0], [3, 2, 4]])
    logprobs, _ = controller.evaluate(tokens)
    logprobs = logprobs.detach()
    config = PPOConfig(learning_rate=1e-2, ent_coef=0.0)
    ppo_update(controller, optimizer, tokens, logprobs, [1.0, 0.0], 0.5, config, torch.Generator())
    new_logprobs, _ = controller.evaluate(tokens)
    assert new_logprobs[0] > logprobs[0] and new_logprobs[1] < logprobs[1]


def test_first_batch_is_centred_on_its_own_mean() -> None:
    # Equal rewards and no earlier baseline: every advantage is 0, so nothing may change. A
    # baseline of 0 instead would make every advantage positive and move the weights.
    controller, optimizer, tokens, logprobs = small_setup()
    before = [p.detach().clone() for p in controller.parameters()]
    config = PPOConfig(learning_rate=1e-2, ent_coef=0.0)
    stats = ppo_update(controller, optimizer, tokens, logprobs, [0.5] * 8, None, config, torch.Generator())
    assert all(torch.equal(a, b) for a, b in zip(before, controller.parameters()))
    assert stats["charts/baseline"] == pytest.approx(0.5)
    assert stats["charts/advantage_mean"] == 0.0


def test_entropy_bonus_pushes_entropy_up() -> None:
    # Equal rewards leave only the entropy term, which must make a peaked controller flatter.
    controller, optimizer, tokens, logprobs = small_setup()
    with torch.no_grad():
        for head in controller.heads:
            head.bias[0] = 3.0
        logprobs, entropies_before = controller.evaluate(tokens)
    config = PPOConfig(learning_rate=1e-2, ent_coef=0.1)
    ppo_update(controller, optimizer, tokens, logprobs, [0.5] * 8, None, config, torch.Generator())
    with torch.no_grad():
        _, entropies_after = controller.evaluate(tokens)
    assert (entropies_after > entropies_before).all()


def test_entropy_floor_holds_a_collapsing_controller() -> None:
    # Rewards that favour one policy collapse the controller; a floor at half the uniform
    # entropy keeps it there, which the same updates without the floor do not.
    def final_entropy(ent_floor: float) -> float:
        controller = Controller(nvec=(4, 3, 5), hidden_size=16, embedding_dim=8)
        config = PPOConfig(learning_rate=3e-2, ent_coef=0.0, norm_adv=True, ent_floor=ent_floor,
                           ent_floor_coef=10.0)
        optimizer = make_optimizer(controller, config)
        generator = torch.Generator().manual_seed(0)
        for _ in range(40):
            tokens, logprobs, _ = controller.sample(16, generator)
            rewards = (tokens == 0).float().sum(1)  # (16,) best: all zeros
            ppo_update(controller, optimizer, tokens, logprobs, rewards, None, config, generator)
        with torch.no_grad():
            return float(controller.sample(256, generator)[2].mean())

    max_entropy = math.log(4 * 3 * 5)
    assert final_entropy(0.0) < 0.2 * max_entropy
    assert final_entropy(0.5) > 0.4 * max_entropy


def test_update_returns_next_baseline_and_tagged_stats() -> None:
    controller, optimizer, tokens, logprobs = small_setup()
    rewards = [0.0, 1.0] * 4
    stats = ppo_update(controller, optimizer, tokens, logprobs, rewards, 0.2, PPOConfig(), torch.Generator())
    assert stats["charts/baseline"] == pytest.approx(0.95 * 0.2 + 0.05 * 0.5)
    assert stats["charts/advantage_mean"] == pytest.approx(0.3)
    assert stats["charts/reward_mean"] == pytest.approx(0.5)
    assert {"losses/policy_loss", "losses/entropy", "losses/approx_kl", "losses/clipfrac"} <= set(stats)
    # The first epoch starts at ratio 1; the later ones see the policy the first one moved.
    assert stats["losses/approx_kl"] > 0.0


def test_minibatch_order_comes_from_generator() -> None:
    config = PPOConfig(learning_rate=1e-2, minibatch_size=2, update_epochs=2)
    rewards = [0.1, 0.9, 0.3, 0.7, 0.0, 1.0, 0.5, 0.2]

    def run(seed: int) -> list[torch.Tensor]:
        controller, optimizer, tokens, logprobs = small_setup()
        ppo_update(controller, optimizer, tokens, logprobs, rewards, None, config,
                   torch.Generator().manual_seed(seed))
        return [p.detach() for p in controller.parameters()]

    a, b, c = run(1), run(1), run(2)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_norm_adv_standardises() -> None:
    # With norm_adv a constant shift of every reward changes nothing; without it, it does.
    def run(shift: float, norm_adv: bool) -> torch.Tensor:
        controller, optimizer, tokens, logprobs = small_setup()
        config = PPOConfig(learning_rate=1e-2, norm_adv=norm_adv)
        rewards = [r + shift for r in (0.1, 0.9, 0.3, 0.7, 0.0, 1.0, 0.5, 0.2)]
        ppo_update(controller, optimizer, tokens, logprobs, rewards, 0.5, config, torch.Generator())
        return controller.heads[0].bias.detach()

    assert torch.allclose(run(0.0, True), run(0.3, True), atol=1e-6)
    assert not torch.allclose(run(0.0, False), run(0.3, False), atol=1e-6)


def test_update_rejects_mismatched_batch() -> None:
    controller, optimizer, tokens, logprobs = small_setup()
    with pytest.raises(ValueError, match="rewards"):
        ppo_update(controller, optimizer, tokens, logprobs, [1.0] * 7, None, PPOConfig(), torch.Generator())
    with pytest.raises(ValueError, match="finite"):
        ppo_update(controller, optimizer, tokens, logprobs, [math.nan] * 8, None, PPOConfig(),
                   torch.Generator())
