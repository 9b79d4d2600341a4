"""The networks that training uses, their weight initialisation and each one's default training
recipe (one row per network in `MODELS`):

- `tiny`, `small`: airbench94-shaped CNNs (Jordan 2024, `FastCNN`). `tiny` is sized so one child
  trains on the 4,000-image reduced CIFAR-10 in about 12 s on 2 CPU cores
  (experiments/results/bench_child.md); `small` is sized for a GPU search.
- `wrn-40-2`, `wrn-28-10`: Wide-ResNets (Zagoruyko & Komodakis 2016) with pre-activation basic
  blocks, the child model and the final model of the AutoAugment paper (Cubuk et al. 2018).

Every network takes (B, 3, H, W) float images of any size (global pooling before the head) and
returns (B, num_classes) logits.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
import torch.nn as nn

from autoaug.errors import ConfigError, DataError


class ConvBlock(nn.Module):
    """airbench94's block: conv -> 2x2 max-pool -> BN -> GELU -> conv -> BN -> GELU.

    Pooling right after the first convolution halves the resolution early, which is most of
    what makes this shape fast for its accuracy.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.conv1(x))  # (B, C_out, H/2, W/2)
        x = self.act(self.bn1(x))  # (B, C_out, H/2, W/2)
        return self.act(self.bn2(self.conv2(x)))  # (B, C_out, H/2, W/2)


class FastCNN(nn.Module):
    """Stem conv, three `ConvBlock`s, global max pool, linear head (airbench94's layout)."""

    def __init__(
        self,
        num_classes: int,
        stem_width: int,
        widths: tuple[int, int, int],
        stem_stride: int,
    ) -> None:
        super().__init__()
        # A stride-2 stem is the CPU preset's main saving: the blocks then work at 16x16 and
        # below on 32 px inputs, a quarter of the arithmetic of a stride-1 stem.
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, stride=stem_stride, padding=1, bias=False),
            nn.BatchNorm2d(stem_width),
            nn.GELU(),
        )
        self.blocks = nn.Sequential(*(ConvBlock(a, b) for a, b in zip((stem_width, *widths), widths)))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = nn.Linear(widths[-1], num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, stem_width, H/s, W/s)
        x = self.blocks(x)  # (B, widths[-1], H/(8s), W/(8s))
        x = self.pool(x).flatten(1)  # (B, widths[-1])
        return self.head(x)  # (B, num_classes)


