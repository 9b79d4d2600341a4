"""Settings as frozen dataclasses, read from TOML plus `key=value` overrides (`--set`), and written back.

One reader for every command: `autoaug search` reads its `SearchConfig`, `autoaug train` and
`autoaug randaugment` their child's `[child]` table, the same way.

- A settings class is a frozen dataclass whose fields are plain values (bool, int, float, str,
  `X | None`) or nested dataclasses, its TOML tables, one deep (`child.epochs`).
- `load_settings(base, path, overrides)`: `base`, then the TOML file at `path`, then each dotted
  override. Unknown keys are rejected with the valid ones of their table, a value of the wrong
  type with the key, the expected type and the value.
- A class may list keys that cannot be set, with why, in a ClassVar `owned_keys`
  ({"child.device": "..."}), keys a `complete` file may lack (added to autoaug after the
  file was written) in a ClassVar `added_later` (with, in a ClassVar `meant_before`, the value
  such a file meant where the key's default has changed since), and the new names of keys a file written by an
  older autoaug may still use in a ClassVar `renamed_keys` (files only: `--set` knows one name), and a table may rebuild itself from its values with a method
  `with_table(values)` (a new `child.model` starts from that network's recipe).
- `to_toml` writes a settings object as a document `load_settings` reads back to an equal one.

TOML has no null: a field typed `X | None` takes the string "none" for None, in files and
overrides alike, and the writer writes None that way.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
import re
import sys
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from autoaug.errors import ConfigError, shown

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

Settings = TypeVar("Settings")

# Integers are stored in SQLite and seed torch generators: both take signed 64 bits.
_INT_LIMIT = 2**63


def check_int(name: str, value: Any, low: int) -> None:
    """ConfigError unless `value` is an int (not a bool) in [low, 2**63): one line naming `name`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an int >= {low}, got {shown(value)}")
    if value >= _INT_LIMIT:
        raise ConfigError(f"{name} must be an int below 2**63, got {shown(value)}")



# --- the key space ----------------------------------------------------------------------------


def _tables(cls: type) -> dict[str, type]:
    """The nested dataclasses of `cls` by field name: its TOML tables."""
    return {name: hint for name, hint in _field_types(cls).items() if dataclasses.is_dataclass(hint)}


def _owned(cls: type) -> dict[str, str]:
    """The keys of `cls` that cannot be set, with why (its ClassVar `owned_keys`, if any)."""
    return getattr(cls, "owned_keys", {})


def _field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def valid_keys(cls: type) -> list[str]:
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
            flat[getattr(cls, "renamed_keys", {}).get(name, name)] = (value, where)
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
    # Only --set values are text to parse; a TOML file states its types (`budget = "4"` is a
    # string where an int belongs, issue #23), and only ASCII digits make a number (int() and
    # float() would also read "٤" or "1_0").
    from_text = isinstance(value, _OverrideText) and hint is not str
    if from_text and not value.isascii():
        raise ConfigError(f"{key} expects {_type_name(hint if not args else typing.Optional[hint])} "
                          f"written in ASCII, got {shown(str(value))} ({where})")
    try:
        if hint is bool:
            if from_text and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            if isinstance(value, bool):
                return value
        elif hint is int:
            if from_text:
                value = int(value) if re.fullmatch(r"\s*[+-]?[0-9]+\s*", value) else value
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
            if isinstance(value, str) and "\x00" in value:  # no path or name holds one; open() refuses it
                raise ConfigError(f"{key} = {shown(str(value))} holds a NUL character; expected text without "
                                  f"one ({where})")
            if isinstance(value, str):
                return str(value)
        else:  # pragma: no cover - a field type this loader does not know yet
            raise ConfigError(f"{key}: fields of type {hint} cannot be configured")
    except (ValueError, OverflowError):
        pass
    raise ConfigError(f"{key} expects {_type_name(hint if not args else typing.Optional[hint])}, "
                      f"got {shown(value)} ({where})")


class _OverrideText(str):
    """The value of a `--set key=value`: text to parse as the key's type (a TOML value is not)."""


