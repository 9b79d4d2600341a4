"""autoaug: learn data-augmentation policies (AutoAugment search with PPO, RandAugment,
TrivialAugment) and apply them with batched torch kernels or exported albumentations pipelines."""

from __future__ import annotations

__version__ = "0.1.0"
