"""The trial store's SQLite connection (`autoaug.search.store`): every failure of the file becomes
a one-line `AutoaugError` naming the store and what to do, and writes run in transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from autoaug.errors import AutoaugError, cut


class Rows:
    """The fetched rows of one statement and its rowcount (what the store's callers use)."""

    def __init__(self, rows: list[tuple[Any, ...]], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def __iter__(self):
        return iter(self._rows)


class Connection:
    """A `sqlite3.Connection` whose failures are one-line `AutoaugError`s naming the store.

    Rows are fetched inside the guard: SQLite reads pages lazily, so a damaged page can fail
    while a cursor is iterated, not only in `execute`. IntegrityError stays as it is: it means
    a bug in the caller (a broken constraint), not a bad file.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.raw = conn
        self.path = path

    def execute(self, sql: str, params: Sequence[Any] = (), *, many: bool = False) -> Rows:
        """`many`: `params` is a sequence of parameter rows (executemany)."""
        try:
            cursor = (self.raw.executemany if many else self.raw.execute)(sql, params)
            return Rows(cursor.fetchall(), cursor.rowcount)
        except sqlite3.IntegrityError:
            raise
        except sqlite3.DatabaseError as err:
            raise AutoaugError(sqlite_failure(self.path, err)) from None

    def close(self) -> None:
        self.raw.close()


def damaged(path: Path, detail: str) -> str:
    detail = cut(" ".join(detail.split()), 200)  # quick_check's report spans lines
    return (
        f"trial store {path} is damaged (SQLite: {detail}); keep a copy of it: `sqlite3 {path} "
        ".recover` may save its finished trials; or start a new search with another --out"
    )


def sqlite_failure(path: Path, err: sqlite3.DatabaseError) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    if "readonly" in text or "read-only" in text:
        return (f"trial store {path} is read-only ({text}); make it writable (chmod u+w) or "
                "use another --out")
    if "locked" in text or "busy" in text:
        return f"trial store {path} is locked by another process ({text}); try again later"
    if "malformed" in text or "not a database" in text or "corrupt" in text:
        return damaged(path, text)
    return f"trial store {path}: SQLite failed ({text})"


class Transaction:
    """BEGIN IMMEDIATE ... COMMIT, ROLLBACK on any exception."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def __enter__(self) -> None:
        self._conn.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is None:
            self._conn.execute("COMMIT")
        elif self._conn.raw.in_transaction:
            self._conn.execute("ROLLBACK")


# The header fields SQLite reads before anything else: the magic string, and the file format
# write / read versions at bytes 18 and 19 (1 = rollback journal, 2 = WAL). A version SQLite does
# not know makes it open the file read-only, which would be reported as a permission problem.
_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_header(path: Path) -> None:
    """AutoaugError if the SQLite file at `path` has a damaged header (a missing or non-SQLite
    file passes: SQLite tells those apart when it opens them)."""
    try:
        with open(path, "rb") as handle:
            header = handle.read(100)
    except FileNotFoundError:
        return
    except OSError as err:
        raise AutoaugError(f"cannot read trial store {path}: {err.strerror or err}") from None
    if len(header) < 100 or not header.startswith(_SQLITE_MAGIC):
        return  # empty (a new store) or not SQLite at all: told apart when it is opened
    if header[18] not in (1, 2) or header[19] not in (1, 2):
        raise AutoaugError(damaged(path, f"the file header is damaged: format versions {header[18]} and "
                                          f"{header[19]} at bytes 18-19, expected 1 or 2"))
