"""`autoaug compare` (issue #20): policies trained in the final regime on the same seeds, and
the verdict on them.

- Every (policy, seed) is one trial of the out directory's `TrialStore`, trained by the same
  workers as a search (`pool.make_pool`: local processes, inline or Ray) through the one trial
  loop (`trials.add_batch`, `trials.run_trials`). A killed compare resumes: a rerun trains only
  the (policy, seed) pairs the store lacks, and a compare can grow (more policies, more seeds)
  in the same directory.
- Paired seeds: every policy trains on the seeds first_seed .. first_seed + K - 1, the seeds of
  `autoaug train --seeds K`, so a row here is what `autoaug train --policy P --seeds K` with the
  same recipe reports, and two rows differ by their policies, not by the luck of their seeds.
- A row trains as `autoaug train` trains its spec (`autoaug.space.specs.resolve`: the baselines
  their own pad-crop / flip / Cutout, a policy that recipe's standard augmentation and Cutout
  after it) and scores on the dataset's test split: the reward of a trial is its test accuracy.
- The verdict (`autoaug.search.verdict`): the best free alternative and every learned row
  against it at 2 standard errors of the paired difference. One seed gives no standard error,
  so `seeds` must be at least 2.

The out directory holds trials.sqlite, compare.md, compare.json and compare.png.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from autoaug.errors import AutoaugError, ConfigError, PolicyError
from autoaug.files import save_json, save_text
from autoaug.search.export import POLICY_FILENAME
from autoaug.search.store import TrialSpec
from autoaug.search.pool import make_pool
from autoaug.search.tasks import EvalFn
from autoaug.search.trials import add_batch, changed_setup, check_setup, open_run, run_trials
from autoaug.search.verdict import Row, Verdict, decide, plot, table
from autoaug.search.workers import check_timeout
from autoaug.space.pipeline import cutout_pixels
from autoaug.space.published import PUBLISHED
from autoaug.space.export import AlbumentationsFile
from autoaug.space.specs import BASELINES, policy_from_json, resolve
from autoaug.training.data import fingerprint
from autoaug.training.config import TrainConfig
from autoaug.training.loop import evaluate, train_model
from autoaug.training.models import build_model, check_image_size
from autoaug.training.subsets import device_data, load_data

FREE_ALTERNATIVES = ("none", "standard", "cutout", "trivialaugment", "randaugment:N=2,M=9", *PUBLISHED)
"""What `autoaug compare` trains when no policy is named: what a user can use without a search."""
FINAL_EPOCHS = 80
"""`autoaug compare`'s default epochs: the final regime of the project's experiments (`tiny`,
80 epochs on the 4,000 reduced CIFAR-10 images), where augmentation pays off."""
COMPARE_MD, COMPARE_JSON, COMPARE_PNG = "compare.md", "compare.json", "compare.png"
SETUP_META = "compare_setup"
DATA_META = "compare_data"


@dataclass(frozen=True)
class Candidate:
    """One row to train: what the user named, resolved."""

    name: str
    """As shown: the spec, or `RUN (exported policy)` for a run directory."""
    key: str
    """The trials' key in the store: the spec for a named policy, the content for a file."""
    free: bool
    """A named policy anyone can use (a free alternative) rather than a file or a search's export."""
    policy: dict[str, Any] | None
    """The policy's JSON (None for a baseline)."""
    standard: bool
    cutout: int | str
    """As `autoaug train --policy SPEC` trains it (TrainConfig.standard, .cutout: pixels or 'auto')."""
    description: str

    def payload(self, image_size: tuple[int, int]) -> dict[str, Any]:
        """What `evaluate_row` trains on (H, W) images: the Cutout in pixels, as the store keeps it."""
        return {"policy": self.policy, "standard": self.standard, "cutout": cutout_pixels(self.cutout, image_size)}


