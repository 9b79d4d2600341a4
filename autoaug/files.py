"""Writing files so that a crash never leaves half of one, and reading JSON with one-line errors.

`atomic_write` is the one way the package writes a file it may need again (policies, configs,
checkpoints, model outputs, reports): the bytes go to a temp file in the same directory (a
rename is only atomic within one file system), which is flushed and fsynced before `os.replace`
swaps it in; the directory is fsynced after so the rename itself survives a power loss. A crash
at any point leaves the old file or the new one, plus at worst a stray temp file that the next
write of that path removes.

A target that is not a regular file is never replaced (issue #23): a character device or a FIFO
(`/dev/null`, `/dev/stdout`, a pipe) is written into, as a shell redirection would; a directory,
socket or block device is refused in one line.
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

from autoaug.errors import AutoaugError, PolicyError, cut, shown


def atomic_write(path: str | os.PathLike[str], write: Callable[[IO[bytes]], Any], what: str = "file") -> Path:
    """Create `path` (and its directory) with `write(handle)`, atomically; `what` names the file
    in the one-line AutoaugError an OSError becomes."""
    path = Path(path)
    if _is_stream(path, what):
        return _write_into(path, write, what)
    directory = path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(f".{path.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as err:
        raise AutoaugError(f"cannot write {what} {shown_path(path)}: {err.strerror or err}") from None
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
        raise AutoaugError(f"cannot write {what} {shown_path(path)}: {err.strerror or err}") from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_directory(directory)
    return path


def is_stream(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a character device or a FIFO (`/dev/stdout`, `/dev/null`, a pipe): a file
    written into, with no folder of its own for files that would go beside it."""
    try:
        return stat.S_ISCHR(os.stat(path).st_mode) or stat.S_ISFIFO(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _is_stream(path: Path, what: str) -> bool:
    """True for a character device or FIFO at `path` (written into, not replaced); False for a
    regular file or nothing there (atomic replace); AutoaugError for anything else."""
    try:
        mode = path.stat().st_mode  # follows a symlink: /dev/stdout -> /proc/self/fd/1 -> a pipe
    except FileNotFoundError:
        return False
    except OSError as err:  # a name too long, a file used as a folder, no permission
        raise AutoaugError(f"cannot write {what} {shown_path(path)}: {err.strerror or err}") from None
    if stat.S_ISREG(mode):
        return False
    if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
        return True
    kind = "a directory" if stat.S_ISDIR(mode) else "a socket" if stat.S_ISSOCK(mode) else \
        "a block device" if stat.S_ISBLK(mode) else "not a regular file"
    raise AutoaugError(f"cannot write {what} {shown_path(path)}: it is {kind}; expected a file name, "
                       "a character device or a pipe")


def _write_into(path: Path, write: Callable[[IO[bytes]], Any], what: str) -> Path:
    """Write into a character device or FIFO as it is (a FIFO's open waits for its reader)."""
    try:
        with open(path, "wb") as handle:
            write(handle)
    except OSError as err:  # EPIPE: the reader went away; ENOSPC: /dev/full
        raise AutoaugError(f"cannot write {what} {shown_path(path)}: {err.strerror or err}") from None
    return path


def shown_path(path: str | os.PathLike[str]) -> str:
    """A path cut to fit one line of an error (a 5,000-character name stays readable)."""
    return cut(str(path))


def save_text(text: str, path: str | os.PathLike[str], what: str = "file") -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode()), what)


def save_json(doc: Any, path: str | os.PathLike[str], what: str = "file") -> Path:
    return save_text(json.dumps(doc, indent=2) + "\n", path, what)


# A file read as JSON here is small: the largest published policy is 25 sub-policies (about
# 3 KB native, 60 KB as albumentations JSON). Anything past this is refused before parsing.
MAX_JSON_BYTES = 16 * 2**20


def expand_user(path: str | os.PathLike[str], error: type[AutoaugError] = AutoaugError, where: str = "") -> Path:
    """Path(path).expanduser(), `error` with one line for a `~user` that has no home directory
    (pathlib raises RuntimeError)."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        user = str(path).split("/", 1)[0]
        raise error(f"{where + ': ' if where else ''}{shown_path(path)}: {shown(user)} names no user with a "
                    "home directory; expected an existing path") from None


def is_file(path: str | os.PathLike[str]) -> bool:
    """Path.is_file, False (not an OSError) for a name too long for the file system or a `~user`
    without a home directory."""
    try:
        return Path(path).expanduser().is_file()
    except (OSError, RuntimeError):
        return False


def read_json(path: str | os.PathLike[str], error: type[AutoaugError] = PolicyError, what: str = "a policy file") -> Any:
    """The JSON document at `path`; `error` with one line for anything that is not a readable,
    strict JSON file: no such file, not a regular file, too large, not UTF-8, not JSON, NaN or
    Infinity, a number beyond float range or of thousands of digits, nesting too deep, a key given
    twice in one object (the last would silently win)."""
    path = Path(path)
    name = shown_path(path)
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a directory, or a pipe that would block the read
            raise error(f"{name}: not a regular file; expected {what}")
        if info.st_size > MAX_JSON_BYTES:
            raise error(f"{name}: {info.st_size} bytes is too large for {what} (at most {MAX_JSON_BYTES})")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{name}: no such file") from None
    except UnicodeDecodeError as err:
        raise error(f"{name}: not UTF-8 text (byte {err.start}); expected {what} in JSON") from None
    except OSError as err:  # no permission, a symlink loop, a name too long, a file as a folder
        raise error(f"{name}: cannot read {what} ({err.strerror or type(err).__name__})") from None
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite_float, object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as err:
        raise error(f"{name}: not JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    except _NotANumber as err:
        raise error(f"{name}: {err}") from None
    except RecursionError:
        raise error(f"{name}: JSON nested too deeply to be {what}") from None
    except ValueError:  # Python's limit on the digits of an int ("Exceeds the limit ...")
        raise error(f"{name}: holds an integer too long to read (thousands of digits)") from None


class _NotANumber(Exception):
    """A JSON number no value of ours can be, or a key given twice; raised inside json.loads,
    reported by read_json."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc = dict(pairs)
    if len(doc) != len(pairs):
        seen: set[str] = set()
        twice = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _NotANumber(f"key {shown(twice)} appears twice in one object; expected each key once")
    return doc


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
