"""The RandAugment grid search (issue #5): one child per (N, M, seed), the table, the best (N, M).

- Every grid point (N, M, seed) is one trial of a `TrialStore` evaluated by
  `autoaug.search.workers` (local processes, inline, or Ray), so a killed grid resumes without
  re-training finished points, and a grid can be extended (more M values, more seeds) in the same
  directory.
- The run directory holds `trials.sqlite`, `grid.md` / `grid.json` (validation accuracy per
  point, mean and std over seeds; test accuracy beside it, never used to choose), the best (N, M)
  as `best.json` + `best.albumentations.json`, and `models/N=..,M=..,seed=../` with each child's
  test softmax for `autoaug ensemble` (on Ray across machines, put --out on a shared file system).
"""

from __future__ import annotations

import dataclasses
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from tqdm import tqdm

from autoaug.errors import AutoaugError, ConfigError
from autoaug.files import save_json, save_text
from autoaug.search.store import TrialSpec
from autoaug.search.pool import make_pool, resolve_fuse
from autoaug.search.trials import FUSED, add_batch, check_setup, open_run, run_trials
from autoaug.search.ray_pool import RayOptions
from autoaug.search.tasks import EvalFn
from autoaug.search.workers import check_timeout
from autoaug.space.export import albumentations_path, save_albumentations
from autoaug.space.randaugment import DEFAULT_OPS, RandAugment, _check_m, _check_n, check_ops
from autoaug.space.specs import POLICY_CUTOUT
from autoaug.training.ensemble import read_outputs_meta, save_outputs
from autoaug.training.fused import train_fused
from autoaug.training.config import TrainConfig
from autoaug.training.loop import predict_proba, train_model, val_accuracy
from autoaug.training.subsets import device_data

GRID_JSON = "grid.json"
GRID_MD = "grid.md"
BEST_JSON = "best.json"
MODELS_DIR = "models"  # one sub-directory of saved outputs per (N, M, seed), for `autoaug ensemble`


