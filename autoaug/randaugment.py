"""RandAugment, TrivialAugment, the adaptive magnitude and the RandAugment grid search (issue #5).

This module owns the two augmenters that need no search, their native JSON form, the
`randaugment:N=2,M=9` / `trivialaugment` specs, the adaptive-M rule and the `autoaug randaugment`
grid search. Both augmenters draw from the op table of `autoaug.ops` and run through the same
`autoaug.augment.apply_ops` as a learned policy; both export to albumentations.

RandAugment (Cubuk et al. 2019, "RandAugment: Practical automated data augmentation with a
reduced search space")
- Each image gets N ops drawn uniformly *with replacement* from the candidates, applied in the
  order drawn, every one of them (no probabilities), all at one global magnitude M.
- M is on the 0..30 scale of the paper's experiments (ResNet-50 on ImageNet: N=2, M=9;
  EfficientNet-B7: M=28) and of torchvision's `RandAugment` (31 magnitude bins, default M=9).
  For every op, physical magnitude = low + (high - low) * M / 30 over the op's table range, so
  M=30 is the table's top bin (bin 9). M may be fractional (the adaptive M moves it in small
  steps); ops with integer magnitudes (Solarize, Posterize) round, as their bins do.
- Signed ops (shear, translate, rotate) get a random sign per application.
- The table's direction is kept: Solarize's threshold falls with M (256 at M=0, nothing
  inverted, to 0 at M=30, everything; the AutoAugment reference code's direction and
  torchvision's; the RandAugment authors' TF code runs it the other way), and Contrast / Color /
  Brightness / Sharpness factors go from 0.1 (M=0) through 1.0 (M=15, the identity) to 1.9
  (M=30), which is the RandAugment TF code's `_enhance_level_to_arg` too, so for those four a
  larger M is not a stronger op. torchvision instead reads them as 1 +/- 0.9 M/30 with a random
  sign.

Candidates (a user choice: `ops=`, the JSON "ops" list, `--ops`, `ops=A+B` in a spec)
- Default, `DEFAULT_OPS`: the table's 16 ops minus SamplePairing (it needs a second image, which
  an albumentations pipeline applied to one image does not have without an image pool) and
  Invert (the RandAugment paper's list has no Invert, and Solarize at M=30, threshold 0, already
  is an Invert). That leaves 14 ops.
- "Identity" (leave the image alone) is accepted as an extra candidate name; it is handled here
  (it never fires) and exports as `A.NoOp`. The paper's own 14 are `PAPER_OPS`: Identity plus the
  default list without Cutout (the paper applies Cutout outside RandAugment, as
  `TrainConfig.cutout` does here).

TrivialAugment (Mueller & Hutter 2021, "TrivialAugment: Tuning-free yet state-of-the-art data
augmentation")
- One op per image drawn uniformly from the candidates, at a magnitude drawn uniformly.
- Magnitudes are uniform over the table's 10 bins (0..9) of the table's ranges, so the
  albumentations form is a finite `OneOf`. TA as published draws from 31 levels over its own,
  wider ranges ("TA (Wide)": shear 0.99, translate 32 px, rotate 135 deg, enhancement factors
  0.01..1.99); here the ranges are AutoAugment's, the same the search and RandAugment use.

Adaptive M (this project's refinement; `adapt_magnitude` is the exact rule)
- After each epoch, with validation accuracy `acc` and the best validation accuracy of the
  earlier epochs `best`: if acc < best, M <- min(m_max, M + step * (best - acc) / best); else M
  stays. After epoch 0 (no earlier epoch) M stays. M never decreases and never passes m_max
  (default 30, the top bin). The intuition: a validation dip while training accuracy keeps
  rising is read as over-fitting, which more augmentation counters.

Grid search (`run_grid`, `autoaug randaugment`)
- Every grid point (N, M, seed) is one trial of a `TrialStore` evaluated by `autoaug.workers`
  (local processes, inline, or Ray), so a killed grid resumes without re-training finished
  points, and a grid can be extended (more M values, more seeds) in the same directory.
- The run directory holds `trials.sqlite`, `grid.md` / `grid.json` (validation accuracy per
  point, mean and std over seeds; test accuracy beside it, never used to choose), the best (N, M)
  as `best.json` + `best.albumentations.json`, and `models/N=..,M=..,seed=../` with each child's
  test softmax for `autoaug ensemble` (on Ray across machines, put --out on a shared file system).

albumentations exports
- RandAugment is N `OneOf`s of the candidates at M in a row; TrivialAugment one `OneOf` over the
  candidates, each a `OneOf` over its 10 bins. A signed op is a `OneOf` of +m and -m. The default
  candidates include Sharpness, one of autoaug's own transforms: `import autoaug` before `A.load`.
- Seed such a pipeline with one shared stream, `autoaug.export.seed_pipeline(pipeline, s)` (what
  `autoaug.train` does in DataLoader workers), not with
  `A.Compose(..., seed=s)` or `set_random_seed(s)`: albumentations 2.0.8 then gives every nested
  transform its own generator seeded with the same number, and RandAugment's N `OneOf`s all draw
  the same op. Unseeded pipelines (e.g. straight from `A.load`) are fine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import albumentations as A
import torch

from autoaug.augment import apply_ops
from autoaug.errors import AutoaugError, ConfigError, PolicyError
from autoaug.export import op_to_albumentations
from autoaug.ops import MAGNITUDE_BINS, OP_NAMES, OPS_BY_NAME
from autoaug.policy import FORMAT, VERSION, _check_header, _short, save_json

M_MAX = 30.0  # top of RandAugment's magnitude scale (0..30); physical magnitude = table top bin
DEFAULT_M = 9.0  # torchvision's default and the paper's ResNet-50 value
DEFAULT_N = 2
IDENTITY = "Identity"  # a candidate name handled here, not a table row
CANDIDATE_NAMES: tuple[str, ...] = OP_NAMES + (IDENTITY,)
DEFAULT_OPS: tuple[str, ...] = tuple(name for name in OP_NAMES if name not in ("Invert", "SamplePairing"))
PAPER_OPS: tuple[str, ...] = (IDENTITY,) + tuple(name for name in DEFAULT_OPS if name != "Cutout")
KINDS = ("randaugment", "trivialaugment")


def magnitude_at(name: str, m: float) -> float:
    """Physical magnitude of table op `name` at RandAugment magnitude `m` (0..30), before the sign."""
    op = OPS_BY_NAME[name]
    if op.low is None or op.high is None:
        return 0.0
    value = op.low + (op.high - op.low) * m / M_MAX
    return float(round(value)) if op.integer else value


def check_ops(ops: Any, where: str = "ops") -> tuple[str, ...]:
    """A non-empty list of distinct candidate names (table ops or "Identity"), as a tuple."""
    if isinstance(ops, str) or not isinstance(ops, (list, tuple)) or not ops:
        raise PolicyError(f"{where}: expected a non-empty list of op names, got {_short(ops)}")
    for i, name in enumerate(ops):
        if name not in CANDIDATE_NAMES:
            raise PolicyError(
                f"{where}[{i}]: unknown op {_short(name)}; expected one of {', '.join(CANDIDATE_NAMES)}"
            )
    duplicates = sorted({name for name in ops if list(ops).count(name) > 1})
    if duplicates:
        raise PolicyError(f"{where}: each op at most once, got {', '.join(duplicates)} more than once")
    return tuple(ops)


def _check_n(n: Any, where: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise PolicyError(f"{where}: expected N, the number of ops per image, an integer >= 1, got {_short(n)}")
    return n


def _check_m(m: Any, where: str) -> float:
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not math.isfinite(m) or not 0 <= m <= M_MAX:
        raise PolicyError(f"{where}: expected M, a number in [0, {M_MAX:g}], got {_short(m)}")
    return float(m)


def _candidate_table(ops: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(K,) table op ids (-1 for Identity) and (K,) whether each candidate is signed."""
    ids = torch.tensor([OP_NAMES.index(name) if name != IDENTITY else -1 for name in ops])
    signed = torch.tensor([name != IDENTITY and OPS_BY_NAME[name].signed for name in ops])
    return ids, signed


