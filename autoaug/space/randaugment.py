"""RandAugment, TrivialAugment and the adaptive magnitude (issue #5).

Both augmenters draw from the op table of `autoaug.space.ops`, run through the same
`autoaug.space.augment.apply_ops` as a learned policy and export to albumentations; the grid
search over N and M is `autoaug.search.grid`.

RandAugment (Cubuk et al. 2019, "RandAugment: Practical automated data augmentation with a
reduced search space")
- Each image gets N ops drawn uniformly *with replacement* from the candidates, applied in the
  order drawn, every one of them (no probabilities), all at one global magnitude M.
- M is on the 0..30 scale of the paper's experiments (ResNet-50 on ImageNet: N=2, M=9;
  EfficientNet-B7: M=28) and of torchvision's `RandAugment` (31 magnitude bins, default M=9).
  M=30 is the table's top bin (bin 9); M may be fractional (the adaptive M moves it in small
  steps); ops with integer magnitudes (Solarize, Posterize) round, as their bins do.
- The table's direction is kept: Solarize's threshold falls with M (the AutoAugment reference
  code's direction and torchvision's; the RandAugment authors' TF code runs it the other way),
  and Contrast / Color / Brightness / Sharpness factors go from 0.1 (M=0) through 1.0 (M=15, the
  identity) to 1.9 (M=30), as the RandAugment TF code's `_enhance_level_to_arg`, so for those
  four a larger M is not a stronger op. torchvision instead reads them as 1 +/- 0.9 M/30 with a
  random sign.

Candidates (`ops=`, the JSON "ops" list, `--ops`, `ops=A+B` in a spec): by default (`DEFAULT_OPS`)
the table's 16 ops minus SamplePairing (it needs a second image, which an albumentations pipeline
applied to one image lacks without an image pool) and Invert (not in the RandAugment paper's list;
Solarize at M=30 already is one). "Identity" is accepted too; the paper's own 14 are `PAPER_OPS`
(it applies Cutout outside RandAugment, as `TrainConfig.cutout` does here).

TrivialAugment (Mueller & Hutter 2021, "TrivialAugment: Tuning-free yet state-of-the-art data
augmentation"): one op per image drawn uniformly from the candidates, at a magnitude bin drawn
uniformly from the table's 10 bins, so the albumentations form is a finite `OneOf`. TA as
published draws from 31 levels over its own, wider ranges ("TA (Wide)": shear 0.99, translate
32 px, rotate 135 deg, enhancement factors 0.01..1.99); here the ranges are AutoAugment's.

Adaptive M (this project's refinement; `adapt_magnitude` is the exact rule): M only rises, after
an epoch whose validation accuracy falls below the best so far: a validation dip while training
accuracy keeps rising is read as over-fitting, which more augmentation counters.

An exported RandAugment pipeline must be seeded with `autoaug.space.albu.seed_pipeline`, not
`A.Compose(..., seed=s)`: with the latter its N `OneOf`s all draw the same op.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import albumentations as A
import torch

from autoaug.errors import ConfigError, PolicyError, shown
from autoaug.files import save_json
from autoaug.space.augment import augment, signed_magnitudes
from autoaug.space.export import albumentations_path, save_albumentations
from autoaug.space.ops import IDENTITY_OP, MAGNITUDE_BINS, OP_NAMES, TABLE, TABLE_NAMES, op_to_albumentations
from autoaug.space.policy import FORMAT, VERSION, _check_header, _short, is_number, read_provenance
from autoaug.space.targets import Augmented, TargetParams

M_MAX = 30.0  # top of RandAugment's magnitude scale (0..30); physical magnitude = table top bin
DEFAULT_M = 9.0  # torchvision's default and the paper's ResNet-50 value
DEFAULT_N = 2
# Most ops per image: each is one pass over every image, and the paper's grid stops at N = 3; past
# a few dozen an image is noise whatever the ops, and a file's N = 10**30 would otherwise pass
# validation and then fail to allocate its (B, N) draws in training.
N_MAX = 30
IDENTITY = IDENTITY_OP.name
DEFAULT_OPS: tuple[str, ...] = tuple(name for name in OP_NAMES if name not in ("Invert", "SamplePairing"))
PAPER_OPS: tuple[str, ...] = (IDENTITY,) + tuple(name for name in DEFAULT_OPS if name != "Cutout")
KINDS = ("randaugment", "trivialaugment")


def magnitude_at(name: str, m: float) -> float:
    """Physical magnitude of table op `name` at RandAugment magnitude `m` (0..30), before the sign."""
    return TABLE[TABLE_NAMES.index(name)].magnitude(m, top=M_MAX)


def check_ops(ops: Any, where: str = "ops") -> tuple[str, ...]:
    """A non-empty list of distinct candidate names (table ops or "Identity"), as a tuple."""
    if isinstance(ops, str) or not isinstance(ops, (list, tuple)) or not ops:
        raise PolicyError(f"{where}: expected a non-empty list of op names, got {_short(ops)}")
    for i, name in enumerate(ops):
        if not isinstance(name, str) or name not in TABLE_NAMES:
            raise PolicyError(
                f"{where}[{i}]: unknown op {_short(name)}; expected one of {', '.join(TABLE_NAMES)}"
            )
    duplicates = sorted({name for name in ops if list(ops).count(name) > 1})
    if duplicates:
        raise PolicyError(f"{where}: each op at most once, got {', '.join(duplicates)} more than once")
    return tuple(ops)


def _check_n(n: Any, where: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= N_MAX:
        raise PolicyError(f"{where}: expected N, the number of ops per image, an integer in 1..{N_MAX}, got {_short(n)}")
    return n


def _check_m(m: Any, where: str) -> float:
    if not is_number(m) or not 0 <= m <= M_MAX:
        raise PolicyError(f"{where}: expected M, a number in [0, {M_MAX:g}], got {_short(m)}")
    return float(m)


def _table_ids(ops: tuple[str, ...]) -> torch.Tensor:
    """(K,) positions of the candidates in the op table."""
    return torch.tensor([TABLE_NAMES.index(name) for name in ops])


@dataclass(frozen=True)
class Draws:
    """Per-image choices of one batch, the arguments of `apply_ops` (all CPU tensors)."""

    op_ids: torch.Tensor  # (B, depth) long, table op ids
    magnitudes: torch.Tensor  # (B, depth) float32, signed physical magnitudes
    fire: torch.Tensor  # (B, depth) bool, all True: every drawn op is applied
    candidates: torch.Tensor  # (B, depth) long, position in the augmenter's `ops`


class _Drawn:
    """The batched call and `save` of RandAugment and TrivialAugment, on their `sample`."""

    def __call__(self, images: torch.Tensor, generator: torch.Generator, *, masks: Any = None, boxes: Any = None,
                 keypoints: Any = None, target_params: TargetParams | None = None) -> torch.Tensor | Augmented:
        """As `Policy.__call__`: the images, or an `Augmented` when targets come with them."""
        d = self.sample(images.shape[0], generator)
        return augment(images, (d.op_ids, d.magnitudes, d.fire), generator, masks, boxes, keypoints, target_params)

    def save(self, path: str | Path) -> Path:
        return save_json(self.to_json(), path)


@dataclass(frozen=True)
class RandAugment(_Drawn):
    """N ops per image, drawn uniformly with replacement from `ops`, all at magnitude `m` (0..30)."""

    n: int = DEFAULT_N
    m: float = DEFAULT_M
    ops: tuple[str, ...] = DEFAULT_OPS
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    _ids: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)
    _mags: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        _check_n(self.n, "randaugment n")
        object.__setattr__(self, "m", _check_m(self.m, "randaugment m"))
        object.__setattr__(self, "ops", check_ops(self.ops, "randaugment ops"))
        object.__setattr__(self, "_ids", _table_ids(self.ops))
        object.__setattr__(self, "_mags", torch.tensor([magnitude_at(name, self.m) for name in self.ops]))

    def with_magnitude(self, m: float, **provenance: Any) -> RandAugment:
        """The same N and candidates at another M (provenance extended by `provenance`)."""
        return RandAugment(self.n, m, self.ops, {**self.provenance, **provenance})

    def sample(self, batch_size: int, generator: torch.Generator) -> Draws:
        """Draw every image's N ops and signs from `generator` (on any device)."""
        gdev = generator.device
        shape = (batch_size, self.n)
        choice = torch.randint(len(self.ops), shape, generator=generator, device=gdev).cpu()  # (B, N)
        ids = self._ids[choice]  # (B, N)
        mags = signed_magnitudes(self._mags[choice], ids, generator)  # (B, N)
        return Draws(ids, mags, torch.ones(shape, dtype=torch.bool), choice)

    def to_albumentations_transforms(self, targets: TargetParams | None = None) -> list[A.BasicTransform]:
        """N `OneOf`s of the candidates at M, one after the other.

        Not `SomeOf(n=N, replace=True)`: albumentations sorts the indices it draws, which would
        apply the ops in candidate-list order instead of the order drawn.
        """
        return [
            A.OneOf([op_to_albumentations(name, float(mag), 1.0, targets)
                     for name, mag in zip(self.ops, self._mags)], p=1.0)
            for _ in range(self.n)
        ]

    def to_json(self) -> dict[str, Any]:
        m: float | int = int(self.m) if self.m == int(self.m) else self.m
        return {
            "format": FORMAT, "version": VERSION, "kind": "randaugment",
            "n": self.n, "m": m, "ops": list(self.ops), "provenance": self.provenance,
        }

    def describe(self) -> str:
        lines = [f"RandAugment: N={self.n} ops per image at M={self.m:g} (of {M_MAX:g}), {len(self.ops)} candidates"]
        for op_id, mag in zip(self._ids.tolist(), self._mags.tolist()):
            op = TABLE[op_id]
            lines.append(f"  {op.name}: {'+/-' if op.signed else ''}{mag:.3g} {op.unit}" if op.has_magnitude
                         else f"  {op.name}")
        return "\n".join(lines)

    def summary(self) -> str:
        return f"RandAugment N={self.n} M={self.m:g}"


