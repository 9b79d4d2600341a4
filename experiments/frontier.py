"""The proxy frontier: how well each cheap child ranks policies, against what it costs (issue #21, item 2)

Successive halving needs a cheap first rung: a child that ranks policies the way the final
regime does for a fraction of today's child's CPU time. This trains the ruler's 30 policies
(`ruler.py`: 24 drawn as the search draws them, 6 anchors) under every proxy below, and scores
each proxy by Spearman's rank correlation with the ruler's mean over its two seeds, with a
bootstrap interval over policies, over all 30 and over the 24 search-space policies.

Every child is scored as the search scores it: val accuracy on 2,000 of the 5,000 val images,
`tiny`'s recipe, bf16 steps where the CPU has them (`precision = "native"`), each policy with
what the ruler trained it with (a policy: pad-crop + flip, then Cutout at half the image side;
the baselines their own recipe). Its seed is a controller batch's (`batch_seed` of search seed
0, rounds 0 and 1): one seed shared by all 30 policies, so a seed's ranking is the paired
reward's ranking. Pairing is not free: a search trains one reference child (no policy, i.e.
the `cutout` baseline's recipe) per batch of 16, so a proxy's cost per policy adds 1/16 of its
`cutout` child's.

The proxies (today's child: 40 epochs on 1,000 train images, 100 per class):
- fewer epochs (20, 10), fewer images (500) or more images for fewer epochs (2,000 for 20);
- `tiny-half`: tiny at half width (autoaug.training.models);
- `16px`: the images resized to 16x16 (`image_size`; the pad and the Cutout scale with them);
- `today@E`: today's child's val accuracy after epoch E of its 40 (`train_model`'s
  `val_epochs`), what a successive-halving rung reads before training on; its cost is the CPU
  time up to that reading;
- `late-E`, `aws-E` (weight sharing, the route issue #21 names "reuse of child training across
  policies"): today's child with the policy (and its recipe) only in its last E epochs. The
  epochs before are a trunk every policy of a batch shares, trained once per batch on the
  reference child's recipe (`late`) or on every sub-policy of the space alike (`aws`, the shared
  stage of Tian et al., "Improving Auto-Augment via Augmentation-Wise Weight Sharing", NeurIPS
  2020). Each child here trains its own copy of the trunk (same seed, same draws, so the same
  weights a shared one would give); its cost counts the tail, plus the trunk once per batch;
- `density`: the search's density reward (`reward.kind = "density"`): 5 fold models trained
  once per search with today's child recipe on the 1,000 child-train images, a policy's score
  their accuracy on their held-out folds augmented by the policy; `density-recipe` the same
  augmented by the policy's whole training recipe (proxy_rank.py's variant). The fold models'
  CPU time is spread over the 64 policies of a default search (experiments/cpu-quick.toml).

CPU seconds are the training process's own (`time.process_time`, one torch thread, data loading
excluded: a search's worker loads the data once), measured while other jobs shared the cores.

Every child and density score is cached in experiments/results/frontier/children.jsonl (one JSON
line each, committed): a killed run resumes, and `--report` rewrites frontier.md and frontier.png
from the cache alone.

    nice -n 10 python experiments/frontier.py [--parallel 2] [--rounds 0 1] [--only PROXY ...] [--report]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import ruler
from hostinfo import describe, load_average
from proxy_rank import whole_recipe
from regimes import DATASET, load_cache, run_jobs

from autoaug.search.density import Fold, density_reward, fold_data, fold_seed
from autoaug.search.search import batch_seed, uniform_tokens
from autoaug.space.policy import Policy
from autoaug.space.specs import resolve
from autoaug.training.config import TrainConfig
from autoaug.training.loop import train_model
from autoaug.training.subsets import device_data

HERE = Path(__file__).resolve().parent
OUT_DIR = HERE / "results" / "frontier"
CACHE = OUT_DIR / "children.jsonl"
SEARCH_SEED = 0
CHILD_SEEDS = tuple(batch_seed(SEARCH_SEED, r) for r in (0, 1))
VAL_SUBSET = 2000
BATCH = 16  # policies per controller batch: one reference child each
BUDGET = 64  # policies of a default search, over which the density fold models are spread
FOLDS = 5
READINGS = (5, 10, 20)
# Where the committed cache came from (update it when the cache is retrained).
RUN_NOTE = ("trained 7 December 2026 in about 70 min wall, two children at a time under `nice`, while three "
            "other jobs shared the two cores: load averages 1.3 to 5.2 during the run; the weight-sharing rows "
            "(`late-*`, `aws-10`, `16px*-late-*`) the same day in a later session, about 35 min wall, two "
            "children at a time with little else running")


@dataclass(frozen=True)
class Child:
    """One proxy child: today's child unless a field says otherwise."""

    spec: str
    seed: int
    epochs: int = 40
    train_subset: int = 1000
    model: str = "tiny"
    image_size: int | None = None
    readings: tuple[int, ...] = ()
    """Epochs after which val accuracy is also read (early readings of this one run)."""
    late: int = 0
    """If > 0: the policy and its recipe only in the last `late` epochs, after a trunk that every
    policy of a batch shares (weight sharing: the trunk is trained once per batch)."""
    trunk: str = "cutout"
    """The trunk's augmentation (a late child's): `cutout` (the reference child's recipe) or
    `uniform` (every sub-policy of the search space alike, `uniform_trunk`, then that recipe)."""

    @property
    def key(self) -> str:
        """What the child trains, as JSON (a policy file by its content, as regimes.Job does)."""
        spec = self.spec
        if spec.endswith(".json") and Path(spec).is_file():
            spec = "sha1:" + hashlib.sha1(Path(spec).read_bytes()).hexdigest()[:12]
        recipe = {"epochs": self.epochs, "model": self.model, "image_size": self.image_size,
                  "precision": "native"}
        late = {"late": self.late, "trunk": self.trunk} if self.late else {}  # the keys cached before stay
        return json.dumps({"spec": spec, "seed": self.seed, "train_subset": self.train_subset,
                           "val_subset": VAL_SUBSET, "recipe": recipe, "readings": list(self.readings), **late},
                          sort_keys=True)