def _candidate_albumentations(name: str, magnitude: float) -> A.BasicTransform:
    if name == IDENTITY:
        return A.NoOp(p=1.0)
    return op_to_albumentations(name, magnitude, 1.0)


@dataclass(frozen=True)
class Draws:
    """Per-image choices of one batch, the arguments of `apply_ops` (all CPU tensors)."""

    op_ids: torch.Tensor  # (B, depth) long, table op ids
    magnitudes: torch.Tensor  # (B, depth) float32, signed physical magnitudes
    fire: torch.Tensor  # (B, depth) bool; False only for Identity
    candidates: torch.Tensor  # (B, depth) long, position in the augmenter's `ops`


@dataclass(frozen=True)
class RandAugment:
    """N ops per image, drawn uniformly with replacement from `ops`, all at magnitude `m` (0..30).

    Callable like a policy's batched execution: `(uint8 (B, C, H, W), generator) -> uint8`.
    """

    n: int = DEFAULT_N
    m: float = DEFAULT_M
    ops: tuple[str, ...] = DEFAULT_OPS
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    _ids: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)
    _signed: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)
    _mags: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check_n(self.n, "randaugment n")
        object.__setattr__(self, "m", _check_m(self.m, "randaugment m"))
        object.__setattr__(self, "ops", check_ops(self.ops, "randaugment ops"))
        ids, signed = _candidate_table(self.ops)
        mags = torch.tensor([0.0 if name == IDENTITY else magnitude_at(name, self.m) for name in self.ops])
        object.__setattr__(self, "_ids", ids)
        object.__setattr__(self, "_signed", signed)
        object.__setattr__(self, "_mags", mags)

    def with_magnitude(self, m: float, **provenance: Any) -> RandAugment:
        """The same N and candidates at another M (provenance extended by `provenance`)."""
        return RandAugment(self.n, m, self.ops, {**self.provenance, **provenance})

    def sample(self, batch_size: int, generator: torch.Generator) -> Draws:
        """Draw every image's N ops and signs from `generator` (on any device)."""
        gdev = generator.device
        shape = (batch_size, self.n)
        choice = torch.randint(len(self.ops), shape, generator=generator, device=gdev).cpu()  # (B, N)
        sign = torch.randint(0, 2, shape, generator=generator, device=gdev).cpu() * 2 - 1  # (B, N)
        ids = self._ids[choice]  # (B, N)
        mags = self._mags[choice] * torch.where(self._signed[choice], sign, 1)  # (B, N)
        return Draws(ids.clamp_min(0), mags, ids >= 0, choice)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        d = self.sample(images.shape[0], generator)
        return apply_ops(images, d.op_ids, d.magnitudes, d.fire, generator)

    def to_albumentations_transforms(self) -> list[A.BasicTransform]:
        """N `OneOf`s of the candidates at M, one after the other.

        Not `SomeOf(n=N, replace=True)`: albumentations sorts the indices it draws, which would
        apply the ops in candidate-list order instead of the order drawn.
        """
        return [
            A.OneOf([_candidate_albumentations(name, float(mag)) for name, mag in zip(self.ops, self._mags)], p=1.0)
            for _ in range(self.n)
        ]

    def to_albumentations(self, image_pool: Any = None) -> A.Compose:
        from autoaug.export import to_albumentations

        return to_albumentations(self, image_pool=image_pool)

    def to_json(self) -> dict[str, Any]:
        m: float | int = int(self.m) if self.m == int(self.m) else self.m
        return {
            "format": FORMAT, "version": VERSION, "kind": "randaugment",
            "n": self.n, "m": m, "ops": list(self.ops), "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self.to_json(), path)

    def describe(self) -> str:
        lines = [f"RandAugment: N={self.n} ops per image at M={self.m:g} (of {M_MAX:g}), {len(self.ops)} candidates"]
        for name, mag in zip(self.ops, self._mags.tolist()):
            if name == IDENTITY or not OPS_BY_NAME[name].has_magnitude:
                lines.append(f"  {name}")
            else:
                op = OPS_BY_NAME[name]
                lines.append(f"  {name}: {'+/-' if op.signed else ''}{mag:.3g} {op.unit}")
        return "\n".join(lines)

    @property
    def op_names(self) -> set[str]:
        return set(self.ops) - {IDENTITY}


@dataclass(frozen=True)
class TrivialAugment:
    """One op per image drawn uniformly from `ops`, at a magnitude bin drawn uniformly from 0..9."""

    ops: tuple[str, ...] = DEFAULT_OPS
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    _ids: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)
    _signed: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)
    _bin_mags: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", check_ops(self.ops, "trivialaugment ops"))
        ids, signed = _candidate_table(self.ops)
        table = [
            [0.0 if name == IDENTITY else OPS_BY_NAME[name].magnitude(b) for b in range(MAGNITUDE_BINS)]
            for name in self.ops
        ]
        object.__setattr__(self, "_ids", ids)
        object.__setattr__(self, "_signed", signed)
        object.__setattr__(self, "_bin_mags", torch.tensor(table))  # (K, 10)

    def sample(self, batch_size: int, generator: torch.Generator) -> Draws:
        gdev = generator.device
        shape = (batch_size, 1)
        choice = torch.randint(len(self.ops), shape, generator=generator, device=gdev).cpu()  # (B, 1)
        bins = torch.randint(MAGNITUDE_BINS, shape, generator=generator, device=gdev).cpu()  # (B, 1)
        sign = torch.randint(0, 2, shape, generator=generator, device=gdev).cpu() * 2 - 1  # (B, 1)
        ids = self._ids[choice]  # (B, 1)
        mags = self._bin_mags[choice, bins] * torch.where(self._signed[choice], sign, 1)  # (B, 1)
        return Draws(ids.clamp_min(0), mags, ids >= 0, choice)

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        d = self.sample(images.shape[0], generator)
        return apply_ops(images, d.op_ids, d.magnitudes, d.fire, generator)

    def to_albumentations_transforms(self) -> list[A.BasicTransform]:
        """`OneOf` over the candidates, each a `OneOf` over its 10 bins (one transform if it has
        no magnitude: its bins are all the same op)."""
        per_op: list[A.BasicTransform] = []
        for name, mags in zip(self.ops, self._bin_mags.tolist()):
            if name == IDENTITY or not OPS_BY_NAME[name].has_magnitude:
                per_op.append(_candidate_albumentations(name, 0.0))
            else:
                per_op.append(A.OneOf([op_to_albumentations(name, m, 1.0) for m in mags], p=1.0))
        return [A.OneOf(per_op, p=1.0)]

    def to_albumentations(self, image_pool: Any = None) -> A.Compose:
        from autoaug.export import to_albumentations

        return to_albumentations(self, image_pool=image_pool)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "kind": "trivialaugment",
            "ops": list(self.ops), "provenance": self.provenance,
        }

    def save(self, path: str | Path) -> Path:
        return save_json(self.to_json(), path)

    def describe(self) -> str:
        return (
            f"TrivialAugment: 1 op per image from {len(self.ops)} candidates, magnitude bin uniform in "
            f"0..{MAGNITUDE_BINS - 1}\n  " + ", ".join(self.ops)
        )

    @property
    def op_names(self) -> set[str]:
        return set(self.ops) - {IDENTITY}


