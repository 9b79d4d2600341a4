"""Training: the one loop behind child models (the search's reward) and final training with a
policy (`autoaug train`).

`train_model` is shaped like airbench94: the data go to the device once (`prepare`), every batch
is augmented by batched tensor ops with per-image randomness from explicit generators, no
DataLoader in the hot path; channels_last, bf16 autocast on CUDA (`TrainConfig.precision`). The other
path, `autoaug.training.pipelines.AlbumentationsAugment`, runs a whole exported training pipeline
per image in DataLoader workers, the way a user trains with an exported pipeline. Evaluation
(`evaluate`, `predict_proba`) runs the un-augmented images through the trained network.

Per batch, in the order of the AutoAugment reference code (its CIFAR input pipeline applies the
policy, then zero-pad-4-and-crop, then a random horizontal flip, then Cutout 16):

    policy augmentation (uint8) -> float + normalise -> pad + crop, flip -> Cutout

The pad and the Cutout side scale with the image (`autoaug.space.pipeline.crop_pad` and
`cutout_side`: side / 8 and side / 2, i.e. 4 and 16 on 32x32); `TrainConfig.flip` turns the flip off.

The reference code normalises before anything else and pads and cuts out with zeros of the
normalised image, i.e. with the dataset's mean colour; normalising before the pad and the Cutout
and filling with zeros does the same here. The policy sees uint8 pixels, as PIL did there.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from autoaug.errors import ConfigError, DataError, PolicyError, shown
from autoaug.space.pipeline import crop_pad, cutout_pixels
from autoaug.training.config import TrainConfig
from autoaug.training.device import DeviceData, autocast, resolve_device
from autoaug.training.models import build_model, check_image_size
from autoaug.training.pipelines import AlbumentationsAugment, loader_batches

# An augmentation: (uint8 (B, C, H, W) images, generator on their device) -> uint8 images of the
# same shape, dtype and device, each image augmented with its own random choices. Every
# `Augmenter` is one; so is the adaptive RandAugment, or any function of that shape.
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


# --- batched pre-processing -------------------------------------------------------------------


def normalise(images: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float32 (B, C, H, W) with zero mean and unit std per channel."""
    return (images.float() - mean.view(1, -1, 1, 1)) / std.view(1, -1, 1, 1)


def pad_crop_flip(
    x: torch.Tensor, generator: torch.Generator, pad: int | None = None, flip: bool = True
) -> torch.Tensor:
    """Zero-pad by `pad` (None: `crop_pad` of the side, 4 on 32x32), take a random crop of the
    original size, flip half the images if `flip`.

    One gather for the whole batch: each image's crop offset and flip become its row and column
    indices into the padded batch (a flipped crop reads its columns backwards). The flips are
    drawn even when `flip` is false, so that the draws after them (Cutout) stay those of the
    same seed with flips.
    """
    b, c, h, w = x.shape
    pad = crop_pad(min(h, w)) if pad is None else pad
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H + 2p, W + 2p)
    dev = x.device
    dy = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)  # (B, 1)
    dx = torch.randint(0, 2 * pad + 1, (b, 1), generator=generator, device=dev)  # (B, 1)
    flip = (torch.rand((b, 1), generator=generator, device=dev) < 0.5) & flip  # (B, 1)
    cols = torch.arange(w, device=dev)  # (W,)
    rows = dy + torch.arange(h, device=dev)  # (B, H)
    cols = dx + torch.where(flip, w - 1 - cols, cols)  # (B, W)
    batch = torch.arange(b, device=dev).view(b, 1, 1)  # (B, 1, 1)
    # Advanced indices split by a slice put their broadcast shape first: (B, H, W, C).
    out = padded[batch, :, rows.view(b, h, 1), cols.view(b, 1, w)]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)  # (B, C, H, W), channels_last strides