def load_settings(
    base: Settings,
    path: str | os.PathLike[str] | None = None,
    overrides: Sequence[str] = (),
    *,
    complete: bool = False,
) -> Settings:
    """The settings from `base`, then the TOML file at `path`, then each `key=value` in
    `overrides` (later ones win).

    Unknown keys raise ConfigError listing the valid keys of their table; a value of the wrong
    type raises ConfigError naming the key, the expected type and the value. `complete`: the file
    must set every key (a run directory's config.toml, which `save_config` writes whole; one
    that lacks keys was cut short, and defaults must not fill in for what the run was started
    with).
    """
    cls = type(base)
    raw: dict[str, tuple[Any, str]] = {}
    if path is not None:
        raw.update(_flatten(_read_toml(Path(path)), str(path), cls))
        missing = [key for key in valid_keys(cls) if key not in raw and key not in getattr(cls, "added_later", ())]
        if complete and missing:
            raise ConfigError(
                f"{path} lacks {len(missing)} key(s) ({', '.join(missing[:3])}"
                f"{', ...' if len(missing) > 3 else ''}): it was cut short or edited, and autoaug "
                "writes it whole; restore it, or delete it and rerun with the options the search "
                "was started with (its trial store checks them)"
            )
        if complete:  # a key added later whose default has changed since: what the file meant
            for key, value in getattr(cls, "meant_before", {}).items():
                raw.setdefault(key, (value, f"{path} (written before {key} existed)"))
    for item in overrides:
        key, value = _parse_override(item)
        label = item if item.isprintable() and len(item) <= 80 else shown(item)
        raw[key] = (_OverrideText(value), f"--set {label}")
    keys = set(valid_keys(cls))
    tables = _tables(cls)
    values: dict[str, dict[str, Any]] = {"": {}, **{t: {} for t in tables}}
    for key, (value, where) in raw.items():
        if key not in keys:
            raise _unknown_key(key, where, cls)
        table, _, name = key.rpartition(".")
        values[table][name] = _coerce(key, value, _key_type(key, cls), where)

    nested = {t: _with_table(getattr(base, t), t, values.pop(t)) for t in tables}
    return dataclasses.replace(base, **values.pop(""), **nested)


def _with_table(current: Any, name: str, values: dict[str, Any]) -> Any:
    """Table `name` (the dataclass `current`) with `values` applied: its own `with_table` where it
    has one (whose checks, made for the class used alone, do not know the table's name: their
    errors get it in front), else `dataclasses.replace`."""
    with_table = getattr(current, "with_table", None)
    if with_table is None:
        return dataclasses.replace(current, **values)
    try:
        return with_table(values)
    except ConfigError as err:
        raise ConfigError(f"[{name}] {err}") from None


# --- writing ----------------------------------------------------------------------------------


def to_dict(config: Any) -> dict[str, Any]:
    """The settings as nested plain data ({'budget': 160, ..., 'child': {...}, 'ppo': {...}}), less
    the keys they own."""
    out = dataclasses.asdict(config)
    for key in _owned(type(config)):
        table, _, name = key.partition(".")
        out[table].pop(name, None)
    return out


def flat_values(config: Any) -> dict[str, Any]:
    """`to_dict` flattened to dotted keys ({'budget': 160, ..., 'child.epochs': 40, ...})."""
    doc = to_dict(config)
    tables = _tables(type(config))
    flat = {k: v for k, v in doc.items() if k not in tables}
    for table in tables:
        flat.update({f"{table}.{k}": v for k, v in doc[table].items()})
    return flat


def toml_value(value: Any) -> str:
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


def to_toml(config: Any, header: str = "") -> str:
    """The settings as a TOML document that `load_settings` reads back to equal settings."""
    doc = to_dict(config)
    lines = [f"# {line}" if line else "#" for line in header.splitlines()]
    tables = {name: doc.pop(name) for name in _tables(type(config))}
    lines += [f"{key} = {toml_value(value)}" for key, value in doc.items()]
    for name, table in tables.items():
        lines += ["", f"[{name}]"]
        lines += [f"{key} = {toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"