@dataclass(frozen=True)
class TrivialAugment(_Drawn):
    """One op per image drawn uniformly from `ops`, at a magnitude bin drawn uniformly from 0..9."""

    ops: tuple[str, ...] = DEFAULT_OPS
    provenance: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    _ids: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)
    _bin_mags: torch.Tensor = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", check_ops(self.ops, "trivialaugment ops"))
        object.__setattr__(self, "_ids", _table_ids(self.ops))
        table = [[TABLE[i].magnitude(b) for b in range(MAGNITUDE_BINS)] for i in self._ids.tolist()]
        object.__setattr__(self, "_bin_mags", torch.tensor(table))  # (K, 10)

    def sample(self, batch_size: int, generator: torch.Generator) -> Draws:
        gdev = generator.device
        shape = (batch_size, 1)
        choice = torch.randint(len(self.ops), shape, generator=generator, device=gdev).cpu()  # (B, 1)
        bins = torch.randint(MAGNITUDE_BINS, shape, generator=generator, device=gdev).cpu()  # (B, 1)
        ids = self._ids[choice]  # (B, 1)
        mags = signed_magnitudes(self._bin_mags[choice, bins], ids, generator)  # (B, 1)
        return Draws(ids, mags, torch.ones(shape, dtype=torch.bool), choice)

    def to_albumentations_transforms(self, targets: TargetParams | None = None) -> list[A.BasicTransform]:
        """`OneOf` over the candidates, each a `OneOf` over its 10 bins (one transform if it has
        no magnitude: its bins are all the same op)."""
        per_op: list[A.BasicTransform] = []
        for name, op_id, mags in zip(self.ops, self._ids.tolist(), self._bin_mags.tolist()):
            if not TABLE[op_id].has_magnitude:
                per_op.append(op_to_albumentations(name, 0.0, 1.0, targets))
            else:
                per_op.append(A.OneOf([op_to_albumentations(name, m, 1.0, targets) for m in mags], p=1.0))
        return [A.OneOf(per_op, p=1.0)]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "version": VERSION, "kind": "trivialaugment",
            "ops": list(self.ops), "provenance": self.provenance,
        }

    def describe(self) -> str:
        return (
            f"TrivialAugment: 1 op per image from {len(self.ops)} candidates, magnitude bin uniform in "
            f"0..{MAGNITUDE_BINS - 1}\n  " + ", ".join(self.ops)
        )

    def summary(self) -> str:
        return "TrivialAugment"


