"""Does the search pay off on your data? (issue #20): `autoaug search` then `autoaug compare`
on two datasets, as a user runs them, and their results side by side.

For each dataset: the search (it ends with its verdict in the child regime, RUN/verdict.md),
then `autoaug compare RUN ...` in the final regime (its exported policy next to the free
alternatives, on the same seeds). Both commands resume, so a killed run of this script picks up
where it stopped; `--report` only collects what is finished. The results go to
experiments/results/<name>/: compare.md, compare.json, compare.png, the search's
verdict.md, and README.md with the machine and the exact commands.

    python experiments/pay_off.py [--compares compare-cifar10,compare-mnist5k,...] [--report]

What ran on the project's 2-core box, and why it is cut down from the defaults (a quiet box
trains a final-regime CIFAR child in ~100 s, this one was shared by four jobs): CIFAR-10 ran the
default search as it comes; its compare trains the free alternatives that matter on CIFAR
(experiments/results/search_quality.md: the published CIFAR-10 policy is the best free one there,
`none` 13 points below everything) on 3 seeds. mnist5k (experiments/make_mnist5k.py) ran the
default search with half the budget (32 policies) and a smaller re-evaluation (the best 5 on 2
seeds), and its compare 40 epochs on the 2,000 train images, 3 seeds, with the default recipe and
without the flip (`--set child.flip=false`).
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

from autoaug.stats import judge, paired_difference

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "experiments" / "results"

# dataset -> (run directory prefix, search arguments): the search's run directory is
# runs/<prefix>-search.
SEARCHES = {
    "cifar10": ("c10", []),  # the README's first command, with its run directory
    "mnist5k": ("mnist", ["--dataset", "npz:experiments/data/mnist5k.npz", "--budget", "32",
                          "--set", "export.reevaluate_top=5", "export.reevaluate_seeds=2"]),
}
# results name -> (dataset, compare out suffix, compare arguments after the search's run directory;
# the policies come before the options, as argparse reads one run of them): runs/<prefix>-<suffix>
# and experiments/results/<name>/.
COMPARES = {
    "compare-cifar10": ("cifar10", "compare",
                        ["standard", "cutout", "trivialaugment", "autoaugment-cifar10", "--no-free",
                         "--dataset", "cifar10-reduced", "--seeds", "3", "--workers", "3"]),
    "compare-mnist5k": ("mnist5k", "compare",
                        ["none", "standard", "cutout", "trivialaugment", "--no-free",
                         "--dataset", "npz:experiments/data/mnist5k.npz", "--epochs", "40", "--seeds", "3",
                         "--workers", "2"]),
    # Digits: the recipe without the horizontal flip (a mirrored digit is another digit or none).
    "compare-mnist5k-noflip": ("mnist5k", "compare-noflip",
                               ["none", "standard", "cutout", "trivialaugment", "--no-free",
                                "--dataset", "npz:experiments/data/mnist5k.npz", "--epochs", "40",
                                "--set", "child.flip=false", "--seeds", "3", "--workers", "2"]),
}


def search_command(dataset: str) -> list[str]:
    prefix, args = SEARCHES[dataset]
    return ["autoaug", "search", *args, "--out", f"runs/{prefix}-search"]


def compare_command(name: str) -> list[str]:
    dataset, suffix, args = COMPARES[name]
    prefix = SEARCHES[dataset][0]
    return ["autoaug", "compare", f"runs/{prefix}-search", *args, "--out", f"runs/{prefix}-{suffix}"]


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
    """Copy the results of compare `name` and its search into experiments/results/<name>/ with a
    README.md naming the machine and the commands."""
    search, compare = search_command(COMPARES[name][0]), compare_command(name)
    run_dir, compare_dir = ROOT / search[-1], ROOT / compare[-1]
    out = RESULTS / name
    out.mkdir(parents=True, exist_ok=True)
    copied = []
    for source in (compare_dir / "compare.md", compare_dir / "compare.json", compare_dir / "compare.png",
                   run_dir / "verdict.md", run_dir / "policy.json"):
        if source.is_file():
            shutil.copyfile(source, out / source.name)
            copied.append(source.name)
    if "policy.json" in copied:  # its provenance names the run directory absolutely: keep it repo-relative
        text = (out / "policy.json").read_text()
        (out / "policy.json").write_text(text.replace(f'"{run_dir.resolve()}', f'"{search[-1]}'))
    verdict, versus = "not finished", []
    if "compare.json" in copied:
        doc = json.loads((out / "compare.json").read_text())
        verdict, versus = doc["verdict"], against(doc, "trivialaugment")
    lines = [
        f"# `autoaug search` then `autoaug compare`: {name}",
        "",
        f"`python experiments/pay_off.py --compares {name}` on {describe('cpu')}; load average at the end "
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
        *versus,
        "For the committed results these commands were first run by hand, on a box shared with other jobs: "
        "each compare once with the free rows only, while the search ran, then again with the search's run "
        "directory (one trial store: it trains only what it lacks); then this script ran them all once more "
        "(training nothing) and collected the files.",
        "",
    ] + [f"Wall time of {what} in this invocation: {seconds / 60:.0f} min." for what, seconds in walls.items()
         if seconds >= 60]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    return out


def against(doc: dict, reference: str) -> list[str]:
    """Each learned row of a compare.json minus `reference` on their common seeds (issue #20's
    target: the learned policy at least as good as TrivialAugment)."""
    rows = {r["name"]: r["test_acc"] for r in doc["rows"]}
    if reference not in rows:
        return []
    lines = []
    for row in (r for r in doc["rows"] if not r["free"]):
        common = sorted(set(row["test_acc"]) & set(rows[reference]), key=int)
        if len(common) > 1:
            d, se = paired_difference([100 * row["test_acc"][s] for s in common],
                                      [100 * rows[reference][s] for s in common])
            lines += [f"{row['name']} - {reference}: {d:+.2f} +/- {se:.2f} points over {len(common)} seeds "
                      f"({judge(d, se)} at 2 standard errors).", ""]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--compares", default=",".join(COMPARES), help=f"comma-separated, of {','.join(COMPARES)}")
    ap.add_argument("--report", action="store_true", help="only collect what is finished")
    args = ap.parse_args()
    names = [n for n in args.compares.split(",") if n]
    if not names or set(names) - set(COMPARES):
        raise SystemExit(f"--compares: expected a comma-separated subset of {','.join(COMPARES)}, got {args.compares!r}")
    log = ROOT / "runs" / "pay_off.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    for name in names:
        walls = {}
        if not args.report:  # a finished search or compare resumes and trains nothing
            walls["the search"] = run(search_command(COMPARES[name][0]), log)
            walls["the compare"] = run(compare_command(name), log)
        print(f"wrote {collect(name, walls)}")


if __name__ == "__main__":
    main()
