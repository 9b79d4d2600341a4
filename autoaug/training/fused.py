"""Fused children: K child networks trained as one batched network, one optimiser step for all
(issue #11).

A small child network is bound by per-operator overhead (Python, dispatch, kernel launches),
not by arithmetic: K children fused into one network run the same number of operators as one
child, each K times wider.

`fuse_models`: every Conv2d becomes one grouped convolution over the K children's channels
stacked along dim 1, every BatchNorm2d one BatchNorm2d over K times the channels (each child
keeps its own statistics), every Linear a `StackedLinear`; stateless layers act per channel and
stay. The fused network is child 0's module tree with its layers swapped, so its own `forward`
serves and every model of `autoaug.training.models` fuses.

`train_fused` trains child k exactly as `loop.train_model(augments[k], data, config, seeds[k])`
would: its own initial weights, batch order, draws and SGD state (SGD acts element by element
and the loss is the sum of the children's, so a child's gradient is its own); all K share
`config`, hence the schedule. Children that share a seed (a search round, issue #10) share one
index gather and one `model_input` call per step; only their policy draws stay per child.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from autoaug.errors import ConfigError
from autoaug.space.policy import Policy, apply_policies
from autoaug.training.config import TrainConfig
from autoaug.training.device import DeviceData, autocast
from autoaug.training.loop import (
    Augment,
    TrainState,
    check_device,
    check_start,
    device_batches,
    init_model,
    logit_batches,
    make_optimizer,
    stream_generators,
)


class StackedLinear(nn.Module):
    """K linear layers as one: (B, K * in) -> (B, K * out), child k reading and writing its own
    block of features. `weight` is the K children's weights stacked along dim 0, (K * out, in)."""

    def __init__(self, k: int, in_features: int, out_features: int, bias: bool) -> None:
        super().__init__()
        self.k, self.in_features, self.out_features = k, in_features, out_features
        self.weight = nn.Parameter(torch.empty(k * out_features, in_features))
        self.bias = nn.Parameter(torch.empty(k * out_features)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        w = self.weight.view(self.k, self.out_features, self.in_features)  # (K, out, in)
        y = torch.einsum("bki,koi->bko", x.view(b, self.k, self.in_features), w)  # (B, K, out)
        if self.bias is not None:
            y = y + self.bias.view(self.k, self.out_features)
        return y.reshape(b, self.k * self.out_features)  # (B, K * out)


def _fuse_layer(layers: list[nn.Module]) -> nn.Module:
    """The fused counterpart of `layers` (one per child, same type and shape), weights unset."""
    first, k = layers[0], len(layers)
    if any(type(layer) is not type(first) for layer in layers):
        raise ConfigError(f"cannot fuse different layers: {sorted({type(x).__name__ for x in layers})}")
    if isinstance(first, nn.Conv2d):
        return nn.Conv2d(
            first.in_channels * k, first.out_channels * k, first.kernel_size, stride=first.stride,
            padding=first.padding, dilation=first.dilation, groups=first.groups * k,
            bias=first.bias is not None, padding_mode=first.padding_mode,
        )
    if isinstance(first, nn.BatchNorm2d):
        return nn.BatchNorm2d(
            first.num_features * k, eps=first.eps, momentum=first.momentum, affine=first.affine,
            track_running_stats=first.track_running_stats,
        )
    if isinstance(first, nn.Linear):
        return StackedLinear(k, first.in_features, first.out_features, first.bias is not None)
    children = dict(first.named_children())
    if not children:
        if any(True for _ in first.parameters(recurse=False)) or any(True for _ in first.buffers(recurse=False)):
            raise ConfigError(f"cannot fuse a {type(first).__name__} layer (only Conv2d, BatchNorm2d, Linear hold state)")
        return copy.deepcopy(first)  # stateless and per channel: pooling, activations
    if first._parameters or first._buffers:
        raise ConfigError(f"cannot fuse a {type(first).__name__} holding tensors of its own")
    shell = copy.copy(first)  # the same class and forward, its own table of sub-modules
    shell._modules = {name: _fuse_layer([getattr(layer, name) for layer in layers]) for name in children}
    shell._parameters, shell._buffers = {}, {}
    return shell


class FusedNetwork(nn.Module):
    """K networks of one architecture as one: (B, K * C, H, W) inputs, child k reading channels
    k * C .. (k + 1) * C - 1, -> (B, K, num_classes) logits."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        super().__init__()
        if not models:
            raise ConfigError("fuse at least one network, got none")
        self.k = len(models)
        states = [m.state_dict() for m in models]
        shapes = [[(name, tuple(v.shape)) for name, v in s.items()] for s in states]
        if any(s != shapes[0] for s in shapes):
            raise ConfigError("cannot fuse networks of different architectures or sizes")
        self.net = _fuse_layer(list(models))
        self.net.load_state_dict({
            # a child's (n, ...) tensor is rows k * n .. (k + 1) * n - 1 of the fused (K * n, ...)
            # one; counters (num_batches_tracked) are the same in every child
            name: torch.cat([s[name] for s in states]) if value.ndim else value
            for name, value in states[0].items()
        })
        self._like = (copy.deepcopy(models[0]),)  # a tuple: not registered as a sub-module
        self.order = list(range(self.k))
        """Fused position of the caller's child i (`train_fused` groups children by seed)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(x.shape[0], self.k, -1)  # (B, K, num_classes)

    def child(self, index: int) -> nn.Module:
        """The caller's child `index` as a plain network of its architecture, on the fused
        network's device, in the fused network's mode."""
        like = copy.deepcopy(self._like[0])
        fused = self.net.state_dict()
        like.load_state_dict({
            name: fused[name].chunk(self.k)[self.order[index]] if value.ndim else fused[name]
            for name, value in like.state_dict().items()
        })
        device = next(self.net.parameters()).device
        return like.to(device=device, memory_format=torch.channels_last).train(self.training)


def fuse_models(models: Sequence[nn.Module]) -> FusedNetwork:
    """K networks of one architecture as one `FusedNetwork`, on the first one's device."""
    device = next(models[0].parameters()).device
    return FusedNetwork(models).to(device=device, memory_format=torch.channels_last)


class _Stack:
    """An `Augment` giving K augmented copies of a batch stacked along the channels: (B, C, H, W)
    -> (B, K * C, H, W), copy k from `augments[k]` (None: unaugmented) with its own generator
    `generators[k]`; the generator passed to the call is not used."""

    def __init__(self, augments: Sequence[Augment | None], generators: Sequence[torch.Generator]) -> None:
        self.augments, self.generators = list(augments), list(generators)

    def __call__(self, images: torch.Tensor, _: torch.Generator) -> torch.Tensor:
        if all(a is None or isinstance(a, Policy) for a in self.augments):
            # policies (a search round): one kernel call per op and stage for all K
            return apply_policies(images, self.augments, self.generators)  # (B, K * C, H, W) uint8
        return torch.cat(
            [images if a is None else a(images, g) for a, g in zip(self.augments, self.generators)], dim=1
        )  # (B, K * C, H, W) uint8


def _seed_groups(seeds: Sequence[int]) -> list[list[int]]:
    """Children indices grouped by seed, groups in order of first appearance."""
    groups: dict[int, list[int]] = {}
    for index, seed in enumerate(seeds):
        groups.setdefault(seed, []).append(index)
    return list(groups.values())


def _fused_batches(
    augments: Sequence[Augment | None], data: DeviceData, config: TrainConfig, groups: list[list[int]], seeds: Sequence[int],
    starts: Mapping[int, TrainState],
) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """A function giving one epoch of (fused input float32 (B, K * C, H, W), labels (B, K)),
    children in the order of `groups`: one `loop.device_batches` per seed group (its batch order
    and standard draws from the seed's streams, where its trunk in `starts` left them; each
    child's policy draws from its own)."""
    c = data.train_x.shape[1]
    per_group = []
    for group in groups:
        order_gen, _, standard_gen = stream_generators(seeds[group[0]], data.device)
        if seeds[group[0]] in starts:
            order_gen.set_state(starts[seeds[group[0]]].order)
            standard_gen.set_state(starts[seeds[group[0]]].standard)
        # Every child its own policy-draw generator, though children of a group share the seed.
        augment_gens = [stream_generators(seeds[i], data.device)[1] for i in group]
        stacked = dataclasses.replace(data, mean=data.mean.repeat(len(group)), std=data.std.repeat(len(group)))
        stack = _Stack([augments[i] for i in group], augment_gens)
        per_group.append(device_batches(stack, stacked, config, order_gen, augment_gens[0], standard_gen))

    def epoch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for batches in zip(*(make() for make in per_group)):
            x = torch.cat([x for x, _ in batches], dim=1)  # (B, K * C, H, W)
            labels = torch.cat([y.view(-1, 1).expand(-1, x_g.shape[1] // c) for x_g, y in batches], dim=1)  # (B, K)
            yield x.contiguous(memory_format=torch.channels_last), labels

    return epoch


def train_fused(
    augments: Sequence[Augment | None], data: DeviceData, config: TrainConfig, seeds: Sequence[int],
    *, compile: bool = False, starts: Mapping[int, TrainState] | None = None,
) -> FusedNetwork:
    """Train K = len(seeds) children of `config` at once, child k with augmentation
    `augments[k]` (a policy, any `Augment`, or None) and seed `seeds[k]`, as
    `loop.train_model(augments[k], data, config, seeds[k])` would; returns the fused network in
    eval mode, its child k (`.child(k)`) being child k. `compile`: run the training forward
    through `torch.compile` (for a GPU, where a step is bound by kernel launches). `starts`: a
    shared trunk per seed (`loop.train_trunk`, one for every seed, all of one length), each child
    going on from its seed's as `train_model(..., start=starts[seed])` would."""
    if len(augments) != len(seeds) or not seeds:
        raise ConfigError(f"expected one augmentation per seed, got {len(augments)} and {len(seeds)} seeds")
    for a in augments:
        if a is not None and not callable(a):
            raise ConfigError(f"fused children take batched torch augmentations or None, got {type(a).__name__}")
    check_device(data, config)
    starts = dict(starts or {})
    if starts and (set(seeds) - set(starts) or len({s.epochs for s in starts.values()}) > 1):
        raise ConfigError("fused children from shared trunks need one trunk per seed, all of one length")
    done = next(iter(starts.values())).epochs if starts else 0
    if starts:
        check_start(done, config)
    groups = _seed_groups(seeds)
    order = [i for group in groups for i in group]  # fused position -> child index
    # children of one seed start from the same weights: built once per seed
    first = {seeds[g[0]]: init_model(config, data, seeds[g[0]]) for g in groups}
    for seed, model in first.items():
        if seed in starts:
            model.load_state_dict(starts[seed].model)
    net = fuse_models([first[seeds[i]] for i in order])
    epoch_batches = _fused_batches(augments, data, config, groups, seeds, starts)
    optimizer, scheduler = make_optimizer(net.parameters(), config, len(data.train_x))
    if starts:
        optimizer.load_state_dict(_fused_sgd_state([starts[seeds[i]] for i in order], first[seeds[0]], net))
        scheduler.load_state_dict(starts[seeds[0]].scheduler)
    forward = torch.compile(net) if compile else net
    k = len(seeds)
    for _ in range(done, config.epochs):
        net.train()
        for x, labels in epoch_batches():  # (B, K * C, H, W) float32, (B, K)
            with autocast(data.device, config.precision):
                logits = forward(x)  # (B, K, classes)
            # The sum over children of each child's mean loss: child k's gradient is its own.
            loss = k * F.cross_entropy(
                logits.float().flatten(0, 1), labels.flatten(), label_smoothing=config.label_smoothing
            )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
    net.eval()
    net.order = [order.index(i) for i in range(k)]
    return net


def _fused_sgd_state(states: Sequence[TrainState], like: nn.Module, net: FusedNetwork) -> dict:
    """The SGD state of the fused network whose child at fused position k went on from
    `states[k]`: each momentum buffer stacked along dim 0, as `FusedNetwork` stacks the weights
    (the fused network's parameters come in its children's order, `_fuse_layer`)."""
    names = [name for name, _ in like.named_parameters()]
    assert [name.removeprefix("net.") for name, _ in net.named_parameters()] == names, "fused parameter order"
    first = states[0].optimizer

    def stacked(index: int, key: str, value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.ndim:
            return torch.cat([s.optimizer["state"][index][key] for s in states])
        return copy.deepcopy(value)

    return {"state": {index: {key: stacked(index, key, value) for key, value in entry.items()}
                      for index, entry in first["state"].items()},
            "param_groups": copy.deepcopy(first["param_groups"])}


def evaluate_fused(net: FusedNetwork, x: torch.Tensor, y: torch.Tensor, *, mean: torch.Tensor, std: torch.Tensor,
                   batch_size: int = 1024) -> list[float]:
    """Every fused child's accuracy on uint8 (N, C, H, W) images `x` with labels `y`, one
    forward per batch for all K (each child sees the same normalised images), in the caller's
    order."""
    repeat = _Repeat(net)
    correct = torch.zeros(net.k, dtype=torch.long, device=x.device)
    for start, logits in zip(range(0, len(x), batch_size), logit_batches(repeat, x, mean, std, batch_size)):
        correct += (logits.argmax(dim=2) == y[start : start + batch_size].view(-1, 1)).sum(dim=0)  # (K,)
    return [int(correct[pos]) / len(x) for pos in net.order]


class _Repeat(nn.Module):
    """A fused network fed the same images for every child: (B, C, H, W) -> (B, K, classes)."""

    def __init__(self, net: FusedNetwork) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.repeat(1, self.net.k, 1, 1).contiguous(memory_format=torch.channels_last))


def train_children(
    augments: Sequence[Augment | None], data: DeviceData, config: TrainConfig, seeds: Sequence[int],
    *, compile: bool = False, starts: Mapping[int, TrainState] | None = None,
) -> list[float]:
    """`loop.train_child` for K children at once (from their seed's trunk in `starts`, if given):
    their validation accuracies, in the order given."""
    net = train_fused(augments, data, config, seeds, compile=compile, starts=starts)
    return evaluate_fused(net, data.val_x, data.val_y, mean=data.mean, std=data.std, batch_size=config.eval_batch_size)
