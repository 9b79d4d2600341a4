"""Which cheap child ranks policies like the final regime? (issue #10, item 5)

The final regime is `tiny` trained 80 epochs on the 4,000 reduced CIFAR-10 train images with
the policy, pad-crop + flip and Cutout 16, scored on the 10,000 test images: there,
augmentation pays off (REFERENCE.md). A search cannot afford it per policy (about 100 s per
child on a core), so it scores policies with a cheap proxy child. A proxy is good when it
ranks policies as the final regime does. This trains 15 policies in the final regime (seed 0)
and under each proxy (seeds 0 and 1, or seed 0 for the longer ones; the same seeds for every policy, so the mean over seeds
ranks like the paired reward), and reports Spearman's rank correlation between each proxy
and the final regime, over all 15 and over the 6 random policies of the search space alone
(the policies a search actually compares), with each proxy's cost per child.

The policies: the baselines none / standard / cutout, the published AutoAugment CIFAR-10 and
SVHN policies, TrivialAugment, three RandAugment points, and 6 policies drawn uniformly from the
search space (5 sub-policies of 2 ops, what one controller sample is). Policies get Cutout 16
in the final regime (as `autoaug train` gives every policy).

The proxies (val accuracy on 2,000 of the val images):
- `8ep` : the search's child before this experiment: 2,000 train images, 8 epochs, policies
  without Cutout;
- `8ep+cutout` : the same with the final regime's recipe (Cutout 16 after every policy);
- `24ep+cutout` : 2,000 images, 24 epochs, Cutout after policies;
- `1000img-40ep+cutout` : 1,000 images (100 per class), 40 epochs, Cutout after policies: the
  same work as 2,000 images for 20 epochs, but a child that overfits, as the final regime does
  without augmentation;
- `density` : Fast AutoAugment's density matching (autoaug.search.density): 5 fold models
  trained once with the `8ep` recipe and no policy on the 2,000 images; a policy's score is
  their accuracy on their held-out folds augmented by the whole training recipe (policy,
  pad-crop + flip, Cutout).

Everything is cached in runs/proxy_rank/ (JSON lines; a killed run resumes).

    python experiments/proxy_rank.py [--parallel 2] [--out experiments/results/proxy_rank.md]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from hostinfo import describe, load_average
from regimes import DATASET, FINAL_EPOCHS, Job, final_job, run_jobs, spearman

from autoaug.search.density import Fold, density_reward, fold_data, fold_seed
from autoaug.search.search import uniform_tokens
from autoaug.space.policy import Policy
from autoaug.space.pipeline import cutout_pixels
from autoaug.space.specs import PolicySpec, resolve
from autoaug.training.config import TrainConfig
from autoaug.training.loop import Augment, cutout, pad_crop_flip, train_model
from autoaug.training.subsets import device_data

NAMED = ["none", "standard", "cutout", "autoaugment-cifar10", "autoaugment-svhn", "trivialaugment",
         "randaugment:N=1,M=9", "randaugment:N=2,M=9", "randaugment:N=2,M=14"]
RANDOM_POLICIES = 6
SUBSET = 2000
PROXIES = {  # name -> (recipe on top of tiny's, Cutout after policies, seeds, train images)
    "8ep": ({"epochs": 8}, False, (0, 1), SUBSET),
    "8ep+cutout": ({"epochs": 8}, True, (0, 1), SUBSET),
    "24ep+cutout": ({"epochs": 24}, True, (0,), SUBSET),
    "1000img-40ep+cutout": ({"epochs": 40}, True, (0,), 1000),
}
FINAL_SEED = 0


def policy_specs(runs: Path) -> dict[str, str]:
    """name -> spec; the random policies are written to runs/policies/random-K.json."""
    specs = {name: name for name in NAMED}
    tokens = uniform_tokens(RANDOM_POLICIES, torch.Generator().manual_seed(2026))
    (runs / "policies").mkdir(parents=True, exist_ok=True)
    for k, t in enumerate(tokens):
        policy = Policy.from_tokens(t.tolist(), {"source": f"proxy_rank.py random policy {k} (seed 2026)"})
        specs[f"random-{k}"] = str(policy.save(runs / "policies" / f"random-{k}.json"))
    return specs


def proxy_job(spec: str, proxy: str, seed: int) -> Job:
    recipe, policy_cutout, _, train_images = PROXIES[proxy]
    return Job(spec, recipe, seed, train_images, SUBSET, score="val", policy_cutout=policy_cutout)


def density_scores(specs: dict[str, str], log) -> tuple[dict[str, float], float]:
    """Density-matching score of every spec's whole training augmentation; and CPU seconds
    per policy."""
    torch.set_num_threads(1)
    data = device_data(DATASET, "cpu", SUBSET, SUBSET)
    config = TrainConfig(epochs=8, device="cpu")
    folds = []
    for k in range(5):
        held = fold_data(data, k, 5)
        model, _ = train_model(None, held, config, fold_seed(0, k))
        folds.append(Fold(model.eval(), held.val_x, held.val_y))
    log("density: 5 fold models trained")
    scores, started = {}, time.process_time()
    for name, spec in specs.items():
        scores[name] = density_reward(whole_recipe(resolve(spec), data.mean), folds, data, draws=1, seed=0)
    return scores, (time.process_time() - started) / len(specs)


def whole_recipe(resolved: PolicySpec, mean: torch.Tensor) -> Augment:
    """The spec's whole training augmentation as one batched function of uint8 images: the
    policy, then pad-crop + flip and Cutout where the spec trains with them (density matching
    scored on what the child would train on, not on the policy alone)."""

    def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if resolved.augmenter is not None:
            x = resolved.augmenter(x, g)
        # Training pads and cuts out after normalising, so its fill is the mean pixel, not
        # black: centre on the mean here too (evaluate() normalises float pixels the same).
        centre = mean.view(1, -1, 1, 1)
        x = x.float() - centre
        if resolved.standard:
            x = pad_crop_flip(x, g)
        side = cutout_pixels(resolved.cutout, x.shape[2:])
        return (cutout(x, side, g) if side else x) + centre

    return augment


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parallel", type=int, default=2, help="children at a time (one torch thread each)")
    ap.add_argument("--runs", default="runs/proxy_rank")
    ap.add_argument("--final-cache", default="runs/final/children.jsonl",
                    help="final-regime children, shared with search_quality.py")
    ap.add_argument("--out", default="experiments/results/proxy_rank.md")
    args = ap.parse_args()
    runs = Path(args.runs)
    specs = policy_specs(runs)
    started = time.time()

    finals = {name: final_job(spec, FINAL_SEED) for name, spec in specs.items()}
    proxies = {(name, proxy, seed): proxy_job(spec, proxy, seed)
               for name, spec in specs.items() for proxy in PROXIES for seed in PROXIES[proxy][2]}
    final_rows = run_jobs(list(finals.values()), Path(args.final_cache), args.parallel)
    proxy_rows = run_jobs(list(proxies.values()), runs / "children.jsonl", args.parallel)
    density, density_cpu = density_scores(specs, print)

    final = {name: final_rows[job.key]["acc"] for name, job in finals.items()}
    table = {name: {proxy: statistics.mean(proxy_rows[proxies[name, proxy, s].key]["acc"] for s in PROXIES[proxy][2])
                    for proxy in PROXIES} | {"density": density[name]}
             for name in specs}
    cost = {proxy: statistics.mean(proxy_rows[proxies[name, proxy, s].key]["cpu_s"]
                                   for name in specs for s in PROXIES[proxy][2]) for proxy in PROXIES}
    cost["density"] = density_cpu
    final_cost = statistics.mean(row["cpu_s"] for row in final_rows.values())
    columns = [*PROXIES, "density"]
    searchable = [name for name in specs if name.startswith("random-")]
    rho_all = {c: spearman([final[n] for n in specs], [table[n][c] for n in specs]) for c in columns}
    rho_space = {c: spearman([final[n] for n in searchable], [table[n][c] for n in searchable]) for c in columns}
    summary = {"final": final, "proxies": table, "cost_cpu_s": cost, "final_cpu_s": final_cost,
               "spearman_all": rho_all, "spearman_search_space": rho_space}
    (runs / "summary.json").write_text(json.dumps(summary, indent=1))

    order = sorted(specs, key=lambda n: -final[n])
    lines = [
        "# Which cheap child ranks policies like the final regime? (issue #10, item 5)",
        "",
        f"`python experiments/proxy_rank.py` on {describe('cpu')}; load average at the end "
        f"{load_average()}; {(time.time() - started) / 60:.0f} min wall for what was not cached.",
        "",
        f"Final regime: `tiny`, {FINAL_EPOCHS} epochs on the 4,000 train images, test accuracy on "
        f"the 10,000 test images, seed {FINAL_SEED} ({final_cost:.0f} CPU s per child). Proxies: val "
        f"accuracy on 2,000 val images, mean of seeds 0 and 1 (0 only for `24ep+cutout` and `1000img-40ep+cutout`; the same seeds for "
        "every policy); `density`: fold models' accuracy on their held-out folds under the policy's whole "
        "training augmentation. See the script's docstring for each proxy.",
        "",
        "## Rank correlation with the final regime (Spearman)",
        "",
        f"| proxy | CPU s per policy | all {len(specs)} policies | the {len(searchable)} random search-space policies |",
        "|---|---|---|---|",
        *(f"| `{c}` | {cost[c]:.1f} | {rho_all[c]:+.2f} | {rho_space[c]:+.2f} |" for c in columns),
        "",
        f"Best over all policies: `{max(columns, key=rho_all.get)}` (Spearman {max(rho_all.values()):+.2f}). "
        f"With {len(specs)} policies a Spearman correlation has a standard error of about "
        f"{1 / (len(specs) - 1) ** 0.5:.2f} around 0, with {len(searchable)} about "
        f"{1 / (len(searchable) - 1) ** 0.5:.2f}; the final regime and the longer children ran on one "
        "seed each. CPU seconds were measured while other jobs shared the two cores (load above): "
        "compare them with each other, not with a quiet machine.",
        "",
        "## Per policy (%)",
        "",
        "| policy | final regime (test) | " + " | ".join(f"`{c}`" for c in columns) + " |",
        "|---|---|" + "---|" * len(columns),
        *(f"| {n} | {100 * final[n]:.2f} | " + " | ".join(f"{100 * table[n][c]:.2f}" for c in columns) + " |"
          for n in order),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