# name -> (Child fields that differ from today's child, the reading epoch or None, what it is)
PROXIES: dict[str, tuple[dict[str, Any], int | None, str]] = {
    "today": ({"readings": READINGS}, None, "today's child: 40 ep, 1,000 img"),
    "20ep": ({"epochs": 20}, None, "20 ep, 1,000 img"),
    "10ep": ({"epochs": 10}, None, "10 ep, 1,000 img"),
    "500img": ({"train_subset": 500}, None, "40 ep, 500 img"),
    "500img-20ep": ({"train_subset": 500, "epochs": 20}, None, "20 ep, 500 img"),
    "2000img-20ep": ({"train_subset": 2000, "epochs": 20}, None, "20 ep, 2,000 img"),
    "tiny-half": ({"model": "tiny-half"}, None, "tiny at half width, 40 ep, 1,000 img"),
    "tiny-half-20ep": ({"model": "tiny-half", "epochs": 20}, None, "tiny at half width, 20 ep, 1,000 img"),
    "16px": ({"image_size": 16}, None, "16x16 images, 40 ep, 1,000 img"),
    "16px-20ep": ({"image_size": 16, "epochs": 20}, None, "16x16 images, 20 ep, 1,000 img"),
    "250img": ({"train_subset": 250}, None, "40 ep, 250 img"),
    "16px-500img": ({"image_size": 16, "train_subset": 500}, None, "16x16 images, 40 ep, 500 img"),
    "tiny-half-16px": ({"model": "tiny-half", "image_size": 16}, None, "tiny at half width, 16x16 images, 40 ep, 1,000 img"),
    **{f"today@{e}": ({"readings": READINGS}, e, f"today's child read after epoch {e} of 40")
       for e in READINGS},
    "late-10": ({"late": 10}, None, "today's child, the policy only in its last 10 epochs (a shared 30-epoch trunk)"),
    "late-20": ({"late": 20}, None, "today's child, the policy only in its last 20 epochs (a shared 20-epoch trunk)"),
    "aws-10": ({"late": 10, "trunk": "uniform"}, None,
               "late-10 with a trunk on every sub-policy of the space alike (Tian et al. 2020's AWS)"),
    "16px-late-10": ({"image_size": 16, "late": 10}, None, "late-10 at 16x16 images"),
    "16px-late-20": ({"image_size": 16, "late": 20}, None, "late-20 at 16x16 images"),
    "16px-late-30": ({"image_size": 16, "late": 30}, None, "the policy in the last 30 epochs, at 16x16 images"),
    "16px-500img-late-20": ({"image_size": 16, "train_subset": 500, "late": 20}, None,
                            "late-20 at 16x16 images on 500 img"),
}
DENSITY = {"density": "the search's density reward (policy alone)",
           "density-recipe": "density reward, policy + pad-crop + flip + Cutout"}
