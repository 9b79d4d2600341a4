"""Augmentation throughput on 32x32 CIFAR images: batched torch vs albumentations vs torchvision.

Applies the AutoAugment CIFAR-10 policy (25 sub-policies) to real images from the embedded
reduced CIFAR-10, on the same number of CPU threads for every contestant, and prints images/s and
the ratios against the albumentations export measured in the same run:

    python experiments/bench_augment.py [--threads 1] [--images 10000] [--batch 1000] [--out FILE]

(a) autoaug batched torch on the CPU (and on the GPU when one is present: the batch is put on the
    device once, as in training), (b) the exported albumentations pipeline, one image per call,
(c) torchvision v2 AutoAugment(CIFAR10) on uint8 tensors, when torchvision is importable.

Then the cost of carrying targets (issue #25), in the same run: the albumentations export with
the image alone, with a mask, and with a mask, a box and 4 keypoints (`autoaug show --targets`'s
default target, bbox_params / keypoint_params as a detection dataset passes them); the batched
torch path with and without the same targets.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hostinfo import describe, load_average

from autoaug.training.data import load
from autoaug.space.export import to_albumentations
from autoaug.space.policy import published_policy
from autoaug.space.render import default_targets, target_pipeline


def _best_rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_images / best


def _best_rates(calls: dict, n_images: int, repeats: int) -> list[tuple[str, float]]:
    """`_best_rate` of each call, their repeats interleaved: a neighbour's job that slows the
    shared machine for a while slows every call alike, so the ratios between them hold."""
    best = dict.fromkeys(calls, float("inf"))
    for fn in calls.values():
        fn()  # warm-up
    for _ in range(repeats):
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return [(name, n_images / seconds) for name, seconds in best.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for every contestant")
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1000, help="batch size of the torch execution")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default="experiments/results/bench_augment.md")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    load_before = load_average()
    cv2.setNumThreads(args.threads)
    x_np, _ = load("cifar10-reduced", "train")
    x_np = np.resize(x_np, (args.images, 32, 32, 3))  # repeat the 4,000 images as needed
    x = torch.from_numpy(x_np).permute(0, 3, 1, 2).contiguous()
    policy = published_policy("autoaugment-cifar10")
    aug = policy
    rows: list[tuple[str, float]] = []

    def torch_run(device: str) -> None:
        g = torch.Generator(device=device).manual_seed(0)
        xd = x.to(device)
        for i in range(0, len(xd), args.batch):
            aug(xd[i : i + args.batch], g)
        if device == "cuda":
            torch.cuda.synchronize()

    rows.append((f"autoaug batched torch, CPU, batch {args.batch}", _best_rate(lambda: torch_run("cpu"), len(x), args.repeats)))
    gpu = None
    if torch.cuda.is_available():
        gpu = torch.cuda.get_device_name(0)
        rows.append((f"autoaug batched torch, {gpu}, batch {args.batch}", _best_rate(lambda: torch_run("cuda"), len(x), args.repeats)))
        big = min(len(x), 50_000)
        rows.append((f"autoaug batched torch, {gpu}, batch {big}",
                     _best_rate(lambda: aug(x[:big].cuda(), torch.Generator("cuda").manual_seed(0)) is not None
                                and torch.cuda.synchronize(), big, args.repeats)))

    pipeline = to_albumentations(policy, seed=0)
    n_albu = min(len(x_np), 5000)
    rows.append(("albumentations export, per image", _best_rate(lambda: [pipeline(image=img) for img in x_np[:n_albu]], n_albu, args.repeats)))

    try:
        from torchvision.transforms import v2

        tv = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)
        n_tv = min(len(x), 5000)
        rows.append(("torchvision v2 AutoAugment(CIFAR10), per image tensor",
                     _best_rate(lambda: [tv(img) for img in x[:n_tv]], n_tv, args.repeats)))
    except Exception as err:  # torchvision absent, or not importable beside this torch build
        print(f"torchvision skipped: {type(err).__name__}: {str(err).splitlines()[0][:100]}")

    carried = {"albumentations export, per image": albumentations_targets(policy, x_np[:n_albu], args.repeats),
               f"autoaug batched torch, CPU, batch {args.batch}": torch_targets(policy, x, args.batch, args.repeats)}
    albu_rate = dict(rows)["albumentations export, per image"]
    lines = [
        "# Augmentation throughput (AutoAugment CIFAR-10 policy, 32x32 images)",
        "",
        f"Machine: {describe()}, {os.cpu_count()} logical CPUs; {args.threads} CPU thread(s) for every "
        f"contestant; load average before the run {load_before} (others' jobs on a shared machine slow "
        f"every row alike; compare ratios within this run). "
        f"Command: `python experiments/bench_augment.py --threads {args.threads}`.",
        "",
        "| execution | images/s | ratio to albumentations |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {rate:,.0f} | {rate / albu_rate:.2f} |" for name, rate in rows]
    lines += ["", "Carrying targets (issue #25): one mask, one box and 4 keypoints per image, "
              "the same images and policy, measured in the same run.", "",
              "| execution | carries | images/s | time per image / image only |", "|---|---|---|---|"]
    for execution, measured in carried.items():
        alone = measured[0][1]
        lines += [f"| {execution} | {what} | {rate:,.0f} | {alone / rate:.2f} |" for what, rate in measured]
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and gpu is None:
        out.write_text(text)
    elif out.exists():
        out.write_text(out.read_text() + "\n" + text)
    else:
        out.write_text(text)


def albumentations_targets(policy, images: np.ndarray, repeats: int) -> list[tuple[str, float]]:
    """Images/s of the policy's albumentations export, one image per call: the image alone and
    with a mask (as a classification / segmentation dataset calls it, no bbox_params), then with
    a mask, a box and keypoints (bbox_params pascal_voc, keypoint_params xy, as `show --targets`)."""
    plain = to_albumentations(policy, seed=0)
    detection = target_pipeline(list(to_albumentations(policy, seed=0).transforms))
    t = default_targets(*images.shape[1:3])
    calls = {
        "image": lambda img: plain(image=img),
        "image + mask": lambda img: plain(image=img, mask=t.mask),
        f"image + mask + {len(t.boxes)} box + {len(t.keypoints)} keypoints":
            lambda img: detection(image=img, mask=t.mask, bboxes=t.boxes, keypoints=t.keypoints),
    }
    return _best_rates({what: (lambda call=call: [call(img) for img in images]) for what, call in calls.items()},
                       len(images), repeats)


def torch_targets(policy, x: torch.Tensor, batch: int, repeats: int) -> list[tuple[str, float]]:
    """Images/s of the batched torch path on the CPU carrying nothing, a mask, and a mask + box +
    keypoints (`policy(images, g, masks=..., boxes=..., keypoints=...)`), batch by batch."""
    n, _, h, w = x.shape
    t = default_targets(h, w)
    masks = torch.from_numpy(t.mask).expand(n, h, w).contiguous()  # (N, H, W) uint8
    boxes = torch.from_numpy(t.boxes).float().expand(n, *t.boxes.shape)  # (N, 1, 4) pascal_voc
    keypoints = torch.from_numpy(t.keypoints).float().expand(n, *t.keypoints.shape)  # (N, 4, 2) xy

    def run(**targets: torch.Tensor) -> None:
        g = torch.Generator().manual_seed(0)
        for i in range(0, n, batch):
            policy(x[i : i + batch], g, **{k: v[i : i + batch] for k, v in targets.items()})

    calls = {"image": lambda: run(), "image + mask": lambda: run(masks=masks),
             f"image + mask + {len(t.boxes)} box + {len(t.keypoints)} keypoints":
                 lambda: run(masks=masks, boxes=boxes, keypoints=keypoints)}
    return _best_rates(calls, n, repeats)


if __name__ == "__main__":
    main()
