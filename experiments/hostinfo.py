"""One line naming the machine a benchmark ran on, for the results files (`from hostinfo import describe`)."""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from autoaug.training.device import native_bf16


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_capability() -> str:
    """torch's CPU kernel level (ATEN_CPU_CAPABILITY lowers it) and whether this CPU computes bf16
    in hardware at that level (`TrainConfig.precision = "native"`'s rule). The same model number can
    round differently on two kernel paths (issue #26), so results name both."""
    bf16 = "bf16 in hardware" if native_bf16(torch.device("cpu")) else "no bf16 in hardware"
    return f"{torch.backends.cpu.get_cpu_capability()} kernels, {bf16}"


def describe(device: torch.device | str | None = None) -> str:
    """CPU model, cores visible, torch's CPU capability, torch version and threads, and the GPU
    when `device` is CUDA (or, with no device given, whenever one is visible)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = torch.get_num_threads()
    text = (f"{cpu_model()} ({cpu_capability()}), {cores} cores, torch {torch.__version__} "
            f"({threads} thread{'s' if threads > 1 else ''})")
    cuda = torch.device(device).type == "cuda" if device is not None else torch.cuda.is_available()
    if cuda:
        text = f"{torch.cuda.get_device_name(device)}; host {text}"
    return text


def load_average() -> str:
    try:
        return " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        return "n/a"