class PreActBlock(nn.Module):
    """Wide-ResNet basic block, pre-activation: BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3.

    The shortcut is the identity, or a 1x1 convolution of the pre-activated input when the
    width or stride changes (as in the WRN reference code).
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.act = nn.ReLU(inplace=True)
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pre = self.act(self.bn1(x))  # (B, C_in, H, W)
        residual = x if self.shortcut is None else self.shortcut(pre)  # (B, C_out, H/s, W/s)
        out = self.conv1(pre)  # (B, C_out, H/s, W/s)
        out = self.conv2(self.act(self.bn2(out)))  # (B, C_out, H/s, W/s)
        return out + residual  # (B, C_out, H/s, W/s)


class WideResNet(nn.Module):
    """WRN-depth-k: a 16-channel stem conv, three groups of (depth - 4) / 6 pre-activation
    blocks with widths 16k, 32k, 64k (strides 1, 2, 2), BN -> ReLU -> global average pool -> linear."""

    def __init__(self, num_classes: int, depth: int, widen_factor: int) -> None:
        super().__init__()
        if (depth - 4) % 6 != 0:
            raise ConfigError(f"Wide-ResNet depth must be 6n + 4, got {depth}")
        blocks_per_group = (depth - 4) // 6
        widths = (16 * widen_factor, 32 * widen_factor, 64 * widen_factor)
        self.stem = nn.Conv2d(3, 16, 3, padding=1, bias=False)
        layers = []
        in_channels = 16
        for group, width in enumerate(widths):
            for index in range(blocks_per_group):
                stride = 2 if group > 0 and index == 0 else 1
                layers.append(PreActBlock(in_channels, width, stride))
                in_channels = width
        self.blocks = nn.Sequential(*layers)
        self.bn = nn.BatchNorm2d(in_channels)
        self.act = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(in_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)  # (B, 16, H, W)
        x = self.blocks(x)  # (B, 64k, H/4, W/4)
        x = self.pool(self.act(self.bn(x))).flatten(1)  # (B, 64k)
        return self.head(x)  # (B, num_classes)


@dataclass(frozen=True)
class ModelSpec:
    """One network: how to build it and how it is trained by default."""

    name: str
    """The name `build_model` and `--model` take."""
    description: str
    """One line for `--help` and reports."""
    factory: Callable[[int], nn.Module]
    """num_classes -> freshly constructed network (weights re-initialised by `build_model`)."""
    recipe: Mapping[str, Any] = field(default_factory=dict)
    """`autoaug.training.config.TrainConfig` fields this network trains with by default."""


# One row per network. Recipes: `tiny` on the reduced CIFAR-10 on 2 CPU cores (batch 128 /
# lr 0.1 beat batch 256 / lr 0.2 by 1.5 to 2 points, 2 seeds each, for about 10% more time
# per epoch); `small` as the reference CNN it has to match; the Wide-ResNets follow the
# AutoAugment paper (SGD Nesterov, lr 0.1, weight decay 5e-4, batch 128, cosine decay; 120
# epochs for the WRN-40-2 child, 200 for WRN-28-10) without label smoothing.
_WRN_RECIPE = dict(batch_size=128, lr=0.1, weight_decay=5e-4, label_smoothing=0.0, schedule="cosine")
MODELS: Mapping[str, ModelSpec] = MappingProxyType(
    {
        spec.name: spec
        for spec in (
            ModelSpec(
                "tiny",
                "fast CNN for a CPU search: stride-2 stem 24, blocks 32/64/128",
                lambda k: FastCNN(k, stem_width=24, widths=(32, 64, 128), stem_stride=2),
                MappingProxyType({}),  # TrainConfig's defaults are this recipe
            ),
            # The shape and recipe of the 4-block CNN measured in ../shared/REFERENCE.md
            # (74.7% with flip + crop, about 3 s per child on an H200), the figure this preset
            # has to match; experiments/bench_child.py measures it on a GPU.
            ModelSpec(
                "small",
                "fast CNN for a GPU search: stem 32, blocks 64/128/256",
                lambda k: FastCNN(k, stem_width=32, widths=(64, 128, 256), stem_stride=1),
                MappingProxyType(dict(epochs=40, batch_size=256, lr=0.2)),
            ),
            ModelSpec(
                "wrn-40-2",
                "Wide-ResNet-40-2, the AutoAugment paper's child model (2.2 M parameters)",
                lambda k: WideResNet(k, depth=40, widen_factor=2),
                MappingProxyType(dict(_WRN_RECIPE, epochs=120)),
            ),
            ModelSpec(
                "wrn-28-10",
                "Wide-ResNet-28-10, the AutoAugment paper's final model (36.5 M parameters)",
                lambda k: WideResNet(k, depth=28, widen_factor=10),
                MappingProxyType(dict(_WRN_RECIPE, epochs=200)),
            ),
            # Half of tiny's width at every layer (about a quarter of its arithmetic), the same
            # recipe: a cheaper child for ranking policies (experiments/frontier.py, issue #21).
            ModelSpec(
                "tiny-half",
                "tiny at half width: stride-2 stem 12, blocks 16/32/64",
                lambda k: FastCNN(k, stem_width=12, widths=(16, 32, 64), stem_stride=2),
                MappingProxyType({}),
            ),
        )
    }
)
MODEL_NAMES: tuple[str, ...] = tuple(MODELS)


def model_spec(name: str) -> ModelSpec:
    """The table row for `name`; an unknown name raises ConfigError listing the valid ones."""
    spec = MODELS.get(name)
    if spec is None:
        raise ConfigError(f"unknown model {name!r}; expected one of {', '.join(MODEL_NAMES)}")
    return spec


def init_weights(model: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every conv and linear layer from `generator` (BatchNorm to 1 and 0).

    The distributions are PyTorch's defaults (Kaiming-uniform with a = sqrt(5), bias uniform in
    +/- 1/sqrt(fan_in)); drawing them from an explicit generator is what makes a seed fix the
    initial weights without touching the global RNG.
    """
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=generator)
                if module.bias is not None:
                    fan_in = module.weight[0].numel()
                    bound = 1.0 / math.sqrt(fan_in)
                    nn.init.uniform_(module.bias, -bound, bound, generator=generator)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
    return model


def build_model(name: str, num_classes: int, *, generator: torch.Generator | None = None) -> nn.Module:
    """A freshly initialised network `name` (one of MODEL_NAMES) with `num_classes` outputs.

    Weights come from `generator` (a CPU generator; seed 0 when None), so the same generator
    state gives the same network on every device.
    """
    spec = model_spec(name)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2, got {num_classes!r}")
    if generator is None:
        generator = torch.Generator().manual_seed(0)
    return init_weights(spec.factory(num_classes), generator)


def takes_size(model: nn.Module, height: int, width: int) -> bool:
    """Whether `model` runs on (height, width) images: one forward of a zero image in eval mode
    (BatchNorm in train mode would refuse a 1x1 batch of one for another reason)."""
    device = next(model.parameters()).device
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, height, width, device=device))  # (1, 3, H, W)
        return True
    except RuntimeError:  # "Output size is too small", "Given input size ... Calculated output size"
        return False
    finally:
        model.train(training)


def check_image_size(model: nn.Module, name: str, height: int, width: int, where: str) -> None:
    """DataError unless network `model` (called `name`) takes images of height x width; the
    message names the smallest square size it takes (its pooling halves the image 3 to 4 times)."""
    if takes_size(model, height, width):
        return
    smallest = next((s for s in range(1, 257) if takes_size(model, s, s)), None)
    at_least = f"at least {smallest}x{smallest}" if smallest else "larger ones"
    raise DataError(f"{where}: images of {height}x{width} are too small for model {name}, which takes "
                    f"{at_least}; resize them (autoaug train --image-size N) or choose another model")
