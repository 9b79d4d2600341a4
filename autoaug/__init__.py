"""autoaug: learn data-augmentation policies (AutoAugment search with PPO, RandAugment,
TrivialAugment) and apply them with batched torch kernels or exported albumentations pipelines.

Importing autoaug registers its own albumentations transforms (`autoaug.albu`), so an exported
pipeline that holds them loads with plain `albumentations.load`.
"""

from __future__ import annotations

from autoaug import albu  # noqa: F401  (registers autoaug's own transforms with albumentations)
from autoaug.policy import Operation, Policy, load_policy, published_policy

__version__ = "0.1.0"
__all__ = ["Operation", "Policy", "load_policy", "published_policy", "__version__"]