def is_named(spec: str) -> bool:
    """Whether `spec` names a built-in policy (a baseline, a published policy, TrivialAugment,
    RandAugment) rather than a file or a run directory."""
    name = spec.split(":", 1)[0]
    return (spec in BASELINES or spec in PUBLISHED or name in ("trivialaugment", "randaugment")) \
        and not Path(spec).expanduser().exists()


def candidate(spec: str) -> Candidate:
    """`spec` (a policy spec, a policy file or a search's run directory) as a row to train; a
    one-line PolicyError for what cannot be read, or a run directory without an export."""
    path = Path(spec).expanduser()
    name, target = spec, spec
    if path.is_dir():
        target = str(path / POLICY_FILENAME)
        if not (path / POLICY_FILENAME).is_file():
            raise PolicyError(f"{spec} is a directory without an exported policy ({POLICY_FILENAME}); expected "
                              f"a search's run directory after its export: run `autoaug export {spec}` or let "
                              f"`autoaug search --out {spec}` finish")
        name = f"{spec.rstrip('/')} (exported policy)"
    resolved = resolve(target)
    if isinstance(resolved.augmenter, AlbumentationsFile):
        raise PolicyError(f"{spec} is an albumentations pipeline file; `autoaug compare` trains the batched torch "
                          "path: give the native policy file (the .json without .albumentations)")
    policy = None if resolved.augmenter is None else trained_part(resolved.augmenter.to_json())
    free = is_named(spec)
    content = json.dumps([policy, resolved.standard, resolved.cutout], sort_keys=True).encode()
    key = spec if free else "policy:" + hashlib.sha1(content).hexdigest()[:16]
    return Candidate(name, key, free, policy, resolved.standard, resolved.cutout, resolved.description)


def trained_part(doc: dict[str, Any] | None) -> dict[str, Any] | None:
    """A native policy document without its provenance: what training reads. A search's run
    directory re-exported (its provenance rewritten) is still the same row."""
    return None if doc is None else {k: v for k, v in doc.items() if k != "provenance"}


