"""Does successive halving pay at equal cost? An offline simulation on the cached frontier (issue #21)

The frontier (frontier.py) scores cheap children by Spearman over all policies. A search cares
about something narrower: whether the policy it keeps from a controller batch is good, per CPU
second. This replays controller batches from the caches alone (no training): batches of 16 drawn
without replacement from the ruler's 24 search-space policies, each batch on one of the two seeds
a search's first batches use (frontier.CHILD_SEEDS), every child's value read from
experiments/results/frontier/children.jsonl, and the picked policy judged by the ruler's 2-seed
mean test accuracy (experiments/results/ruler/children.jsonl). Regret = best ruler score in the
batch minus the picked one's, in points.

Strategies and their CPU cost per batch (p_X: a proxy's mean CPU s per policy over the 30 policies
and 2 seeds, r_X: its reference child's, as frontier.py measures them; c_X = p_X + r_X / 16 is
frontier.md's "CPU s per policy"):
- `today`: today's child on all 16, the best kept: 16 p_today + r_today = 16 c_today;
- `today on k`: today's child on a random k of the 16 (fractional k: a mixture of the two
  neighbouring k with that mean, computed exactly), k set so that the cost equals a halving's;
- `P -> today, m`: proxy P on all 16, its best m promoted to today's child on the same seed, the
  best of those by today's child kept. autoaug.search.fidelity trains one reference child per rung,
  so this costs 16 p_P + r_P + m p_today + r_today. For `today@E` the rung is a reading of
  today's own run, which the promoted policies and the reference continue:
  16 p_today@E + m (p_today - p_today@E) + r_today;
- weight sharing (frontier.py's `late-E` and `aws-E` children, the policy in the last E epochs of
  a trunk every policy of the batch shares): `L alone`, L as the search's child, 16 p_L + r_L +
  t_L (p_L, r_L: the tails; t_L: the trunk, once per batch); `P -> L, m`, halving with L as the
  top rung: 16 p_P + r_P + t_P + m p_L + r_L + t_L (t_P where P shares a trunk too);
- `random`: one policy at random, cost 0: the floor.

Ties are broken to the lower slot, as fidelity.promote does; a batch's slots are in random order.

Error bars: the standard error over the simulated batches treats them as independent, but all are
drawn from one fixed set of 24 policies, so it is optimistic. The honest interval is a bootstrap
over policies: resample the 24 with replacement, then draw the batches from the resample; 95%
percentile intervals, and paired ones for differences between strategies (same resamples, same
batches).

    python experiments/halving.py      # rewrites experiments/results/halving.md from the caches
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import frontier
import ruler
from hostinfo import describe
from regimes import load_cache

HERE = Path(__file__).resolve().parent
OUT = HERE / "results" / "halving.md"
N = 16  # policies per controller batch
BATCHES = 4000  # simulated batches per seed for the point estimates
BOOT = 1000  # bootstrap resamples of the 24 policies
BOOT_BATCHES = 400  # batches per seed within each resample
SEED = 21
PROXIES = ("16px", "tiny-half", "tiny-half-16px", "16px-500img", "10ep", "today@10")
PROMOTED = (2, 4, 8)
# Weight sharing (frontier.py's `late-E`, `aws-E`): as the search's child on its own, and as the
# top rung above a cheap rung (itself with or without a shared trunk).
LATE = ("late-10", "aws-10", "late-20", "16px-late-10", "16px-late-20", "16px-late-30")
LATE_HALVING = (("16px-500img", "late-10"), ("16px-500img", "late-20"), ("16px-500img-late-20", "late-20"),
                ("16px-late-20", "late-20"))


# --- costs and values from the caches ------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """A proxy's CPU s per policy (mean over the 30 policies and both seeds), per reference child,
    and per batch for a trunk the batch's children share (a `late` proxy's; its children's own
    CPU s are their tails)."""

    policy: float
    reference: float
    trunk: float = 0.0

    @property
    def per_policy(self) -> float:
        """frontier.md's "CPU s per policy": the reference's and the trunk's share of a batch of 16 included."""
        return self.policy + (self.reference + self.trunk) / frontier.BATCH

    @property
    def per_batch(self) -> float:
        """What a batch pays once at this rung: its reference child and its trunk."""
        return self.reference + self.trunk


def child_value(rows: dict, proxy: str, spec: str, seed: int) -> tuple[float, float]:
    """(val accuracy, CPU s) of one cached child (a `late` child's tail alone), or of the reading
    of today's run for `today@E`."""
    return frontier.child_reading(rows[frontier.proxy_child(proxy, spec, seed).key], proxy)[:2]


