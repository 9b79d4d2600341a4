"""The device a network trains on and its arithmetic: which device a name means
(`resolve_device`), whether it computes bf16 in hardware (`native_bf16`), the autocast of a
step (`autocast`, `TrainConfig.precision`), and a dataset's splits copied there once
(`DeviceData`, `prepare`)."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from autoaug.errors import ConfigError, shown
from autoaug.training.data import Splits

DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")  # a device as written in a config, not yet resolved


def resolve_device(name: str, *, check_available: bool = True) -> torch.device:
    """'auto' -> CUDA when available, else CPU; 'cpu'; 'cuda' / 'cuda:N' (ConfigError if absent)."""
    if not isinstance(name, str) or not DEVICE_NAME.fullmatch(name):
        raise ConfigError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {shown(name)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and check_available and not torch.cuda.is_available():
        raise ConfigError(f"device {shown(name)} asked for, but torch sees no CUDA device")
    return torch.device(name)


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