SearchFree = RandAugment | TrivialAugment  # the augmenters that need no search


# ---- JSON and specs ----------------------------------------------------------------------------

_KEYS = {
    "randaugment": {"format", "version", "kind", "n", "m", "ops", "provenance"},
    "trivialaugment": {"format", "version", "kind", "ops", "provenance"},
}


def from_json(doc: Any, where: str = "policy") -> SearchFree:
    """A `"kind": "randaugment"` or `"trivialaugment"` native document (see `to_json`)."""
    kind = doc.get("kind") if isinstance(doc, dict) else None
    _check_header(doc, where, kind if kind in KINDS else "randaugment")
    unknown = sorted(set(doc) - _KEYS[kind])
    if unknown:
        raise PolicyError(f"{where}: unknown keys {unknown}; expected {', '.join(sorted(_KEYS[kind]))}")
    provenance = read_provenance(doc, where)
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


def parse_spec(spec: str) -> SearchFree:
    """`randaugment` (N=2, M=9), `randaugment:N=2,M=9`, `trivialaugment`, with an optional
    `ops=ShearX+Rotate+Identity` (any order of keys; keys are case-insensitive)."""
    head, _, rest = spec.partition(":")
    kind = head.lower()
    if kind not in KINDS:
        raise PolicyError(f"{shown(spec)}: expected randaugment[:N=..,M=..,ops=A+B] or trivialaugment[:ops=A+B]")
    allowed = ("n", "m", "ops") if kind == "randaugment" else ("ops",)
    values: dict[str, str] = {}
    for part in filter(None, rest.split(",")):
        key, eq, value = part.partition("=")
        key = key.strip().lower()
        if not eq or key not in allowed:
            raise PolicyError(
                f"{shown(spec)}: expected key=value with a key out of {', '.join(k.upper() if len(k) == 1 else k for k in allowed)}, got {shown(part)}"
            )
        values[key] = value.strip()
    ops = check_ops(values["ops"].split("+"), f"{shown(spec)} ops") if "ops" in values else DEFAULT_OPS
    source = {"source": spec}
    if kind == "trivialaugment":
        return TrivialAugment(ops, source)
    try:
        n = int(values.get("n", DEFAULT_N))
        m = float(values.get("m", DEFAULT_M))
    except ValueError:
        raise PolicyError(f"{shown(spec)}: expected N an integer and M a number, got N={shown(values.get('n'))}, M={shown(values.get('m'))}") from None
    return RandAugment(_check_n(n, f"{shown(spec)} N"), _check_m(m, f"{shown(spec)} M"), ops, source)


