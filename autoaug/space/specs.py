"""Policy specs: what a user may write wherever a policy is asked for, resolved in one place.

`resolve(spec)` serves `autoaug train --policy`, `show`, `validate`, `export-albumentations` and
the Python API alike; every one of them accepts the same specs (`NAMES`):

- the baselines `none` (no augmentation), `standard` (pad + random crop, horizontal flip) and
  `cutout` (standard + Cutout), which name no policy;
- the published AutoAugment policies `autoaugment-cifar10`, `-svhn`, `-imagenet`;
- `trivialaugment[:ops=A+B]` and `randaugment[:N=..,M=..,ops=A+B]`;
- a native policy file (a learned policy, RandAugment or TrivialAugment), or an albumentations
  export: a policy alone (trained like a native policy, inside the recipe) or a whole pipeline
  ending in ToTensorV2 (the recipe as written).

A policy trains with the standard augmentation and Cutout after it, as the AutoAugment paper
(and the RandAugment and TrivialAugment papers on CIFAR) did; the baselines say what they add.
Pad and Cutout scale with the image (`autoaug.space.pipeline.crop_pad`, `cutout_side`): pad 4
and Cutout 16 on 32x32 CIFAR, the papers' numbers; 4 and 14 on 28x28.
This module sits above the augmenters it chooses between, so none of them knows the others.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autoaug.errors import PolicyError, shown
from autoaug.files import expand_user, is_file, read_json
from autoaug.space import randaugment
from autoaug.space.augment import Augmenter
from autoaug.space.export import AlbumentationsFile
from autoaug.space.pipeline import CUTOUT_AUTO, crop_pad, cutout_pixels, gives_tensors, is_pipeline_document
from autoaug.space.policy import Policy, published_policy
from autoaug.space.published import PUBLISHED

# The AutoAugment paper trains every policy on CIFAR with the standard augmentation and Cutout 16
# on top (the reference code applies both to every image); the RandAugment and TrivialAugment
# papers kept that setup for their CIFAR results, so every learned or published policy gets it,
# at the image's scale: half the image side, 16 px on CIFAR (TrainConfig.cutout 'auto').
POLICY_CUTOUT = CUTOUT_AUTO
# name -> (description, pad-crop + flip, Cutout setting)
# A description's {pad} and {cutout} become the pixels on a given image size (`PolicySpec.describe`).
BASELINES = {
    "none": ("no augmentation", False, 0),
    "standard": ("standard: pad {pad} + random crop, horizontal flip", True, 0),
    "cutout": ("standard + Cutout {cutout} (DeVries & Taylor 2017)", True, POLICY_CUTOUT),
}
NAMES = (*BASELINES, *PUBLISHED, "trivialaugment", "randaugment:N=2,M=9", "FILE.json")


@dataclass(frozen=True, eq=False)
class PolicySpec:
    """What a policy spec names, and how training applies it."""

    spec: str
    """The spec as given."""
    template: str
    """One line for reports, its {pad} and {cutout} standing for sizes in pixels (`describe`)."""
    augmenter: Augmenter | AlbumentationsFile | None
    """The policy (None for a baseline)."""
    standard: bool
    """Pad-crop + flip after the policy (TrainConfig.standard)."""
    cutout: int | str
    """Cutout after that (TrainConfig.cutout: pixels, 0 = off, or 'auto', half the image side)."""
    pipeline_file: Path | None = None
    """An albumentations file given as the spec: the whole recipe as written, so it trains only
    with `--augment albumentations` (`autoaug.training.pipelines.albumentations_file`)."""
    flip: bool = True
    """The horizontal flip of the standard augmentation (TrainConfig.flip)."""

    @property
    def description(self) -> str:
        """One line for reports, sizes as their rule: 'pad side/8', 'Cutout side/2'."""
        return self.describe(None)

    def describe(self, image_size: tuple[int, int] | None) -> str:
        """One line for reports with the pad and Cutout sizes on (H, W) images ('pad 4', 'Cutout
        16' on CIFAR), or their rules where `image_size` is None."""
        pad = "side/8" if image_size is None else str(crop_pad(min(image_size)))
        side = (("side/2" if self.cutout == CUTOUT_AUTO else str(self.cutout)) if image_size is None
                else str(cutout_pixels(self.cutout, image_size)))
        return self.template.replace("{pad}", pad).replace("{cutout}", side)


def policy_from_json(doc: Any, where: str = "policy") -> Augmenter:
    """Any native policy document: `policy`, or the `randaugment` / `trivialaugment` kinds."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    if kind in randaugment.KINDS:
        return randaugment.from_json(doc, where)
    return Policy.from_json(doc, where)


def load_policy(path: str | Path) -> Augmenter:
    """Load a native policy file (`Policy`, or a RandAugment / TrivialAugment augmenter)."""
    return policy_from_json(read_json(path), str(path))


def native_provenance(albumentations_file: Path) -> dict[str, Any]:
    """The provenance (dataset, image size, ...) of the native policy file an albumentations export
    was written beside (`x.json` for `x.albumentations.json`), or {} without a readable one."""
    name = albumentations_file.name
    if not name.endswith(".albumentations.json"):
        return {}
    native = albumentations_file.with_name(name[: -len(".albumentations.json")] + ".json")
    try:
        doc = read_json(native) if is_file(native) else None
    except PolicyError:
        return {}
    info = doc.get("provenance") if isinstance(doc, dict) else None
    return dict(info) if isinstance(info, dict) else {}


def resolve(spec: str) -> PolicySpec:
    """A spec of `NAMES` (a baseline, a named policy or a file) -> `PolicySpec`; a PolicyError
    naming what was expected otherwise."""
    if not isinstance(spec, str) or not spec.strip():
        raise PolicyError(f"expected a policy spec ({' | '.join(NAMES)}), got {shown(spec)}")
    spec = spec.strip()
    if spec in BASELINES:
        description, standard, cutout = BASELINES[spec]
        return PolicySpec(spec, description, None, standard, cutout)
    path = expand_user(spec, PolicyError)
    if spec.startswith("autoaugment-") and not is_file(path):
        augmenter: Augmenter | AlbumentationsFile = published_policy(spec)
        description = f"{spec} (published)"
    elif randaugment.is_spec(spec):
        augmenter = randaugment.parse_spec(spec)
        description = augmenter.summary()
    elif spec.endswith(".json") or is_file(path):
        doc = read_json(path)
        if is_pipeline_document(doc):
            augmenter = AlbumentationsFile(doc, str(path))
            if gives_tensors(augmenter.pipeline):  # a whole pipeline: the whole recipe as written
                description = f"albumentations pipeline {path.name} (as written)"
                return PolicySpec(spec, description, augmenter, False, 0, pipeline_file=path)
            # The policy alone (what `autoaug export` writes beside the native file): it trains
            # inside the recipe every policy gets, as the native file does (issue #22), on the
            # dataset the native file beside it records.
            description = f"albumentations policy {path.name}"
            augmenter.provenance = {**native_provenance(path), **augmenter.provenance}
        else:
            augmenter = policy_from_json(doc, spec)
            description = f"policy file {path.name}"
    else:
        raise PolicyError(f"unknown policy {shown(spec)}; expected a policy file or one of {', '.join(NAMES[:-1])}")
    return PolicySpec(spec, description + " + standard + Cutout {cutout}", augmenter, True, POLICY_CUTOUT)


def resolve_policy(spec: str) -> Augmenter | AlbumentationsFile:
    """`resolve(spec).augmenter` where a policy is needed (a baseline names none)."""
    augmenter = resolve(spec).augmenter
    if augmenter is None:
        raise PolicyError(f"{shown(spec)} is a baseline without a policy; expected a policy file or a policy name")
    return augmenter
