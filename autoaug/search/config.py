"""The search's configuration: one frozen `SearchConfig`, loaded from TOML plus `key=value` overrides.

- `SearchConfig` nests the child's `TrainConfig` and the controller's `PPOConfig` as tables. Its
  defaults are the `cpu-quick` preset, so `autoaug search` with no arguments works without the
  repository's `experiments/` folder; `experiments/cpu-quick.toml` mirrors them (a test checks).
- `load_config(path, overrides)`: a TOML file, then dotted overrides (`child.epochs=5`); the
  CLI's `--budget 40` is `budget=40`.
- The resolved config as TOML, and the rule for resuming a run directory (`check_resume`).

TOML has no null: a field typed `X | None` takes the string "none" for None, in files and
overrides alike, and the writer writes None that way.

Setting `child.model` to another network starts the child from that network's recipe
(`TrainConfig.for_model`, e.g. the Wide-ResNet's lr 0.1 and batch 128); the other `child.*`
keys then apply on top. Without `child.model`, `child.*` keys change the default child.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import sys
import typing
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autoaug.errors import AutoaugError, ConfigError, shown
from autoaug.files import save_text
from autoaug.search.ppo import PPOConfig
from autoaug.search.workers import BACKENDS
from autoaug.space.specs import resolve
from autoaug.training.loop import DEVICE_NAME, TrainConfig

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

ALGOS = ("ppo", "random")
REWARD_KINDS = ("child", "density")
CONFIG_FILENAME = "config.toml"

# Keys a resumed search may change: where and how fast trials run, and how many there are.
# Everything else (dataset, seed, algo, batch_size, subsets, child.*, ppo.*) changes what the
# search means, so resuming with a different value would mix two searches in one store.
RESUMABLE_KEYS = frozenset({
    "out", "budget", "workers", "devices", "backend", "ray_address", "ray_gpus_per_trial",
    "fuse", "trial_timeout_s", "export_top", "export.reevaluate_top", "export.reevaluate_seeds",
    "export.free",
})

# Keys added to autoaug after runs were started with it: a run directory's config.toml written
# before may lack them, and their defaults mean what those runs did (issue #20: child.flip, true
# as before it existed; export.free, the verdict's extra free alternatives, none by default).
ADDED_LATER = frozenset({"child.flip", "export.free"})

# Keys of the nested dataclasses that the search sets itself; one way to set each thing.
_OWNED_BY_SEARCH = {"child.device": "each worker's device comes from `devices`"}
# What a change of `child.model` keeps: what the policy and the machine decide, not the network's
# recipe (`TrainConfig.for_model`).
_KEPT_ON_MODEL_CHANGE = ("standard", "flip", "cutout", "device")


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

    reevaluate_top: int = 8
    """Re-train this many of the search's best policies on fresh seeds before export and
    export the best `export_top` by their mean there (issue #10): a search's best single
    rewards are partly luck. 0 = export by the search's own rewards."""
    reevaluate_seeds: int = 3
    """Fresh seeds per re-evaluated policy (paired with a reference child per seed when
    reward.paired)."""

    free: str = ""
    """More free alternatives the re-evaluation trains on its fresh seeds for the search's verdict,
    next to standard, cutout and trivialaugment (issue #20): policy specs separated by spaces,
    e.g. "autoaugment-cifar10 randaugment:N=2,M=9"."""

    def __post_init__(self) -> None:
        check_int("export.reevaluate_top", self.reevaluate_top, low=0)
        check_int("export.reevaluate_seeds", self.reevaluate_seeds, low=1)
        if not isinstance(self.free, str):
            raise ConfigError(f"export.free must be a string of policy specs separated by spaces, got {shown(self.free)}")
        for spec in self.free.split():
            try:
                resolve(spec)
            except AutoaugError as err:
                raise ConfigError(f"export.free: {err}") from None


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
    out: str = "runs/search"
    """Run directory: trial store, checkpoint, TensorBoard logs, exported policy. Running the same
    command again with the same directory resumes the search."""
    budget: int = 64
    """Policies to evaluate in total (failed trials count: they were spent). 64 take 12-16 minutes on
    2 CPU cores (issue #10 asks for 15) (experiments/results/search_quality.md)."""
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
    workers: int = 2
    """Worker processes per device (several children can share one GPU)."""
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
    (autoaug.search.trials.DEFAULT_FUSE: 1 on the CPU, 8 on a GPU). Reward 'child' only."""
    trial_timeout_s: float | None = None
    """A child still training after this many seconds is a failed trial; none = no limit (a
    fused group of K children gets K times as long)."""
    export_top: int = 5
    """Policies whose sub-policies the exported final policy concatenates (the paper's 5)."""
    child: TrainConfig = field(default_factory=_cpu_quick_child)
    """How each child model trains (table [child]; `device` comes from `devices`)."""
    ppo: PPOConfig = field(default_factory=_cpu_quick_ppo)
    """The controller's PPO hyperparameters (table [ppo]); unused by algo 'random'."""
    reward: RewardConfig = field(default_factory=RewardConfig)
    """How a policy is scored (table [reward]): a trained child, or density matching."""
    export: ExportConfig = field(default_factory=ExportConfig)
    """How the final policy is chosen (table [export]): re-evaluation on fresh seeds."""

    def __post_init__(self) -> None:
        for name in ("budget", "batch_size", "workers", "export_top"):
            check_int(name, getattr(self, name), low=1)
        check_int("seed", self.seed, low=0)
        for name in ("train_subset", "val_subset"):
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
        if 0 < self.export.reevaluate_top < self.export_top:
            raise ConfigError(f"export.reevaluate_top ({self.export.reevaluate_top}) must be 0 or at least "
                              f"export_top ({self.export_top}): the exported policies are chosen among the "
                              "re-evaluated ones")

    def for_images(self, image_size: tuple[int, int]) -> SearchConfig:
        """This search on (H, W) images: the child's Cutout 'auto' in pixels (16 on CIFAR), what
        config.toml and the trial store record, so a search's identity does not depend on how its
        Cutout was asked for (`run_search` applies it once it has the data)."""
        return dataclasses.replace(self, child=self.child.for_images(image_size))

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
    def rounds(self) -> int:
        """Controller updates the budget pays for (the last round may be smaller)."""
        return math.ceil(self.budget / self.batch_size)


def check_int(name: str, value: Any, low: int) -> None:
    """ConfigError unless `value` is an int (not a bool) in [low, 2**63): one line naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {shown(value)}")
    if value >= _INT_LIMIT:
        raise ConfigError(f"{name} must be an int below 2**63, got {shown(value)}")


@dataclass(frozen=True)
class ChildSettings:
    """What `autoaug train` and `autoaug randaugment` read from `--set`: the child's [child] table,
    spelled as in a search (`--set child.epochs=8`)."""

    child: TrainConfig = field(default_factory=TrainConfig)
    """How the network trains (table [child])."""


def child_settings(base: TrainConfig, overrides: Sequence[str]) -> TrainConfig:
    """`base` with the `child.KEY=VALUE` overrides applied, read like a search's."""
    return load_config(None, overrides, base=ChildSettings(base)).child


# --- the key space ----------------------------------------------------------------------------

Config = SearchConfig | ChildSettings


def _tables(cls: type) -> dict[str, type]:
    """The nested dataclasses of `cls` by field name: its TOML tables."""
    return {name: hint for name, hint in _field_types(cls).items() if dataclasses.is_dataclass(hint)}


def _owned(cls: type) -> dict[str, str]:
    return _OWNED_BY_SEARCH if cls is SearchConfig else {}


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def valid_keys(cls: type = SearchConfig) -> list[str]:
    """Every settable dotted key, in declaration order (`budget`, ..., `child.epochs`, `ppo.clip_coef`)."""
    keys: list[str] = []
    tables = _tables(cls)
    for name in _field_types(cls):
        if name in tables:
            keys += [f"{name}.{sub}" for sub in _field_types(tables[name]) if f"{name}.{sub}" not in _owned(cls)]
        else:
            keys.append(name)
    return keys


def _key_type(key: str, cls: type) -> Any:
    table, _, name = key.rpartition(".")
    return _field_types(_tables(cls)[table] if table else cls)[name]


def _type_name(hint: Any) -> str:
    args = typing.get_args(hint)
    if args and type(None) in args:
        inner = [a for a in args if a is not type(None)]
        return " | ".join(_type_name(a) for a in inner) + ' | "none"'
    if set(args) == {int, str}:
        return "int or string"
    return {bool: "bool (true/false)", int: "int", float: "float", str: "string"}.get(hint, str(hint))


def _unknown_key(key: str, where: str, cls: type) -> ConfigError:
    table, _, _ = key.rpartition(".")
    if key in _owned(cls):
        return ConfigError(f"key {shown(key)} in {where} cannot be set: {_owned(cls)[key]}")
    keys = valid_keys(cls)
    tables = _tables(cls)
    if table in tables:
        same_table = [k for k in keys if k.startswith(table + ".")]
    else:
        same_table = [k for k in keys if "." not in k] + [f"[{t}]" for t in tables]
    close = difflib.get_close_matches(key, keys, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"unknown key {shown(key)} in {where}{hint}; valid keys: {', '.join(same_table)}")


# --- reading ----------------------------------------------------------------------------------


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory, expected a .toml file") from None
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}: {err.strerror or err}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config file {path} is not UTF-8 text (byte {err.object[err.start]:#04x} at "
                          f"offset {err.start}); TOML files are UTF-8") from None
    except RecursionError:
        raise ConfigError(f"config file {path} nests arrays or tables too deeply to be a config") from None
    except ValueError as err:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"config file {path} is not valid TOML: {err}") from None


def _flatten(doc: dict[str, Any], where: str, cls: type) -> dict[str, tuple[Any, str]]:
    """{'ppo': {'clip_coef': 0.1}} -> {'ppo.clip_coef': (0.1, where)}; tables only one deep."""
    flat: dict[str, tuple[Any, str]] = {}
    tables = _tables(cls)
    for name, value in doc.items():
        if isinstance(value, dict):
            if name not in tables:
                raise _unknown_key(f"{name}.{next(iter(value), '')}" if value else name, where, cls)
            for sub, sub_value in value.items():
                if isinstance(sub_value, dict):
                    raise _unknown_key(f"{name}.{sub}.{next(iter(sub_value), '')}", where, cls)
                flat[f"{name}.{sub}"] = (sub_value, where)
        elif name in tables:
            raise ConfigError(
                f"{name!r} in {where} must be a table ([{name}] or {name}.KEY = ...), got {shown(value)}"
            )
        else:
            flat[name] = (value, where)
    return flat


def _parse_override(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {shown(item)}: expected key=value, e.g. budget=40 or ppo.clip_coef=0.1")
    return key, value.strip()


def _coerce(key: str, value: Any, hint: Any, where: str) -> Any:
    """`value` as the type `hint` of `key`: a string (from --set) is parsed, a TOML value checked."""
    args = typing.get_args(hint)
    if args and type(None) in args:
        if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
            return None
        (inner,) = [a for a in args if a is not type(None)]
        hint = inner
    if set(args) == {int, str}:  # a number or a word (child.cutout: pixels or 'auto'); the field checks the word
        if isinstance(value, str) and not value.strip().lstrip("+-").isdigit():
            return value.strip()
        return _coerce(key, value, int, where)
    from_text = isinstance(value, str) and hint is not str
    try:
        if hint is bool:
            if from_text and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            if isinstance(value, bool):
                return value
        elif hint is int:
            if from_text:
                value = int(value.strip())
            if isinstance(value, int) and not isinstance(value, bool):
                if not -_INT_LIMIT <= value < _INT_LIMIT:
                    raise ConfigError(f"{key} = {shown(value)} is out of range: expected "
                                      f"a 64-bit integer ({where})")
                return value
        elif hint is float:
            if from_text:
                parsed = float(value.strip())
            elif isinstance(value, (int, float)) and not isinstance(value, bool):
                parsed = float(value)  # OverflowError for an int beyond the float range
            else:
                raise ValueError
            if not math.isfinite(parsed):
                raise ConfigError(f"{key} must be a finite number, got {shown(value)} ({where})")
            return parsed
        elif hint is str:
            if isinstance(value, str):
                return value
        else:  # pragma: no cover - a field type this loader does not know yet
            raise ConfigError(f"{key}: fields of type {hint} cannot be configured")
    except (ValueError, OverflowError):
        pass
    raise ConfigError(f"{key} expects {_type_name(hint if not args else typing.Optional[hint])}, "
                      f"got {shown(value)} ({where})")


# Integers are stored in SQLite and seed torch generators: both take signed 64 bits.
_INT_LIMIT = 2**63


def load_config(
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    *,
    base: Config | None = None,
    complete: bool = False,
) -> Config:
    """The config from `base` (default: the search's built-in defaults), then the TOML file at
    `path`, then each `key=value` in `overrides` (later ones win).

    Unknown keys raise ConfigError listing the valid keys of their table; a value of the wrong
    type raises ConfigError naming the key, the expected type and the value. `complete`: the file
    must set every key (a run directory's config.toml, which `save_config` writes whole; one
    that lacks keys was cut short, and defaults must not fill in for what the run was started
    with).
    """
    base = SearchConfig() if base is None else base
    cls = type(base)
    raw: dict[str, tuple[Any, str]] = {}
    if path is not None:
        raw.update(_flatten(_read_toml(Path(path)), str(path), cls))
        missing = [key for key in valid_keys(cls) if key not in raw and key not in ADDED_LATER]
        if complete and missing:
            raise ConfigError(
                f"{path} lacks {len(missing)} key(s) ({', '.join(missing[:3])}"
                f"{', ...' if len(missing) > 3 else ''}): it was cut short or edited, and autoaug "
                "writes it whole; restore it, or delete it and rerun with the options the search "
                "was started with (its trial store checks them)"
            )
    for item in overrides:
        key, value = _parse_override(item)
        label = item if item.isprintable() and len(item) <= 80 else shown(item)
        raw[key] = (value, f"--set {label}")
    keys = set(valid_keys(cls))
    tables = _tables(cls)
    values: dict[str, dict[str, Any]] = {"": {}, **{t: {} for t in tables}}
    for key, (value, where) in raw.items():
        if key not in keys:
            raise _unknown_key(key, where, cls)
        table, _, name = key.rpartition(".")
        values[table][name] = _coerce(key, value, _key_type(key, cls), where)

    child_values = dict(values.pop("child"))
    model = child_values.pop("model", base.child.model)
    try:
        child = base.child
        if model != child.model:
            child = TrainConfig.for_model(model, **{k: getattr(child, k) for k in _KEPT_ON_MODEL_CHANGE})
        child = dataclasses.replace(child, **child_values)
    except ConfigError as err:
        raise ConfigError(f"[child] {err}") from None
    nested = {t: dataclasses.replace(getattr(base, t), **values.pop(t)) for t in tables if t != "child"}
    return dataclasses.replace(base, **values.pop(""), child=child, **nested)


# --- writing ----------------------------------------------------------------------------------


def to_dict(config: SearchConfig) -> dict[str, Any]:
    """The config as nested plain data ({'budget': 160, ..., 'child': {...}, 'ppo': {...}})."""
    out = dataclasses.asdict(config)
    for key in _owned(type(config)):
        table, _, name = key.partition(".")
        out[table].pop(name, None)
    return out


def _toml_value(value: Any) -> str:
    if value is None:
        return '"none"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)  # Python's repr of a float ('0.2', '1e-05') is a valid TOML float
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are a subset of TOML basic strings
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def to_toml(config: SearchConfig, header: str = "") -> str:
    """The config as a TOML document that `load_config` reads back to an equal config."""
    doc = to_dict(config)
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    tables = {name: doc.pop(name) for name in _tables(type(config))}
    lines += [f"{key} = {_toml_value(value)}" for key, value in doc.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"]
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def save_config(config: SearchConfig, path: str | os.PathLike[str]) -> Path:
    """Write the resolved config to `path` atomically (temp file + rename)."""
    text = to_toml(config, header="The resolved configuration of this search (autoaug search).\n"
                                  "Running `autoaug search --out DIR` again resumes with it.")
    return save_text(text, path, "config")


# --- resuming ---------------------------------------------------------------------------------


def differences(a: SearchConfig, b: SearchConfig) -> list[tuple[str, Any, Any]]:
    """(dotted key, value in a, value in b) for every key where the two differ."""
    flat_a, flat_b = _flat_values(a), _flat_values(b)
    return [(k, flat_a[k], flat_b[k]) for k in flat_a if flat_a[k] != flat_b[k]]


def _flat_values(config: SearchConfig) -> dict[str, Any]:
    doc = to_dict(config)
    tables = _tables(type(config))
    flat = {k: v for k, v in doc.items() if k not in tables}
    for table in tables:
        flat.update({f"{table}.{k}": v for k, v in doc[table].items()})
    return flat


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
            f"run directory {run_dir} was started with {key} = {_toml_value(old)}, now "
            f"{_toml_value(new)}{more}; a resumed search may only change "
            f"{', '.join(sorted(RESUMABLE_KEYS - {'out'}))}; use another --out for a new search"
        )


def search_identity(config: SearchConfig) -> str:
    """The keys that give a search its meaning (all but RESUMABLE_KEYS) as JSON: what the trial
    store records when a search starts and checks on every resume, so that a config.toml edited
    by hand cannot change a search halfway."""
    flat = _flat_values(config)
    return json.dumps({k: v for k, v in flat.items() if k not in RESUMABLE_KEYS}, sort_keys=True)


def check_identity(recorded: str, config: SearchConfig, store_path: str | os.PathLike[str]) -> None:
    """ConfigError if `config` differs from the `search_identity` recorded in a trial store.

    A key the record lacks (one added to autoaug after the run started) counts as its default.
    """
    try:
        old = json.loads(recorded)
        if not isinstance(old, dict):
            raise ValueError
    except ValueError:
        raise ConfigError(f"trial store {store_path}: its record of the search's config is not "
                          "readable JSON; the store is damaged or not from autoaug") from None
    new = json.loads(search_identity(config))
    default = _flat_values(SearchConfig())
    changed = [k for k in new if old.get(k, default.get(k)) != new[k]]
    if changed:
        key = changed[0]
        raise ConfigError(f"trial store {store_path} holds a search started with {key} = "
                          f"{_shown(old.get(key, default.get(key)))}, but its config now says "
                          f"{_shown(new[key])}{f' (and {len(changed) - 1} more)' if len(changed) > 1 else ''}"
                          "; was the run directory's config.toml edited? Restore the value, or use another "
                          "--out for a new search")


def _shown(value: Any) -> str:
    try:
        return _toml_value(value)
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