def cutout(x: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Zero a size x size square per image, centred uniformly anywhere in the image and clipped
    at the borders (DeVries & Taylor 2017; the AutoAugment reference code's `cutout_numpy`)."""
    b, c, h, w = x.shape
    dev = x.device
    cy = torch.randint(0, h, (b, 1), generator=generator, device=dev)  # (B, 1)
    cx = torch.randint(0, w, (b, 1), generator=generator, device=dev)  # (B, 1)
    ys = torch.arange(h, device=dev) - (cy - size // 2)  # (B, H): row offset into the square
    xs = torch.arange(w, device=dev) - (cx - size // 2)  # (B, W)
    in_rows = (ys >= 0) & (ys < size)  # (B, H)
    in_cols = (xs >= 0) & (xs < size)  # (B, W)
    mask = in_rows.view(b, 1, h, 1) & in_cols.view(b, 1, 1, w)  # (B, 1, H, W)
    return x.masked_fill(mask, 0.0)


def model_input(
    images: torch.Tensor,
    data: DeviceData,
    config: TrainConfig,
    generator: torch.Generator,
) -> torch.Tensor:
    """Policy-augmented uint8 (B, C, H, W) -> the float batch the network trains on:
    normalise, then pad-crop (+ flip if `config.flip`) if `config.standard`, then Cutout if
    `config.cutout`, at the images' scale."""
    x = normalise(images, data.mean, data.std)  # (B, C, H, W) float32
    if config.standard:
        x = pad_crop_flip(x, generator, flip=config.flip)
    side = cutout_pixels(config.cutout, (x.shape[2], x.shape[3]))
    if side:
        x = cutout(x, side, generator)
    return x.contiguous(memory_format=torch.channels_last)


def device_batches(
    augment: Augment | None,
    data: DeviceData,
    config: TrainConfig,
    order_generator: torch.Generator,
    augment_generator: torch.Generator,
    standard_generator: torch.Generator,
) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """A function giving one epoch of (model input float32 (B, C, H, W), labels): the policy's
    batched kernels on uint8 images (draws from `augment_generator`), then `model_input` (draws
    from `standard_generator`), in an order from `order_generator`; all on data's device."""
    n = len(data.train_x)
    batch_size = min(config.batch_size, n)

    def epoch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        order = torch.randperm(n, generator=order_generator, device=data.device)  # (N,)
        for start in range(0, n - batch_size + 1, batch_size):
            index = order[start : start + batch_size]  # (B,)
            images = data.train_x[index]  # (B, C, H, W) uint8
            if augment is not None:
                images = augment(images, augment_generator)
            yield model_input(images, data, config, standard_generator), data.train_y[index]

    return epoch


# --- the loop ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EpochStats:
    """What one epoch of `train_model` measured."""

    epoch: int
    """0-based epoch index."""
    train_loss: float
    """Mean training loss (with label smoothing) over the epoch's batches."""
    train_acc: float
    """Accuracy on the augmented training batches, in [0, 1]."""
    lr: float
    """Learning rate at the end of the epoch."""
    val_acc: float | None
    """Validation accuracy after the epoch, or None where nobody asked for it."""
    seconds: float
    """Wall time of the epoch, evaluation included."""


def stream_seeds(seed: int, n: int) -> list[int]:
    """`n` independent 64-bit seeds derived from `seed` (numpy's SeedSequence), one per random
    stream of a training run, so that drawing more from one stream never shifts another."""
    return [int(s) for s in np.random.SeedSequence(seed).generate_state(n, dtype=np.uint64)]


def lr_factor(step: int, total_steps: int, config: TrainConfig) -> float:
    """Multiplier of config.lr at optimiser step `step` of `total_steps`."""
    progress = step / total_steps
    if config.schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    # One-cycle, triangular as in airbench: 10% of lr at step 0, up to lr, down to 0.
    if progress < config.warmup:
        return 0.1 + 0.9 * progress / config.warmup
    return max(0.0, (1.0 - progress) / (1.0 - config.warmup))


def check_device(data: DeviceData, config: TrainConfig) -> None:
    """ConfigError unless `data` sit on the kind of device `config.device` names."""
    wanted = resolve_device(config.device)
    if wanted.type != data.device.type:
        raise ConfigError(
            f"config.device is {config.device!r} ({wanted.type}) but the data were prepared on "
            f"{data.device}; call prepare(splits, config.device)"
        )


def init_model(config: TrainConfig, data: DeviceData, seed: int) -> nn.Module:
    """A fresh `config.model` for data's classes and image size, its weights fixed by `seed`,
    on data's device in channels_last."""
    if data.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    # Weights come from a CPU generator so that a seed means the same network on every device.
    model = build_model(config.model, data.num_classes, generator=torch.Generator().manual_seed(seed))
    check_image_size(model, config.model, *data.train_x.shape[2:], where="training images")
    # channels_last on the CPU too: oneDNN's convolutions ran ~1.4x faster that way here.
    return model.to(device=data.device, memory_format=torch.channels_last)


def stream_generators(seed: int, device: torch.device) -> tuple[torch.Generator, ...]:
    """The (batch order, policy draws, pad-crop / flip / Cutout draws) generators of `seed`.

    One stream per purpose (issue #10, common random numbers): with one shared stream, a policy
    that fires more ops would shift every later draw, and two policies on "the same seed" would
    not see the same batches, crops, flips and Cutout squares.
    """
    return tuple(torch.Generator(device=device).manual_seed(s) for s in stream_seeds(seed, 3))


def make_optimizer(
    params: Iterator[nn.Parameter], config: TrainConfig, num_train: int
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD with Nesterov momentum and its `lr_factor` schedule over training on `num_train` images."""
    total_steps = config.epochs * max(1, num_train // config.batch_size)
    optimizer = torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, nesterov=True, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, config)
    )
    return optimizer, scheduler


@dataclass(frozen=True)
class TrainState:
    """A run of `train_model(None, data, config, seed)` stopped after its first `epochs` epochs:
    what `train_model(..., start=state)` needs to go on as if it had never stopped (the weights,
    BatchNorm statistics, SGD momentum, the schedule's step and the batch-order and pad-crop /
    flip / Cutout streams). The policy stream is not in it: no policy drew from it, so a run that
    goes on from a state with a policy draws what the same policy would in a run of its own
    (a shared trunk, issue #21: `train_trunk`)."""

    epochs: int
    model: dict[str, torch.Tensor]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    order: torch.Tensor
    """Batch-order generator state (uint8, as `torch.Generator.get_state` gives it)."""
    standard: torch.Tensor
    """Pad-crop / flip / Cutout generator state."""

    def to_dict(self) -> dict[str, Any]:
        """Plain containers and tensors, for `torch.save` (and `torch.load(weights_only=True)`):
        the state's own, not copies (`asdict` would deep-copy every tensor)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, state: dict[str, Any]) -> TrainState:
        return cls(**state)


def train_model(
    augment: Augment | AlbumentationsAugment | None,
    data: DeviceData,
    config: TrainConfig,
    seed: int,
    *,
    on_epoch_end: Callable[[int, float | None], None] | None = None,
    logger: Any | None = None,
    val_epochs: Collection[int] | None = None,
    start: TrainState | None = None,
) -> tuple[nn.Module, list[EpochStats]]:
    """Train a fresh `config.model` on data's train split; returns (model in eval mode, history).

    `augment` is a batched torch augmentation (see `Augment`), an `AlbumentationsAugment` or None.
    `seed` fixes the initial weights, the batch order and every augmentation draw (on the CPU the
    same seed gives the same weights); all but the policy draws do not depend on `augment`
    (`stream_generators`). Validation accuracy is measured after every epoch only if
    `on_epoch_end(epoch, val_acc)` or `logger` (a TensorBoard `SummaryWriter`) is given, or
    after the epochs in `val_epochs` alone (counted from 1: {5, 10} reads it after the 5th and
    the 10th) if that is given: early readings of one run, the rungs of a successive halving,
    without paying for a validation every epoch. A reading draws no random numbers and leaves
    the weights and BatchNorm statistics as they were, so the run trains as it would without it.

    `start`: go on from `train_trunk(data, config, seed, E)` instead of a fresh network, with
    `augment` in epochs E + 1 .. config.epochs only (the history holds those); without a policy
    that is the run `train_model(None, data, config, seed)` exactly.
    """
    if augment is not None and not callable(augment) and not isinstance(augment, AlbumentationsAugment):
        raise PolicyError(f"expected a Policy, an augmentation callable or None, got {type(augment).__name__}")
    if start is not None and isinstance(augment, AlbumentationsAugment):
        raise ConfigError("a run from a shared trunk takes a batched torch augmentation or None, not a "
                          "DataLoader pipeline (AlbumentationsAugment)")
    run = _Run(augment, data, config, seed, start)
    if val_epochs is None:
        val_epochs = range(1, config.epochs + 1) if on_epoch_end is not None or logger is not None else ()
    elif not all(isinstance(e, int) and not isinstance(e, bool) and 1 <= e <= config.epochs for e in val_epochs):
        raise ConfigError(f"val_epochs must be epoch counts in 1..{config.epochs}, got {sorted(val_epochs, key=str)}")
    val_epochs = frozenset(val_epochs)
    history: list[EpochStats] = []
    for epoch in range(run.done, config.epochs):
        stats = run.epoch(epoch, epoch + 1 in val_epochs, logger)
        history.append(stats)
        if logger is not None:
            logger.add_scalar("train/loss", stats.train_loss, epoch)
            logger.add_scalar("train/acc", stats.train_acc, epoch)
            logger.add_scalar("train/lr", stats.lr, epoch)
            if stats.val_acc is not None:
                logger.add_scalar("val/acc", stats.val_acc, epoch)
        if on_epoch_end is not None:
            on_epoch_end(epoch, stats.val_acc)
    run.model.eval()
    return run.model, history


def train_trunk(data: DeviceData, config: TrainConfig, seed: int, epochs: int) -> TrainState:
    """The first `epochs` epochs of `train_model(None, data, config, seed)`, as a state that
    `train_model(augment, data, config, seed, start=state)` goes on from: a trunk that every
    child of one seed and recipe shares, each child adding its own policy in the epochs after it
    (issue #21; Tian et al., "Improving Auto-Augment via Augmentation-Wise Weight Sharing",
    NeurIPS 2020, share a trunk the same way, trained on every policy alike)."""
    if isinstance(epochs, bool) or not isinstance(epochs, int) or not 1 <= epochs < config.epochs:
        raise ConfigError(f"a trunk trains 1..{config.epochs - 1} of the child's {config.epochs} epochs, "
                          f"got {shown(epochs)}")
    run = _Run(None, data, config, seed, None)
    for epoch in range(epochs):
        run.epoch(epoch, False, None)
    return TrainState(
        epochs=epochs,
        model={k: v.detach().clone() for k, v in run.model.state_dict().items()},
        optimizer=copy.deepcopy(run.optimizer.state_dict()),
        scheduler=run.scheduler.state_dict(),
        order=run.order_gen.get_state(),
        standard=run.standard_gen.get_state(),
    )


def check_start(epochs: int, config: TrainConfig) -> None:
    """ConfigError unless a trunk of `epochs` epochs leaves some of `config.epochs` to go on with."""
    if not 1 <= epochs < config.epochs:
        raise ConfigError(f"a trunk of {epochs} epochs cannot start a child of {config.epochs}")


class _Run:
    """One training run of `train_model`: the network, its optimiser and schedule, the random
    streams and the batches, fresh for `seed` or as `start` left them."""

    def __init__(self, augment: Augment | AlbumentationsAugment | None, data: DeviceData, config: TrainConfig,
                 seed: int, start: TrainState | None) -> None:
        check_device(data, config)
        self.data, self.config = data, config
        self.model = init_model(config, data, seed)
        self.order_gen, augment_gen, self.standard_gen = stream_generators(seed, data.device)
        self.optimizer, self.scheduler = make_optimizer(self.model.parameters(), config, len(data.train_x))
        self.done = 0
        if start is not None:
            check_start(start.epochs, config)
            self.model.load_state_dict(start.model)
            # a copy: SGD would step the state's own momentum buffers, which the next child shares
            self.optimizer.load_state_dict(copy.deepcopy(start.optimizer))
            self.scheduler.load_state_dict(start.scheduler)
            self.order_gen.set_state(start.order)
            self.standard_gen.set_state(start.standard)
            self.done = start.epochs
        if isinstance(augment, AlbumentationsAugment):
            self.batches = loader_batches(augment, data, config, seed)
        else:
            self.batches = device_batches(augment, data, config, self.order_gen, augment_gen, self.standard_gen)

    def epoch(self, epoch: int, validate: bool, logger: Any | None) -> EpochStats:
        """Train epoch `epoch` (0-based); validate after it if `validate`."""
        started = time.perf_counter()
        model, data, config, device = self.model, self.data, self.config, self.data.device
        model.train()
        # Sums stay on the device: no host sync per step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for step, (x, labels) in enumerate(self.batches()):  # (B, C, H, W) float32, (B,)
            with autocast(device, config.precision):
                logits = model(x)  # (B, K)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.argmax(dim=1) == labels).sum()
            seen += len(labels)
            if logger is not None and epoch == 0 and step == 0:
                _log_images(logger, x, data)
        return EpochStats(
            epoch=epoch,
            train_loss=float(loss_sum) / seen,
            train_acc=float(correct) / seen,
            lr=self.optimizer.param_groups[0]["lr"],
            val_acc=val_accuracy(model, data, config) if validate else None,
            seconds=time.perf_counter() - started,
        )


def _log_images(logger: Any, x: torch.Tensor, data: DeviceData) -> None:
    """A grid of the first augmented training images, back on the 0..1 scale."""
    shown = x[:64].float() * data.std.view(1, -1, 1, 1) + data.mean.view(1, -1, 1, 1)
    logger.add_images("train/augmented", (shown / 255.0).clamp(0, 1).cpu(), 0)


@torch.no_grad()
def logit_batches(
    model: nn.Module, x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, batch_size: int
) -> Iterator[torch.Tensor]:
    """(B, K) float32 logits of the un-augmented images x[start : start + B], batch by batch,
    with the model in eval mode (its mode is restored afterwards)."""
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(x), batch_size):
            batch = normalise(x[start : start + batch_size], mean, std)  # (B, C, H, W)
            with autocast(x.device):
                logits = model(batch.contiguous(memory_format=torch.channels_last))  # (B, K)
            yield logits.float()
    finally:
        model.train(was_training)


def predict_proba(
    model: nn.Module,
    x: torch.Tensor,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int = 1024,
) -> torch.Tensor:
    """Softmax outputs float32 (N, K) on the CPU for uint8 (N, C, H, W) images on the model's
    device, normalised with the training data's `mean` and `std`; no augmentation."""
    if len(x) == 0:
        raise DataError("cannot predict on an empty split")
    return torch.cat(
        [torch.softmax(logits, dim=1).cpu() for logits in logit_batches(model, x, mean, std, batch_size)]
    )  # (N, K)


def evaluate(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    mean: torch.Tensor,
    std: torch.Tensor,
    batch_size: int = 1024,
) -> float:
    """Accuracy in [0, 1] on uint8 (N, C, H, W) images `x` with labels `y` (no augmentation)."""
    if len(x) == 0:
        raise DataError("cannot evaluate on an empty split")
    correct = torch.zeros((), dtype=torch.long, device=x.device)
    for start, logits in zip(range(0, len(x), batch_size), logit_batches(model, x, mean, std, batch_size)):
        correct += (logits.argmax(dim=1) == y[start : start + batch_size]).sum()
    return float(correct) / len(x)


def val_accuracy(model: nn.Module, data: DeviceData, config: TrainConfig) -> float:
    """`evaluate` on data's validation split."""
    return evaluate(model, data.val_x, data.val_y, mean=data.mean, std=data.std, batch_size=config.eval_batch_size)


def train_child(
    augment: Augment | None, data: DeviceData, config: TrainConfig, seed: int, start: TrainState | None = None
) -> float:
    """Train one child with `augment` (a policy, any other augmenter, or None), from a shared
    trunk `start` if given, and return its validation accuracy in [0, 1]: the search's reward."""
    return val_accuracy(train_model(augment, data, config, seed, start=start)[0], data, config)
