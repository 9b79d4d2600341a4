"""autoaug: learn data-augmentation policies (AutoAugment search with PPO, RandAugment,
TrivialAugment) and apply them with batched torch kernels or exported albumentations pipelines.

Layers (ARCHITECTURE.md): `autoaug.space` (ops, policies, augmenters, albumentations export),
`autoaug.training` (data, models, the training loop), `autoaug.search` (controller, PPO, the trial
loop, store, workers), `autoaug.cli` (the command line).

Importing autoaug registers its own albumentations transforms (`autoaug.space.albu`), so an
exported pipeline that holds them loads with plain `albumentations.load`.
"""

from __future__ import annotations

from autoaug.space import albu  # registers autoaug's own transforms with albumentations
from autoaug.space.pipeline import seed_worker  # DataLoader worker_init_fn for a loaded pipeline
from autoaug.space.policy import Operation, Policy, published_policy
from autoaug.space.specs import load_policy

__version__ = "0.1.0"
__all__ = ["Operation", "Policy", "albu", "load_policy", "published_policy", "seed_worker", "__version__"]