REFERENCE = "cutout"  # the search's reference child: no policy, pad-crop + flip + Cutout


def proxy_child(proxy: str, spec: str, seed: int) -> Child:
    return Child(spec, seed, **PROXIES[proxy][0])


UNIFORM_TRUNK = OUT_DIR / "uniform-trunk.json"
UNIFORM_POLICIES, UNIFORM_SEED = 20, 2027


def uniform_trunk() -> str:
    """The `uniform` trunk's policy file: 20 uniformly random policies of the search space as one
    of 100 sub-policies, one drawn per image: about every op, probability and magnitude alike."""
    if not UNIFORM_TRUNK.is_file():
        tokens = uniform_tokens(UNIFORM_POLICIES, torch.Generator().manual_seed(UNIFORM_SEED))  # (20, T)
        meta = {"source": f"experiments/frontier.py uniform trunk ({UNIFORM_POLICIES} x uniform_tokens, "
                          f"seed {UNIFORM_SEED})"}
        Policy.from_tokens(tokens.flatten().tolist(), meta).save(UNIFORM_TRUNK)
    return str(UNIFORM_TRUNK)


class LateAugment:
    """`trunk` for the first `trunk_steps` batches of a run, then `tail`: one run that trains
    exactly as a shared trunk continued by each policy would (the trunk's batches are the same
    for every policy: same seed, same draws)."""

    def __init__(self, trunk: Callable, tail: Callable, trunk_steps: int) -> None:
        self.trunk, self.tail, self.trunk_steps, self.steps = trunk, tail, trunk_steps, 0

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        self.steps += 1
        return (self.trunk if self.steps <= self.trunk_steps else self.tail)(images, generator)


# --- training ---------------------------------------------------------------------------------


def child_config(child: Child, spec_standard: bool, spec_cutout: int | str) -> TrainConfig:
    return TrainConfig.for_model(child.model, epochs=child.epochs, standard=spec_standard, cutout=spec_cutout,
                                 precision="native", device="cpu")


def train_child(child: Child) -> dict[str, Any]:
    """Train one proxy child; its final val accuracy, the readings, and the CPU seconds of the
    training process up to each (the data loaded before the clock starts)."""
    resolved = resolve(child.spec)
    data = device_data(DATASET, "cpu", child.train_subset, VAL_SUBSET, child.image_size)
    config = child_config(child, resolved.standard, resolved.cutout)
    augment = resolved.augmenter
    trunk_epochs = child.epochs - child.late if child.late else 0
    if child.late:
        # The recipe switches with the policy (`none` trains its tail bare), so the whole recipe is the
        # augmentation and the config adds none.
        trunk = resolve(uniform_trunk() if child.trunk == "uniform" else REFERENCE)
        steps = len(data.train_x) // min(config.batch_size, len(data.train_x))
        augment = LateAugment(whole_recipe(trunk, data.mean), whole_recipe(resolved, data.mean), trunk_epochs * steps)
        config = child_config(child, False, 0)
    started, wall = time.process_time(), time.perf_counter()
    cpu_at: dict[str, float] = {}

    def note(epoch: int, acc: float | None) -> None:
        if acc is not None or epoch + 1 == trunk_epochs:
            cpu_at[str(epoch + 1)] = time.process_time() - started

    _, history = train_model(augment, data, config, child.seed,
                             val_epochs={*child.readings, child.epochs}, on_epoch_end=note)
    readings = {str(e): history[e - 1].val_acc for e in child.readings}
    late = {"trunk_cpu_s": cpu_at[str(trunk_epochs)]} if child.late else {}
    return {"acc": history[-1].val_acc, "cpu_s": time.process_time() - started,
            "wall_s": time.perf_counter() - wall, "readings": readings,
            "reading_cpu_s": {e: cpu_at[e] for e in readings}, **late}


def density_key(spec: str, seed: int, kind: str) -> str:
    return json.dumps({"density": kind, "spec": Child(spec, seed).key, "folds": FOLDS}, sort_keys=True)


