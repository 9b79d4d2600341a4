"""The search's configuration: one frozen `SearchConfig`, and the rule for resuming a run directory.

- `SearchConfig` nests the child's `TrainConfig` and the controller's `PPOConfig` as tables. Its
  defaults are the `cpu-quick` preset, so `autoaug search` with no arguments works without the
  repository's `experiments/` folder; `experiments/cpu-quick.toml` mirrors them (a test checks).
- `load_config(path, overrides)`: a TOML file, then dotted overrides (`child.epochs=5`), read by
  `autoaug.settings`; the CLI's `--budget 40` is `budget=40`.
- The resolved config saved as TOML, and the rule for resuming a run directory (`check_resume`,
  `check_identity`).

Setting `child.model` to another network starts the child from that network's recipe
(`TrainConfig.with_table`, e.g. the Wide-ResNet's lr 0.1 and batch 128); the other `child.*`
keys then apply on top. Without `child.model`, `child.*` keys change the default child.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from autoaug.errors import AutoaugError, ConfigError, shown
from autoaug.files import save_text
from autoaug.search.ppo import PPOConfig
from autoaug.search.workers import BACKENDS
from autoaug.settings import check_int, flat_values, load_settings, to_toml, toml_value
from autoaug.space.pipeline import CUTOUT_AUTO, cutout_side
from autoaug.space.specs import resolve
from autoaug.training.config import TrainConfig
from autoaug.training.device import DEVICE_NAME

ALGOS = ("ppo", "random")
REWARD_KINDS = ("child", "density")
CONFIG_FILENAME = "config.toml"

# Keys a resumed search may change: where and how fast trials run, and how many there are.
# Everything else (dataset, seed, algo, batch_size, subsets, child.*, ppo.*) changes what the
# search means, so resuming with a different value would mix two searches in one store.
RESUMABLE_KEYS = frozenset({
    "out", "budget", "workers", "devices", "backend", "ray_address", "ray_gpus_per_trial",
    "fuse", "trial_timeout_s", "export.top", "export.reevaluate_top", "export.reevaluate_seeds",
    "export.free",
})


@dataclass(frozen=True)
class RewardConfig:
    """How a policy is scored (table [reward])."""

    kind: str = "child"
    """'child': train a child with the policy, reward = its val accuracy (the paper's);
    'density': train `folds` models once, reward = their accuracy on their held-out fold
    augmented by the policy (Fast AutoAugment's density matching, autoaug.density)."""
    paired: bool = True
    """Common random numbers (issue #10): every policy of a controller batch trains on the
    batch's seed (initial weights, batch order, crops) next to a reference child without a
    policy; the store keeps each policy's raw reward and its paired reward (raw - reference),
    the controller's advantages are centred within the batch, and policies are ranked by the
    paired reward. false: a seed per trial, advantages against the EMA baseline (the paper's)."""
    folds: int = 5
    """'density': folds of the child-train images, one model each (Fast AutoAugment's K = 5)."""
    draws: int = 1
    """'density': policy-augmented copies of every held-out image per policy (more draws,
    less noise, proportionally more time)."""

    def __post_init__(self) -> None:
        if self.kind not in REWARD_KINDS:
            raise ConfigError(f"unknown reward.kind {shown(self.kind)}; expected one of {', '.join(REWARD_KINDS)}")
        if not isinstance(self.paired, bool):
            raise ConfigError(f"reward.paired must be true or false, got {shown(self.paired)}")
        check_int("reward.folds", self.folds, low=2)
        check_int("reward.draws", self.draws, low=1)


@dataclass(frozen=True)
class ExportConfig:
    """How the final policy is chosen (table [export])."""

    top: int = 5
    """Policies whose sub-policies the exported final policy concatenates (the paper's 5)."""
    reevaluate_top: int = 8
    """Re-train this many of the search's best policies on fresh seeds before export and
    export the best `top` by their mean there (issue #10): a search's best single
    rewards are partly luck. 0 = export by the search's own rewards."""
    reevaluate_seeds: int = 3
    """Fresh seeds per re-evaluated policy (paired with a reference child per seed when
    reward.paired)."""

    free: str = ""
    """More free alternatives the re-evaluation trains on its fresh seeds for the search's verdict,
    next to standard, cutout and trivialaugment (issue #20): policy specs separated by spaces,
    e.g. "autoaugment-cifar10 randaugment:N=2,M=9"."""

    def __post_init__(self) -> None:
        check_int("export.top", self.top, low=1)
        check_int("export.reevaluate_top", self.reevaluate_top, low=0)
        check_int("export.reevaluate_seeds", self.reevaluate_seeds, low=1)
        if 0 < self.reevaluate_top < self.top:
            raise ConfigError(f"export.reevaluate_top ({self.reevaluate_top}) must be 0 or at least "
                              f"export.top ({self.top}): the exported policies are chosen among the "
                              "re-evaluated ones")
        if not isinstance(self.free, str):
            raise ConfigError(f"export.free must be a string of policy specs separated by spaces, got {shown(self.free)}")
        for spec in self.free.split():
            try:
                resolve(spec)
            except AutoaugError as err:
                raise ConfigError(f"export.free: {err}") from None


@dataclass(frozen=True)
class FidelityConfig:
    """Successive halving inside each controller batch (table [fidelity], issue #21): every policy
    of a batch trains at the cheapest rung, the best `promote` of them again at the next rung on
    the same seed, and so on up to the search's own child (`autoaug.search.fidelity`).

    Each list names its rungs either in units ("16,32") or as fractions of the search's own
    value, ending at 1 ("0.5,1"): `SearchConfig.for_images` turns fractions into units once the
    images are known, and drops a rung the data cannot take (a side the child network does not
    take, images that are not square). The default is the schedule experiments/results/halving.md
    measured on CIFAR: half the side on half the images, the best quarter promoted to the search's
    child (16x16 on 500 -> 32x32 on 1,000 there)."""

    epochs: str = ""
    """Child epochs per rung, cheapest first, separated by commas ("10,20,40"); the last is
    child.epochs. "" = child.epochs at every rung."""
    train_subset: str = "0.5,1"
    """Child-train images per rung, cheapest first ("250,500,1000", or "0.5,1": fractions of
    train_subset); the last is train_subset (a smaller rung trains on the first N of those images,
    balanced the same way). "" = train_subset at every rung."""
    image_size: str = "0.5,1"
    """Image side per rung, cheapest first ("16,32", or "0.5,1": fractions of the search's side): a
    rung below the top trains on the images resized to N x N, its pad and Cutout scaled with them;
    the last is the search's own side (image_size, else the dataset's square images). "" = the
    search's images at every rung."""
    promote: float = 0.25
    """Fraction of a rung's policies trained again at the next rung: the best max(1, floor(n x
    promote)) of its n by their reward at that rung (1/4: 16 -> 4 -> 1 over three rungs)."""
    trunk: str = "0,0.5"
    """Epochs of each rung's child that its children share, cheapest rung first ("0,20"; one value
    for a search of one rung), or fractions of each rung's epochs ("0,0.5"), which name the rungs
    from the top (a search of one rung gets the top rung's): trained once per batch and rung on
    the batch's seed with the
    reference child's recipe (no policy), each policy then training only the epochs after it, from
    there (a shared trunk, `autoaug.training.loop.train_trunk`; experiments/results/frontier.md's
    `late-E` children). 0 or "" = none: each child trains every epoch with its policy. The
    re-evaluation trains its children as the top rung does, from a trunk per fresh seed; the
    verdict trains whole children. Fractions adapt like the lists above (a search whose reward
    trains no child per trial, or whose rewards are not paired, trains no trunk). The default: the
    top rung's first half shared, 20 of 40 epochs on CIFAR, halving.md's `16px-500img -> late-20,
    m = 4` (its regret: today's child's), which pays for 256 policies in about the 15 minutes
    (experiments/results/search_quality.md)."""

    def __post_init__(self) -> None:
        lists = {name: values for name, values in self.named_lists.items() if values}
        if len({len(values) for values in lists.values()}) > 1:
            counts = " and ".join(f"fidelity.{name} ({len(values)} rungs)" for name, values in lists.items())
            raise ConfigError(f"{counts} must name the same number of rungs, or some of them none (\"\")")
        # A rung costs more than the one below when none of its epochs, images or image side is
        # fewer and one is more (a list left empty is the same at every rung).
        rungs = list(zip(*lists.values()))
        for rung, (before, after) in enumerate(zip(rungs, rungs[1:]), start=1):
            if not (all(a >= b for a, b in zip(after, before)) and after != before):
                raise ConfigError(f"fidelity: rung {rung} ({_rung_text(self, rung)}) does not cost more than rung "
                                  f"{rung - 1} ({_rung_text(self, rung - 1)}); rungs go cheapest first, each with "
                                  "more epochs, images or pixels and none fewer")
        trunk = self.trunk_values
        if trunk and not _is_fraction_list(trunk) and len(trunk) != self.rungs:
            raise ConfigError(f"fidelity.trunk = {shown(self.trunk)} names {len(trunk)} rungs, the other lists "
                              f"{self.rungs}: one trunk length per rung, 0 for a rung without one")
        if isinstance(self.promote, bool) or not isinstance(self.promote, (int, float)) or not 0 < self.promote <= 1:
            raise ConfigError(f"fidelity.promote must be a fraction in (0, 1] of a rung's policies to train at the "
                              f"next rung, got {shown(self.promote)}")

    @property
    def epoch_list(self) -> tuple[int, ...]:
        return _units("fidelity.epochs", self.named_lists["epochs"])

    @property
    def subset_list(self) -> tuple[int, ...]:
        return _units("fidelity.train_subset", self.named_lists["train_subset"])

    @property
    def size_list(self) -> tuple[int, ...]:
        return _units("fidelity.image_size", self.named_lists["image_size"])

    @property
    def trunk_list(self) -> tuple[int, ...]:
        """fidelity.trunk by rung in epochs ((): no rung has a trunk)."""
        return _units("fidelity.trunk", self.trunk_values)

    @property
    def trunk_by_rung(self) -> tuple[float, ...]:
        """fidelity.trunk_values with one value per rung: fractions name the rungs from the top, so
        "0,0.5" gives a search of one rung the top rung's 0.5 (a rung below them none)."""
        values = self.trunk_values
        if not values or not _is_fraction_list(values):
            return values
        return ((0.0,) * self.rungs + values)[-self.rungs:]

    @property
    def trunk_values(self) -> tuple[float, ...]:
        """fidelity.trunk by rung as written: epochs, or fractions of each rung's epochs (a list
        with a decimal point is one); (): no rung has a trunk."""
        text = self.trunk
        if not isinstance(text, str):
            raise ConfigError(f"fidelity.trunk must be a string of epoch counts separated by commas (\"0,20\"), "
                              f"got {shown(text)}")
        if not text.strip():
            return ()
        parts = [part.strip() for part in text.split(",")]
        if any("." in part for part in parts):
            try:
                values: tuple[float, ...] = tuple(float(part) for part in parts)
            except ValueError:
                values = ()
            if not (values and all(0 <= v < 1 for v in values)):
                raise ConfigError(f"fidelity.trunk as fractions of each rung's epochs must lie in [0, 1), cheapest "
                                  f"rung first (\"0,0.5\"), got {shown(text)}")
        elif all(part.isascii() and part.isdigit() for part in parts):
            values = tuple(int(part) for part in parts)
        else:
            raise ConfigError(f"fidelity.trunk must be epoch counts >= 0 separated by commas, cheapest rung first "
                              f"(\"0,20\", or fractions of each rung's epochs: \"0,0.5\"), got {shown(text)}")
        return values if any(values) else ()

    @property
    def named_lists(self) -> dict[str, tuple[float, ...]]:
        """Each per-rung list by its key, in the order the config names them (units or fractions)."""
        return {"epochs": _rung_list("fidelity.epochs", self.epochs, "10,20,40"),
                "train_subset": _rung_list("fidelity.train_subset", self.train_subset, "250,500,1000"),
                "image_size": _rung_list("fidelity.image_size", self.image_size, "16,32")}

    @property
    def fractional(self) -> bool:
        """Whether a list names its rungs as fractions, which `SearchConfig.for_images` resolves."""
        return any(_is_fraction_list(values) for values in (*self.named_lists.values(), self.trunk_values))

    @property
    def rungs(self) -> int:
        """How many rungs: 1 unless a list names more."""
        return max(*(len(values) for values in self.named_lists.values()), 1)


def _rung_list(name: str, text: Any, example: str) -> tuple[int, ...] | tuple[float, ...]:
    """ "10, 20,40" -> (10, 20, 40); "0.5,1" -> (0.5, 1.0), fractions of the top rung's value (a
    list with a decimal point is one); "" -> (); ConfigError naming `name` for anything else."""
    if not isinstance(text, str):
        raise ConfigError(f"{name} must be a string of integers separated by commas (\"{example}\"), got {shown(text)}")
    if not text.strip():
        return ()
    parts = [part.strip() for part in text.split(",")]
    if any("." in part for part in parts):
        try:
            fractions = tuple(float(part) for part in parts)
        except ValueError:
            fractions = ()
        if not (fractions and all(0 < f <= 1 for f in fractions) and fractions[-1] == 1):
            raise ConfigError(f"{name} as fractions of the search's own value must lie in (0, 1] and end at 1, "
                              f"cheapest rung first (\"0.5,1\"), got {shown(text)}")
        return fractions
    if not all(part.isascii() and part.isdigit() and int(part) >= 1 for part in parts):
        raise ConfigError(f"{name} must be integers >= 1 separated by commas, cheapest rung first "
                          f"(\"{example}\", or fractions: \"0.5,1\"), got {shown(text)}")
    return tuple(int(part) for part in parts)


def _is_fraction_list(values: tuple[float, ...]) -> bool:
    return any(isinstance(v, float) for v in values)


def _units(name: str, values: tuple[float, ...]) -> tuple[int, ...]:
    """A list in units; fractions are only known in units once the search has its images."""
    if _is_fraction_list(values):
        raise ConfigError(f"{name} names fractions: SearchConfig.for_images turns them into units")
    return values  # type: ignore[return-value]


def _fidelity_in_units(config: SearchConfig, image_size: tuple[int, int], train_images: int | None) -> FidelityConfig:
    """config.fidelity with its fractions in units on these images: epochs and images rounded (a
    rung keeps at least one epoch and a full child batch), a side rounded up to the smallest the
    child network takes, but no further than halfway to the top's. A rung without such a side
    (images too small for the network at a smaller side, or not square) is dropped, and so is one
    no cheaper than the rung above; one rung left is the search's child alone (every list ""), as
    it is under a reward that trains no child per trial (reward.kind 'density')."""
    from autoaug.training.models import build_model, takes_size  # torch: only when fractions are resolved

    fidelity, child = config.fidelity, config.child
    height, width = image_size
    images = config.train_subset if train_images is None else min(train_images, config.train_subset or train_images)
    tops = {"epochs": child.epochs, "train_subset": images, "image_size": height}
    model = None

    def side(fraction: float) -> int | None:
        nonlocal model
        if height != width:
            return None
        model = model or build_model(child.model, 10)
        wanted = max(1, round(fraction * height))
        # No further than halfway up to the top's side: a rung barely cheaper than the top is none.
        return next((s for s in range(wanted, (wanted + height) // 2 + 1) if s < height and takes_size(model, s, s)), None)

    def in_units(name: str, value: float, last: bool) -> int | None:
        if not isinstance(value, float):  # a list in units stays as written (check_child_fits checks it)
            return value
        if last:
            return tops[name]
        if name == "epochs":
            return max(1, round(value * child.epochs))
        if name == "train_subset":
            return min(images, max(child.batch_size, round(value * images)))
        return side(value)

    lists = {name: values for name, values in fidelity.named_lists.items() if values}
    if config.reward.kind != "child" or (images is not None and images < child.batch_size):
        lists = {}  # no child per trial to train in rungs, or none trains at all (check_child_fits says why)
    trunk = fidelity.trunk_by_rung or (0,) * fidelity.rungs
    if _is_fraction_list(trunk) and (config.reward.kind != "child" or not config.reward.paired):
        trunk = (0,) * fidelity.rungs  # no child per trial, or a seed per policy: no trunk to share

    def trunk_in_units(length: float, rung: dict[str, int]) -> int:
        """A rung's trunk in epochs: a fraction of its epochs, rounded, leaving the policy one."""
        if not isinstance(length, float):
            return length
        epochs = rung.get("epochs") or child.epochs
        return min(epochs - 1, round(length * epochs))

    def trunk_text(lengths: list[float], rungs: list[dict[str, int]]) -> str:
        units = [trunk_in_units(t, r) for t, r in zip(lengths, rungs)]
        return ",".join(map(str, units)) if any(units) else ""

    rungs = []
    for rung in range(fidelity.rungs):
        units = {name: in_units(name, values[rung], rung == fidelity.rungs - 1) for name, values in lists.items()}
        if None not in units.values():
            rungs.append((units, trunk[rung]))
    kept = [(r, t) for (r, t), (above, _) in zip(rungs, rungs[1:]) if any(r[k] < above[k] for k in r)] + rungs[-1:]
    if len(kept) < 2 or not lists:  # the search's child alone, with the top rung's trunk
        return dataclasses.replace(fidelity, epochs="", train_subset="", image_size="",
                                   trunk=trunk_text([trunk[-1]], [{}]))
    if _is_fraction_list(lists.get("train_subset", ())) and config.train_subset:
        kept[-1][0]["train_subset"] = config.train_subset  # the top rung is the search's child: its setting
    return dataclasses.replace(fidelity, **{name: ",".join(str(r[name]) for r, _ in kept) for name in lists},
                               trunk=trunk_text([t for _, t in kept], [r for r, _ in kept]))


def _rung_text(fidelity: FidelityConfig, rung: int) -> str:
    return ", ".join(f"{name} {values[rung]}" for name, values in fidelity.named_lists.items() if values)


def _rung_cutout(cutout: int | str, side: int, top: int) -> int:
    """The Cutout side in pixels of a rung on side x side images when the search's child cuts
    `cutout` (pixels, or 'auto') on top x top: 'auto' is half the rung's side; pixels scale with the
    side (`run_search` has turned 'auto' into pixels, 16 at 32: 8 at 16, as 'auto' there)."""
    if cutout == CUTOUT_AUTO:
        return cutout_side(side)
    return max(1, int(cutout * side / top + 0.5)) if cutout else 0


def _cpu_quick_child() -> TrainConfig:
    # The tiny CNN's own recipe for 40 epochs on 1,000 images (SearchConfig.train_subset) with the
    # Cutout the final training adds after every policy (half the image side: 16 px on CIFAR;
    # `run_search` records it in pixels): a child that overfits, as the final
    # model does without augmentation, so augmentation pays off in it too. Of the children
    # experiments/proxy_rank.py compared, it is the only one whose reward ranks policies like the
    # 80-epoch final regime (Spearman +0.60 over 15 policies; 8 or 24 epochs on 2,000 images,
    # with or without Cutout, and density matching: -0.30 to +0.08). Its steps run in bf16 where the
    # CPU has bf16 instructions ('native': 1.3x fewer CPU seconds on an AMX CPU, accuracy the same
    # within the seeds, experiments/results/bench_precision.md), fp32 elsewhere.
    return TrainConfig.for_model("tiny", epochs=40, cutout="auto", precision="native")


def _cpu_quick_ppo() -> PPOConfig:
    # The paper's constants learn nothing in a 160-policy budget (10 updates of 4 Adam steps at
    # lr 3.5e-4). Chosen from experiments/bench_controller.py (results/bench_controller.md):
    # standardised batch-centred advantages, lr 1e-2, and an entropy floor at a fifth of the
    # uniform controller's entropy so the controller does not collapse onto wrong tokens.
    return PPOConfig(learning_rate=1e-2, norm_adv=True, ent_floor=0.2, ent_floor_coef=10.0)


@dataclass(frozen=True)
class SearchConfig:
    """One policy search. The defaults are the `cpu-quick` preset (experiments/cpu-quick.toml)."""

    dataset: str = "cifar10-reduced"
    """Dataset spec (autoaug.training.data.DATASET_SPECS); the child trains on its train split and is
    scored on its val split."""
    image_size: int | None = None
    """Resize every image to N x N pixels (a folder of mixed sizes needs it); none = the source
    size. The same setting as `--image-size` of train, randaugment, compare, show and data info."""
    out: str = "runs/search"
    """Run directory: trial store, checkpoint, TensorBoard logs, exported policy. Running the same
    command again with the same directory resumes the search."""
    budget: int = 256
    """Policies to evaluate in total (failed trials count: they were spent). 256 in two rungs of
    [fidelity], the top one from a shared trunk, take about issue #10's 15 minutes on 2 CPU cores
    (15.4-15.9 on the AMD EPYC), where 64 of one rung took 12-16 before (issue #21;
    experiments/results/search_quality.md, experiments/results/search_quality-cpu-64.md)."""
    batch_size: int = 16
    """Policies sampled per controller update (the last round may be smaller)."""
    algo: str = "ppo"
    """'ppo': the LSTM controller trained with PPO; 'random': uniform policies, same budget."""
    seed: int = 0
    """Seeds the controller's weights, its sampling, the PPO minibatches and every child."""
    train_subset: int | None = 1000
    """Child-train images per trial: the first N of the train split taken class by class in
    turn (balanced, the same images every trial); none = the whole split."""
    val_subset: int | None = 2000
    """Reward images per trial, taken from the val split like train_subset; none = all of it."""
    workers: int | str = "auto"
    """Worker processes per device (several children can share one GPU); 'auto' = one
    single-thread worker per core on a CPU, 4 per GPU (autoaug.search.pool.GPU_WORKERS)."""
    devices: str = "auto"
    """Comma-separated devices for the workers ('cpu', 'cuda:0,cuda:1'); 'auto' = every visible
    GPU, else the CPU."""
    backend: str = "process"
    """'process' (local worker processes), 'inline' (in this process, one at a time) or 'ray'."""
    ray_address: str = "auto"
    """Ray cluster address for backend 'ray' ('auto' joins the local node's cluster)."""
    ray_gpus_per_trial: float = 0.0
    """GPUs each Ray trial asks for (0.25 = four children per GPU); backend 'ray' only."""
    fuse: int | None = None
    """Children a worker trains at once as one fused network (autoaug.training.fused: K children,
    one optimiser step; each trial still its own row). none = per device kind
    (autoaug.search.pool.DEFAULT_FUSE: 1 on the CPU, 8 on a GPU). Reward 'child' only."""
    trial_timeout_s: float | None = None
    """A child still training after this many seconds is a failed trial; none = no limit (a
    fused group of K children gets K times as long)."""
    child: TrainConfig = field(default_factory=_cpu_quick_child)
    """How each child model trains (table [child]; `device` comes from `devices`)."""
    ppo: PPOConfig = field(default_factory=_cpu_quick_ppo)
    """The controller's PPO hyperparameters (table [ppo]); unused by algo 'random'."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """How a policy is scored (table [reward]): a trained child, or density matching."""
    export: ExportConfig = field(default_factory=ExportConfig)
    """How the final policy is chosen (table [export]): re-evaluation on fresh seeds."""
    fidelity: FidelityConfig = field(default_factory=FidelityConfig)
    """Successive halving over the child's epochs, images and image side within each batch (table
    [fidelity], issue #21): by default half the side on half the images, then the search's child."""

    # Keys of the nested dataclasses that the search sets itself; one way to set each thing.
    owned_keys: ClassVar[dict[str, str]] = {"child.device": "each worker's device comes from `devices`"}
    # Keys added to autoaug after runs were started with it: a run directory's config.toml written
    # before may lack them, and their defaults mean what those runs did (issue #20: child.flip, true
    # as before it existed; export.free, the verdict's extra free alternatives, none by default).
    added_later: ClassVar[frozenset[str]] = frozenset({
        "child.flip", "export.free", "image_size", "fidelity.epochs", "fidelity.train_subset", "fidelity.promote",
        "fidelity.image_size", "fidelity.trunk"})
    # Keys a run directory's config.toml written by an older autoaug still uses: issue #24 made the
    # export count one key of [export], so a run started before resumes as it was.
    renamed_keys: ClassVar[dict[str, str]] = {"export_top": "export.top"}
    # What a run directory's config.toml or a trial store's record without these keys meant: the
    # search had one rung then, and the default has changed since (issue #21).
    meant_before: ClassVar[dict[str, Any]] = {"fidelity.epochs": "", "fidelity.train_subset": "",
                                              "fidelity.image_size": "", "fidelity.trunk": ""}

    def __post_init__(self) -> None:
        for name in ("budget", "batch_size"):
            check_int(name, getattr(self, name), low=1)
        if self.workers != "auto" and (isinstance(self.workers, bool) or not isinstance(self.workers, int)
                                       or self.workers < 1):
            raise ConfigError(f"workers must be 'auto' or an int >= 1, got {shown(self.workers)}")
        check_int("seed", self.seed, low=0)
        for name in ("train_subset", "val_subset", "image_size"):
            if getattr(self, name) is not None:
                check_int(name, getattr(self, name), low=1)
        for name, allowed in (("algo", ALGOS), ("backend", BACKENDS)):
            value = getattr(self, name)
            if value not in allowed:
                raise ConfigError(f"unknown {name} {shown(value)}; expected one of {', '.join(allowed)}")
        if not isinstance(self.dataset, str) or not self.dataset:
            raise ConfigError(f"dataset must be a non-empty spec string, got {shown(self.dataset)}")
        if not isinstance(self.out, str) or not self.out:
            raise ConfigError(f"out must be a non-empty directory path, got {shown(self.out)}")
        self.device_list  # validates the spelling
        if not isinstance(self.ray_gpus_per_trial, (int, float)) or not 0 <= self.ray_gpus_per_trial < math.inf:
            raise ConfigError(f"ray_gpus_per_trial must be >= 0, got {shown(self.ray_gpus_per_trial)}")
        if self.trial_timeout_s is not None and not (
            isinstance(self.trial_timeout_s, (int, float)) and 0 < self.trial_timeout_s < math.inf
        ):
            raise ConfigError(f"trial_timeout_s must be a finite number > 0 of seconds or none, got {shown(self.trial_timeout_s)}")
        if self.fuse is not None:
            check_int("fuse", self.fuse, low=1)
            if self.fuse > 1 and self.reward.kind != "child":
                raise ConfigError(f"fuse = {self.fuse} fuses child models; reward.kind {shown(self.reward.kind)} trains none per trial")
        if not isinstance(self.child, TrainConfig):
            raise ConfigError(f"child must be a TrainConfig, got {type(self.child).__name__}")
        if not isinstance(self.ppo, PPOConfig):
            raise ConfigError(f"ppo must be a PPOConfig, got {type(self.ppo).__name__}")
        if not isinstance(self.reward, RewardConfig):
            raise ConfigError(f"reward must be a RewardConfig, got {type(self.reward).__name__}")
        if not isinstance(self.export, ExportConfig):
            raise ConfigError(f"export must be an ExportConfig, got {type(self.export).__name__}")
        if not isinstance(self.fidelity, FidelityConfig):
            raise ConfigError(f"fidelity must be a FidelityConfig, got {type(self.fidelity).__name__}")
        self._check_fidelity()

    def _check_fidelity(self) -> None:
        """The top rung is the search's own child, which the re-evaluation and the export train
        again: a list must end at child.epochs / train_subset, and only a child trains in rungs."""
        fidelity = self.fidelity
        lists = fidelity.named_lists
        in_units = any(values and not _is_fraction_list(values) for values in lists.values())
        if fidelity.rungs > 1 and self.reward.kind != "child" and in_units:  # fractions adapt: one rung
            raise ConfigError(f"[fidelity] trains children in rungs; reward.kind {shown(self.reward.kind)} trains "
                              "none per trial: set fidelity.epochs, fidelity.train_subset and "
                              "fidelity.image_size to \"\"")
        for name, values, top in (("epochs", lists["epochs"], self.child.epochs),
                                  ("train_subset", lists["train_subset"], self.train_subset)):
            if values and not _is_fraction_list(values) and top is not None and values[-1] != top:
                source = "child.epochs" if name == "epochs" else "train_subset"
                raise ConfigError(f"fidelity.{name} = {shown(getattr(fidelity, name))} must end at {source} = "
                                  f"{toml_value(top)}: the top rung is the search's own child, which the "
                                  "re-evaluation trains again")
        trunk = () if _is_fraction_list(fidelity.trunk_values) else fidelity.trunk_list  # fractions adapt
        if trunk and self.reward.kind != "child":
            raise ConfigError(f"fidelity.trunk shares the first epochs of a batch's children; reward.kind "
                              f"{shown(self.reward.kind)} trains none per trial: set fidelity.trunk to \"\"")
        if trunk and not self.reward.paired:
            raise ConfigError("fidelity.trunk shares a round's first epochs among children of one seed: it needs "
                              "reward.paired = true (without it each policy has a seed, and a trunk, of its own)")
        epochs = lists["epochs"] if lists["epochs"] and not _is_fraction_list(lists["epochs"]) else None
        for rung, length in enumerate(trunk):
            top = epochs[rung] if epochs else self.child.epochs
            if length >= top:
                raise ConfigError(f"fidelity.trunk = {shown(fidelity.trunk)}: rung {rung}'s trunk of {length} epochs "
                                  f"leaves none of its {top} to the policy; a trunk is shorter than its rung's child")
        subsets = lists["train_subset"]
        if subsets and not _is_fraction_list(subsets) and subsets[0] < self.child.batch_size:
            raise ConfigError(f"fidelity.train_subset = {shown(fidelity.train_subset)} starts below child.batch_size = "
                              f"{self.child.batch_size}: a rung's child must have a full batch to train on")
        sizes = lists["image_size"]
        if sizes and not _is_fraction_list(sizes) and self.image_size is not None and sizes[-1] != self.image_size:
            raise ConfigError(f"fidelity.image_size = {shown(fidelity.image_size)} must end at image_size = "
                              f"{self.image_size}: the top rung is the search's own child, which the "
                              "re-evaluation trains again")

    def for_images(self, image_size: tuple[int, int], train_images: int | None = None) -> SearchConfig:
        """This search on (H, W) images, `train_images` of them for the child (None: unknown, taken
        as train_subset): the child's Cutout 'auto' in pixels (16 on CIFAR) and the [fidelity]
        fractions in units, what config.toml and the trial store record, so a search's identity
        does not depend on how they were asked for (`run_search` applies it once it has the data)."""
        config = dataclasses.replace(self, child=self.child.for_images(image_size))
        if self.fidelity.fractional:
            config = dataclasses.replace(config, fidelity=_fidelity_in_units(config, image_size, train_images))
        return config

    @property
    def device_list(self) -> tuple[str, ...]:
        """`devices` split at commas, each 'auto', 'cpu', 'cuda' or 'cuda:N' (not yet resolved)."""
        parts = tuple(part.strip() for part in str(self.devices).split(","))
        for part in parts:
            if not DEVICE_NAME.fullmatch(part):
                raise ConfigError(f"devices: expected 'auto', 'cpu', 'cuda' or 'cuda:N' (comma-separated), "
                                  f"got {shown(self.devices)}")
        if "auto" in parts and len(parts) > 1:
            raise ConfigError(f"devices: 'auto' stands alone, got {shown(self.devices)}")
        return parts

    @property
    def rung_settings(self) -> tuple[dict[str, int | None], ...]:
        """{"epochs": E, "train_subset": N} of each rung, cheapest first (the last is the child's),
        with {"image_size": S, "cutout": C} when fidelity.image_size names the sides and {"trunk": T}
        where fidelity.trunk gives the rung one: a rung's
        Cutout scales with its side as the pad does (`_rung_cutout`). A 16x16 rung of the default
        CIFAR child is the child experiments/frontier.py measured as its `16px` proxy (`16px-500img`
        with train_subset 500): tiny, 40 epochs, bf16 where native, pad 2 px, Cutout 8 px ('auto'
        at 16), the data loaded at 16x16 by `device_data`, so the frontier's figures apply to it."""
        epochs = self.fidelity.epoch_list or (self.child.epochs,) * self.fidelity.rungs
        subsets = self.fidelity.subset_list or (self.train_subset,) * self.fidelity.rungs
        settings = tuple({"epochs": e, "train_subset": t} for e, t in zip(epochs, subsets))
        sizes = self.fidelity.size_list
        for rung, side in zip(settings, sizes):
            rung.update(image_size=side, cutout=_rung_cutout(self.child.cutout, side, sizes[-1]))
        for rung, length in zip(settings, self.fidelity.trunk_list):
            if length:
                rung["trunk"] = length
        return settings

    @property
    def rounds(self) -> int:
        """Controller updates the budget pays for (the last round may be smaller)."""
        return math.ceil(self.budget / self.batch_size)


def save_config(config: SearchConfig, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config to `path` atomically (temp file + rename)."""
    text = to_toml(config, header="The resolved configuration of this search (autoaug search).\n"
                                  "Running `autoaug search --out DIR` again resumes with it.")
    return save_text(text, path, "config")


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    *,
    base: SearchConfig | None = None,
    complete: bool = False,
) -> SearchConfig:
    """`autoaug.settings.load_settings` from `base` (default: the search's built-in defaults).
    `complete`: the file must set every key (a run directory's config.toml, which `save_config`
    writes whole; one that lacks keys was cut short, and defaults must not fill in for what the
    run was started with)."""
    return load_settings(SearchConfig() if base is None else base, path, overrides, complete=complete)


# --- resuming ---------------------------------------------------------------------------------


def differences(a: SearchConfig, b: SearchConfig) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every key where the two differ."""
    flat_a, flat_b = flat_values(a), flat_values(b)
    return [(k, flat_a[k], flat_b[k]) for k in flat_a if flat_a[k] != flat_b[k]]


def check_resume(saved: SearchConfig, config: SearchConfig, run_dir: str | os.PathLike[str]) -> None:
    """ConfigError if `config` changes a key that gives the search in `run_dir` another meaning.

    Only RESUMABLE_KEYS may differ from the config the run started with: the budget may grow
    (or shrink: the search then just stops), workers and devices may change.
    """
    changed = [(k, old, new) for k, old, new in differences(saved, config) if k not in RESUMABLE_KEYS]
    if changed:
        key, old, new = changed[0]
        more = f" (and {len(changed) - 1} more: {', '.join(k for k, _, _ in changed[1:])})" \
            if len(changed) > 1 else ""
        raise ConfigError(
            f"run directory {run_dir} was started with {key} = {toml_value(old)}, now "
            f"{toml_value(new)}{more}; a resumed search may only change "
            f"{', '.join(sorted(RESUMABLE_KEYS - {'out'}))}; use another --out for a new search"
        )


def search_identity(config: SearchConfig) -> str:
    """The keys that give a search its meaning (all but RESUMABLE_KEYS) as JSON: what the trial
    store records when a search starts and checks on every resume, so that a config.toml edited
    by hand cannot change a search halfway."""
    flat = flat_values(config)
    return json.dumps({k: v for k, v in flat.items() if k not in RESUMABLE_KEYS}, sort_keys=True)


def check_identity(recorded: str, config: SearchConfig, store_path: str | os.PathLike[str],
                   holder: str = "trial store") -> None:
    """ConfigError if `config` differs from the `search_identity` recorded in a trial store (or,
    `holder` "checkpoint", in a checkpoint: one copied from another search, issue #23).

    A key the record lacks (one added to autoaug after the run started) counts as its default, or
    as what a search without it did (`SearchConfig.meant_before`).
    """
    try:
        old = json.loads(recorded)
        if not isinstance(old, dict):
            raise ValueError
    except ValueError:
        raise ConfigError(f"{holder} {store_path}: its record of the search's config is not "
                          f"readable JSON; the {holder} is damaged or not from autoaug") from None
    new = json.loads(search_identity(config))
    default = {**flat_values(SearchConfig()), **SearchConfig.meant_before}
    changed = [k for k in new if old.get(k, default.get(k)) != new[k]]
    if changed:
        key = changed[0]
        raise ConfigError(f"{holder} {store_path} holds a search started with {key} = "
                          f"{_shown(old.get(key, default.get(key)))}, but its config now says "
                          f"{_shown(new[key])}{f' (and {len(changed) - 1} more)' if len(changed) > 1 else ''}"
                          + ("; was the run directory's config.toml edited? Restore the value, or use another "
                             "--out for a new search" if holder == "trial store" else
                             "; it was copied from another search: delete it to replay this search from its "
                             "trial store, or put this search's own back"))


def _shown(value: Any) -> str:
    try:
        return toml_value(value)
    except TypeError:  # a record edited into something the config never holds
        return shown(value)


def resolve_config(
    path: str | os.PathLike[str] | None, overrides: Sequence[str]
) -> tuple[SearchConfig, SearchConfig | None]:
    """What `autoaug search` runs: (config, the config saved in its run directory or None).

    Without `--config`, an existing run directory's saved config is the base the overrides apply
    to, so `autoaug search --out DIR` resumes whatever preset DIR was started with. With
    `--config`, the file is the base; `check_resume` then rejects a change of meaning.
    """
    config = load_config(path, overrides)
    saved_path = Path(config.out) / CONFIG_FILENAME
    if not saved_path.is_file():
        return config, None
    saved = load_config(saved_path, complete=True)
    if path is None:
        config = load_config(None, overrides, base=dataclasses.replace(saved, out=config.out))
    return config, saved
