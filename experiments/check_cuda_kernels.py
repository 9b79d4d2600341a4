"""On a CUDA machine: every op's kernel gives the same pixels on the GPU as on the CPU.

    python experiments/check_cuda_kernels.py [--out experiments/results/cuda_kernels.md]

For each op, magnitude bin and sign, the kernel runs on 256 real CIFAR images on both devices;
the table gives the largest per-pixel difference and the fraction of differing pixels. It also
checks that a whole policy is reproducible on the GPU (same generator seed, same pixels).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from autoaug.training.data import load
from autoaug.space.ops import MAGNITUDE_BINS, OPS, OpContext
from autoaug.space.policy import published_policy


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="experiments/results/cuda_kernels.md")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: nothing to check")
    x_np, _ = load("cifar10-reduced", "test")
    x = torch.from_numpy(x_np[:256]).permute(0, 3, 1, 2).contiguous()
    xc = x.cuda()
    lines = [f"# CUDA vs CPU kernels ({torch.cuda.get_device_name(0)}, torch {torch.__version__})", "",
             "| op | max abs diff | fraction of pixels differing |", "|---|---|---|"]
    for op in OPS:
        if op.name in ("Cutout", "SamplePairing"):
            continue  # their randomness is drawn on the generator's device; checked below as a policy
        worst, frac = 0, 0.0
        bins = range(MAGNITUDE_BINS) if op.has_magnitude else (0,)
        for b in bins:
            for sign in ((1, -1) if op.signed else (1,)):
                m = op.magnitude(b) * sign
                cpu = op.kernel(x.clone(), torch.full((256,), m), OpContext(torch.Generator(), x, torch.arange(256)))
                gpu = op.kernel(xc.clone(), torch.full((256,), m, device="cuda"),
                                OpContext(torch.Generator("cuda"), xc, torch.arange(256, device="cuda"))).cpu()
                d = (cpu.int() - gpu.int()).abs()
                worst = max(worst, int(d.max()))
                frac = max(frac, float((d > 0).float().mean()))
        lines.append(f"| {op.name} | {worst} | {frac:.5f} |")
    aug = published_policy("autoaugment-cifar10")
    a = aug(xc, torch.Generator("cuda").manual_seed(1))
    b = aug(xc, torch.Generator("cuda").manual_seed(1))
    lines += ["", f"Same CUDA generator seed, same pixels for the CIFAR-10 policy: {bool(torch.equal(a, b))}"]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