def fold_key(k: int) -> str:
    return json.dumps({"density_fold": k, "folds": FOLDS, "search_seed": SEARCH_SEED}, sort_keys=True)


def density_scores(specs: dict[str, str], seeds: Sequence[int], log: Callable[[str], None] = print) -> None:
    """Score every spec with both density rewards on each seed, in this process, appending the
    scores (and the fold models' training cost) to the cache; the fold models are trained only
    if some score is missing."""
    done = load_cache(CACHE)
    todo = [(n, s, kind) for n in specs for s in seeds for kind in DENSITY
            if density_key(specs[n], s, kind) not in done]
    if not todo:
        return
    torch.set_num_threads(1)
    data = device_data(DATASET, "cpu", 1000, VAL_SUBSET)
    config = child_config(Child("none", 0), True, "auto")
    folds = []
    with CACHE.open("a") as out:
        for k in range(FOLDS):
            held = fold_data(data, k, FOLDS)
            started = time.process_time()
            model, _ = train_model(None, held, config, fold_seed(SEARCH_SEED, k))
            if fold_key(k) not in done:
                out.write(json.dumps({"key": fold_key(k), "cpu_s": time.process_time() - started}) + "\n")
            folds.append(Fold(model.eval(), held.val_x, held.val_y))
            log(f"density: fold model {k + 1} of {FOLDS} trained")
        for name, seed, kind in todo:
            resolved = resolve(specs[name])
            augment = resolved.augmenter if kind == "density" else whole_recipe(resolved, data.mean)
            started = time.process_time()
            score = density_reward(augment, folds, data, draws=1, seed=seed)
            out.write(json.dumps({"key": density_key(specs[name], seed, kind), "acc": score,
                                  "cpu_s": time.process_time() - started}) + "\n")
        log(f"density: {len(todo)} scores")


# --- scoring ----------------------------------------------------------------------------------


def child_reading(row: dict[str, Any], proxy: str) -> tuple[float, float, float]:
    """(val accuracy, CPU s, trunk CPU s) of one cached child as `proxy` reads it: for `today@E`
    the reading after epoch E and the CPU time up to it; for a late child its tail's CPU time,
    the trunk's apart (0 for every other child)."""
    reading = PROXIES[proxy][1]
    if reading is not None:
        return row["readings"][str(reading)], row["reading_cpu_s"][str(reading)], 0.0
    trunk = row.get("trunk_cpu_s", 0.0)
    return row["acc"], row["cpu_s"] - trunk, trunk


def proxy_values(rows: dict[str, dict[str, Any]], specs: dict[str, str], proxy: str,
                 seeds: Sequence[int]) -> tuple[dict[str, float], float] | None:
    """(policy -> the proxy's value averaged over `seeds`, CPU s per policy with the reference
    child's share), or None while some child is missing."""
    values, costs, reference, trunks = {}, [], [], []
    for name, spec in specs.items():
        accs = []
        for seed in seeds:
            if proxy in DENSITY:
                row = rows.get(density_key(spec, seed, proxy))
                acc, cpu = (None, None) if row is None else (row["acc"], row["cpu_s"])
            else:
                row = rows.get(proxy_child(proxy, spec, seed).key)
                acc, cpu, trunk = (None, None, 0.0) if row is None else child_reading(row, proxy)
                if trunk:  # a late child: its tail in `cpu`; the trunk once a batch
                    trunks.append(trunk)
            if acc is None:
                return None
            accs.append(acc)
            costs.append(cpu)
            if name == REFERENCE:
                reference.append(cpu)
        values[name] = statistics.mean(accs)
    cost = statistics.mean(costs) + statistics.mean(reference) / BATCH
    if trunks:
        cost += statistics.mean(trunks) / BATCH
    if proxy in DENSITY:
        folds = [rows[fold_key(k)]["cpu_s"] for k in range(FOLDS)]
        cost += sum(folds) / BUDGET
    return values, cost


