"""Write the published AutoAugment policies to policies/ as native JSON and albumentations JSON.

    python experiments/make_policies.py            # rewrites policies/autoaugment-*.json
"""

from __future__ import annotations

from pathlib import Path

from autoaug.space.export import albumentations_path, save_albumentations
from autoaug.space.policy import published_policy
from autoaug.space.published import PUBLISHED

OUT = Path(__file__).resolve().parent.parent / "policies"


def main() -> None:
    for name in PUBLISHED:
        policy = published_policy(name)
        native = policy.save(OUT / f"{name}.json")
        save_albumentations(policy, albumentations_path(native))
        print(f"wrote {native} and {albumentations_path(native).name}")


if __name__ == "__main__":
    main()
