"""A shared trunk (issue #21): `train_trunk` + `train_model(start=...)` is one run cut in two."""

from __future__ import annotations

import dataclasses
import io

import pytest
import torch

from autoaug.errors import ConfigError
from autoaug.space.policy import Policy
from autoaug.training.config import TrainConfig
from autoaug.training.data import load_splits
from autoaug.training.device import prepare
from autoaug.training.loop import TrainState, train_model, train_trunk


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data():
    full = load_splits("cifar10-reduced")
    small = dataclasses.replace(full, train_x=full.train_x[:256], train_y=full.train_y[:256],
                                val_x=full.val_x[:200], val_y=full.val_y[:200])
    return prepare(small, "cpu")


CONFIG = TrainConfig.for_model("tiny", epochs=4, batch_size=64, device="cpu", cutout=16)
# every op fires (probability bin 10), with a strong magnitude
POLICY = Policy.from_tokens([op if i % 3 == 0 else (10 if i % 3 == 1 else 8) for i, op in zip(range(30), [3, 0, 0, 5, 0, 0] * 5)])


def weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in model.state_dict().values()]


def test_a_run_from_its_own_trunk_is_the_run_without_one(data) -> None:
    whole, history = train_model(None, data, CONFIG, seed=5)
    trunk = train_trunk(data, CONFIG, seed=5, epochs=2)
    # through bytes, as a search stores it
    buffer = io.BytesIO()
    torch.save(trunk.to_dict(), buffer)
    buffer.seek(0)
    trunk = TrainState.from_dict(torch.load(buffer, weights_only=True))
    tail, tail_history = train_model(None, data, CONFIG, seed=5, start=trunk)
    assert [s.epoch for s in tail_history] == [2, 3]
    assert [s.train_loss for s in tail_history] == [s.train_loss for s in history[2:]]
    for a, b in zip(weights(whole), weights(tail)):
        assert torch.equal(a, b)


def test_a_policy_after_the_trunk_changes_only_the_tail(data) -> None:
    trunk = train_trunk(data, CONFIG, seed=5, epochs=2)
    plain = weights(train_model(None, data, CONFIG, 5, start=trunk)[0])
    with_policy, history = train_model(POLICY, data, CONFIG, 5, start=trunk)
    assert len(history) == 2
    assert any(not torch.equal(a, b) for a, b in zip(weights(with_policy), plain))
    # a child that goes on from the trunk leaves it as it was for the next one
    again = train_trunk(data, CONFIG, seed=5, epochs=2)
    for a, b in zip(trunk.model.values(), again.model.values()):
        assert torch.equal(a, b)
    # (a first version let SGD step the trunk's own momentum buffers)
    assert all(torch.equal(a, b) for a, b in zip(weights(train_model(None, data, CONFIG, 5, start=trunk)[0]), plain))


def test_the_policy_draws_after_a_trunk_are_those_of_a_run_of_its_own(data) -> None:
    """The policy stream is not in the trunk: its first draws are the seed's first, as a
    LateAugment child of experiments/frontier.py draws them."""
    seen: list[torch.Tensor] = []

    def spy(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        seen.append(torch.rand(3, generator=generator))
        return images

    trunk = train_trunk(data, CONFIG, seed=5, epochs=3)
    train_model(spy, data, CONFIG, 5, start=trunk)
    first_alone: list[torch.Tensor] = []

    def spy_alone(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        first_alone.append(torch.rand(3, generator=generator))
        return images

    train_model(spy_alone, data, dataclasses.replace(CONFIG, epochs=1), 5)
    assert torch.equal(seen[0], first_alone[0])


@pytest.mark.parametrize("epochs", [0, 4, 2.0, True])
def test_a_trunk_is_part_of_the_run(data, epochs) -> None:
    with pytest.raises(ConfigError, match="a trunk trains 1..3 of the child's 4 epochs"):
        train_trunk(data, CONFIG, seed=0, epochs=epochs)


def test_a_trunk_longer_than_the_child_is_refused(data) -> None:
    trunk = train_trunk(data, CONFIG, seed=0, epochs=3)
    with pytest.raises(ConfigError, match="a trunk of 3 epochs cannot start a child of 2"):
        train_model(None, data, dataclasses.replace(CONFIG, epochs=2), 0, start=trunk)
