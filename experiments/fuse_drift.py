"""How far fused and plain children drift apart on different CPU kernel paths (issue #26).

K children fused into one grouped-convolution network are the K children trained one by one,
up to float rounding (tests/training/test_fused.py checks the weights after a few steps). Over a
whole child the rounding is amplified by SGD into a few validation images that flip on a near
tie, and how many depends on the kernels oneDNN picks for the CPU: the same test passed with one
flip of 200 on an Intel Xeon with AMX and saw three on an AMD EPYC. This script measures that
drift on the children `tests/search/test_pool.py` compares (the search's child, 1 epoch on 160
images, scored on 200), once per kernel path, each in a fresh process since torch reads
ATEN_CPU_CAPABILITY at import:

    native   whatever torch dispatches on this CPU
    avx2     ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2, a CPU without AVX512 or AMX
             (experiments/bench_precision.py's setting; the search's 'native' precision is fp32 there)

    python experiments/fuse_drift.py [--seeds 40] [--out experiments/results/fuse_drift.md]

Per seed: the policies of a search round (3 random policies on one seed), trained fused (K = 3,
as the test's fused search groups them) and plain. The figure is the number of val images whose prediction differs, per
child; the test's tolerance is set from the largest seen on either path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostinfo import cpu_capability, describe, load_average  # noqa: E402

PATHS = {"native": {}, "avx2": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2"}}
# The child of tests/search/test_pool.py (its TINY settings), so the measurement is the test's.
CHILD = ["child.epochs=1", "child.batch_size=32", "train_subset=160", "val_subset=200"]


def measure(seeds: int) -> dict:
    """Flipped val images per child, fused vs plain, for `seeds` search rounds on this process's path."""
    from autoaug.search.config import load_config
    from autoaug.search.trials import ChildTask
    from autoaug.space.policy import Policy
    from autoaug.training.fused import train_children
    from autoaug.training.device import native_bf16
    from autoaug.training.loop import train_child

    torch.set_num_threads(1)
    config = load_config(None, CHILD)
    data = ChildTask.from_config(config).data("cpu")
    child = config.child
    n_val = len(data.val_y)
    flips = []
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        policies = [Policy.from_tokens(rng.integers(0, [16, 11, 10] * 10)) for _ in range(3)]
        # the test's fused search (fuse=3) groups a round's 3 policies, and its reference alone
        fused = train_children(policies, data, child, [seed] * len(policies))
        plain = [train_child(a, data, child, seed) for a in policies]
        flips += [round(abs(f - p) * n_val) for f, p in zip(fused, plain)]
    return {"machine": describe(), "capability": cpu_capability(),
            "precision": "bf16" if child.precision == "bf16" or (
                child.precision == "native" and native_bf16(torch.device("cpu"))) else "fp32",
            "n_val": n_val, "flips": flips, "grid_flips": measure_grid(max(1, seeds // 8))}


def measure_grid(windows: int) -> list[int]:
    """Flipped images (of 36) per child of tests/search/test_pool.py's fused RandAugment grid (its
    tiny_npz: 12 images of each of 3 classes, 16x16 crops; fp32 children), val and test, for
    `windows` different 36-image windows of the embedded train split."""
    import tempfile

    from autoaug.search.grid import GridSpec, run_grid
    from autoaug.training.data import load
    from autoaug.training.config import TrainConfig

    x, y = load("cifar10-reduced", "train")
    flips = []
    for w in range(windows):
        idx = np.concatenate([np.flatnonzero(y == c)[12 * w: 12 * w + 12] for c in range(3)])
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tiny.npz"
            np.savez(path, x=x[idx, :16, :16], y=y[idx], x_val=x[idx, 16:, 16:], y_val=y[idx],
                     x_test=x[idx, :16, 16:], y_test=y[idx])
            spec = GridSpec(dataset=f"npz:{path}", ns=(1, 2), ms=(3.0, 9.0), seeds=2, save_outputs=True,
                            train=TrainConfig.for_model("tiny", epochs=1, batch_size=12))
            plain, fused = (run_grid(spec, Path(tmp) / name, backend="inline", devices=["cpu"], fuse=fuse,
                                     progress=False) for name, fuse in (("plain", 1), ("fused", 3)))
            for a, b in zip(plain.points, fused.points):
                flips += [round(abs(u - v) * len(idx)) for u, v in
                          zip(a.val_accs + a.test_accs, b.val_accs + b.test_accs)]
    return flips


def summary(flips: list[int]) -> str:
    counts = np.bincount(flips)
    spread = ", ".join(f"{k}: {c}" for k, c in enumerate(counts) if c)
    return f"max {max(flips)}, mean {np.mean(flips):.2f}; by flipped images {{{spread}}}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=40)
    ap.add_argument("--out", default="experiments/results/fuse_drift.md")
    ap.add_argument("--one-path", action="store_true", help=argparse.SUPPRESS)  # a child process's job
    args = ap.parse_args()
    if args.one_path:
        print(json.dumps(measure(args.seeds)))
        return
    started = time.time()
    results = {}
    for name, env in PATHS.items():
        proc = subprocess.run([sys.executable, __file__, "--one-path", "--seeds", str(args.seeds)],
                              env={**os.environ, **env, "OMP_NUM_THREADS": "1"},
                              capture_output=True, text=True)
        if proc.returncode:
            raise SystemExit(f"the {name} path failed:\n{proc.stderr}")
        results[name] = json.loads(proc.stdout.splitlines()[-1])
        print(name, summary(results[name]["flips"]), "| grid:", summary(results[name]["grid_flips"]), flush=True)
    worst = max(max(r["flips"]) for r in results.values())
    lines = [
        "# Fused vs plain children on two CPU kernel paths (issue #26)", "",
        f"`python experiments/fuse_drift.py --seeds {args.seeds}` on {results['native']['machine']}; load average at the end "
        f"{load_average()}; {(time.time() - started) / 60:.1f} min.", "",
        f"Each of {args.seeds} seeds is one search round's policies (3 random policies on one seed), "
        "trained fused (K = 3, one grouped-convolution network, as the test's fused search groups them) and plain "
        "(one child at a time), with the child "
        f"of tests/search/test_pool.py ({', '.join(CHILD)}). The figure: val images (of "
        f"{results['native']['n_val']}) whose prediction differs between the fused and the plain child.", "",
        "| kernel path | torch CPU capability | child precision | children | flipped images |", "|---|---|---|---|---|",
    ]
    for name, r in results.items():
        lines.append(f"| {name} | {r['capability']} | {r['precision']} | {len(r['flips'])} | {summary(r['flips'])} |")
    lines += ["", f"Largest drift on either path: {worst} image(s) of {results['native']['n_val']}. "
              "tests/search/test_pool.py allows twice the largest measured here (an unmeasured CPU may round "
              "differently again), and compares tokens, seeds, roles, rounds and statuses exactly.", "",
              "The same for the test's fused RandAugment grid (K = 3; 36 images of 3 classes, 16x16, fp32 "
              f"children; {max(1, args.seeds // 8)} windows of 36 images x 4 grid points x 2 seeds, val and test):", "",
              "| kernel path | children x (val, test) | flipped images (of 36) |", "|---|---|---|"]
    for name, r in results.items():
        lines.append(f"| {name} | {len(r['grid_flips'])} | {summary(r['grid_flips'])} |")
    grid_worst = max(max(r["grid_flips"]) for r in results.values())
    lines += ["", f"Largest: {grid_worst}; the grid test allows one image of 36."]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