@dataclass(frozen=True)
class CompareSpec:
    """What a comparison trains: every policy on the same `seeds` seeds."""

    dataset: str = "cifar10-reduced"
    image_size: int | None = None
    """Resize every image to N x N (None: the source size)."""
    policies: tuple[str, ...] = ()
    """Policy specs, files or run directories, trained after the free alternatives."""
    free: bool = True
    """Train FREE_ALTERNATIVES too (False: only `policies`)."""
    seeds: int = 3
    first_seed: int = 0
    train: TrainConfig = dataclasses.field(default_factory=lambda: TrainConfig(epochs=FINAL_EPOCHS))
    """The recipe of every row (its device is the worker's); each row's spec sets `standard` and
    `cutout` on it, as `autoaug train --policy SPEC` does."""

    def __post_init__(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 2:
            raise ConfigError(f"--seeds must be at least 2, got {self.seeds!r}: one seed gives no standard error "
                              "of a paired difference, so no verdict could be resolved")
        if isinstance(self.first_seed, bool) or not isinstance(self.first_seed, int) or self.first_seed < 0:
            raise ConfigError(f"--first-seed must be an int >= 0, got {self.first_seed!r}")
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train: expected a TrainConfig, got {type(self.train).__name__}")

    def candidates(self) -> list[Candidate]:
        """The rows, resolved now (a bad spec fails before anything trains); one per key."""
        specs = (FREE_ALTERNATIVES if self.free else ()) + tuple(self.policies)
        if not specs:
            raise ConfigError("nothing to compare: name a POLICY, or leave out --no-free")
        rows: dict[str, Candidate] = {}
        for spec in specs:
            c = candidate(spec)
            rows.setdefault(c.key, c)
        return list(rows.values())

    def setup(self) -> dict[str, Any]:
        """What must not change between runs in one directory (rows and seeds may grow)."""
        train = dataclasses.asdict(self.train)
        for name in ("device", "standard", "cutout"):  # the worker's; and each row's own
            train.pop(name)
        sized = {} if self.image_size is None else {"image_size": self.image_size}  # a comparison from before has none
        return {"dataset": self.dataset, **sized, "train": train}

    def seed_list(self) -> list[int]:
        return list(range(self.first_seed, self.first_seed + self.seeds))


@dataclass(frozen=True)
class CompareTask:
    """What every row of one comparison shares, pickled once into each worker with the function."""

    dataset: str
    train: TrainConfig
    image_size: int | None = None


def evaluate_row(task: CompareTask, payload: dict[str, Any], seed: int, device: str) -> float:
    """A trial of `autoaug compare` (`autoaug.search.workers.EvalFn`): train the payload's policy
    with its standard / Cutout flags on the dataset's train split and return the test accuracy."""
    config = dataclasses.replace(task.train, device=device, standard=payload["standard"], cutout=payload["cutout"])
    doc = payload["policy"]
    augment = None if doc is None else policy_from_json(doc, "compare trial")
    data = device_data(task.dataset, device, image_size=task.image_size)
    model, _ = train_model(augment, data, config, seed)
    return evaluate(model, data.test_x, data.test_y, mean=data.mean, std=data.std, batch_size=config.eval_batch_size)


@dataclass(frozen=True)
class CompareResult:
    spec: CompareSpec
    rows: tuple[Row, ...]
    """In the order asked for."""
    verdict: Verdict
    trained: int
    """Children trained by this run (the rest came from the store)."""
    out_dir: Path
    command: str


def run_compare(
    spec: CompareSpec,
    out_dir: str | Path,
    *,
    retry_failed: bool = False,
    fn: EvalFn | None = None,
    progress: bool = True,
    command: str = "",
    **pool: Any,
) -> CompareResult:
    """Train every (policy, seed) of `spec` that `out_dir` lacks, then write compare.md,
    compare.json and compare.png. `fn` replaces `evaluate_row` (tests pass stubs); `pool` are
    `autoaug.search.pool.make_pool`'s arguments (backend, devices, workers, timeout_s,
    ray_options); `command` is quoted in compare.md."""
    check_timeout(pool.get("timeout_s"))
    candidates = spec.candidates()  # a bad policy fails here, before any data or directory
    splits = load_data(spec.dataset, image_size=spec.image_size)  # and a bad dataset here
    check_image_size(build_model(spec.train.model, splits.num_classes), spec.train.model, *splits.image_shape,
                     where=spec.dataset)
    data_id = fingerprint(splits.train_x, splits.train_y, splits.test_x, splits.test_y)
    image_size = splits.image_shape
    del splits
    payloads = {c.key: c.payload(image_size) for c in candidates}
    fn = fn or functools.partial(evaluate_row, CompareTask(spec.dataset, spec.train, spec.image_size))
    out = Path(out_dir)
    seeds = spec.seed_list()
    with open_run(out) as (store, _):
        check_setup(store, SETUP_META, spec.setup(), "comparison")
        recorded = store.record_meta(DATA_META, data_id)
        if recorded is not None and recorded != data_id:
            raise AutoaugError(f"{out}: its trials were trained on other data than {spec.dataset} gives now "
                               "(the train and test images changed); use another --out")
        latest = {(t.key, t.seed): t for t in store.rows()}  # the newest row of each pair
        for c in candidates:
            stored = next((t for (key, _), t in latest.items() if key == c.key), None)
            if stored is not None and changed_setup({**stored.payload, "policy": trained_part(stored.payload["policy"])},
                                              payloads[c.key]):
                raise AutoaugError(f"{out}: {c.name} was trained here with another policy or recipe than it "
                                   "resolves to now; use another --out")
        new = [TrialSpec(key=c.key, payload=payloads[c.key], seed=s) for s in seeds for c in candidates
               if (c.key, s) not in latest or (retry_failed and latest[c.key, s].status == "failed")]
        for trial in add_batch(store, new):
            latest[(trial.key, trial.seed)] = trial
        # Seed by seed: a compare stopped early leaves every row on the same seeds.
        wanted = [latest[(c.key, s)] for s in seeds for c in candidates]
        todo = sum(t.status in ("pending", "running") for t in wanted)
        if todo:
            bar = tqdm(total=len(wanted), initial=len(wanted) - todo, desc="compare", unit="child",
                       disable=not progress, dynamic_ncols=True)
            with make_pool(fn, **pool) as workers, bar:
                wanted = run_trials(store, workers, wanted, on_result=lambda _: bar.update(1))
    by_pair = {(t.key, t.seed): t for t in wanted}
    rows = tuple(
        Row(c.name, c.free,
            {s: float(by_pair[c.key, s].reward) for s in seeds if by_pair[c.key, s].status == "done"},
            sum(by_pair[c.key, s].status == "failed" for s in seeds), c.description)
        for c in candidates)
    result = CompareResult(spec, rows, decide(rows), todo, out, command)
    write_results(result)
    return result


def regime(spec: CompareSpec) -> str:
    t = spec.train
    return (f"`{t.model}`, {t.epochs} epoch{'s' if t.epochs > 1 else ''} on the train split of {spec.dataset}, test accuracy on its test "
            f"split; seeds {spec.first_seed}..{spec.first_seed + spec.seeds - 1}, the same for every row"
            + ("" if t.flip else "; no horizontal flip in the standard augmentation (child.flip false)"))


def markdown(result: CompareResult) -> str:
    verdict = result.verdict
    lines = [f"# autoaug compare on {result.spec.dataset}", ""]
    if result.command:
        lines += [f"`{result.command}`", ""]
    lines += [
        f"Regime: {regime(result.spec)}. Every row trains as `autoaug train --policy ROW` does: a baseline with its "
        "own pad-crop / flip / Cutout, a policy with the recipe's standard augmentation and Cutout after it.",
        "",
        *table(verdict, "test accuracy"),
        "",
        f"Paired differences: the row minus the best free alternative (`{verdict.reference.name if verdict.reference else '-'}`, "
        "the free row with the highest mean) seed by seed, mean +/- standard error over the seeds both finished. "
        "A learned row is better or worse when the difference lies more than 2 standard errors from 0, else not resolved.",
        "",
        f"**{verdict.line()}**",
        "",
        f"![paired differences]({COMPARE_PNG})",
        "",
    ]
    return "\n".join(lines)


def to_json(result: CompareResult) -> dict[str, Any]:
    verdict = result.verdict
    return {
        "command": result.command,
        "setup": result.spec.setup(),
        "seeds": result.spec.seed_list(),
        "rows": [
            {"name": r.name, "free": r.free, "description": r.description,
             "test_acc": {str(s): v for s, v in sorted(r.values.items())}, "failed": r.failed,
             "mean": r.mean if r.values else None, "std": r.std if len(r.values) > 1 else None,
             "difference": _finite(dataclasses.asdict(verdict.differences[r.name])) if r.name in verdict.differences else None}
            for r in result.rows
        ],
        "best_row": verdict.best.name,
        "best_free": verdict.reference.name if verdict.reference else None,
        "verdict": verdict.line(),
    }


def _finite(doc: dict[str, Any]) -> dict[str, Any]:
    """NaN (the standard error of one seed) as null: JSON has no NaN."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in doc.items()}


def write_results(result: CompareResult) -> None:
    out = result.out_dir
    save_text(markdown(result), out / COMPARE_MD)
    save_json(to_json(result), out / COMPARE_JSON)
    ref = result.verdict.reference.name if result.verdict.reference else "-"
    plot(result.verdict, out / COMPARE_PNG,
         f"autoaug compare on {result.spec.dataset}{'' if result.spec.train.flip else ' (no flip)'}: test accuracy "
         f"minus {ref}, same {result.spec.seeds} seeds")
