"""Fused children (issue #11): K children trained as one network are the K children that
`train_model` trains one by one with the same seeds, within float tolerance."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from autoaug.errors import ConfigError
from autoaug.space.policy import Policy
from autoaug.space.randaugment import RandAugment
from autoaug.training.data import load_splits
from autoaug.training.fused import evaluate_fused, fuse_models, train_children, train_fused
from autoaug.training.config import TrainConfig
from autoaug.training.device import prepare
from autoaug.training.loop import evaluate, init_model, train_child, train_model, train_trunk
from autoaug.training.models import build_model

# Every token of a sub-policy in range: ops 0..15, prob bins 0..10, magnitude bins 0..9.
TOKENS = [[(7 * i + s) % 16 if i % 3 == 0 else (3 * i + s) % (11 if i % 3 == 1 else 10) for i in range(30)]
          for s in range(3)]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def data():
    """32 train / 200 val images of the embedded reduced CIFAR-10: one SGD step of batch 32 per epoch."""
    full = load_splits("cifar10-reduced")
    return prepare(dataclasses.replace(
        full, train_x=full.train_x[:32], train_y=full.train_y[:32], val_x=full.val_x[::25], val_y=full.val_y[::25],
    ), "cpu")


def config(**overrides) -> TrainConfig:
    # One step: fused and plain children agree to float rounding after it (assert_same_children).
    return TrainConfig.for_model("tiny", **{"epochs": 1, "batch_size": 32, "device": "cpu", **overrides})


# Grouped and plain convolutions sum in different orders, so after a step the weights agree to
# float32 rounding, not bit for bit, and the kernels oneDNN picks for the CPU decide the rounding
# (issue #26). Measured after one step on an AMD EPYC, on its AVX512 and its AVX2 kernel paths
# (ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2): at most 1.2 eps of a tensor's largest
# value; 16 eps leaves room for other CPUs. After 8 steps SGD had amplified the same rounding to
# 2e-3 of a tensor's scale on one path and 4e-4 on the other, which is why the test takes one step.
STEP_TOLERANCE = 16 * torch.finfo(torch.float32).eps


def assert_same_children(fused, separate) -> None:
    for k, model in enumerate(separate):
        ours = fused.child(k).state_dict()
        for name, value in model.state_dict().items():
            atol = STEP_TOLERANCE * float(value.abs().max()) if value.is_floating_point() else 0
            torch.testing.assert_close(ours[name], value, rtol=0, atol=atol, msg=f"child {k} {name}")


@pytest.mark.parametrize("seeds", [[0, 1], [3, 4, 3]], ids=["distinct", "mixed"])
def test_fused_children_equal_separate_ones(data, seeds) -> None:
    augments = [Policy.from_tokens(TOKENS[0]), RandAugment(2, 9), None][: len(seeds)]
    cfg = config(cutout=8)
    fused = train_fused(augments, data, cfg, seeds)
    separate = [train_model(a, data, cfg, s)[0] for a, s in zip(augments, seeds)]
    assert_same_children(fused, separate)
    accs = evaluate_fused(fused, data.val_x, data.val_y, mean=data.mean, std=data.std)
    expected = [evaluate(m, data.val_x, data.val_y, mean=data.mean, std=data.std) for m in separate]
    # logits equal to float rounding: one prediction of 200 may still flip on a near tie
    assert accs == pytest.approx(expected, abs=1.01 / len(data.val_x))
    # the children did learn, and differently (the test could not pass with one child copied K
    # times, or with children that never stepped)
    first = [m.state_dict()["head.weight"] for m in separate]
    assert not torch.allclose(first[0], first[1])
    initial = [init_model(cfg, data, s).state_dict()["head.weight"] for s in seeds]
    assert all(not torch.equal(w, m.state_dict()["head.weight"]) for w, m in zip(initial, separate))


def test_train_children_is_train_child(data) -> None:
    # a search round: policies and the reference child (None) on one seed
    cfg = config()
    augments = [Policy.from_tokens(TOKENS[1]), Policy.from_tokens(TOKENS[2]), None]
    accs = train_children(augments, data, cfg, [7, 7, 7])
    assert accs == pytest.approx([train_child(a, data, cfg, 7) for a in augments], abs=1.01 / len(data.val_x))


def test_fused_forward_is_children_forward() -> None:
    gen = torch.Generator().manual_seed(0)
    for name in ("tiny", "small", "wrn-40-2"):
        models = [build_model(name, 10, generator=gen).train() for _ in range(2)]
        net = fuse_models(models).train()
        x = [torch.randn(4, 3, 32, 32, generator=gen) for _ in models]
        out = net(torch.cat(x, dim=1))  # (4, 2, 10), training-mode BatchNorm: per-child batch statistics
        for k, (model, xk) in enumerate(zip(models, x)):
            torch.testing.assert_close(out[:, k], model(xk), rtol=1e-4, atol=1e-4)


def test_bad_input(data) -> None:
    with pytest.raises(ConfigError, match="one augmentation per seed"):
        train_fused([None], data, config(), [0, 1])
    with pytest.raises(ConfigError, match="cannot fuse networks of different"):
        fuse_models([build_model("tiny", 10), build_model("small", 10)])


def test_fused_children_from_shared_trunks_equal_separate_ones(data) -> None:
    """A trunk per seed (issue #21): the fused tail is each child's tail from its seed's trunk."""
    cfg = config(epochs=2, cutout=8)
    seeds = [3, 4, 3]
    augments = [Policy.from_tokens(TOKENS[0]), Policy.from_tokens(TOKENS[1]), None]
    starts = {s: train_trunk(data, cfg, s, 1) for s in set(seeds)}
    before = {s: [t.clone() for t in starts[s].optimizer["state"][0].values()] for s in starts}
    fused = train_fused(augments, data, cfg, seeds, starts=starts)
    separate = [train_model(a, data, cfg, s, start=starts[s])[0] for a, s in zip(augments, seeds)]
    assert_same_children(fused, separate)  # one step after the trunk: one step's rounding
    # the fused tail did step from the trunk, and left the trunk's own state as it was
    assert not torch.equal(fused.child(2).state_dict()["head.weight"], starts[3].model["head.weight"])
    assert all(torch.equal(a, b) for s in starts for a, b in zip(starts[s].optimizer["state"][0].values(), before[s]))
    with pytest.raises(ConfigError, match="one trunk per seed"):
        train_fused(augments, data, cfg, seeds, starts={3: starts[3]})
