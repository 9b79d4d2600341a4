"""Training: the one loop behind child models (the search's reward) and final training with a
policy (`autoaug train`).

`train_model` is shaped like airbench94: the data go to the device once (`prepare`), every batch
is augmented by batched tensor ops with per-image randomness from explicit generators, no
DataLoader in the hot path; channels_last, bf16 autocast on CUDA (`TrainConfig.precision`). The other
path, `AlbumentationsAugment`, runs a whole exported training pipeline per image in DataLoader
workers, the way a user trains with an exported pipeline.

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

import dataclasses
import functools
import math
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from autoaug.errors import ConfigError, DataError, PipelineError, PolicyError, shown
from autoaug.space.albu import normalization, set_image_pool
from autoaug.space.pipeline import (
    CUTOUT_AUTO,
    PIPELINES,
    check_tensor_pipeline,
    crop_pad,
    cutout_pixels,
    eval_pipeline,
    load_pipeline_file,
    save_pipeline,
    seed_worker,
    train_pipeline,
)
from autoaug.space.specs import PolicySpec
from autoaug.training.data import Splits, load_splits
from autoaug.training.models import MODEL_NAMES, build_model, check_image_size, model_spec

# An augmentation: (uint8 (B, C, H, W) images, generator on their device) -> uint8 images of the
# same shape, dtype and device, each image augmented with its own random choices. Every
# `Augmenter` is one; so is the adaptive RandAugment, or any function of that shape.
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

SCHEDULES = ("onecycle", "cosine")
PRECISIONS = ("auto", "native", "fp32", "bf16")
DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")  # a device as written in a config, not yet resolved


@dataclass(frozen=True)
class TrainConfig:
    """How one network is trained. `TrainConfig.for_model(name)` gives a network's recipe."""

    # The defaults are the `tiny` recipe, so TrainConfig() == TrainConfig.for_model("tiny").
    model: str = "tiny"
    """Network name, one of autoaug.training.models.MODEL_NAMES."""
    epochs: int = 20
    """Passes over the training split."""
    batch_size: int = 128
    """Images per SGD step; the last partial batch of an epoch is dropped."""
    lr: float = 0.1
    """Peak learning rate of the schedule (SGD with Nesterov momentum)."""
    momentum: float = 0.9
    """SGD Nesterov momentum."""
    weight_decay: float = 5e-4
    """L2 weight decay on every parameter."""
    label_smoothing: float = 0.2
    """Cross-entropy label smoothing in [0, 1)."""
    schedule: str = "onecycle"
    """'onecycle': linear warm-up to lr then linear decay to 0; 'cosine': cosine decay from lr to 0."""
    warmup: float = 0.2
    """Fraction of all steps the 'onecycle' schedule spends rising to lr."""
    standard: bool = True
    """Standard augmentation after the policy: zero-pad by side/8 (4 px on 32x32 CIFAR) + random
    crop, then a random horizontal flip if `flip`."""
    flip: bool = True
    """The random horizontal flip of `standard` (false for digits, text, or whatever a mirror
    turns into another class or none)."""
    cutout: int | str = 0
    """Cutout square applied last: its side in pixels, 0 = off, or 'auto' = half the image side
    (16 px on 32x32 CIFAR, the paper's; 14 on 28x28), what the baseline `cutout` and every policy
    train with."""
    device: str = "auto"
    """'auto' (CUDA when available), 'cpu', 'cuda' or 'cuda:N'; `prepare` puts the data there."""
    eval_batch_size: int = 1024
    """Images per forward pass when evaluating."""
    precision: str = "auto"
    """Arithmetic of the training steps: 'auto' (bf16 autocast on CUDA, fp32 on the CPU), 'fp32',
    'bf16' (autocast on any device: on the project's CPU, which has AMX, a `tiny` child costs
    1.3x (40 epochs on 1,000 images) to 1.45x (80 epochs on 4,000) fewer CPU seconds at the same
    accuracy within the seeds, experiments/results/bench_precision.md; a CPU without bf16
    instructions only emulates it), or 'native' (bf16 where the hardware has it: CUDA, or a CPU
    with AMX-BF16 or AVX512-BF16, `native_bf16`; fp32 elsewhere: what the search's children use).
    Evaluation follows 'auto'."""

    def __post_init__(self) -> None:
        model_spec(self.model)  # unknown name -> ConfigError with the valid ones
        for name in ("epochs", "batch_size", "eval_batch_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an int >= 1, got {shown(value)}")
        if self.cutout != CUTOUT_AUTO and (isinstance(self.cutout, bool) or not isinstance(self.cutout, int)
                                           or self.cutout < 0):
            raise ConfigError(f"cutout must be an int >= 0 (pixels, 0 = off) or {CUTOUT_AUTO!r} "
                              f"(half the image side), got {shown(self.cutout)}")
        for name, low, high in (
            ("lr", 0.0, math.inf),  # and not 0, below
            ("momentum", 0.0, 1.0),
            ("weight_decay", 0.0, math.inf),
            ("label_smoothing", 0.0, 1.0),
            ("warmup", 0.0, 1.0),
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigError(f"{name} must be a number, got {shown(value)}")
            if not low <= value < high:
                raise ConfigError(f"{name} must be in [{low}, {high}), got {shown(value)}")
        if self.lr == 0:
            raise ConfigError("lr must be > 0, got 0")
        if self.schedule not in SCHEDULES:
            raise ConfigError(f"unknown schedule {shown(self.schedule)}; expected one of {', '.join(SCHEDULES)}")
        for name in ("standard", "flip"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"{name} must be true or false, got {shown(getattr(self, name))}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"unknown precision {shown(self.precision)}; expected one of {', '.join(PRECISIONS)}")
        resolve_device(self.device, check_available=False)

    def for_images(self, image_size: tuple[int, int]) -> TrainConfig:
        """This recipe on (H, W) images: `cutout` 'auto' becomes its side in pixels there (16 on
        32x32), the number a results file or a trial store records."""
        return dataclasses.replace(self, cutout=cutout_pixels(self.cutout, image_size))

    @classmethod
    def for_model(cls, model: str, **overrides: Any) -> TrainConfig:
        """The default recipe of network `model` (its row in autoaug.training.models.MODELS), then
        `overrides`; an unknown field raises ConfigError listing the valid ones."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {', '.join(unknown)}; "
                              f"expected any of {', '.join(sorted(fields))}")
        return cls(**{**model_spec(model).recipe, **overrides, "model": model})


def resolve_device(name: str, *, check_available: bool = True) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu'; 'cuda' / 'cuda:N' (ConfigError if absent)."""
    if not isinstance(name, str) or not DEVICE_NAME.fullmatch(name):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {shown(name)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and check_available and not torch.cuda.is_available():
        raise ConfigError(f"device {shown(name)} asked for, but torch sees no CUDA device")
    return torch.device(name)


# --- data on the device -----------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class DeviceData:
    """A dataset's splits on one device, uint8 (N, C, H, W) images and int64 labels."""

    name: str
    """The dataset spec it came from."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int
    mean: torch.Tensor
    """(C,) float32 per-channel mean of the training pixels, 0..255 scale."""
    std: torch.Tensor
    """(C,) float32 per-channel std of the training pixels, 0..255 scale, at least 1."""

    @property
    def device(self) -> torch.device:
        return self.train_x.device


def prepare(splits: Splits, device: str | torch.device = "auto") -> DeviceData:
    """Copy `splits` (autoaug.training.data.Splits) to `device` once: uint8 (N, C, H, W) images."""
    dev = device if isinstance(device, torch.device) else resolve_device(device)
    tensors: dict[str, torch.Tensor] = {}
    for split in ("train", "val", "test"):
        x = getattr(splits, f"{split}_x")  # (N, H, W, 3) uint8, checked by Splits
        tensors[f"{split}_x"] = torch.from_numpy(x).to(dev).permute(0, 3, 1, 2).contiguous()
        tensors[f"{split}_y"] = torch.from_numpy(getattr(splits, f"{split}_y")).to(dev)
    pixels = tensors["train_x"].float()  # (N, C, H, W)
    mean, std = pixels.mean(dim=(0, 2, 3)), pixels.std(dim=(0, 2, 3)).clamp_min(1.0)  # (C,) each
    return DeviceData(name=splits.name, num_classes=int(splits.num_classes), mean=mean, std=std, **tensors)


def dataset_stats(spec: str, image_size: int | None = None) -> tuple[list[float], list[float], tuple[int, int]]:
    """(mean, std, (H, W)) of dataset `spec`'s training split as `autoaug train` computes them
    (the same `prepare`): the numbers an exported train / eval pipeline normalises with."""
    data = prepare(load_splits(spec, image_size=image_size), "cpu")
    return data.mean.tolist(), data.std.tolist(), (data.train_x.shape[2], data.train_x.shape[3])


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


# --- the albumentations path ------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class AlbumentationsAugment:
    """Run a whole albumentations training pipeline (`autoaug.space.pipeline.train_pipeline`: policy,
    normalisation, pad-crop, flip, Cutout, `ToTensorV2`) per image in DataLoader worker
    processes instead of the batched torch path: what a user does with an exported pipeline.
    The pipeline holds the whole recipe: `TrainConfig.standard` and `.cutout` are not applied
    again on top of it."""

    pipeline: Any
    """An albumentations Compose ending in ToTensorV2: HWC uint8 -> float32 (C, H, W) tensor."""
    workers: int = 2
    """DataLoader worker processes (>= 1), persistent across epochs."""

    def __post_init__(self) -> None:
        if isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1:
            raise ConfigError(f"workers must be an int >= 1, got {shown(self.workers)}")
        check_tensor_pipeline(self.pipeline, "the albumentations training pipeline")


class AlbumentationsDataset(torch.utils.data.Dataset):
    """HWC uint8 images and labels; each item is run through an albumentations pipeline that
    ends in ToTensorV2 (checked here: PipelineError otherwise) and gives (float (C, H, W), label)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, pipeline: Any) -> None:
        check_tensor_pipeline(pipeline, "the pipeline of an AlbumentationsDataset")
        self.images = images  # (N, H, W, C) uint8
        self.labels = labels  # (N,) int64
        self.pipeline = pipeline

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = self.images[index]  # (H, W, C) uint8
        out = self.pipeline(image=image)["image"]  # (C, H, W) float32
        if not isinstance(out, torch.Tensor) or out.dtype != torch.float32 or out.ndim != 3:
            got = f"{out.dtype} {tuple(out.shape)}" if hasattr(out, "shape") else type(out).__name__
            raise PipelineError(f"the albumentations pipeline must give float32 (C, H, W) tensors, got {got}")
        return out, int(self.labels[index])


def _loader_batches(
    augment: AlbumentationsAugment, data: DeviceData, config: TrainConfig, seed: int
) -> Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """A function giving one epoch of (model input float32 (B, C, H, W), labels) on data's device."""
    dataset = AlbumentationsDataset(
        np.ascontiguousarray(data.train_x.permute(0, 2, 3, 1).cpu().numpy()),  # (N, H, W, C)
        data.train_y.cpu().numpy(),
        augment.pipeline,
    )
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=min(config.batch_size, len(dataset)),
        shuffle=True,
        drop_last=True,
        num_workers=augment.workers,
        persistent_workers=True,
        worker_init_fn=seed_worker,  # a stream per worker, from the loader's seed
        generator=torch.Generator().manual_seed(seed),
        pin_memory=data.device.type == "cuda",
    )

    def epoch() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, labels in loader:  # (B, C, H, W) float32, (B,)
            x = x.to(data.device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            yield x, labels.to(data.device, non_blocking=True)

    return epoch


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


def autocast(device: torch.device, precision: str = "auto") -> torch.autocast:
    """The autocast context of a training or evaluation step on `device` (`TrainConfig.precision`)."""
    # 'auto': bf16 on CUDA (no loss scaling needed; the tensor cores do the convolutions), fp32 on
    # the CPU, where the final-training figures of this project were measured in fp32.
    bf16 = (precision == "bf16" or (precision == "auto" and device.type == "cuda")
            or (precision == "native" and native_bf16(device)))
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


# CPU flags of instructions that compute bf16 products in hardware, and where Linux lists them.
BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA device that supports it, or a CPU whose
    flags list AMX-BF16 or AVX512-BF16 (read from /proc/cpuinfo, so False off Linux) and whose
    kernels torch dispatches at the AVX512 level (ATEN_CPU_CAPABILITY=avx2 turns them off).
    Without them bf16 is emulated in fp32 units: a `tiny` convolution step costs several times
    an fp32 one (experiments/results/bench_precision.md)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu" or not torch.backends.cpu.get_cpu_capability().startswith("AVX512"):
        return False
    try:
        text = CPUINFO.read_text()
    except OSError:
        return False
    flags = {flag for line in text.splitlines() if line.startswith("flags") for flag in line.split()}
    return any(flag in flags for flag in BF16_CPU_FLAGS)


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


def train_model(
    augment: Augment | AlbumentationsAugment | None,
    data: DeviceData,
    config: TrainConfig,
    seed: int,
    *,
    on_epoch_end: Callable[[int, float], None] | None = None,
    logger: Any | None = None,
) -> tuple[nn.Module, list[EpochStats]]:
    """Train a fresh `config.model` on data's train split; returns (model in eval mode, history).

    `augment` is a batched torch augmentation (see `Augment`), an `AlbumentationsAugment` or None.
    `seed` fixes the initial weights, the batch order and every augmentation draw (on the CPU the
    same seed gives the same weights); all but the policy draws do not depend on `augment`
    (`stream_generators`). Validation accuracy is measured after every epoch only if
    `on_epoch_end(epoch, val_acc)` or `logger` (a TensorBoard `SummaryWriter`) is given.
    """
    if augment is not None and not callable(augment) and not isinstance(augment, AlbumentationsAugment):
        raise PolicyError(f"expected a Policy, an augmentation callable or None, got {type(augment).__name__}")
    check_device(data, config)
    device = data.device
    model = init_model(config, data, seed)
    order_gen, augment_gen, standard_gen = stream_generators(seed, device)
    if isinstance(augment, AlbumentationsAugment):
        epoch_batches = _loader_batches(augment, data, config, seed)
    else:
        epoch_batches = device_batches(augment, data, config, order_gen, augment_gen, standard_gen)
    optimizer, scheduler = make_optimizer(model.parameters(), config, len(data.train_x))
    want_val = on_epoch_end is not None or logger is not None
    history: list[EpochStats] = []
    for epoch in range(config.epochs):
        started = time.perf_counter()
        model.train()
        # Sums stay on the device: no host sync per step.
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        seen = 0
        for step, (x, labels) in enumerate(epoch_batches()):  # (B, C, H, W) float32, (B,)
            with autocast(device, config.precision):
                logits = model(x)  # (B, K)
            loss = F.cross_entropy(logits.float(), labels, label_smoothing=config.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            loss_sum += loss.detach() * len(labels)
            correct += (logits.argmax(dim=1) == labels).sum()
            seen += len(labels)
            if logger is not None and epoch == 0 and step == 0:
                _log_images(logger, x, data)
        val_acc = val_accuracy(model, data, config) if want_val else None
        stats = EpochStats(
            epoch=epoch,
            train_loss=float(loss_sum) / seen,
            train_acc=float(correct) / seen,
            lr=optimizer.param_groups[0]["lr"],
            val_acc=val_acc,
            seconds=time.perf_counter() - started,
        )
        history.append(stats)
        if logger is not None:
            logger.add_scalar("train/loss", stats.train_loss, epoch)
            logger.add_scalar("train/acc", stats.train_acc, epoch)
            logger.add_scalar("train/lr", stats.lr, epoch)
            if val_acc is not None:
                logger.add_scalar("val/acc", val_acc, epoch)
        if on_epoch_end is not None:
            on_epoch_end(epoch, val_acc)
    model.eval()
    return model, history


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


def train_child(augment: Augment | None, data: DeviceData, config: TrainConfig, seed: int) -> float:
    """Train one child with `augment` (a policy, any other augmenter, or None) and return its
    validation accuracy in [0, 1]: the search's reward."""
    return val_accuracy(train_model(augment, data, config, seed)[0], data, config)


# --- the albumentations path of a policy spec (`autoaug train --augment albumentations`) ------


def training_pipeline(spec: PolicySpec, data: DeviceData, config: TrainConfig) -> A.Compose:
    """The whole albumentations training pipeline of `spec` with `config`'s pad-crop, flip and
    Cutout and `data`'s normalisation: the object `autoaug export-albumentations --pipeline
    train` writes (or the pipeline file given, as it is)."""
    if spec.pipeline_file is not None:
        return load_pipeline_file(spec.pipeline_file)
    return train_pipeline(
        spec.augmenter, mean=data.mean.tolist(), std=data.std.tolist(),
        image_size=(int(data.train_x.shape[2]), int(data.train_x.shape[3])),
        standard=config.standard, flip=config.flip, cutout=config.cutout,
    )


def albumentations_augment(
    spec: PolicySpec, data: DeviceData, config: TrainConfig, workers: int, image_pool: np.ndarray | None = None
) -> AlbumentationsAugment:
    """The same recipe as one albumentations pipeline run in DataLoader workers, read back from
    its serialised form (what a file holds), SamplePairing fed from `image_pool`."""
    pipeline = A.from_dict(A.to_dict(training_pipeline(spec, data, config)))
    if image_pool is not None:
        set_image_pool(pipeline, image_pool)
    return AlbumentationsAugment(pipeline, workers)


def albumentations_file(
    spec: PolicySpec, data: DeviceData, config: TrainConfig, workers: int, image_pool: np.ndarray, out: Path
) -> tuple[AlbumentationsAugment, str | None]:
    """What `autoaug train --augment albumentations` trains from: the pipeline file given, or
    OUT/train.albumentations.json written here by the very code of `autoaug export-albumentations
    --pipeline train`, read with `A.load` (PipelineError unless it ends in ToTensorV2), so what
    ships is what is measured. Also a warning, or None, when its Normalize is not the dataset's
    (val and test are normalised with the dataset's)."""
    path = spec.pipeline_file
    if path is None:
        path = save_pipeline(training_pipeline(spec, data, config), out / "train.albumentations.json")
    pipeline = load_pipeline_file(path)
    set_image_pool(pipeline, image_pool)
    stats, warning = normalization(pipeline), None
    ours = (data.mean.tolist(), data.std.tolist())
    if stats is None:
        warning = (f"warning: {path} has no Normalize; val and test images are normalised with "
                   "the training set's mean and std")
    elif not np.allclose(stats, ours, rtol=1e-3, atol=0.05):
        warning = (f"warning: {path} normalises with mean {np.round(stats[0], 2).tolist()}, std "
                   f"{np.round(stats[1], 2).tolist()}; val and test images are normalised with "
                   f"this dataset's {np.round(ours[0], 2).tolist()}, {np.round(ours[1], 2).tolist()}")
    return AlbumentationsAugment(pipeline, workers), warning


def export_pipeline(kind: str, spec: PolicySpec, dataset: str, image_size: int | None = None) -> A.Compose:
    """The `--pipeline train` or `eval` albumentations pipeline of `spec`, normalised with the
    statistics of `dataset`'s training split as `autoaug train` computes them."""
    if kind not in PIPELINES[1:]:
        raise PipelineError(f"unknown pipeline {kind!r}; expected train or eval")
    if spec.pipeline_file is not None:
        raise PipelineError(f"{spec.spec} is already an albumentations pipeline; expected a policy")
    mean, std, size = dataset_stats(dataset, image_size)
    if kind == "eval":
        return eval_pipeline(mean=mean, std=std)
    return train_pipeline(
        spec.augmenter, mean=mean, std=std, image_size=size, standard=spec.standard, flip=spec.flip,
        cutout=spec.cutout,
    )