def kept_by_halving(values: dict[str, float], truth: dict[str, float], names: Sequence[str]) -> int:
    """Of the ruler's best quarter of `names` (6 of 24), how many are in the proxy's better half:
    what a successive-halving rung that keeps half of the policies would not lose."""
    best = sorted(names, key=lambda n: -truth[n])[: len(names) // 4]
    kept = sorted(names, key=lambda n: -values[n])[: len(names) // 2]
    return len(set(best) & set(kept))


def score(seeds: Sequence[int]) -> dict[str, dict[str, Any]]:
    """proxy -> cost, Spearman [95% interval] over all policies and over the search-space ones,
    and the interval of its difference from today's child on the same resamples, for every
    proxy whose children on `seeds` are all cached."""
    specs = ruler.policy_specs()
    truth = {n: statistics.mean(v) for n, v in ruler.load_ruler().items()}
    rows = load_cache(CACHE)
    out = {}
    for proxy in [*PROXIES, *DENSITY]:
        got = proxy_values(rows, specs, proxy, seeds)
        if got is not None:
            out[proxy] = {"values": got[0], "cost": got[1]}
    space = ruler.searchable(list(specs))
    for e in out.values():
        e["kept"] = kept_by_halving(e["values"], truth, space)
    for group, names in {"all": list(specs), "space": space}.items():
        if not out:
            break
        values = np.array([[out[p]["values"][n] for n in names] for p in out])  # (P, n)
        rhos = ruler.bootstrap_rhos([truth[n] for n in names], values)  # (D, P)
        for j, proxy in enumerate(out):
            rho = ruler.spearman(values[j], [truth[n] for n in names])
            out[proxy][group] = (rho, *ruler.interval_of(rhos[:, j]))
            if "today" in out:
                out[proxy][group + "_vs_today"] = ruler.interval_of(rhos[:, j] - rhos[:, list(out).index("today")])
    return out


# --- report -----------------------------------------------------------------------------------


def interval(rho: tuple[float, float, float]) -> str:
    return f"{rho[0]:+.2f} [{rho[1]:+.2f}, {rho[2]:+.2f}]"


def verdict(scores: dict[str, dict[str, Any]], label: str) -> list[str]:
    """What the frontier means for successive halving's first rung, in numbers."""
    if "today" not in scores:
        return [f"Today's child is not trained yet on {label}: no verdict."]
    today = scores["today"]
    cheap = {p: e for p, e in scores.items() if e["cost"] <= today["cost"] / 4}
    good = [p for p, e in cheap.items() if e["space"][0] >= today["space"][0] and e["all"][0] >= today["all"][0]]
    lines = [f"On {label}: today's child costs {today['cost']:.1f} CPU s per policy and ranks the 24 "
             f"search-space policies at {interval(today['space'])} (all 30: {interval(today['all'])}). "
             f"Proxies at <= 1/4 of its cost ({today['cost'] / 4:.1f} CPU s): "
             + (", ".join(f"`{p}` ({e['cost']:.1f} s: {e['space'][0]:+.2f} over 24, {e['all'][0]:+.2f} over 30)"
                          for p, e in sorted(cheap.items(), key=lambda kv: kv[1]["cost"])) or "none") + "."]
    if good:
        lines.append("Ranking no worse than today's child (point estimates over 24 and over 30) at <= 1/4 of "
                     "its cost: " + ", ".join(
                         f"`{p}` (difference over 24 {scores[p]['space'][0] - today['space'][0]:+.2f}, "
                         f"95% paired interval {scores[p]['space_vs_today'][0]:+.2f} to "
                         f"{scores[p]['space_vs_today'][1]:+.2f})" for p in good) + ".")
    else:
        best = max(cheap, key=lambda p: cheap[p]["space"][0], default=None)
        lines.append("None of them ranks as well as today's child on both sets"
                     + (f"; the best over 24, `{best}`, is {cheap[best]['space'][0] - today['space'][0]:+.2f} "
                        f"from it (95% paired interval {cheap[best]['space_vs_today'][0]:+.2f} to "
                        f"{cheap[best]['space_vs_today'][1]:+.2f})." if best else "."))
    close = [p for p, e in scores.items() if p != "today" and e["space_vs_today"][0] <= 0 <= e["space_vs_today"][1]]
    lines.append("Not distinguishable from today's child over the 24 (paired 95% interval of the difference "
                 "includes 0): " + (", ".join(f"`{p}` at {scores[p]['cost'] / today['cost']:.2f} of its cost "
                                              f"({scores[p]['space'][0] - today['space'][0]:+.2f})" for p in
                                              sorted(close, key=lambda p: scores[p]["cost"])) or "none") + ".")
    return lines


def none_rank(values: dict[str, float]) -> int:
    """Where the proxy puts the policy `none` (no augmentation at all), 1 = best: last in the
    ruler; first in a child too short for augmentation to pay off."""
    return 1 + sum(v > values["none"] for v in values.values())


def table(scores: dict[str, dict[str, Any]]) -> list[str]:
    today = scores.get("today", {}).get("cost")
    lines = ["| proxy | what | CPU s per policy | cost / today's | Spearman, all 30 [95% CI] | "
             "Spearman, 24 search-space [95% CI] | minus today's, 24 [95% paired CI] | best 6 of 24 kept by a halving | rank of `none` in 30 |",
             "|---|---|---|---|---|---|---|---|---|"]
    descriptions = {p: d for p, (_, _, d) in PROXIES.items()} | DENSITY
    for proxy, e in sorted(scores.items(), key=lambda kv: kv[1]["cost"]):
        ratio = f"{e['cost'] / today:.2f}" if today else ""
        diff = (f"{e['space'][0] - scores['today']['space'][0]:+.2f} [{e['space_vs_today'][0]:+.2f}, "
                f"{e['space_vs_today'][1]:+.2f}]" if "space_vs_today" in e and proxy != "today" else "")
        lines.append(f"| `{proxy}` | {descriptions[proxy]} | {e['cost']:.1f} | {ratio} | {interval(e['all'])} | "
                     f"{interval(e['space'])} | {diff} | {e['kept']} of 6 | {none_rank(e['values'])} |")
    return lines


def plot(one: dict[str, dict[str, Any]], two: dict[str, dict[str, Any]], path: Path) -> None:
    """Spearman [95% interval] against CPU s per policy, one panel per policy set: every proxy on
    1 seed (open markers), and on the mean of 2 seeds (filled, drawn just right of it) where it
    has both."""
    import matplotlib  # an experiments extra; only the plot needs it

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    fig, axes = plt.subplots(1, 2, figsize=(16, 7.5), sharey=True)
    ceiling = ruler_agreement()
    shown = spread(one)
    line = two if "today" in two else one
    for ax, group, title in zip(axes, ("space", "all"), ("24 search-space policies", "all 30 policies")):
        for n, (proxy, e) in enumerate(sorted(one.items(), key=lambda kv: kv[1]["cost"])):
            colour = "C3" if proxy == "today" else "C2" if proxy.startswith("density") else \
                "C1" if "@" in proxy else "C4" if PROXIES.get(proxy, ({},))[0].get("late") else "C0"
            x = shown[proxy]
            rho, lo, hi = e[group]
            ax.errorbar(x, rho, yerr=[[rho - lo], [hi - rho]], fmt="o", mfc="white", color=colour, capsize=2,
                        alpha=0.6)
            top = rho
            if proxy in two:
                rho, lo, hi = two[proxy][group]
                ax.errorbar(x * 1.025, rho, yerr=[[rho - lo], [hi - rho]], fmt="o", color=colour, capsize=3)
                top = rho
            ax.annotate(proxy, (x, top), textcoords="offset points", xytext=(6, (4, -11, 14)[n % 3]),
                        fontsize=8, color=colour)
        if "today" in line:
            ax.axvline(line["today"]["cost"] / 4, color="grey", ls=":", lw=1)
            ax.axhline(line["today"][group][0], color="C3", ls="--", lw=0.8)
        ax.axhline(ceiling[group], color="black", ls="-.", lw=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xticks([1, 2, 4, 8, 16, 32])
        ax.set_xlabel("CPU seconds per policy (log; reference child's share included;\n"
                      "points within 6% of each other's cost drawn apart)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("Spearman with the final regime (ruler, 2 seeds)")
    fig.suptitle("Proxy frontier: open = 1 seed, filled = mean of 2 seeds (bars: 95% bootstrap over policies); "
                 "red dashed = today's child" + (" (2 seeds)" if line is two else "") + ", dotted = 1/4 of its cost, "
                 "dash-dot = the ruler's seed-vs-seed agreement\n"
                 "blue: smaller or shorter children, orange: early readings of today's child, green: density reward, "
                 "purple: the policy in the last epochs of a shared trunk",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def spread(scores: dict[str, dict[str, Any]], gap: float = 1.06) -> dict[str, float]:
    """proxy -> the x it is drawn at: its cost, nudged right until it is `gap` times the
    previous point's, so that proxies of (nearly) the same cost do not hide each other."""
    shown, last = {}, 0.0
    for proxy, e in sorted(scores.items(), key=lambda kv: kv[1]["cost"]):
        shown[proxy] = last = max(e["cost"], last * gap)
    return shown


def ruler_agreement() -> dict[str, float]:
    """The ruler's seed 0 against its seed 1: roughly what a proxy can reach."""
    r = ruler.load_ruler()
    names = list(r)
    return {"all": ruler.spearman([r[n][0] for n in names], [r[n][1] for n in names]),
            "space": ruler.spearman([r[n][0] for n in ruler.searchable(names)],
                                    [r[n][1] for n in ruler.searchable(names)])}


def report(started: float | None = None) -> str:
    one, two = score(CHILD_SEEDS[:1]), score(CHILD_SEEDS)
    plot(one, two, HERE / "results" / "frontier.png")
    rows = load_cache(CACHE)
    lines = [
        "# The proxy frontier: rank agreement with the ruler against CPU seconds (issue #21, item 2)",
        "",
        f"`python experiments/frontier.py` on {describe('cpu')}"
        + (f"; load average at the end {load_average()}, {(time.time() - started) / 60:.0f} min wall for what "
           "was not cached" if started else "")
        + f"; {len(rows)} cached rows in `experiments/results/frontier/children.jsonl` ({RUN_NOTE}). CPU seconds are each "
        "training process's own (one torch thread, data loading excluded), with other jobs sharing the two "
        "cores: compare them with each other.",
        "",
        "Every proxy scores the ruler's 30 policies (experiments/results/ruler.md) by val accuracy on 2,000 "
        "val images, with the seeds a search's first controller batches use (search seed 0, rounds 0 and 1: "
        "one seed per batch shared by every policy). Spearman is against the ruler's mean over its 2 seeds "
        "(80 epochs on 4,000 images, 10,000 test images); intervals are 95% percentile bootstraps over "
        "policies. CPU s per policy includes 1/16 of the reference child's (one per controller batch of 16); "
        f"the density rewards include 1/{BUDGET} of their {FOLDS} fold models' training (once per search of "
        f"{BUDGET} policies). The ruler agrees with itself (seed 0 vs seed 1) at "
        "{all:+.2f} over 30 and {space:+.2f} over 24: about the most a proxy can reach.".format(**ruler_agreement()),
        "",
        "Columns: *minus today's* is the proxy's Spearman over the 24 minus today's child's, with a 95% "
        "interval from the same bootstrap resamples (the two are correlated: an interval that excludes 0 is a "
        "real difference on these policies); *best 6 of 24 kept by a halving*: of the ruler's 6 best "
        "search-space policies, how many are in the proxy's better 12, i.e. survive a successive-halving rung "
        "that keeps half (chance: 3); *rank of `none`*: where the proxy puts training without any augmentation "
        "(the ruler: 30th of 30; a child too short for augmentation to pay off puts it first). A child trains "
        "on whole batches of 128 (the last partial batch of an epoch is dropped), so 40 epochs on 500 images "
        "are 120 steps and on 250 images 40 steps, against 280 on 1,000.",
        "",
    ]
    for scores, label in ((one, "1 seed (round 0's)"), (two, "the mean of 2 seeds (rounds 0 and 1)")):
        if not scores:
            continue
        lines += [f"## {label[0].upper() + label[1:]}", "", *table(scores), "", *verdict(scores, label), ""]
        if scores is one and (other := score(CHILD_SEEDS[1:2])):
            lines += ["How much one seed moves it: on round 1's seed alone, Spearman over the 24 (over 30) is "
                      + ", ".join(f"`{p}` {e['space'][0]:+.2f} ({e['all'][0]:+.2f})"
                                  for p, e in sorted(other.items(), key=lambda kv: kv[1]["cost"])) + ".", ""]
    lines += [
        "![frontier](frontier.png)",
        "",
        "What it means for successive halving: a first rung is worth having only if it ranks policies no "
        "worse than today's child for a fraction of its cost; the verdicts above say which proxy, if any, "
        "does at <= 1/4 of the cost. `today@E` is exactly such a rung's reading (the same run continues for "
        "the policies that survive it), so its cost counts only the epochs before the reading."
        + readings_note(two if "today@5" in two else one),
        "",
        *late_note(two if "today" in two else one),
        "Spearman over all policies is not what a search needs; whether the policy it keeps from a batch is "
        "good, per CPU second, is: [halving.md](halving.md) (`experiments/halving.py`) replays controller "
        "batches on these caches, a cheap rung promoting a few to today's child against today's child on an "
        "equal-cost random subset.",
        "",
    ]
    return "\n".join(lines)


def readings_note(scores: dict[str, dict[str, Any]]) -> str:
    """One sentence on what the early readings rank, from the numbers."""
    early = [p for p in PROXIES if "@" in p and p in scores]
    if not early:
        return ""
    text = (" Read early, today's child ranks the 24 at " + ", ".join(
        f"{scores[p]['space'][0]:+.2f} (`{p}`, `none` ranked {none_rank(scores[p]['values'])} of 30)" for p in early)
        + (f", against {scores['today']['space'][0]:+.2f} after its 40 epochs" if "today" in scores else ""))
    if all(none_rank(scores[p]["values"]) <= 5 for p in early):
        text += (": early in training the weakest augmentation leads, so a rung that reads the child early "
                 "would keep the policies that learn fastest, not those that pay off by the end")
    return text + "."


def late_note(scores: dict[str, dict[str, Any]]) -> list[str]:
    """What weight sharing buys, from the numbers: each late proxy against today's child."""
    late = [p for p in PROXIES if PROXIES[p][0].get("late") and p in scores]
    if not late or "today" not in scores:
        return []
    today = scores["today"]
    return ["Weight sharing (`late-E`, `aws-E`: the policy only in the last E epochs of a trunk the batch "
            "trains once): " + ", ".join(
                f"`{p}` ranks the 24 at {scores[p]['space'][0]:+.2f} (minus today's child "
                f"{scores[p]['space'][0] - today['space'][0]:+.2f}, 95% paired interval "
                f"{scores[p]['space_vs_today'][0]:+.2f} to {scores[p]['space_vs_today'][1]:+.2f}) at "
                f"{scores[p]['cost'] / today['cost']:.2f} of its cost, `none` ranked {none_rank(scores[p]['values'])} "
                "of 30" for p in late) + ". A shared trunk keeps the search's own child (its images, side and 40 "
            "epochs) and pays per policy only for the epochs where the policies differ.", ""]


def train(proxies: Sequence[str], rounds: Sequence[int], parallel: int) -> None:
    """Train (or score) `proxies` in the order given on each round's seed, round by round:
    consecutive child proxies share one pool of workers, a density proxy runs in this process."""
    specs = ruler.policy_specs()
    for r in rounds:
        seed = CHILD_SEEDS[r]
        pending: dict[str, Child] = {}
        for proxy in [*proxies, None]:
            if proxy in PROXIES:
                pending.update({(c := proxy_child(proxy, spec, seed)).key: c for spec in specs.values()})
                continue
            if pending:
                run_jobs(list(pending.values()), CACHE, parallel, train=train_child)
                pending = {}
            if proxy in DENSITY:
                density_scores(specs, [seed])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", type=int, default=2, help="children at a time (one torch thread each)")
    ap.add_argument("--rounds", type=int, nargs="+", default=[0, 1], choices=range(len(CHILD_SEEDS)),
                    help="the controller rounds whose seeds to train, in this order (default 0 1)")
    ap.add_argument("--only", nargs="+", metavar="PROXY",
                    help="train only these proxies, in this order (default: all, in the table's order)")
    ap.add_argument("--report", action="store_true", help="only rewrite frontier.md and frontier.png from the cache")
    args = ap.parse_args()
    torch.set_num_threads(1)  # as every child (the machine line reports it), --report too
    started = None
    if not args.report:
        proxies = args.only or [*PROXIES, *DENSITY]
        unknown = sorted(set(proxies) - set(PROXIES) - set(DENSITY))
        if unknown:
            ap.error(f"unknown proxies {', '.join(unknown)}; expected any of {', '.join([*PROXIES, *DENSITY])}")
        started = time.time()
        train(proxies, args.rounds, args.parallel)
    text = report(started)
    (HERE / "results" / "frontier.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