Augmenter = RandAugment | TrivialAugment


# ---- JSON and specs ----------------------------------------------------------------------------

_KEYS = {
    "randaugment": {"format", "version", "kind", "n", "m", "ops", "provenance"},
    "trivialaugment": {"format", "version", "kind", "ops", "provenance"},
}


def from_json(doc: Any, where: str = "policy") -> Augmenter:
    """A `"kind": "randaugment"` or `"trivialaugment"` native document (see `to_json`)."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    _check_header(doc, where, kind if kind in KINDS else "randaugment")
    unknown = sorted(set(doc) - _KEYS[kind])
    if unknown:
        raise PolicyError(f"{where}: unknown keys {unknown}; expected {', '.join(sorted(_KEYS[kind]))}")
    provenance = doc.get("provenance", {})
    if not isinstance(provenance, dict):
        raise PolicyError(f"{where}: provenance: expected an object, got {_short(provenance)}")
    ops = check_ops(doc["ops"], f"{where}: ops") if "ops" in doc else DEFAULT_OPS
    if kind == "trivialaugment":
        return TrivialAugment(ops, provenance)
    for key in ("n", "m"):
        if key not in doc:
            raise PolicyError(f"{where}: missing \"{key}\"")
    n = _check_n(doc["n"], f"{where}: n")
    m = _check_m(doc["m"], f"{where}: m")
    return RandAugment(n, m, ops, provenance)


def is_spec(spec: str) -> bool:
    """Whether `spec` names one of this module's augmenters (`randaugment...`, `trivialaugment...`)."""
    return spec.split(":", 1)[0].lower() in KINDS


