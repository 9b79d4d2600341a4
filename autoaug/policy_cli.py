"""Sub-commands that look at a policy file: `validate`, `show`, `export-albumentations`."""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
import torch

from autoaug.errors import AutoaugError
from autoaug.policy import Policy, policy_from_json, published_policy, read_json


class AlbumentationsFile:
    """An exported albumentations pipeline, drawn like an augmenter: `(images, generator) -> images`."""

    def __init__(self, path: str):
        import albumentations as A

        self.pipeline = A.load(path, data_format="json")

    def describe(self) -> str:
        from autoaug.albu import walk

        names = sorted({type(t).__name__ for t in walk(self.pipeline)} - {"Compose", "OneOf", "Sequential"})
        return f"albumentations pipeline (A.load reads it) of {', '.join(names)}"

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        from autoaug.export import seed_pipeline

        seed_pipeline(self.pipeline, int(torch.randint(2**31, (1,), generator=generator)))
        hwc = images.permute(0, 2, 3, 1).numpy()
        out = np.stack([self.pipeline(image=np.ascontiguousarray(img))["image"] for img in hwc])
        return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def resolve(spec: str):
    """A native policy file, an albumentations export (drawn as is), or a published name such as
    `autoaugment-cifar10`."""
    if spec.startswith("autoaugment-") and not Path(spec).exists():
        return published_policy(spec)
    doc = read_json(spec)
    if isinstance(doc, dict) and "transform" in doc and "__version__" in doc:
        return AlbumentationsFile(spec)
    return policy_from_json(doc, spec)


def cmd_validate(args: argparse.Namespace) -> int:
    policy = resolve(args.policy)
    print(f"{args.policy}: valid")
    print(policy.describe())
    source = getattr(policy, "provenance", {}).get("source")
    if source:
        print(f"source: {source}")
    return 0


def _label(img: np.ndarray, text: str) -> np.ndarray:
    """A strip of `text` above `img` (HWC uint8 RGB)."""
    strip = np.full((14, img.shape[1], 3), 255, np.uint8)
    cv2.putText(strip, text[: img.shape[1] // 6], (2, 11), cv2.FONT_HERSHEY_PLAIN, 0.8, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([strip, img], axis=0)


def render_grid(policy, images: np.ndarray, seed: int = 0, scale: int = 3) -> np.ndarray:
    """One row per sub-policy (each image augmented by that sub-policy alone), the originals first.

    For RandAugment / TrivialAugment, which have no sub-policies, each row is a fresh draw.
    """
    from autoaug.augment import PolicyAugment

    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
    g = torch.Generator().manual_seed(seed)
    rows, labels = [x], ["original"]
    if isinstance(policy, Policy):
        for i, sub in enumerate(policy.sub_policies):
            rows.append(PolicyAugment(Policy((sub,), range_reading=policy.range_reading))(x, g))
            labels.append(f"{i}: " + " > ".join(f"{op.name} {op.prob:.1f}" for op in sub))
    else:
        for i in range(5):
            rows.append(policy(x, g))
            labels.append(f"draw {i}")
    tiles = []
    for row, text in zip(rows, labels):
        strip = np.concatenate(list(row.permute(0, 2, 3, 1).numpy()), axis=1)  # (H, N*W, C)
        strip = cv2.resize(strip, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        tiles.append(_label(strip, text))
    return np.concatenate(tiles, axis=0)


def cmd_show(args: argparse.Namespace) -> int:
    from autoaug.data import load

    if args.samples < 1:
        raise AutoaugError(f"--samples: expected a positive number, got {args.samples}")
    policy = resolve(args.policy)
    images, _ = load(args.dataset, "test")
    grid = render_grid(policy, images[: args.samples], seed=args.seed)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR)):
        raise AutoaugError(f"{out}: could not write the image (expected a writable path ending in .png)")
    print(f"wrote {out} ({grid.shape[1]}x{grid.shape[0]})")
    return 0


def cmd_export_albumentations(args: argparse.Namespace) -> int:
    from autoaug.export import loading_note, save_albumentations

    policy = resolve(args.policy)
    if isinstance(policy, AlbumentationsFile):
        raise AutoaugError(f"{args.policy} is already an albumentations export; expected a native policy file")
    path = save_albumentations(policy, args.out)
    print(f"wrote {path}")
    note = loading_note(policy)
    if note:
        print(note)
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser("validate", help="check a policy file and summarise it")
    p.add_argument("policy", help="policy JSON file or published name (autoaugment-cifar10, -svhn, -imagenet)")
    p.set_defaults(func=cmd_validate)

    p = subparsers.add_parser("show", help="draw a grid of what a policy does to real images")
    p.add_argument("policy", help="policy JSON file or published name")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--samples", type=int, default=8, help="images per row (default 8)")
    p.add_argument("--dataset", default="cifar10-reduced", help="dataset spec (default cifar10-reduced)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_show)

    p = subparsers.add_parser("export-albumentations", help="write a policy as albumentations JSON (A.load reads it)")
    p.add_argument("policy", help="policy JSON file or published name")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.set_defaults(func=cmd_export_albumentations)
