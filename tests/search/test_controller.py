"""Controller: shapes, initialisation, sample/evaluate agreement, determinism, gradients, learnability."""

from __future__ import annotations

import math

import pytest
import torch

from autoaug.search.controller import Controller
from autoaug.errors import PolicyError
from autoaug.space.ops import OP_NAMES
from autoaug.space.policy import SEARCH_NVEC
from autoaug.search.ppo import PPOConfig, make_optimizer, ppo_update

ROTATE = OP_NAMES.index("Rotate")


pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_default_space_is_five_sub_policies() -> None:
    assert ROTATE == 4
    assert Controller().nvec == SEARCH_NVEC == (16, 11, 10) * 10


def test_sample_shapes_and_ranges() -> None:
    controller = Controller()
    tokens, logprobs, entropies = controller.sample(7, gen(0))
    assert tokens.shape == (7, 30) and tokens.dtype == torch.int64
    assert logprobs.shape == (7,) and entropies.shape == (7,)
    nvec = torch.tensor(SEARCH_NVEC)
    assert ((tokens >= 0) & (tokens < nvec)).all()
    assert (logprobs < 0).all()
    assert not logprobs.requires_grad  # sample() is the rollout: PPO's old_logprobs


def test_other_nvec() -> None:
    controller = Controller(nvec=(3, 5, 2, 7), hidden_size=8, embedding_dim=4)
    tokens, logprobs, _ = controller.sample(50, gen(0))
    assert tokens.shape == (50, 4)
    assert (tokens.max(0).values < torch.tensor([3, 5, 2, 7])).all()
    assert torch.allclose(controller.evaluate(tokens)[0], logprobs, atol=1e-5)


def test_init_uniform_in_paper_range() -> None:
    controller = Controller()
    for name, p in controller.named_parameters():
        # PyTorch's defaults would differ: nn.Embedding draws from N(0, 1), the start input
        # would be uninitialised memory. Each tensor fills the whole range, not a corner of it.
        assert p.abs().max() <= 0.1, name
        if p.numel() >= 100:
            assert p.min() < -0.09 and p.max() > 0.09, name
    values = torch.cat([p.detach().flatten() for p in controller.parameters()])
    assert abs(float(values.mean())) < 0.005


def test_initial_policies_are_near_uniform() -> None:
    _, _, entropies = Controller().sample(4, gen(0))
    max_entropy = sum(math.log(n) for n in SEARCH_NVEC)
    assert torch.all(entropies > 0.99 * max_entropy)


def test_init_does_not_depend_on_global_rng() -> None:
    torch.manual_seed(1)
    a = Controller()
    torch.manual_seed(2)
    b = Controller()
    c = Controller(generator=gen(3))
    assert all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.heads[0].weight, c.heads[0].weight)


def test_evaluate_matches_sample() -> None:
    controller = Controller()
    tokens, logprobs, entropies = controller.sample(16, gen(0))
    new_logprobs, new_entropies = controller.evaluate(tokens)
    assert torch.allclose(new_logprobs, logprobs, atol=1e-5)
    assert torch.allclose(new_entropies, entropies, atol=1e-4)
    # Teacher forcing really uses the given tokens: another policy has another probability.
    other = tokens.clone()
    other[:, 0] = (other[:, 0] + 1) % 16
    assert not torch.allclose(controller.evaluate(other)[0], logprobs, atol=1e-5)


def test_same_seed_same_policies_other_seed_other_policies() -> None:
    controller = Controller()
    a, _, _ = controller.sample(8, gen(123))
    b, _, _ = controller.sample(8, gen(123))
    c, _, _ = controller.sample(8, gen(124))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_sampling_ignores_global_rng() -> None:
    controller = Controller()
    torch.manual_seed(1)
    a, _, _ = controller.sample(4, gen(5))
    torch.manual_seed(2)
    b, _, _ = controller.sample(4, gen(5))
    assert torch.equal(a, b)


def test_gradients_reach_every_parameter() -> None:
    controller = Controller()
    tokens, _, _ = controller.sample(64, gen(0))
    logprobs, entropies = controller.evaluate(tokens)
    (logprobs.sum() + entropies.sum()).backward()
    for name, p in controller.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_state_dict_round_trip_gives_same_policies() -> None:
    trained = Controller(generator=gen(9))
    restored = Controller()
    restored.load_state_dict(trained.state_dict())
    assert torch.equal(trained.sample(8, gen(0))[0], restored.sample(8, gen(0))[0])
    assert set(trained.state_dict()) == {n for n, _ in trained.named_parameters()}


def test_evaluate_rejects_bad_tokens() -> None:
    controller = Controller()
    with pytest.raises(PolicyError, match=r"shape \(n, 30\), got \(2, 29\)"):
        controller.evaluate(torch.zeros(2, 29, dtype=torch.long))
    bad = torch.zeros(2, 30, dtype=torch.long)
    bad[1, 2] = 10  # decision 2 is a magnitude bin: 10 choices
    with pytest.raises(PolicyError, match=r"token 10 at row 1, decision 2 .*\[0, 10\)"):
        controller.evaluate(bad)
    with pytest.raises(PolicyError, match="integer"):
        controller.evaluate(torch.zeros(2, 30))


def test_learns_stub_reward() -> None:
    """Reward = fraction of the 10 ops that are Rotate: ~1/16 at first, > 0.8 once learned.

    Paper defaults for every PPO constant (lr 3.5e-4, entropy 1e-5, EMA 0.95, clip 0.2, 4 epochs),
    batches of 32 policies. It gets there in about 75 updates (~5 s on one CPU core); 300 is the
    budget before the test fails.
    """
    controller = Controller()
    config = PPOConfig()
    optimizer = make_optimizer(controller, config)
    generator = gen(0)
    baseline: float | None = None
    history: list[float] = []
    for _ in range(300):
        tokens, logprobs, _ = controller.sample(32, generator)
        rewards = (tokens[:, 0::3] == ROTATE).float().mean(1)  # op ids sit at 0, 3, 6, ...
        history.append(float(rewards.mean()))
        stats = ppo_update(controller, optimizer, tokens, logprobs, rewards, baseline, config, generator)
        baseline = stats["charts/baseline"]
        if len(history) >= 5 and sum(history[-5:]) / 5 > 0.8:
            break
    assert sum(history[:3]) / 3 < 0.15  # started near 1/16
    assert sum(history[-5:]) / 5 > 0.8, f"mean reward only reached {history[-5:]}"
