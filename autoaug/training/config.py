"""How one network is trained: `TrainConfig`, a frozen dataclass whose fields are checked as it is
made, and whose defaults are the `tiny` network's recipe (`TrainConfig.for_model(name)` gives
any network's). The search's [child] table and `autoaug train --set child.KEY=VALUE` set it."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, ClassVar

from autoaug.errors import ConfigError, shown
from autoaug.space.pipeline import CUTOUT_AUTO, cutout_pixels
from autoaug.training.device import resolve_device
from autoaug.training.models import model_spec

SCHEDULES = ("onecycle", "cosine")
PRECISIONS = ("auto", "native", "fp32", "bf16")


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

    # What a change of `model` in `with_table` keeps: what the policy and the machine decide, not
    # the network's recipe (`for_model`).
    kept_on_model_change: ClassVar[tuple[str, ...]] = ("standard", "flip", "cutout", "device")

    def with_table(self, values: dict[str, Any]) -> TrainConfig:
        """This config with `values` (keys of a [child] table, read by `autoaug.settings`)
        applied: a new `model` starts from that network's recipe (`for_model`) and keeps
        `kept_on_model_change`; the other keys then apply on top."""
        values = dict(values)
        model = values.pop("model", self.model)
        child = self
        if model != child.model:
            child = TrainConfig.for_model(model, **{k: getattr(child, k) for k in self.kept_on_model_change})
        return dataclasses.replace(child, **values)