def parse_spec(spec: str) -> Augmenter:
    """`randaugment` (N=2, M=9), `randaugment:N=2,M=9`, `trivialaugment`, with an optional
    `ops=ShearX+Rotate+Identity` (any order of keys; keys are case-insensitive)."""
    head, _, rest = spec.partition(":")
    kind = head.lower()
    if kind not in KINDS:
        raise PolicyError(f"{spec!r}: expected randaugment[:N=..,M=..,ops=A+B] or trivialaugment[:ops=A+B]")
    allowed = ("n", "m", "ops") if kind == "randaugment" else ("ops",)
    values: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in allowed:
            raise PolicyError(
                f"{spec!r}: expected key=value with a key out of {', '.join(k.upper() if len(k) == 1 else k for k in allowed)}, got {part!r}"
            )
        values[key] = value.strip()
    ops = check_ops(values["ops"].split("+"), f"{spec!r} ops") if "ops" in values else DEFAULT_OPS
    source = {"source": spec}
    if kind == "trivialaugment":
        return TrivialAugment(ops, source)
    try:
        n = int(values.get("n", DEFAULT_N))
        m = float(values.get("m", DEFAULT_M))
    except ValueError:
        raise PolicyError(f"{spec!r}: expected N an integer and M a number, got N={values.get('n')!r}, M={values.get('m')!r}") from None
    return RandAugment(_check_n(n, f"{spec!r} N"), _check_m(m, f"{spec!r} M"), ops, source)


