from __future__ import annotations

import numpy as np
import pytest
import torch

from autoaug.data import load


@pytest.fixture(scope="session")
def cifar_images() -> np.ndarray:
    """64 real CIFAR-10 test images, (64, 32, 32, 3) uint8 RGB, from the embedded pack."""
    x, _ = load("cifar10-reduced", "test")
    return x[:64].copy()


@pytest.fixture(scope="session")
def cifar_batch(cifar_images) -> torch.Tensor:
    return torch.from_numpy(cifar_images).permute(0, 3, 1, 2).contiguous()  # (64, 3, 32, 32)


@pytest.fixture
def one_thread():
    """Run a test single-threaded: its tensors are tiny, and on a busy machine intra-op thread
    hand-offs cost more than the arithmetic (10x on the controller's 32 x 100 steps)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