@dataclass(frozen=True)
class GridSpec:
    """What a RandAugment grid trains: every (N, M) for `seeds` seeds, each point one child."""

    dataset: str = "cifar10-reduced"
    """Dataset spec (autoaug.training.data.DATASET_SPECS)."""
    image_size: int | None = None
    """Resize every image to N x N (None: the source size)."""
    ns: tuple[int, ...] = (1, 2, 3)
    """Values of N, ops per image."""
    ms: tuple[float, ...] = (3.0, 6.0, 9.0, 12.0)
    """Values of M on the 0..30 scale."""
    seeds: int = 1
    """Children per grid point (seeds first_seed .. first_seed + seeds - 1)."""
    first_seed: int = 0
    """Seed of the first child of every point."""
    ops: tuple[str, ...] = DEFAULT_OPS
    """Candidate ops."""
    train: Any = None
    """An autoaug.training.config.TrainConfig; its device is the worker's. None: the tiny model's recipe
    with standard augmentation and Cutout 16 after RandAugment, as `autoaug train --policy
    randaugment:...` trains, so the chosen (N, M) means the same there."""
    save_outputs: bool = True
    """Also measure test accuracy and save each child's test softmax (for `autoaug ensemble`);
    on Ray across machines the run directory must be on a file system every node sees."""

    def __post_init__(self) -> None:
        if self.train is None:
            object.__setattr__(self, "train", TrainConfig.for_model("tiny", **policy_training()))
        if not isinstance(self.train, TrainConfig):
            raise ConfigError(f"train: expected a TrainConfig, got {type(self.train).__name__}")
        if not self.ns or not self.ms:
            raise ConfigError(f"the grid needs at least one N and one M, got N={list(self.ns)} M={list(self.ms)}")
        object.__setattr__(self, "ns", tuple(sorted({_check_n(n, "grid N") for n in self.ns})))
        object.__setattr__(self, "ms", tuple(sorted({_check_m(m, "grid M") for m in self.ms})))
        object.__setattr__(self, "ops", check_ops(self.ops, "grid ops"))
        for name in ("seeds", "first_seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (1 if name == "seeds" else 0):
                raise ConfigError(f"{name} must be an int >= {1 if name == 'seeds' else 0}, got {value!r}")

    def setup(self) -> dict[str, Any]:
        """What must not change between runs in one directory (the grid itself may grow)."""
        train = dataclasses.asdict(self.train)
        train.pop("device")  # each worker trains on its own device
        sized = {} if self.image_size is None else {"image_size": self.image_size}  # a grid from before has none
        return {"dataset": self.dataset, **sized, "ops": list(self.ops), "train": train, "save_outputs": self.save_outputs}

    def points(self) -> list[tuple[int, float, int]]:
        return [(n, m, self.first_seed + k) for n in self.ns for m in self.ms for k in range(self.seeds)]


def policy_training() -> dict[str, Any]:
    """TrainConfig overrides under which `autoaug train` trains any policy (standard + Cutout)."""
    return {"standard": True, "cutout": POLICY_CUTOUT}


def point_key(n: int, m: float) -> str:
    return f"N={n},M={m:g}"


def point_name(n: int, m: float, seed: int) -> str:
    return f"{point_key(n, m)},seed={seed}"


def evaluate_point(payload: dict[str, Any], seed: int, device: str) -> float | list[float]:
    """The grid's evaluation function (`autoaug.search.workers.EvalFn`): train one child with
    RandAugment(N, M) and return its validation accuracy; with `save` set, also write its test
    accuracy and test softmax there (`autoaug.training.ensemble.save_outputs`). A fused group of
    points (payload `trials.FUSED`): their children trained as one network, a reward each."""
    members = payload[FUSED] if FUSED in payload else [[payload, seed]]
    first = members[0][0]  # every point of a grid has the same dataset and recipe
    data = device_data(first["dataset"], device, image_size=first.get("image_size"))
    config = TrainConfig(**{**first["train"], "device": device})
    augments = [RandAugment(p["n"], p["m"], tuple(p["ops"])) for p, _ in members]
    if FUSED in payload:
        net = train_fused(augments, data, config, [s for _, s in members])
        models = [net.child(i) for i in range(len(members))]
    else:
        models = [train_model(augments[0], data, config, seed)[0]]
    rewards = []
    for model, augment, (point, point_seed) in zip(models, augments, members):
        val_acc = val_accuracy(model, data, config)
        if point.get("save"):
            proba = predict_proba(model, data.test_x, mean=data.mean, std=data.std, batch_size=config.eval_batch_size)
            save_outputs(
                point["save"], val_acc=val_acc, test_proba=proba.numpy(), test_labels=data.test_y.cpu().numpy(),
                seed=point_seed, policy=augment.to_json(), dataset=point["dataset"],
            )
        rewards.append(val_acc)
    return rewards if FUSED in payload else rewards[0]


@dataclass(frozen=True)
class GridPoint:
    """The children of one (N, M)."""

    n: int
    m: float
    seeds: tuple[int, ...]  # seeds of the finished children
    val_accs: tuple[float, ...]
    test_accs: tuple[float | None, ...]
    failed: int  # children whose evaluation failed

    @property
    def val_mean(self) -> float | None:
        return statistics.fmean(self.val_accs) if self.val_accs else None

    @property
    def val_std(self) -> float | None:
        return statistics.stdev(self.val_accs) if len(self.val_accs) > 1 else None

    @property
    def test_mean(self) -> float | None:
        known = [t for t in self.test_accs if t is not None]
        return statistics.fmean(known) if known else None


@dataclass(frozen=True)
class GridResult:
    spec: GridSpec
    points: tuple[GridPoint, ...]
    best: GridPoint
    evaluated: int  # children trained by this run (the rest came from the store)
    out_dir: Path

    def best_policy(self) -> RandAugment:
        b = self.best
        return RandAugment(b.n, b.m, self.spec.ops, {
            "source": f"autoaug randaugment grid in {self.out_dir}",
            "dataset": self.spec.dataset,
            "image_size": self.spec.image_size,
            "grid": {"n": list(self.spec.ns), "m": list(self.spec.ms), "seeds": self.spec.seeds},
            "val_acc_mean": b.val_mean,
            "model": self.spec.train.model,
            "epochs": self.spec.train.epochs,
        })


def run_grid(
    spec: GridSpec,
    out_dir: str | Path,
    *,
    backend: str = "process",
    devices: Sequence[str] = ("auto",),
    workers: int = 1,
    timeout_s: float | None = None,
    ray_options: RayOptions | None = None,
    retry_failed: bool = False,
    fuse: int | None = None,
    fn: EvalFn = evaluate_point,
    progress: bool = True,
) -> GridResult:
    """Train every (N, M, seed) of `spec` not already done in `out_dir`, then write the tables
    (grid.md, grid.json) and the best (N, M) as native and albumentations JSON.

    Resumable: every child is a trial of the run directory's `TrialStore`; a rerun (after a
    kill, or with more N / M values or seeds) trains only what the store lacks, as one more
    batch. A failed child stays failed unless `retry_failed`. `fn` is the evaluation function
    (tests pass stubs); the pool arguments are `autoaug.search.pool.make_pool`'s. `fuse`:
    children a worker trains at once as one fused network (None: `pool.DEFAULT_FUSE` of the
    workers' device kind; a fused group of K gets K times `timeout_s`).
    """
    check_timeout(timeout_s)  # before the run directory is touched
    fuse = resolve_fuse(fuse, backend, devices, ray_options.num_gpus if ray_options else 0.0)
    out = Path(out_dir)
    with open_run(out) as (store, _):
        check_setup(store, "randaugment_setup", spec.setup(), "RandAugment grid")
        latest = {(t.key, t.seed): t for t in store.rows()}  # the newest row of each point
        new_specs = []
        for n, m, seed in spec.points():
            row = latest.get((point_key(n, m), seed))
            if row is None or (retry_failed and row.status == "failed"):
                setup = spec.setup()
                payload = {"n": n, "m": m, "ops": setup["ops"], "dataset": spec.dataset, "train": setup["train"]}
                if spec.image_size is not None:
                    payload["image_size"] = spec.image_size
                if spec.save_outputs:
                    payload["save"] = str((out / MODELS_DIR / point_name(n, m, seed)).resolve())
                new_specs.append(TrialSpec(key=point_key(n, m), payload=payload, seed=seed))
        for trial in add_batch(store, new_specs):
            latest[(trial.key, trial.seed)] = trial
        wanted = [latest[(point_key(n, m), seed)] for n, m, seed in spec.points()]
        evaluated = sum(t.status == "pending" for t in wanted)
        if evaluated:
            bar = tqdm(total=evaluated, desc="randaugment grid", unit="child", disable=not progress)
            with make_pool(fn, backend=backend, devices=devices, workers=workers,
                           timeout_s=None if timeout_s is None else timeout_s * fuse, ray_options=ray_options) as pool, bar:
                wanted = run_trials(store, pool, wanted, on_result=lambda _: bar.update(1), fuse=fuse)
    result = _collect(spec, {(t.key, t.seed): t for t in wanted}, out, evaluated)
    _write_grid(result)
    return result


def _collect(spec: GridSpec, rows: dict, out: Path, evaluated: int) -> GridResult:
    points = []
    for n in spec.ns:
        for m in spec.ms:
            seeds, vals, tests, failed = [], [], [], 0
            for k in range(spec.seeds):
                seed = spec.first_seed + k
                trial = rows[(point_key(n, m), seed)]
                if trial.status != "done":
                    failed += 1
                    continue
                seeds.append(seed)
                vals.append(float(trial.reward))
                save = trial.payload.get("save")
                meta = read_outputs_meta(save) if save else None
                tests.append(meta.get("test_acc") if meta else None)
            points.append(GridPoint(n, m, tuple(seeds), tuple(vals), tuple(tests), failed))
    done = [p for p in points if p.val_accs]
    if not done:
        first = next(iter(rows.values()))
        raise AutoaugError(f"{out}: every child of the grid failed (e.g. {first.key}: {first.error})")
    # highest mean validation accuracy; a tie goes to the smaller N, then the smaller M
    best = max(done, key=lambda p: (p.val_mean, -p.n, -p.m))
    return GridResult(spec, tuple(points), best, evaluated, out)


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _cell(values: Sequence[float], failed: int) -> str:
    if not values:
        return "failed" if failed else "-"
    text = f"{100 * statistics.fmean(values):.2f}"
    if len(values) > 1:
        text += f" ± {100 * statistics.stdev(values):.2f}"
    return text + (f" ({failed} failed)" if failed else "")


def grid_markdown(result: GridResult) -> str:
    spec = result.spec
    by = {(p.n, p.m): p for p in result.points}
    head = "| N \\ M | " + " | ".join(f"{m:g}" for m in spec.ms) + " |"
    rule = "|---|" + "---|" * len(spec.ms)
    lines = [
        f"# RandAugment grid on {spec.dataset}",
        "",
        f"{spec.train.model}, {spec.train.epochs} epochs"
        + ((", then pad-crop + flip" if spec.train.flip else ", then pad-crop") if spec.train.standard else "")
        + (f", then Cutout {spec.train.cutout}" if spec.train.cutout else "")
        + f"; {spec.seeds} seed(s) per point from seed {spec.first_seed}; {len(spec.ops)} candidate ops: "
        f"{', '.join(spec.ops)}.",
        "M on the 0..30 scale. Cells: mean ± std over seeds, in %.",
        "",
        "## Validation accuracy (selects the best point)",
        "",
        head,
        rule,
    ]
    for n in spec.ns:
        lines.append(f"| {n} | " + " | ".join(_cell(by[(n, m)].val_accs, by[(n, m)].failed) for m in spec.ms) + " |")
    if spec.save_outputs:
        lines += ["", "## Test accuracy (reported, never used to choose)", "", head, rule]
        for n in spec.ns:
            cells = [_cell([t for t in by[(n, m)].test_accs if t is not None], 0) for m in spec.ms]
            lines.append(f"| {n} | " + " | ".join(cells) + " |")
    b = result.best
    lines += [
        "",
        f"Best: N={b.n}, M={b.m:g}: validation {_pct(b.val_mean)}%"
        + (f" ± {100 * b.val_std:.2f}" if b.val_std is not None else "")
        + (f", test {_pct(b.test_mean)}%" if b.test_mean is not None else "")
        + f". Exported to {BEST_JSON} and {BEST_JSON[:-5]}.albumentations.json.",
        "",
    ]
    return "\n".join(lines)


def _write_grid(result: GridResult) -> None:
    out = result.out_dir
    doc = {
        "setup": result.spec.setup(),
        "grid": {"n": list(result.spec.ns), "m": list(result.spec.ms), "seeds": result.spec.seeds,
                 "first_seed": result.spec.first_seed},
        "points": [
            {"n": p.n, "m": p.m, "seeds": list(p.seeds), "val_acc": list(p.val_accs), "test_acc": list(p.test_accs),
             "val_mean": p.val_mean, "val_std": p.val_std, "test_mean": p.test_mean, "failed": p.failed}
            for p in result.points
        ],
        "best": {"n": result.best.n, "m": result.best.m, "val_mean": result.best.val_mean,
                 "test_mean": result.best.test_mean},
    }
    save_json(doc, out / GRID_JSON)
    save_text(grid_markdown(result), out / GRID_MD)
    policy = result.best_policy()
    policy.save(out / BEST_JSON)
    save_albumentations(policy, albumentations_path(out / BEST_JSON))
