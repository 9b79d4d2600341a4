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
import os
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


def read_json(path: str | os.PathLike[str], error: type[AutoaugError] = PolicyError, what: str = "a policy file") -> Any:
    """The JSON document at `path`; `error` with one line (no such file, unreadable, not JSON)."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise error(f"{path}: no such file") from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as err:
        raise error(f"{path}: cannot read {what} ({err.__class__.__name__})") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise error(f"{path}: not JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None


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
