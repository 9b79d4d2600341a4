from __future__ import annotations

import pytest
import torch

from autoaug.errors import ConfigError
from autoaug.training.models import MODEL_NAMES, MODELS, build_model, model_spec
from autoaug.training.config import TrainConfig


@pytest.mark.parametrize(
    "name, size",
    [("tiny", 32), ("small", 32), ("wrn-40-2", 32), ("tiny", 48), ("small", 20), ("wrn-28-10", 8)],
)
def test_logits_shape(name: str, size: int) -> None:
    # wrn-28-10 only on a tiny input: 36 M parameters are slow enough already.
    model = build_model(name, 7).eval()
    x = torch.randn(2, 3, size, size)  # (B, C, H, W)
    with torch.no_grad():
        logits = model(x)
    assert logits.shape == (2, 7)
    assert torch.isfinite(logits).all()


def test_every_name_has_a_row_and_a_valid_recipe() -> None:
    assert set(MODEL_NAMES) == {"tiny", "small", "wrn-40-2", "wrn-28-10", "tiny-half"}
    for name in MODEL_NAMES:
        config = TrainConfig.for_model(name)
        assert config.model == name
        assert model_spec(name).description


@pytest.mark.parametrize("name, millions", [("wrn-40-2", 2.2), ("wrn-28-10", 36.5)])
def test_wide_resnet_sizes_match_the_paper(name: str, millions: float) -> None:
    # Zagoruyko & Komodakis report 2.2 M and 36.5 M parameters for CIFAR-10.
    count = sum(p.numel() for p in build_model(name, 10).parameters())
    assert abs(count / 1e6 - millions) < 0.1


def test_presets_ordered_by_size() -> None:
    sizes = {n: sum(p.numel() for p in build_model(n, 10).parameters()) for n in ("tiny-half", "tiny", "small")}
    assert sizes["tiny-half"] < sizes["tiny"] < sizes["small"]


def test_tiny_half_is_tiny_at_half_width() -> None:
    # Every convolution of tiny-half has half of tiny's output channels (the head: half its inputs).
    def widths(name: str) -> list[int]:
        return [m.weight.shape[0] for m in build_model(name, 10).modules() if isinstance(m, torch.nn.Conv2d)]

    assert widths("tiny-half") == [w // 2 for w in widths("tiny")]
    assert build_model("tiny-half", 10).head.in_features == build_model("tiny", 10).head.in_features // 2


def test_unknown_model_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match="unknown model 'resnet50'.*tiny, small, wrn-40-2, wrn-28-10"):
        build_model("resnet50", 10)


@pytest.mark.parametrize("num_classes", [1, 0, 2.5, True])
def test_bad_num_classes(num_classes) -> None:
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("tiny", num_classes)


def test_generator_fixes_the_weights() -> None:
    def weights(seed: int) -> list[torch.Tensor]:
        model = build_model("tiny", 10, generator=torch.Generator().manual_seed(seed))
        return [p.detach().clone() for p in model.parameters()]

    a, b, c = weights(3), weights(3), weights(4)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


def test_weights_do_not_depend_on_the_global_rng() -> None:
    torch.manual_seed(123)
    first = build_model("tiny", 10)
    torch.manual_seed(999)
    second = build_model("tiny", 10)
    # Both come from the default seed-0 generator, whatever the global RNG holds.
    for p, q in zip(first.parameters(), second.parameters()):
        assert torch.equal(p, q)


def test_wide_resnet_depth_must_be_6n_plus_4() -> None:
    from autoaug.training.models import WideResNet

    with pytest.raises(ConfigError, match="6n \\+ 4"):
        WideResNet(10, depth=27, widen_factor=1)


def test_table_rows_are_named_by_their_key() -> None:
    assert all(spec.name == key for key, spec in MODELS.items())
