"""The albumentations execution of a policy, and saving it where plain `A.load` reads it.

A policy becomes `Compose([OneOf([Sequential([op1(p=p1), op2(p=p2)], p=1), ...], p=1)])`:
`OneOf` picks a sub-policy uniformly (its children's p are weights, all 1), `Sequential` runs
the ops in order and each op fires with its own probability. A signed op is a `OneOf` of its
+m and -m transforms with the op's probability. Ops albumentations lacks are autoaug's own
transforms (`autoaug.albu`); a file holding them loads after `import autoaug`.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import albumentations as A
import numpy as np

from autoaug import albu
from autoaug.albu import SamplePairing, set_image_pool, walk
from autoaug.errors import PolicyError
from autoaug.ops import OPS_BY_NAME
from autoaug.policy import Operation, Policy

def op_to_albumentations(name: str, magnitude: float, prob: float) -> A.BasicTransform:
    """One op at a physical magnitude, firing with `prob`; a random sign where the op is signed."""
    spec = OPS_BY_NAME[name]
    if spec.signed and magnitude != 0:
        both = [spec.albumentations(magnitude, 1.0), spec.albumentations(-magnitude, 1.0)]
        return A.OneOf(both, p=prob)
    return spec.albumentations(magnitude, prob)


def _op(op: Operation, policy: Policy) -> A.BasicTransform:
    return op_to_albumentations(op.name, policy.magnitude(op), op.prob)


def to_albumentations(policy: Any, image_pool: np.ndarray | None = None, seed: int | None = None) -> A.Compose:
    """An `A.Compose` that applies `policy` to one HWC uint8 image per call.

    `policy` is a `Policy` or anything with its own `to_albumentations_transforms()` (RandAugment,
    TrivialAugment). `image_pool` feeds SamplePairing (usually the training images).
    """
    if isinstance(policy, Policy):
        subs = [A.Sequential([_op(op, policy) for op in sub], p=1.0) for sub in policy.sub_policies]
        transforms = [A.OneOf(subs, p=1.0)]
    elif hasattr(policy, "to_albumentations_transforms"):
        transforms = policy.to_albumentations_transforms()
    else:
        raise PolicyError(f"cannot export {type(policy).__name__} to albumentations")
    pipeline = A.Compose(transforms, p=1.0)
    if seed is not None:
        seed_pipeline(pipeline, seed)
    if image_pool is not None:
        set_image_pool(pipeline, image_pool)
    return pipeline


def seed_pipeline(pipeline: A.BaseCompose, seed: int) -> None:
    """Make `pipeline` reproducible from one seed, all its transforms drawing from ONE stream.

    Not `A.Compose(seed=...)` / `set_random_seed`: those give every nested transform its own
    generator with the same seed, so identical transforms (RandAugment's N `OneOf`s, two ops
    with the same probability) draw the same numbers and their choices correlate.
    """
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))


def needs_autoaug(policy: Any) -> bool:
    """Whether loading the export of `policy` needs `import autoaug` (it holds autoaug's own transforms)."""
    return loading_note(policy) is not None


def loading_note(policy: Any) -> str | None:
    """What a user must do before using the export of `policy`, or None when plain `A.load` is enough."""
    transforms = list(walk(to_albumentations(policy)))
    own = sorted({type(t).__name__ for t in transforms if type(t).__module__ == albu.__name__})
    if not own:
        return None
    note = (f"note: the albumentations JSON holds autoaug's own transforms ({' / '.join(own)}): "
            "`import autoaug` before A.load")
    if any(isinstance(t, SamplePairing) for t in transforms):
        note += ", and give SamplePairing its partner images with autoaug.albu.set_image_pool(pipeline, images)"
    return note


def save_albumentations(policy: Any, path: str | Path) -> Path:
    """Write the albumentations JSON of `policy` with `A.save`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    A.save(to_albumentations(policy), str(path), data_format="json")
    return path


def albumentations_path(native_path: str | Path) -> Path:
    """`policies/x.json` -> `policies/x.albumentations.json`."""
    native_path = Path(native_path)
    stem = native_path.name[:-5] if native_path.name.endswith(".json") else native_path.name
    return native_path.with_name(stem + ".albumentations.json")
