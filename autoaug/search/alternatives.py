"""The search's verdict (issue #20): did the exported policy beat the free alternatives?

After the re-evaluation (`autoaug.search.export.reevaluate`) has picked the exported policy,
the exported policy itself and the free alternatives (`standard`, `cutout`, `trivialaugment`
and any named in `[export] free`) train on the same fresh seeds, in the search's child regime,
as trials of the store's "reeval" phase: a killed export resumes, and a finished one trains
nothing again. A free alternative whose recipe is the reference child's (`cutout` under the
default child: no policy, pad-crop + flip + Cutout 16) is that reference child, not trained
twice. `autoaug.search.verdict` reads the rows; RUN/verdict.md and the closing summary say
plainly whether the exported policy won and, if not, what did, and name the `autoaug compare`
command that settles the question in the final regime.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from autoaug.files import save_text
from autoaug.search.config import SearchConfig
from autoaug.search.pool import LazyPool, evaluate_trials
from autoaug.search.rewards import CHILD_KEY, REFERENCE_KEY
from autoaug.search.store import UNFINISHED, TrialSpec, TrialStore
from autoaug.search.verdict import Row, Verdict, decide, table
from autoaug.space.pipeline import cutout_pixels
from autoaug.space.policy import Policy
from autoaug.space.specs import resolve
from autoaug.stats import BETTER, WORSE
from autoaug.training.subsets import load_data

CHILD_FREE = ("standard", "cutout", "trivialaugment")
"""The free alternatives every search's verdict trains (more: `[export] free`)."""
VERDICT_FILENAME = "verdict.md"
EXPORTED = "exported policy"


@dataclass(frozen=True)
class SearchVerdict:
    """What the search's closing summary says about its export."""

    summary: str
    """Plain sentences: did the exported policy beat the free alternatives, and what won."""
    verdict: Verdict | None
    """The rows and their paired differences (None: no verdict could be measured)."""
    path: Path | None
    """Where verdict.md went."""
    compare_command: str
    """The `autoaug compare` command that settles it in the final regime."""


def free_specs(config: SearchConfig) -> list[str]:
    return list(dict.fromkeys((*CHILD_FREE, *config.export.free.split())))


def free_payload(spec: str, config: SearchConfig, image_size: tuple[int, int]) -> dict[str, Any]:
    """A free alternative as a trial of the search's child on (H, W) images: a baseline with its
    own pad-crop and Cutout (in pixels), a policy with the child's (as the candidates train)."""
    resolved = resolve(spec)
    child = config.child
    if resolved.augmenter is None:
        recipe = {"standard": resolved.standard, "cutout": cutout_pixels(resolved.cutout, image_size)}
    else:
        recipe = {"standard": child.standard, "cutout": cutout_pixels(child.cutout, image_size)}
    policy = None if resolved.augmenter is None else resolved.augmenter.to_json()
    return {"policy": policy, CHILD_KEY: recipe}


def is_reference(payload: dict[str, Any], config: SearchConfig, image_size: tuple[int, int]) -> bool:
    """Whether `payload` trains what the re-evaluation's reference child trains."""
    recipe = payload[CHILD_KEY]
    return (config.reward.paired and payload["policy"] is None and recipe["standard"] == config.child.standard
            and recipe["cutout"] == cutout_pixels(config.child.cutout, image_size))


def compare_command(run_dir: Path, config: SearchConfig) -> str:
    sized = "" if config.image_size is None else f" --image-size {config.image_size}"
    return (f"autoaug compare {shlex.quote(str(run_dir))} --dataset {shlex.quote(config.dataset)}{sized} --seeds 3 "
            f"--out {shlex.quote(str(run_dir / 'compare'))}")