# ---- adaptive magnitude ------------------------------------------------------------------------


def adapt_magnitude(m: float, acc: float, best: float | None, step: float, m_max: float = M_MAX) -> float:
    """The adaptive-M rule after one epoch.

    `acc` is this epoch's validation accuracy, `best` the best of the earlier epochs (None after
    the first). If acc < best: M + step * (best - acc) / best, at most `m_max`; otherwise M.
    """
    if best is None or acc >= best or best <= 0:
        return m
    return min(m_max, m + step * (best - acc) / best)


@dataclass(frozen=True)
class AdaptiveStep:
    """One epoch of the adaptive magnitude."""

    epoch: int
    val_acc: float
    best_before: float | None
    m_before: float  # the M this epoch trained with
    m_after: float  # the M the next epoch trains with


class AdaptiveRandAugment:
    """RandAugment whose M follows `adapt_magnitude` after every epoch.

    Pass it as the augmentation and its `on_epoch_end` as the hook of
    `autoaug.train.train_model`. With a `logger` (a TensorBoard SummaryWriter) it logs
    `augment/magnitude`: at step e the M epoch e trained with; at step `epochs` the final M.
    """

    def __init__(
        self,
        base: RandAugment,
        *,
        step: float = 30.0,
        m_max: float = M_MAX,
        logger: Any | None = None,
    ) -> None:
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not math.isfinite(step) or step < 0:
            raise ConfigError(f"adaptive-M step must be a number >= 0, got {step!r}")
        _check_m(m_max, "adaptive-M m_max")
        if base.m > m_max:
            raise ConfigError(f"adaptive M starts at M={base.m:g}, above m_max={m_max:g}")
        self.base = base
        self.step = float(step)
        self.m_max = float(m_max)
        self.logger = logger
        self.current = base
        self.best: float | None = None
        self.history: list[AdaptiveStep] = []

    @property
    def m(self) -> float:
        return self.current.m

    def __call__(self, images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        return self.current(images, generator)

    def on_epoch_end(self, epoch: int, val_acc: float | None) -> None:
        if val_acc is None:
            raise RuntimeError("the adaptive magnitude needs the validation accuracy of every epoch")
        m_before = self.current.m
        m_after = adapt_magnitude(m_before, val_acc, self.best, self.step, self.m_max)
        self.history.append(AdaptiveStep(epoch, val_acc, self.best, m_before, m_after))
        self.best = val_acc if self.best is None else max(self.best, val_acc)
        if m_after != m_before:
            self.current = self.current.with_magnitude(m_after)
        if self.logger is not None:
            if epoch == 0:
                self.logger.add_scalar("augment/magnitude", m_before, 0)
            self.logger.add_scalar("augment/magnitude", m_after, epoch + 1)

    def final_policy(self, **provenance: Any) -> RandAugment:
        """RandAugment at the final M; provenance records the rule and the M of every epoch."""
        record = {
            "adaptive_m": {
                "rule": "after each epoch: if val_acc < best_before: M = min(m_max, M + step * (best_before - val_acc) / best_before)",
                "m_start": self.base.m,
                "m_final": self.m,
                "step": self.step,
                "m_max": self.m_max,
                "epochs": [dataclasses.asdict(h) for h in self.history],
            },
        }
        return RandAugment(self.base.n, self.m, self.base.ops, {**self.base.provenance, **record, **provenance})


# ---- grid search -------------------------------------------------------------------------------

GRID_JSON = "grid.json"
GRID_MD = "grid.md"
BEST_JSON = "best.json"
MODELS_DIR = "models"  # one sub-directory of saved outputs per (N, M, seed), for `autoaug ensemble`


@dataclass(frozen=True)
class GridSpec:
    """What a RandAugment grid trains: every (N, M) for `seeds` seeds, each point one child."""

    dataset: str = "cifar10-reduced"
    """Dataset spec (autoaug.data.DATASET_SPECS)."""
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
    """An autoaug.train.TrainConfig; its device is the worker's. None: the tiny model's recipe
    with standard augmentation and Cutout 16 after RandAugment, as `autoaug train --policy
    randaugment:...` trains, so the chosen (N, M) means the same there."""
    save_outputs: bool = True
    """Also measure test accuracy and save each child's test softmax (for `autoaug ensemble`);
    on Ray across machines the run directory must be on a file system every node sees."""

    def __post_init__(self) -> None:
        from autoaug.train import TrainConfig

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
        return {"dataset": self.dataset, "ops": list(self.ops), "train": train, "save_outputs": self.save_outputs}

    def points(self) -> list[tuple[int, float, int]]:
        return [(n, m, self.first_seed + k) for n in self.ns for m in self.ms for k in range(self.seeds)]


def policy_training() -> dict[str, Any]:
    """TrainConfig overrides under which `autoaug train` trains any policy (standard + Cutout)."""
    from autoaug.train import POLICY_CUTOUT

    return {"standard": True, "cutout": POLICY_CUTOUT}


def point_key(n: int, m: float) -> str:
    return f"N={n},M={m:g}"


def point_name(n: int, m: float, seed: int) -> str:
    return f"{point_key(n, m)},seed={seed}"


_DATA_CACHE: dict[tuple[str, str], Any] = {}


def _device_data(dataset: str, device: str):
    """The dataset on `device`, loaded once per worker process."""
    key = (dataset, device)
    if key not in _DATA_CACHE:
        from autoaug.data import load_splits
        from autoaug.train import prepare

        _DATA_CACHE.clear()  # one dataset per worker at a time
        _DATA_CACHE[key] = prepare(load_splits(dataset), device)
    return _DATA_CACHE[key]


def evaluate_point(payload: dict[str, Any], seed: int, device: str) -> float:
    """The grid's evaluation function (`autoaug.workers.EvalFn`): train one child with
    RandAugment(N, M) and return its validation accuracy; with `save` set, also write its test
    accuracy and test softmax there (`autoaug.ensemble.save_outputs`)."""
    from autoaug.train import TrainConfig, evaluate, predict_proba, train_model

    data = _device_data(payload["dataset"], device)
    config = TrainConfig(**{**payload["train"], "device": device})
    augment = RandAugment(payload["n"], payload["m"], tuple(payload["ops"]))
    model, _ = train_model(augment, data, config, seed)
    val_acc = evaluate(model, data.val_x, data.val_y, mean=data.mean, std=data.std, batch_size=config.eval_batch_size)
    if payload.get("save"):
        from autoaug.ensemble import save_outputs

        proba = predict_proba(model, data.test_x, mean=data.mean, std=data.std, batch_size=config.eval_batch_size)
        save_outputs(
            payload["save"], val_acc=val_acc, test_proba=proba.numpy(), test_labels=data.test_y.cpu().numpy(),
            seed=seed, policy=augment.to_json(), dataset=payload["dataset"],
        )
    return val_acc


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
    devices: Sequence[str] | None = None,
    timeout_s: float | None = None,
    ray_options: Any = None,
    retry_failed: bool = False,
    fn: Callable[[dict[str, Any], int, str], float] = evaluate_point,
    progress: bool = True,
) -> GridResult:
    """Train every (N, M, seed) of `spec` not already done in `out_dir`, then write the tables
    (grid.md, grid.json) and the best (N, M) as native and albumentations JSON.

    Resumable: every child is a trial of the run directory's `TrialStore`; a rerun (after a
    kill, or with more N / M values or seeds) trains only what the store lacks. A failed child
    stays failed unless `retry_failed`. `fn` is the evaluation function (tests pass stubs).
    """
    from autoaug.store import STORE_FILENAME, RunLock, TrialSpec, TrialStore

    out = Path(out_dir)
    setup = json.dumps(spec.setup(), sort_keys=True)
    with RunLock(out), TrialStore(out / STORE_FILENAME) as store:
        stored = store.get_meta("randaugment_setup")
        if stored is None:
            if store.rows():
                raise AutoaugError(f"{out}: holds trials of something other than a RandAugment grid; use another --out")
            store.set_meta("randaugment_setup", setup)
        elif stored != setup:
            old, new = json.loads(stored), json.loads(setup)
            changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
            raise AutoaugError(
                f"{out}: this grid was started with another {', '.join(changed)} "
                f"(stored: {_short(old.get(changed[0]))}); use another --out or the same setup"
            )
        store.requeue_running()
        latest = {}  # (key, seed) -> newest row
        for trial in store.rows():
            latest[(trial.key, trial.seed)] = trial
        new_specs = []
        for n, m, seed in spec.points():
            row = latest.get((point_key(n, m), seed))
            if row is None or (retry_failed and row.status == "failed"):
                payload = {"n": n, "m": m, "ops": list(spec.ops), "dataset": spec.dataset, "train": spec.setup()["train"]}
                if spec.save_outputs:
                    payload["save"] = str((out / MODELS_DIR / point_name(n, m, seed)).resolve())
                new_specs.append(TrialSpec(key=point_key(n, m), payload=payload, seed=seed))
        if new_specs:
            rounds = [t.round for t in store.rows()]
            for trial in store.add_pending(max(rounds) + 1 if rounds else 0, new_specs):
                latest[(trial.key, trial.seed)] = trial
        wanted = [latest[(point_key(n, m), seed)] for n, m, seed in spec.points()]
        todo = [t for t in wanted if t.status == "pending"]
        if todo:
            _evaluate_trials(store, todo, fn, backend, devices, timeout_s, ray_options, progress)
        rows = {(t.key, t.seed): t for t in (store.get(t.id) for t in wanted)}
    result = _collect(spec, rows, out, evaluated=len(todo))
    _write_grid(result)
    return result


