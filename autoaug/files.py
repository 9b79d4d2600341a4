"""Writing files so that a crash never leaves half of one, and reading JSON with one-line errors.

`atomic_write` is the one way the package writes a file it may need again (policies, configs,
checkpoints, model outputs, reports): the bytes go to a temp file in the same directory (a
rename is only atomic within one file system), which is flushed and fsynced before `os.replace`
swaps it in; the directory is fsynced after so the rename itself survives a power loss. A crash
at any point leaves the old file or the new one, plus at worst a stray temp file that the next
write of that path removes.
"""

from __future__ import annotations

import json
import math
import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from autoaug.errors import AutoaugError, PolicyError


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any], what: str = "file") -> Path:
    """Create `path` (and its directory) with `write(handle)`, atomically; `what` names the file
    in the one-line AutoaugError an OSError becomes."""
    path = Path(path)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise AutoaugError(f"cannot write {what} {path}: {err.strerror or err}") from None
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users of the run
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise AutoaugError(f"cannot write {what} {path}: {err.strerror or err}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    return path


def save_text(text: str, path: str | os.PathLike[str], what: str = "file") -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode()), what)


def save_json(doc: Any, path: str | os.PathLike[str], what: str = "file") -> Path:
    return save_text(json.dumps(doc, indent=2) + "\n", path, what)


# A file read as JSON here is small: the largest published policy is 25 sub-policies (about
# 3 KB native, 60 KB as albumentations JSON). Anything past this is refused before parsing.
MAX_JSON_BYTES = 16 * 2**20


def is_file(path: str | os.PathLike[str]) -> bool:
    """Path.is_file, False (not an OSError) for a name too long for the file system."""
    try:
        return Path(path).expanduser().is_file()
    except OSError:
        return False


def read_json(path: str | os.PathLike[str], error: type[AutoaugError] = PolicyError, what: str = "a policy file") -> Any:
    """The JSON document at `path`; `error` with one line for anything that is not a readable,
    strict JSON file: no such file, not a regular file, too large, not UTF-8, not JSON, NaN or
    Infinity, a number beyond float range or of thousands of digits, nesting too deep."""
    path = Path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a directory, or a pipe that would block the read
            raise error(f"{path}: not a regular file; expected {what}")
        if info.st_size > MAX_JSON_BYTES:
            raise error(f"{path}: {info.st_size} bytes is too large for {what} (at most {MAX_JSON_BYTES})")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except UnicodeDecodeError as err:
        raise error(f"{path}: not UTF-8 text (byte {err.start}); expected {what} in JSON") from None
    except OSError as err:  # no permission, a symlink loop, a name too long, a file as a folder
        raise error(f"{path}: cannot read {what} ({err.strerror or type(err).__name__})") from None
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float)
    except json.JSONDecodeError as err:
        raise error(f"{path}: not JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except _NotANumber as err:
        raise error(f"{path}: {err}") from None
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply to be {what}") from None
    except ValueError:  # Python's limit on the digits of an int ("Exceeds the limit ...")
        raise error(f"{path}: holds an integer too long to read (thousands of digits)") from None


class _NotANumber(Exception):
    """A JSON number no value of ours can be; raised inside json.loads, reported by read_json."""


def _no_constant(name: str) -> None:
    raise _NotANumber(f"{name} is not a number a file of ours holds (JSON has no NaN or Infinity)")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _NotANumber(f"{text[:20]} is beyond the range of a float")
    return value


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # platforms without directory handles (Windows): the rename is all we get
    try:
        os.fsync(fd)
    except OSError:
        pass  # some file systems refuse fsync on a directory; the data file itself is synced
    finally:
        os.close(fd)