def proxy_cost(rows: dict, specs: dict[str, str], proxy: str) -> Cost:
    """The proxy's cost as frontier.proxy_values counts it, split into policy and reference."""
    seeds = frontier.CHILD_SEEDS
    policy = statistics.mean(child_value(rows, proxy, spec, s)[1] for spec in specs.values() for s in seeds)
    reference = statistics.mean(child_value(rows, proxy, specs[frontier.REFERENCE], s)[1] for s in seeds)
    trunks = [frontier.child_reading(rows[frontier.proxy_child(proxy, spec, s).key], proxy)[2]
              for spec in specs.values() for s in seeds]
    return Cost(policy, reference, statistics.mean(trunks))


def load() -> tuple[list[str], np.ndarray, dict[str, np.ndarray], dict[str, Cost]]:
    """(the 24 search-space policies, their ruler scores in points (24,), proxy -> values (2 seeds,
    24), proxy -> cost), all read from the caches."""
    specs = ruler.policy_specs()
    rows = load_cache(frontier.CACHE)
    scores = ruler.load_ruler()
    names = ruler.searchable(list(specs))
    truth = np.array([100 * statistics.mean(scores[n]) for n in names])
    values, costs = {}, {}
    for proxy in dict.fromkeys(("today", *PROXIES, *LATE, *(p for pair in LATE_HALVING for p in pair))):
        values[proxy] = np.array([[child_value(rows, proxy, specs[n], s)[0] for n in names]
                                  for s in frontier.CHILD_SEEDS])
        costs[proxy] = proxy_cost(rows, specs, proxy)
    return names, truth, values, costs


# --- the strategies ------------------------------------------------------------------------------


def order(values: np.ndarray) -> np.ndarray:
    """Slots of each batch (row) from best to worst, ties to the lower slot (fidelity.promote's rule)."""
    return np.argsort(-values, axis=-1, kind="stable")


def take(a: np.ndarray, index: np.ndarray) -> np.ndarray:
    return np.take_along_axis(a, index, axis=-1)


