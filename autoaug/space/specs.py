"""From what a user writes to an augmenter: policy files of every kind and named policies.

This module sits above the augmenters it chooses between (`Policy`, RandAugment /
TrivialAugment, an albumentations export read back), so none of them needs to know the others.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from autoaug.files import is_file, read_json
from autoaug.space import randaugment
from autoaug.space.export import AlbumentationsFile
from autoaug.space.pipeline import is_pipeline_document
from autoaug.space.policy import Policy, published_policy


def policy_from_json(doc: Any, where: str = "policy"):
    """Any native policy document: `policy`, or the `randaugment` / `trivialaugment` kinds."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind in randaugment.KINDS:
        return randaugment.from_json(doc, where)
    return Policy.from_json(doc, where)


def load_policy(path: str | Path):
    """Load a native policy file (`Policy`, or a RandAugment / TrivialAugment augmenter)."""
    return policy_from_json(read_json(path), str(path))


def resolve(spec: str):
    """A native policy file, an albumentations export (drawn as is), or a published name such as
    `autoaugment-cifar10`."""
    if spec.startswith("autoaugment-") and not is_file(spec):
        return published_policy(spec)
    doc = read_json(spec)
    if is_pipeline_document(doc):
        return AlbumentationsFile(doc, spec)
    return policy_from_json(doc, spec)
