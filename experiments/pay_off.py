"""Does the search pay off on your data? (issue #20): `autoaug search` then `autoaug compare`
on two datasets, as a user runs them, and their results side by side.

For each dataset: the search (it ends with its verdict in the child regime, RUN/verdict.md),
then `autoaug compare RUN ...` in the final regime (its exported policy next to the free
alternatives, on the same seeds). Both commands resume, so a killed run of this script picks up
where it stopped; `--report` only collects what is finished. The results go to
experiments/results/compare-<name>/: compare.md, compare.json, compare.png, the search's
verdict.md, and README.md with the machine and the exact commands.

    python experiments/pay_off.py [--datasets cifar10,mnist5k] [--report]

What ran on the project's 2-core box, and why it is cut down from the defaults (a quiet box
trains a final-regime CIFAR child in ~100 s, this one was shared by four jobs): CIFAR-10 ran the
default search as it comes; its compare trains the free alternatives that matter on CIFAR
(experiments/results/search_quality.md: the published CIFAR-10 policy is the best free one there,
`none` 13 points below everything) on 2 seeds. mnist5k (experiments/make_mnist5k.py) ran the
default search with half the budget (32 policies) and a smaller re-evaluation (the best 5 on 2
seeds), and its compare 40 epochs on the 2,000 train images, 2 seeds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hostinfo import describe, load_average

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"

# name -> (run directory prefix, search arguments, compare arguments after the run directory; the
# policies come before the options, as argparse reads them):
# the run directories are runs/<prefix>-search and runs/<prefix>-compare.
DATASETS = {
    "cifar10": (
        "c10",
        [],  # the README's first command, with its run directory
        ["standard", "cutout", "trivialaugment", "autoaugment-cifar10", "--no-free",
         "--dataset", "cifar10-reduced", "--seeds", "2", "--workers", "2"],
    ),
    "mnist5k": (
        "mnist",
        ["--dataset", "npz:experiments/data/mnist5k.npz", "--budget", "32",
         "--set", "export.reevaluate_top=5", "export.reevaluate_seeds=2"],
        ["none", "standard", "cutout", "trivialaugment", "--no-free",
         "--dataset", "npz:experiments/data/mnist5k.npz", "--epochs", "40", "--seeds", "2", "--workers", "2"],
    ),
}


def commands(name: str) -> tuple[list[str], list[str]]:
    prefix, search_args, compare_args = DATASETS[name]
    run = f"runs/{prefix}-search"
    search = ["autoaug", "search", *search_args, "--out", run]
    compare = ["autoaug", "compare", run, *compare_args, "--out", f"runs/{prefix}-compare"]
    return search, compare


def run(cmd: list[str], log: Path) -> float:
    """Run an autoaug command (this checkout first on the path); its wall seconds."""
    env = dict(os.environ, NO_ALBUMENTATIONS_UPDATE="1")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    print(" ".join(cmd), flush=True)
    started = time.perf_counter()
    with log.open("a") as out:
        rc = subprocess.call([sys.executable, "-m", *cmd], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if rc != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {rc}); see {log}")
    return time.perf_counter() - started


def collect(name: str, walls: dict[str, float]) -> Path:
    """Copy the results of `name` into experiments/results/compare-<name>/ with a README.md."""
    search, compare = commands(name)
    run_dir, compare_dir = ROOT / search[-1], ROOT / compare[-1]
    out = RESULTS / f"compare-{name}"
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for source in (compare_dir / "compare.md", compare_dir / "compare.json", compare_dir / "compare.png",
                   run_dir / "verdict.md", run_dir / "policy.json"):
        if source.is_file():
            shutil.copyfile(source, out / source.name)
            copied.append(source.name)
    verdict = json.loads((out / "compare.json").read_text())["verdict"] if "compare.json" in copied else "not finished"
    lines = [
        f"# `autoaug search` then `autoaug compare` on {name}",
        "",
        f"`python experiments/pay_off.py --datasets {name}` on {describe('cpu')}; load average at the end "
        f"{load_average()} (the box was shared: seconds here are not speed figures, accuracies are).",
        "",
        "The commands it ran:",
        "",
        f"    {' '.join(search)}",
        f"    {' '.join(compare)}",
        "",
        "Files: " + ", ".join(f"[{c}]({c})" for c in copied) + " (verdict.md and policy.json: the search's "
        "verdict in the child regime and its exported policy; compare.*: the final regime).",
        "",
        f"Final-regime verdict: {verdict}",
        "",
    ] + [f"Wall time of {what} in this invocation: {seconds / 60:.0f} min." for what, seconds in walls.items()]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", default=",".join(DATASETS), help=f"comma-separated, of {','.join(DATASETS)}")
    ap.add_argument("--report", action="store_true", help="only collect what is finished")
    args = ap.parse_args()
    names = [n for n in args.datasets.split(",") if n]
    if not names or set(names) - set(DATASETS):
        raise SystemExit(f"--datasets: expected a comma-separated subset of {','.join(DATASETS)}, got {args.datasets!r}")
    for name in names:
        walls = {}
        if not args.report:
            search, compare = commands(name)
            logs = ROOT / "runs" / f"{name}-pay_off.log"
            logs.parent.mkdir(parents=True, exist_ok=True)
            walls["the search"] = run(search, logs)
            walls["the compare"] = run(compare, logs)
        print(f"wrote {collect(name, walls)}")


if __name__ == "__main__":
    main()