def search_verdict(
    run_dir: Path,
    store: TrialStore,
    config: SearchConfig,
    pool: LazyPool,
    policy: Policy,
    seeds: list[int],
    out: Path,
    progress: bool = True,
) -> SearchVerdict:
    """Train the exported `policy` and the free alternatives on the re-evaluation's fresh `seeds`
    (what the store lacks), then write the verdict next to the exported policy file `out`."""
    command = compare_command(run_dir, config)
    if config.reward.kind != "child":
        return SearchVerdict(f"No verdict in the child regime: reward.kind = {config.reward.kind} trains no child. "
                             "Settle it in the final regime with `autoaug compare`.", None, None, command)
    splits = load_data(config.dataset, config.train_subset, config.val_subset, config.image_size)
    image_size, sizes = splits.image_shape, (len(splits.train_y), len(splits.val_y))
    exported = {"policy": Policy(policy.sub_policies).to_json()}
    rows = [(EXPORTED, "exported:" + _digest(exported), exported, False)]
    for spec in free_specs(config):
        payload = free_payload(spec, config, image_size)
        key = REFERENCE_KEY if is_reference(payload, config, image_size) else "free:" + spec
        rows.append((spec, key, payload, True))
    held = {(t.key, t.seed) for t in store.rows(phase="reeval")}
    specs = [TrialSpec(key=key, payload=payload, seed=s) for s in seeds for _, key, payload, _ in rows
             if (key, s) not in held and key != REFERENCE_KEY]
    if specs:
        store.add_pending(max(store.rounds("reeval"), default=-1) + 1, specs, phase="reeval")
    wanted = {(key, s) for _, key, _, _ in rows for s in seeds}
    trials = [t for t in store.rows(phase="reeval") if (t.key, t.seed) in wanted]
    todo = sum(t.status in UNFINISHED for t in trials)
    bar = tqdm(total=len(trials), initial=len(trials) - todo, unit="child", desc="verdict: exported + free",
               disable=not progress or not todo, dynamic_ncols=True, file=sys.stderr)
    try:
        evaluate_trials(store, pool, trials, lambda trial, result: bar.update(1))
    finally:
        bar.close()
    done = {(t.key, t.seed): t.reward for t in store.rows(phase="reeval", status="done")}
    verdict = decide([Row(name, free, {s: done[key, s] for s in seeds if (key, s) in done},
                          sum((key, s) not in done for s in seeds))
                      for name, key, _, free in rows])
    summary = plain(verdict, len(seeds))
    path = out.parent / VERDICT_FILENAME if out.name == "policy.json" else out.with_suffix(".verdict.md")
    reference = next((name for name, key, _, _ in rows if key == REFERENCE_KEY), None)
    save_text(markdown(verdict, summary, config, sizes, run_dir, len(seeds), command, reference), path)
    return SearchVerdict(summary, verdict, path, command)


def _digest(doc: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def plain(verdict: Verdict, seeds: int) -> str:
    """Did the exported policy beat the free alternatives in the child regime, and what won."""
    d = verdict.differences.get(EXPORTED)
    ref = verdict.reference
    if ref is None or d is None:
        return "No verdict: the exported policy or every free alternative failed to train on the fresh seeds."
    diff = f"{d.mean:+.2f} +/- {d.se:.2f} points" if d.seeds > 1 else f"{d.mean:+.2f} points (one seed: no standard error)"
    where = f"in the child regime ({d.seeds} fresh seeds, validation accuracy)"
    if d.judgement == BETTER:
        return (f"The exported policy beat every free alternative {where}: {diff} over the best of them, "
                f"`{ref.name}`.")
    if d.judgement == WORSE:
        return (f"The exported policy did NOT beat the free alternatives {where}: `{ref.name}` won; the exported "
                f"policy scored {diff} against it.")
    won = f" `{verdict.best.name}` scored highest." if verdict.best.name != EXPORTED else ""
    return (f"The exported policy did not beat the free alternatives {where} by more than the seeds' noise: "
            f"{diff} against the best of them, `{ref.name}` (not resolved at 2 standard errors).{won}")


def markdown(verdict: Verdict, summary: str, config: SearchConfig, sizes: tuple[int, int], run_dir: Path,
             seeds: int, command: str, reference: str | None) -> str:
    """verdict.md; `sizes`: the child's (train, validation) images."""
    child = config.child
    subsets = f"{sizes[0]:,} train images, validation accuracy on {sizes[1]:,} validation images"
    recipe = (("pad-crop + flip" if child.flip else "pad-crop without flip") if child.standard else "no pad-crop") + (
        f" and Cutout {child.cutout}" if child.cutout else "")
    return "\n".join([
        f"# The search's verdict: {run_dir}",
        "",
        f"**{summary}**",
        "",
        f"Child regime: the search's child, `{child.model}`, {child.epochs} epoch{'s' if child.epochs > 1 else ''} on {subsets} of {config.dataset}; "
        f"every policy with {recipe} after it, the baselines with their own. Every row trains on the same "
        f"{seeds} fresh seeds of the re-evaluation (no search trial used them)"
        + (f"; `{reference}` is the reference child of those seeds (the same recipe)." if reference else "."),
        "",
        *table(verdict, "validation accuracy"),
        "",
        verdict.line(" (child regime)"),
        "",
        "The child regime ranks policies cheaply; it is not your final training. What settles it there "
        "(add `--epochs N` / `--model M` for your final recipe):",
        "",
        f"    {command}",
        "",
    ])
