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
torch path with and without the same targets. Each is timed right after the image alone on the
same images, round after round (`--rounds`), and the ratio is the median of those pairs.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hostinfo import describe, load_average

from autoaug.training.data import load
from autoaug.space.export import to_albumentations
from autoaug.space.policy import published_policy
from autoaug.space.render import default_targets
from autoaug.space.targets import TargetParams


def _best_rate(fn, n_images: int, repeats: int) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return n_images / best


def _paired_rates(calls: dict, chunks: list, rounds: int) -> list[tuple[str, float, float]]:
    """(name, images/s, time / the first call's time) for each of `calls`, each taking one chunk.

    Every round times each call on the same chunk, one after another, so a neighbour's job on
    the shared machine slows a round's calls alike: the ratio is the median over rounds of the
    paired time ratios, the rate the fastest round (as `_best_rate`)."""
    for fn in calls.values():
        fn(chunks[0])  # warm-up
    seconds = {name: [] for name in calls}
    for r in range(rounds):
        chunk = chunks[r % len(chunks)]
        for name, fn in calls.items():
            t0 = time.perf_counter()
            fn(chunk)
            seconds[name].append((time.perf_counter() - t0) / len(chunk))
    first = np.array(seconds[next(iter(calls))])
    return [(name, 1 / min(times), float(np.median(np.array(times) / first))) for name, times in seconds.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1, help="CPU threads for every contestant")
    ap.add_argument("--images", type=int, default=10_000)
    ap.add_argument("--batch", type=int, default=1000, help="batch size of the torch execution")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=25, help="paired rounds of the targets table (200 images "
                    "per albumentations call, one batch per torch call)")
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

    carried = {"albumentations export, per image": albumentations_targets(policy, x_np[:n_albu], args.rounds),
               f"autoaug batched torch, CPU, batch {args.batch}": torch_targets(policy, x, args.batch, args.rounds)}
    albu_rate = dict(rows)["albumentations export, per image"]
    lines = [
        "# Augmentation throughput (AutoAugment CIFAR-10 policy, 32x32 images)",
        "",
        f"Machine: {describe()}; {args.threads} CPU thread(s) for every "
        f"contestant; load average before the run {load_before} (others' jobs on a shared machine slow "
        f"every row alike; compare ratios within this run). "
        f"Command: `python experiments/bench_augment.py --threads {args.threads}`.",
        "",
        "| execution | images/s | ratio to albumentations |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {rate:,.0f} | {rate / albu_rate:.2f} |" for name, rate in rows]
    lines += ["", "Carrying targets (issue #25), in the same run: one mask, one box and 4 keypoints per image "
              f"(`autoaug show --targets`'s ellipse), the same images and policy. {args.rounds} rounds, each timing "
              "the three on the same images one after another (200 images per albumentations round, a batch per "
              "torch round); images/s from the fastest round, the ratio the median over rounds of the paired "
              "ratios, so a neighbour's load slows both sides of it alike.", "",
              "| execution | carries | images/s | time per image / image only |", "|---|---|---|---|"]
    for execution, measured in carried.items():
        lines += [f"| {execution} | {what} | {rate:,.0f} | {ratio:.2f} |" for what, rate, ratio in measured]
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


def albumentations_targets(policy, images: np.ndarray, rounds: int) -> list[tuple[str, float, float]]:
    """The policy's albumentations export, one image per call: the image alone and with a mask
    (as a classification / segmentation dataset calls it, no bbox_params), then with a mask, a
    box and keypoints (exported with bbox_params pascal_voc and keypoint_params xy)."""
    plain = to_albumentations(policy, seed=0)
    detection = to_albumentations(policy, seed=0, targets=TargetParams(bbox_format="pascal_voc", keypoint_format="xy"))
    t = default_targets(*images.shape[1:3])
    calls = {
        "image": lambda chunk: [plain(image=img) for img in chunk],
        "image + mask": lambda chunk: [plain(image=img, mask=t.mask) for img in chunk],
        f"image + mask + {len(t.boxes)} box + {len(t.keypoints)} keypoints":
            lambda chunk: [detection(image=img, mask=t.mask, bboxes=t.boxes, keypoints=t.keypoints) for img in chunk],
    }
    return _paired_rates(calls, [images[i : i + 200] for i in range(0, len(images), 200)], rounds)


def torch_targets(policy, x: torch.Tensor, batch: int, rounds: int) -> list[tuple[str, float, float]]:
    """The batched torch path on the CPU carrying nothing, a mask, and a mask + box + keypoints
    (`policy(images, g, masks=..., boxes=..., keypoints=...)`), one batch per call."""
    n, _, h, w = x.shape
    t = default_targets(h, w)
    masks = torch.from_numpy(t.mask).expand(batch, h, w).contiguous()  # (B, H, W) uint8
    boxes = torch.from_numpy(t.boxes).float().expand(batch, *t.boxes.shape)  # (B, 1, 4) pascal_voc
    keypoints = torch.from_numpy(t.keypoints).float().expand(batch, *t.keypoints.shape)  # (B, 4, 2) xy
    g = torch.Generator().manual_seed(0)
    calls = {
        "image": lambda chunk: policy(chunk, g),
        "image + mask": lambda chunk: policy(chunk, g, masks=masks),
        f"image + mask + {len(t.boxes)} box + {len(t.keypoints)} keypoints":
            lambda chunk: policy(chunk, g, masks=masks, boxes=boxes, keypoints=keypoints),
    }
    return _paired_rates(calls, [x[i : i + batch] for i in range(0, n - batch + 1, batch)], rounds)

if __name__ == "__main__":
    main()