def _evaluate_trials(store, todo, fn, backend, devices, timeout_s, ray_options, progress) -> None:
    from tqdm import tqdm

    from autoaug.workers import Task, WorkerPool

    bar = tqdm(total=len(todo), desc="randaugment grid", unit="child", disable=not progress)

    def on_start(task: Task, worker: str) -> None:
        store.mark_running(task.id, worker)

    def on_result(result) -> None:
        if result.ok:
            store.mark_done(result.task_id, result.reward, result.duration)
        else:
            store.mark_failed(result.task_id, result.error or "failed", result.duration, result.traceback)
            bar.write(f"child {store.get(result.task_id).key} failed: {result.error}")
        bar.update(1)

    tasks = [Task(id=t.id, payload=t.payload, seed=t.seed) for t in todo]
    try:
        with WorkerPool(fn, backend=backend, devices=devices, timeout_s=timeout_s, ray_options=ray_options) as pool:
            pool.run(tasks, on_start=on_start, on_result=on_result)
    finally:
        bar.close()


def _collect(spec: GridSpec, rows: dict, out: Path, evaluated: int) -> GridResult:
    from autoaug.ensemble import read_outputs_meta

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
        + (", then pad-crop + flip" if spec.train.standard else "")
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
    from autoaug.export import albumentations_path, save_albumentations

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
    (out / GRID_MD).write_text(grid_markdown(result))
    policy = result.best_policy()
    policy.save(out / BEST_JSON)
    save_albumentations(policy, albumentations_path(out / BEST_JSON))