# ---- adaptive magnitude ------------------------------------------------------------------------


def adapt_magnitude(m: float, acc: float, best: float | None, step: float, m_max: float = M_MAX) -> float:
    """The adaptive-M rule after one epoch. `acc` is this epoch's validation accuracy, `best` the
    best of the earlier epochs (None after the first). If acc < best: M + step * (best - acc) /
    best, at most `m_max` (default 30, the top bin); otherwise M."""
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
    `autoaug.training.loop.train_model`. With a `logger` (a TensorBoard SummaryWriter) it logs
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
        if not is_number(step) or step < 0:
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

    def __call__(self, images: torch.Tensor, generator: torch.Generator, **targets: Any) -> torch.Tensor | Augmented:
        return self.current(images, generator, **targets)

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


def adaptive_for_training(source: Any, step: float, logger: Any | None = None) -> AdaptiveRandAugment:
    """The augmenter of `autoaug train --adaptive-m`: `source` must be a RandAugment (from a
    `randaugment:N=..,M=..` spec or a randaugment JSON file); a fresh one per training run."""
    if not isinstance(source, RandAugment):
        got = type(source).__name__ if source is not None else "a baseline without a policy"
        raise ConfigError(f"--adaptive-m needs a RandAugment policy (randaugment:N=..,M=.. or a randaugment file), got {got}")
    return AdaptiveRandAugment(source, step=step, logger=logger)


def export_adaptive(adaptive: AdaptiveRandAugment, directory: str | Path, **provenance: Any) -> Path:
    """Write the final-M policy as `policy.json` + `policy.albumentations.json` in `directory`."""
    policy = adaptive.final_policy(**provenance)
    path = policy.save(Path(directory) / "policy.json")
    save_albumentations(policy, albumentations_path(path))
    return path