def pick_best(values: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """The ruler score of each batch's best by `values`."""
    return take(truth, order(values)[:, :1])[:, 0]


def pick_halving(cheap: np.ndarray, today: np.ndarray, truth: np.ndarray, m: int) -> np.ndarray:
    """The ruler score of the policy kept when the best m by `cheap` go on to today's child; ties
    at today's child go to the lower slot, as in `pick_best` (so m = 16 is `today`)."""
    up = np.sort(order(cheap)[:, :m], axis=-1)
    return take(truth, take(up, order(take(today, up))[:, :1]))[:, 0]


def subset_weights(k: float, n: int = N) -> np.ndarray:
    """P(the i-th best of n is the best of a random k-subset), i = 0..n-1; a fractional k mixes
    floor(k) and ceil(k) so that the mean subset size is k."""
    lo = int(np.floor(k))
    frac = k - lo

    def exact(j: int) -> np.ndarray:
        if j <= 0:
            return np.zeros(n)
        return np.array([math.comb(n - 1 - i, j - 1) / math.comb(n, j) for i in range(n)])

    return (1 - frac) * exact(lo) + frac * exact(min(lo + 1, n))


def pick_subset(today: np.ndarray, truth: np.ndarray, k: float) -> np.ndarray:
    """The expected ruler score of the best by today's child of a random k of each batch."""
    return take(truth, order(today)) @ subset_weights(k)


def top3_subset(today: np.ndarray, truth: np.ndarray, k: float) -> np.ndarray:
    hit = take(truth, order(today)) >= np.sort(truth, axis=-1)[:, -3:-2]
    return hit.astype(float) @ subset_weights(k)


@dataclass(frozen=True)
class Strategy:
    name: str
    cost: float  # CPU s per batch
    screened: int  # policies of the batch that some child scores
    proxy: str | None = None  # halving: the rung-0 proxy
    m: int = 0  # halving: policies promoted
    top: str = "today"  # halving: the child the promoted train at (the proxy itself: that child alone)
    k: float | None = None  # today's child on a random k


def strategies(costs: dict[str, Cost]) -> list[Strategy]:
    """`today`, `random`, and each halving followed by its equal-cost `today on k`."""
    t = costs["today"]
    out = [Strategy("today", N * t.policy + t.reference, N, k=N), Strategy("random", 0.0, 0, k=1)]
    for proxy in PROXIES:
        c = costs[proxy]
        for m in PROMOTED:
            if "@" in proxy:
                cost = N * c.policy + m * (t.policy - c.policy) + t.reference
            else:
                cost = N * c.policy + c.reference + m * t.policy + t.reference
            out.append(Strategy(f"`{proxy}` -> today, m = {m}", cost, N, proxy, m))
            out.append(control(cost, t))
    for late in LATE:
        c = costs[late]
        out.append(Strategy(f"`{late}` alone", N * c.policy + c.per_batch, N, late, N, late))
        out.append(control(out[-1].cost, t))
    for rung0, late in LATE_HALVING:
        c, r = costs[late], costs[rung0]
        for m in PROMOTED[:2]:
            cost = N * r.policy + r.per_batch + m * c.policy + c.per_batch
            out.append(Strategy(f"`{rung0}` -> `{late}`, m = {m}", cost, N, rung0, m, late))
            out.append(control(cost, t))
    return out


def control(cost: float, t: Cost) -> Strategy:
    """Today's child on a random k of the batch at `cost`: a strategy's equal-cost control."""
    k = min(N, max(1.0, (cost - t.reference) / t.policy))
    return Strategy(f"today on k = {k:.1f}", k * t.policy + t.reference, int(round(k)), k=k)


def simulate(s: Strategy, values: dict[str, np.ndarray], truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(regret, 1 if a ruler top-3 of its batch was kept) per batch; `values` and `truth` are
    (batches, N) arrays of one seed's children and the ruler."""
    best = truth.max(axis=-1)
    third = np.sort(truth, axis=-1)[:, -3]
    today = values["today"]
    if s.name == "random":
        return best - truth.mean(axis=-1), (truth >= third[:, None]).mean(axis=-1)
    if s.proxy is not None:
        picked = pick_halving(values[s.proxy], values[s.top], truth, s.m)
        return best - picked, (picked >= third).astype(float)
    return best - pick_subset(today, truth, s.k), top3_subset(today, truth, s.k)


def draw_batches(rng: np.random.Generator, count: int, pool: int = 24) -> np.ndarray:
    """(count, N) slots into the pool: N without replacement each, in random order."""
    return rng.random((count, pool)).argsort(axis=1)[:, :N]


def run(plan: list[Strategy], values: dict[str, np.ndarray], truth: np.ndarray, batches: np.ndarray,
        policies: np.ndarray) -> np.ndarray:
    """(strategies, 2, seeds x batches): regret and top-3 hit of each strategy on each batch of
    each seed, the batches indexing into `policies` (the 24, or a bootstrap resample of them)."""
    idx = policies[batches]  # (B, N) policy indices
    out = np.empty((len(plan), 2, len(frontier.CHILD_SEEDS) * len(batches)))
    for j, s in enumerate(plan):
        parts = [simulate(s, {p: v[seed][idx] for p, v in values.items()}, truth[idx])
                 for seed in range(len(frontier.CHILD_SEEDS))]
        out[j, 0] = np.concatenate([r for r, _ in parts])
        out[j, 1] = np.concatenate([h for _, h in parts])
    return out


def evaluate(plan, values, truth) -> dict[str, np.ndarray]:
    """Point estimates on the 24 (mean regret, its standard error over batches, top-3 rate) and
    the bootstrap over policies (BOOT, strategies) of mean regret."""
    rng = np.random.default_rng(SEED)
    everyone = np.arange(len(truth))
    point = run(plan, values, truth, draw_batches(rng, BATCHES), everyone)
    boot_batches = draw_batches(rng, BOOT_BATCHES)
    boot = np.empty((BOOT, len(plan)))
    for b in range(BOOT):
        resample = rng.integers(0, len(truth), len(truth))
        boot[b] = run(plan, values, truth, boot_batches, resample)[:, 0].mean(axis=-1)
    regret = point[:, 0]
    return {"regret": regret.mean(-1), "se": regret.std(-1, ddof=1) / np.sqrt(regret.shape[-1]),
            "top3": point[:, 1].mean(-1), "boot": boot}


# --- report --------------------------------------------------------------------------------------


def ci(a: np.ndarray) -> str:
    lo, hi = np.quantile(a, [0.025, 0.975])
    return f"[{lo:+.2f}, {hi:+.2f}]"


def report(plan: list[Strategy], res: dict[str, np.ndarray], costs: dict[str, Cost], values: dict[str, np.ndarray],
           truth: np.ndarray) -> str:
    today = res["regret"][0]
    t_cost = plan[0].cost
    rows = []
    for j, s in enumerate(plan):
        vs_today = "" if j == 0 else f"{res['regret'][j] - today:+.2f} {ci(res['boot'][:, j] - res['boot'][:, 0])}"
        vs_control = ""
        if s.proxy is not None:
            vs_control = (f"{res['regret'][j] - res['regret'][j + 1]:+.2f} "
                          f"{ci(res['boot'][:, j] - res['boot'][:, j + 1])}")
        rate = f"{(s.screened / s.cost) / (N / t_cost):.2f}" if s.cost else ""
        rows.append(f"| {s.name} | {s.cost:.0f} | {s.cost / t_cost:.2f} | {rate} | {res['regret'][j]:.2f} "
                    f"± {res['se'][j]:.3f} | {ci(res['boot'][:, j])[1:-1].replace('+', '')} | "
                    f"{res['top3'][j]:.2f} | {vs_today} | {vs_control} |")
    t = costs["today"]
    lines = [
        "# Does successive halving pay at equal cost? (issue #21)",
        "",
        f"`python experiments/halving.py` on {describe('cpu')}. **No training was done**: every number is read from "
        "the ruler's and the frontier's caches (experiments/results/ruler/children.jsonl, "
        "experiments/results/frontier/children.jsonl), so a rerun regenerates this file exactly (on another "
        "machine, all but this line).",
        "",
        f"Controller batches of {N} drawn without replacement from the ruler's 24 search-space policies "
        f"({BATCHES} batches on each of the 2 seeds a search's first batches use; a batch shares one seed). "
        "Each strategy keeps one policy; its **regret** is the best ruler score in the batch minus the kept "
        "policy's, in points of the ruler's 2-seed mean test accuracy (80 epochs on 4,000 images; the 24 span "
        f"{truth.min():.2f} to {truth.max():.2f}). *top 3*: how often the kept policy is one of the ruler's 3 best "
        "of its batch.",
        "",
        f"Costs per batch, from the frontier's CPU s (shared cores, one thread): today's child {t.policy:.1f} s "
        f"per policy and {t.reference:.1f} s for the batch's reference child, so `today` costs "
        f"{N} x {t.policy:.1f} + {t.reference:.1f} = {t_cost:.0f} s. A halving `P -> today, m` trains P on all "
        f"{N}, then its best m by P (ties to the lower slot) with today's child on the same seed, and keeps the "
        "best of those; autoaug.search.fidelity trains one reference child per rung, so it costs "
        f"{N} p_P + r_P + m p_today + r_today. For `today@10` the rung is today's run read after epoch 10 "
        "(frontier.md: its cost is the CPU time up to the reading); the promoted policies and the reference "
        "continue that run, so it costs 16 p_today@10 + m (p_today - p_today@10) + r_today. This assumes a "
        "rung can resume a run, which `[fidelity]` does not do (its rungs train from scratch); a rung can set "
        "`epochs`, `train_subset` and `image_size`, not the model, so `tiny-half*` and `today@10` say whether "
        "adding that would be worth it. "
        f"Weight sharing (frontier.md's `late-E`, `aws-E`: the policy in the last E epochs of a trunk the batch "
        f"shares): `L alone` is L as the search's child, {N} p_L + r_L + t_L (t_L: the trunk, trained once "
        f"per batch; p_L and r_L the tails); `P -> L, m` promotes to L instead of today's child, "
        f"{N} p_P + r_P + t_P + m p_L + r_L + t_L (t_P: P's own trunk where it has one). The search runs "
        "`16px-500img -> late-E, m` as `--set fidelity.trunk=0,E` (autoaug.search.trunks, "
        "experiments/results/search_quality-cpu-trunk.md); `L alone` is no `[fidelity]` schedule, whose top rung "
        "is the search's own child. "
        "`today on k` is the equal-cost control: today's child on a random k of the batch (a fractional k "
        "mixes the two neighbouring sizes, its expectation computed exactly). *policies per CPU h* is the "
        "number of policies of a batch that some child scores, per CPU second, relative to `today`.",
        "",
        "Error bars: *± SE* is the standard error over the simulated batches and seeds; all are drawn from the "
        "same 24 policies, so it is optimistic. The 95% intervals are the honest ones: a bootstrap over "
        f"policies ({BOOT} resamples of the 24 with replacement, {BOOT_BATCHES} batches on each seed within "
        "each), paired for the differences (same resamples, same batches).",
        "",
        "| strategy | CPU s per batch | cost / today's | policies per CPU h / today's | regret, points ± SE "
        "| regret 95% CI (bootstrap over policies) | top 3 | regret minus `today`'s [95% paired CI] "
        "| regret minus the equal-cost `today on k` below [95% paired CI] |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        sweep(values, truth, costs),
        "",
        *conclusion(plan, res),
        "",
    ]
    return "\n".join(lines)


def sweep(values: dict[str, np.ndarray], truth: np.ndarray, costs: dict[str, Cost]) -> str:
    """One line: today's child on k of the batch for every even k, the equal-cost controls' curve."""
    rng = np.random.default_rng(SEED)
    batches = draw_batches(rng, BATCHES)
    t = costs["today"]
    full = N * t.policy + t.reference
    plan = [Strategy(f"k{k}", k * t.policy + t.reference, k, k=k) for k in range(2, N + 1, 2)]
    regret = run(plan, values, truth, batches, np.arange(len(truth)))[:, 0].mean(-1)
    return ("Today's child on a random k of the batch, regret in points (cost / today's): " + ", ".join(
        f"k = {s.k}: {r:.2f} ({s.cost / full:.2f})" for s, r in zip(plan, regret)) + ".")


def conclusion(plan: list[Strategy], res: dict[str, np.ndarray]) -> list[str]:
    """The two answers, from the numbers."""
    boot, reg = res["boot"], res["regret"]
    halving = [j for j, s in enumerate(plan) if s.proxy is not None]
    better = [j for j in halving if np.quantile(boot[:, j] - boot[:, j + 1], 0.975) < 0]
    worse = [j for j in halving if np.quantile(boot[:, j] - boot[:, j + 1], 0.025) > 0]
    ahead = [j for j in halving if reg[j] < reg[j + 1]]
    groups: dict[str, list[int]] = {}
    for j in halving:
        groups.setdefault(plan[j].name.split(", m = ")[0], []).append(j)
    lines = [
        f"**At equal cost.** Of the {len(halving)} schedules (halving, and the weight-sharing children alone), "
        f"{len(ahead)} have a lower mean regret than today's child on an equal-cost random subset; the "
        f"bootstrap over policies separates {len(better)} as better ({', '.join(plan[j].name for j in better) or 'none'}) "
        f"and {len(worse)} as worse ({', '.join(plan[j].name for j in worse) or 'none'}). Regret minus the "
        f"equal-cost control, for m = {', '.join(map(str, PROMOTED))} where a schedule promotes: " + "; ".join(
            f"{name} " + ", ".join(f"{reg[j] - reg[j + 1]:+.2f}" for j in js) for name, js in groups.items())
        + " (negative: the schedule keeps the better policy).",
    ]
    t_cost, t_reg = plan[0].cost, reg[0]
    no_worse = [j for j in halving if reg[j] <= t_reg]
    not_sep = [j for j in halving if np.quantile(boot[:, j] - boot[:, 0], 0.025) <= 0]

    def cheapest(js: list[int]) -> str:
        if not js:
            return "none"
        j = min(js, key=lambda i: plan[i].cost)
        return (f"{plan[j].name} at {plan[j].cost / t_cost:.2f} of today's cost, i.e. "
                f"{t_cost / plan[j].cost:.1f}x the policies per CPU hour (regret {reg[j]:.2f} against "
                f"today's {t_reg:.2f})")

    lines += [
        "",
        f"**Throughput at today's regret.** `today` keeps a policy {t_reg:.2f} points below its batch's best "
        f"(random: {reg[1]:.2f}). The cheapest halving schedule with a mean regret no higher than today's: "
        f"{cheapest(no_worse)}. The cheapest that the bootstrap over policies does not separate as worse than today's: "
        f"{cheapest(not_sep)}. The cheapest that the bootstrap separates as better than today's child on an "
        f"equal-cost random subset: {cheapest(better)}. The issue's target is 4x (a cost of 0.25 per batch); "
        + ("no schedule here reaches it with a regret no higher than today's."
           if not [j for j in no_worse if plan[j].cost <= t_cost / 4] else "reached by some schedule above.")
        + " The 24 policies fix how far any of this generalises: a batch here is 16 of the same 24, so "
        "every number is about these policies, and the intervals are wide.",
    ]
    return lines


def main() -> None:
    torch.set_num_threads(1)  # nothing here trains; one thread so the machine line is the same everywhere
    names, truth, values, costs = load()
    plan = strategies(costs)
    res = evaluate(plan, values, truth)
    text = report(plan, res, costs, values, truth)
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