# ---- command line ------------------------------------------------------------------------------


def _number_list(text: str, kind: type, flag: str) -> tuple:
    try:
        values = tuple(kind(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise ConfigError(f"{flag}: expected comma-separated {kind.__name__}s such as 1,2,3, got {text!r}") from None
    if not values:
        raise ConfigError(f"{flag}: expected at least one value, got {text!r}")
    return values


def train_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> TrainConfig overrides, each value read as its field's type."""
    from autoaug.train import TrainConfig

    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    out: dict[str, Any] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not eq or key not in defaults:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE with KEY one of {', '.join(sorted(defaults))}")
        default = defaults[key]
        try:
            if isinstance(default, bool):
                if value.lower() not in ("true", "false", "1", "0"):
                    raise ValueError
                out[key] = value.lower() in ("true", "1")
            else:
                out[key] = type(default)(value)
        except ValueError:
            raise ConfigError(f"--set {pair!r}: expected {key} as {type(default).__name__}, got {value!r}") from None
    return out


def cmd_randaugment(args: argparse.Namespace) -> int:
    from autoaug.train import TrainConfig

    overrides = {**policy_training(), **train_overrides(args.set or [])}
    if args.epochs is not None:
        overrides["epochs"] = args.epochs
    spec = GridSpec(
        dataset=args.dataset,
        ns=_number_list(args.n, int, "--n"),
        ms=_number_list(args.m, float, "--m"),
        seeds=args.seeds,
        first_seed=args.first_seed,
        ops=tuple(args.ops.split(",")) if args.ops else DEFAULT_OPS,
        train=TrainConfig.for_model(args.model, **overrides),
        save_outputs=not args.no_test,
    )
    devices = None
    ray_options = None
    if args.backend == "ray":
        from autoaug.workers import RayOptions

        ray_options = RayOptions(address=args.ray_address, num_gpus=args.ray_gpus)
    elif args.devices:
        devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    elif args.backend == "process":
        from autoaug.workers import default_devices

        devices = default_devices(args.workers)
    started = time.perf_counter()
    result = run_grid(
        spec, args.out, backend=args.backend, devices=devices, timeout_s=args.timeout,
        ray_options=ray_options, retry_failed=args.retry_failed,
    )
    total = len(spec.points())
    print(grid_markdown(result))
    print(f"trained {result.evaluated} of {total} children now ({total - result.evaluated} from the store) "
          f"in {time.perf_counter() - started:.0f}s; wrote {Path(args.out) / GRID_MD}, {GRID_JSON}, {BEST_JSON}")
    return 0


def add_commands(subparsers) -> None:
    p = subparsers.add_parser(
        "randaugment",
        help="RandAugment grid search over N and M (resumable); exports the best (N, M)",
        description="Train one child per (N, M, seed), report the validation accuracy table and export the "
        "best (N, M) as native and albumentations JSON. Rerun with the same --out to resume or extend the grid.",
    )
    p.add_argument("--dataset", default="cifar10-reduced", help="dataset spec (default cifar10-reduced)")
    p.add_argument("--n", default="1,2,3", help="values of N, ops per image (default 1,2,3)")
    p.add_argument("--m", default="3,6,9,12", help="values of M on the 0..30 scale (default 3,6,9,12)")
    p.add_argument("--seeds", type=int, default=1, help="children per grid point (default 1)")
    p.add_argument("--first-seed", type=int, default=0, help="seed of the first child of each point (default 0)")
    p.add_argument("--ops", help=f"comma-separated candidate ops (default: {','.join(DEFAULT_OPS)}; "
                   f"also Invert, SamplePairing, {IDENTITY})")
    p.add_argument("--out", default="runs/randaugment", help="run directory (default runs/randaugment)")
    p.add_argument("--model", default="tiny", help="child network (default tiny)")
    p.add_argument("--epochs", type=int, help="epochs per child (default: the model's recipe)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a training setting, e.g. --set lr=0.1 (children train like `autoaug train "
                   "--policy randaugment:...`: standard augmentation and Cutout 16 after RandAugment)")
    p.add_argument("--backend", default="process", choices=("process", "inline", "ray"), help="where children train")
    p.add_argument("--workers", type=int, help="local worker processes (default: one per GPU, else 1)")
    p.add_argument("--devices", help="comma-separated worker devices, e.g. cuda:0,cuda:0,cuda:1 (overrides --workers)")
    p.add_argument("--ray-address", default="auto", help="Ray cluster address (backend ray; default auto)")
    p.add_argument("--ray-gpus", type=float, default=0.0, help="GPUs per child on Ray (default 0)")
    p.add_argument("--timeout", type=float, help="seconds after which a child counts as failed")
    p.add_argument("--retry-failed", action="store_true", help="train failed children again")
    p.add_argument("--no-test", action="store_true", help="skip test accuracy and the saved softmax (no ensembles)")
    p.set_defaults(func=cmd_randaugment)


def adaptive_for_training(source: Any, step: float, logger: Any | None = None) -> AdaptiveRandAugment:
    """The augmenter of `autoaug train --adaptive-m`: `source` must be a RandAugment (from a
    `randaugment:N=..,M=..` spec or a randaugment JSON file); a fresh one per training run."""
    if not isinstance(source, RandAugment):
        got = type(source).__name__ if source is not None else "a baseline without a policy"
        raise ConfigError(f"--adaptive-m needs a RandAugment policy (randaugment:N=..,M=.. or a randaugment file), got {got}")
    return AdaptiveRandAugment(source, step=step, logger=logger)


def export_adaptive(adaptive: AdaptiveRandAugment, directory: str | Path, **provenance: Any) -> Path:
    """Write the final-M policy as `policy.json` + `policy.albumentations.json` in `directory`."""
    from autoaug.export import albumentations_path, save_albumentations

    policy = adaptive.final_policy(**provenance)
    path = policy.save(Path(directory) / "policy.json")
    save_albumentations(policy, albumentations_path(path))
    return path
