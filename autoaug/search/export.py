"""The search's result: its best policies, optionally re-trained on fresh seeds first, written
as policy.json + policy.albumentations.json + the whole train and eval pipelines
(policy.train.albumentations.json, policy.eval.albumentations.json) in one call (issue #22). `autoaug search`
ends here, and `autoaug export` starts here on a finished or stopped run directory.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from autoaug.errors import AutoaugError
from autoaug.files import is_stream
from autoaug.search.alternatives import SearchVerdict, search_verdict
from autoaug.search.config import CONFIG_FILENAME, ExportConfig, SearchConfig, load_config
from autoaug.search.fidelity import top_payload
from autoaug.settings import to_dict
from autoaug.search.pool import LazyPool, evaluate_trials
from autoaug.search.rewards import REFERENCE_KEY, rank_by, reference_spec
from autoaug.search.store import STORE_FILENAME, UNFINISHED, Trial, TrialSpec, TrialStore
from autoaug.search.trials import ChildTask, derive_seed, open_run
from autoaug.space.export import albumentations_path, save_albumentations
from autoaug.space.pipeline import pipeline_path, save_pipeline
from autoaug.space.policy import Policy, provenance
from autoaug.space.specs import POLICY_CUTOUT, PolicySpec
from autoaug.space.targets import TargetParams
from autoaug.training.pipelines import export_pipelines

POLICY_FILENAME = "policy.json"


def reevaluation_seed(seed: int, index: int) -> int:
    """Fresh seed `index` of the re-evaluation before export; no search trial uses it."""
    return derive_seed(seed, "reevaluation", index)


@dataclass(frozen=True)
class Reevaluation:
    """One candidate of the re-evaluation before export: a search trial and its rewards
    (paired when the search's are) on the fresh seeds where its child and reference succeeded."""

    trial: Trial
    values: list[float]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        return float(np.std(self.values, ddof=1)) if len(self.values) > 1 else 0.0


@dataclass(frozen=True)
class Export:
    """What `export_policy` wrote."""

    policy: Policy
    trials: list[Trial]
    policy_path: Path
    albumentations_path: Path | None
    reevaluation: list[Reevaluation] | None = None
    """Every re-evaluated candidate, best mean first; None without re-evaluation."""
    pipeline_paths: dict[str, Path] = dataclasses.field(default_factory=dict)
    """Where the whole train and eval pipelines went ({} for an --out that is a stream)."""
    pipeline: Any = None
    """The train pipeline (an albumentations Compose ending in ToTensorV2), or None."""
    verdict: SearchVerdict | None = None
    """The exported policy against the free alternatives on the re-evaluation's seeds (issue
    #20); None without re-evaluation."""


def distinct_best(store: TrialStore, k: int, by: str) -> list[Trial]:
    """The `k` best search policies by `by`, one trial per policy (a policy sampled twice
    competes once, with its best trial). With [fidelity] rungs, the policies that reached the
    highest rung come first (`TrialStore.best`), each with its trial there."""
    seen: set[str] = set()
    out: list[Trial] = []
    for trial in store.best(len(store.rows(phase="search")), by=by):
        if trial.key not in seen:
            seen.add(trial.key)
            out.append(trial)
        if len(out) == k:
            break
    return out


def reevaluate(
    store: TrialStore,
    config: SearchConfig,
    pool: LazyPool,
    top: int,
    seeds: int,
    progress: bool = True,
) -> list[Reevaluation]:
    """Re-train the `top` best policies of the search on `seeds` fresh seeds (one shared seed
    per round of candidates, plus a reference child per seed when rewards are paired) and
    return them, best mean first (ties: the better search rank).

    Resumable like the search: every child is a trial of the store's "reeval" phase, keyed by
    (policy, seed); a rerun adds only the (policy, seed) pairs it does not hold (a grown search
    may have new candidates) and evaluates only unfinished trials.
    """
    by = rank_by(config)
    candidates = distinct_best(store, top, by)
    fresh = [reevaluation_seed(config.seed, j) for j in range(seeds)]
    held = {(t.key, t.seed) for t in store.rows(phase="reeval")}
    next_round = max(store.rounds("reeval"), default=-1) + 1
    for seed in fresh:
        # Each child as the search's top rung trains it (from a trunk of this seed where it has one).
        specs = [TrialSpec(key=c.key, payload=top_payload(config, c.payload), seed=seed, tokens=c.tokens)
                 for c in candidates if (c.key, seed) not in held]
        if specs and config.reward.paired and (REFERENCE_KEY, seed) not in held:
            reference = reference_spec(seed)
            specs.append(dataclasses.replace(reference, payload=top_payload(config, reference.payload)))
        if specs:
            store.add_pending(next_round, specs, phase="reeval")
            next_round += 1
    wanted = {(c.key, s) for c in candidates for s in fresh} | {(REFERENCE_KEY, s) for s in fresh}
    # The references first: one per seed, each trains its seed's trunk where the top rung has one,
    # so two workers start on two trunks instead of one waiting for the other's.
    trials = sorted((t for t in store.rows(phase="reeval") if (t.key, t.seed) in wanted),
                    key=lambda t: t.role != "reference")
    todo = sum(t.status in UNFINISHED for t in trials)
    references = sum(t.key == REFERENCE_KEY for t in trials)  # the bar's count says why it is more
    bar = tqdm(total=len(trials), initial=len(trials) - todo, unit="child",
               desc=f"re-evaluate top {len(candidates)} x {seeds} seeds"
               + (f" + {references} reference children" if references else ""),
               disable=not progress or not todo, dynamic_ncols=True, file=sys.stderr)
    try:
        evaluate_trials(store, pool, trials, lambda trial, result: bar.update(1))
    finally:
        bar.close()
    done = {(t.key, t.seed): getattr(t, by) for t in store.rows(phase="reeval", role="policy", status="done")}
    scored = [Reevaluation(c, [done[(c.key, s)] for s in fresh if done.get((c.key, s)) is not None])
              for c in candidates]
    # sorted() is stable: equal means keep the search's order.
    return sorted(scored, key=lambda r: -r.mean if r.values else math.inf)


@dataclass(frozen=True)
class ExportOptions:
    """How `export_policy` chooses and writes a run's final policy."""

    top: int | None = None
    """Policies whose sub-policies the final policy concatenates (None: the run's export.top;
    5, the paper's, for a run without its config.toml)."""
    out: str | Path | None = None
    """The native policy file (None: RUN_DIR/policy.json); the albumentations JSON goes next to it."""
    dataset: str | None = None
    """The dataset whose training split gives the train and eval pipelines' Normalize (None: the
    run's)."""
    image_size: int | None = None
    """Resize that dataset's images to N x N (None: the run's image_size when the dataset is the
    run's, else the source size)."""
    reevaluate_top: int | None = 0
    """Re-train the search's best N policies on fresh seeds and choose by their mean (0: by the
    search's own rewards; None: the run's export.reevaluate_top)."""
    reevaluate_seeds: int | None = None
    """Fresh seeds per re-evaluated policy (None: the run's export.reevaluate_seeds)."""
    progress: bool = True
    """A progress bar while children re-train."""
    targets: TargetParams | None = None
    """Mask fills and bbox / keypoint formats of the albumentations files (None: image only, the
    defaults of `autoaug.space.targets.TargetParams`)."""


def export_policy(run_dir: str | Path, options: ExportOptions = ExportOptions()) -> Export:
    """The paper's final policy: the sub-policies of the `options.top` best policies of a run,
    concatenated.

    Best by the search's reward (the paired one when the search paired its rewards), ties to
    the earlier trial; or, with `reevaluate_top` > 0, the `top` best by their mean reward when
    the search's best `reevaluate_top` are re-trained on `reevaluate_seeds` fresh seeds (None:
    the run's `[export]` settings). Re-evaluation trains children through the run's workers and
    store, so it takes the run directory's lock, and a killed export resumes. Writes native
    JSON to `out` (default RUN_DIR/policy.json) with provenance, and the albumentations JSON
    next to it.
    """
    run_dir = Path(run_dir)
    store_path = run_dir / STORE_FILENAME
    if not store_path.is_file():
        what = "does not exist" if not run_dir.exists() else f"has no {STORE_FILENAME}"
        raise AutoaugError(
            f"{run_dir} is not a search run directory ({what}); expected the --out of `autoaug search`"
        )
    config = load_config(run_dir / CONFIG_FILENAME) if (run_dir / CONFIG_FILENAME).is_file() else None
    top, reevaluate_top, reevaluate_seeds = options.top, options.reevaluate_top, options.reevaluate_seeds
    if config is not None:
        top = config.export.top if top is None else top
        reevaluate_top = config.export.reevaluate_top if reevaluate_top is None else reevaluate_top
        reevaluate_seeds = config.export.reevaluate_seeds if reevaluate_seeds is None else reevaluate_seeds
    top = ExportConfig().top if top is None else top
    if reevaluate_top and config is None:
        raise AutoaugError(f"{run_dir} has no {CONFIG_FILENAME}: cannot re-train its policies; "
                           "export with --reevaluate-top 0")
    if not reevaluate_top:
        with TrialStore(store_path, read_only=True) as store:
            return export_from_store(run_dir, store, config, dataclasses.replace(
                options, top=top, reevaluate_top=0, reevaluate_seeds=0))
    assert config is not None
    task = ChildTask.from_config(config)
    with open_run(run_dir) as (store, _):  # requeues the children a killed export left running
        pool = LazyPool(config, task, run_dir)
        try:
            return export_from_store(run_dir, store, config, dataclasses.replace(
                options, top=top, reevaluate_top=reevaluate_top, reevaluate_seeds=reevaluate_seeds or 1), pool)
        finally:
            pool.close()


def export_from_store(
    run_dir: Path,
    store: TrialStore,
    config: SearchConfig | None,
    options: ExportOptions,
    pool: LazyPool | None = None,
) -> Export:
    """`export_policy` inside an open store (and, to re-evaluate, the run's lock and pool), with
    every option of `options` given."""
    top, out, dataset = options.top, options.out, options.dataset
    reevaluate_top, reevaluate_seeds, progress = options.reevaluate_top, options.reevaluate_seeds, options.progress
    for name, value, low in (("--top", top, 1), ("--reevaluate-top", reevaluate_top, 0),
                             ("--reevaluate-seeds", reevaluate_seeds, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise AutoaugError(f"{name} must be an integer >= {low}, got {value!r}")
    if 0 < reevaluate_top < top:
        raise AutoaugError(f"--reevaluate-top ({reevaluate_top}) must be 0 or at least --top "
                           f"({top}): the exported policies are chosen among the re-evaluated ones")
    by = rank_by(config)
    counts = store.counts(rung=0)  # the policies sampled, whatever rungs they reached
    best = distinct_best(store, top, by)
    if not best and counts["done"]:
        raise AutoaugError(
            f"no policy of {run_dir} has a paired reward: the reference children failed (their "
            f"errors are in {store.path}, role 'reference')"
        )
    if not best:
        raise AutoaugError(
            f"{run_dir} has no completed trials yet ({counts['failed']} failed, "
            f"{counts['pending'] + counts['running']} unfinished); run `autoaug search --out {run_dir}`"
        )
    reevaluation = None
    if reevaluate_top:
        assert config is not None and pool is not None
        reevaluation = reevaluate(store, config, pool, reevaluate_top, reevaluate_seeds, progress)
        best = [r.trial for r in reevaluation if r.values][:top]
        if not best:
            raise AutoaugError(f"every re-evaluation child of {run_dir} failed; the errors are in "
                               f"{store.path} (phase 'reeval'); export with --reevaluate-top 0")
    sub_policies = tuple(
        sub for t in best for sub in Policy.from_json(t.payload["policy"], f"trial {t.id}").sub_policies
    )
    info = provenance(
        "autoaug search",
        dataset=config.dataset if config else None,
        image_size=config.image_size if config else None,
        algo=config.algo if config else None,
        budget=config.budget if config else None,
        completed=counts["done"] + counts["failed"],
        failed=counts["failed"],
        top=len(best),
        ranked_by=by,
        rewards=[t.reward for t in best],
        trials=[{"id": t.id, "round": t.round, "slot": t.slot, "seed": t.seed, "reward": t.reward,
                 "paired": t.paired, **({"rung": t.rung} if t.rung else {})} for t in best],
        reevaluation=None if reevaluation is None else {
            "seeds": reevaluate_seeds,
            "values": by,
            "candidates": [{"id": r.trial.id, "search": getattr(r.trial, by), "mean": r.mean if r.values else None,
                            "values": r.values} for r in reevaluation],
        },
        run_dir=str(run_dir.resolve()),
        config=to_dict(config) if config else None,
    )
    policy = Policy(sub_policies, info)
    out = run_dir / POLICY_FILENAME if out is None else Path(out)
    # An --out of /dev/stdout or a pipe takes the native policy; the albumentations files that go
    # beside it would land in /dev (issue #23), so a stream gets none (`Export` says so with None).
    stream = is_stream(out)
    albu_out = None if stream else albumentations_path(out)
    wholes: dict[str, Any] = {}
    if not stream:  # built first: a bad dataset writes nothing
        resolved = PolicySpec(str(out), "exported", policy, True, POLICY_CUTOUT,
                              flip=config.child.flip if config else True)
        image_size = options.image_size
        if dataset is None and config is not None:
            dataset = config.dataset
            image_size = config.image_size if image_size is None else image_size
        wholes = export_pipelines(resolved, dataset or "cifar10-reduced", image_size, targets=options.targets)
    try:
        policy.save(out)
        if albu_out is not None:
            save_albumentations(policy, albu_out, options.targets)
        for kind, whole in wholes.items():
            save_pipeline(whole, pipeline_path(out, kind))
    except OSError as err:
        raise AutoaugError(f"cannot write {out}: {err.strerror or err}") from None
    verdict = None
    if reevaluation is not None:  # after the files are written: a killed verdict loses no export
        assert config is not None and pool is not None
        fresh = [reevaluation_seed(config.seed, j) for j in range(reevaluate_seeds)]
        verdict = search_verdict(run_dir, store, config, pool, policy, fresh, out, progress)
    return Export(policy, best, out, albu_out, reevaluation, {kind: pipeline_path(out, kind) for kind in wholes},
                  wholes.get("train"), verdict)
