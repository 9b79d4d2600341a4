"""Write the published AutoAugment policies to policies/ as native JSON and albumentations JSON,
and the whole training and evaluation pipelines of the CIFAR-10 policy.

    python experiments/make_policies.py            # rewrites policies/autoaugment-*.json

`autoaugment-cifar10.train.albumentations.json` is the policy inside the recipe it was found
with (`autoaug train`: Normalize, zero-pad 4 + random crop, horizontal flip, Cutout 16, then
ToTensorV2), normalised with the mean and std of the embedded reduced CIFAR-10's training split;
`autoaugment-cifar10.eval.albumentations.json` is Normalize + ToTensorV2 with the same numbers.
"""

from __future__ import annotations

from pathlib import Path

from autoaug.space.export import albumentations_path, save_albumentations
from autoaug.space.pipeline import pipeline_path, save_pipeline
from autoaug.space.policy import published_policy
from autoaug.space.published import PUBLISHED
from autoaug.space.specs import resolve
from autoaug.training.pipelines import export_pipeline

OUT = Path(__file__).resolve().parent.parent / "policies"
WHOLE = {"autoaugment-cifar10": "cifar10-reduced"}  # policy -> dataset of its normalisation


def main() -> None:
    for name in PUBLISHED:
        policy = published_policy(name)
        native = policy.save(OUT / f"{name}.json")
        save_albumentations(policy, albumentations_path(native))
        print(f"wrote {native} and {albumentations_path(native).name}")
        if name in WHOLE:
            for kind in ("train", "eval"):
                path = save_pipeline(export_pipeline(kind, resolve(name), WHOLE[name]), pipeline_path(native, kind))
                print(f"wrote {path.name}")


if __name__ == "__main__":
    main()
