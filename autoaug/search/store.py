"""The trial store: every trial of a run directory, in SQLite (`trials.sqlite`), one row each.

A trial is a payload to evaluate (a policy sampled by the controller, or a RandAugment grid
point) with a key, a seed, a batch position (`round`, `slot`), a fidelity `rung` (issue #21: 0,
the cheapest child, unless the search's [fidelity] table has more rungs; a policy keeps its slot
at every rung) and a status: pending -> running -> done | failed. Every state change commits at
once, so a killed search loses only the trials that were in flight, and `UNIQUE(phase, round,
rung, slot)` makes re-adding a batch on resume a no-op instead of a duplicate. The checkpoint and the run lock are `autoaug.search.rundir`.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


from autoaug.errors import AutoaugError, shown
from autoaug.search.connection import Connection, Transaction, check_header, damaged

STORE_FILENAME = "trials.sqlite"

SCHEMA_VERSION = 3
STATUSES = ("pending", "running", "done", "failed")
# What a trial is for (issue #10): "search" trials are the search's own (and the RandAugment
# grid's), "reeval" trials re-train the best candidates on fresh seeds before export.
PHASES = ("search", "reeval")
# "policy": a payload to score; "reference": the child without a policy that the policies of
# the same phase and seed are paired with (paired = reward - the reference's reward).
ROLES = ("policy", "reference")
UNFINISHED = ("pending", "running")

# The meta row that marks a SQLite file as ours, as opposed to any other SQLite database.
_STORE_KIND = "autoaug-trials"

_SCHEMA = """
CREATE TABLE meta (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE trials (
    id        INTEGER PRIMARY KEY,
    key       TEXT    NOT NULL,
    round     INTEGER NOT NULL,
    slot      INTEGER NOT NULL,
    tokens    TEXT,
    payload   TEXT    NOT NULL,
    seed      INTEGER NOT NULL,
    status    TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    reward    REAL,
    error     TEXT,
    traceback TEXT,
    worker    TEXT,
    started   REAL,
    finished  REAL,
    duration  REAL,
    phase     TEXT    NOT NULL DEFAULT 'search' CHECK (phase IN ('search', 'reeval')),
    role      TEXT    NOT NULL DEFAULT 'policy' CHECK (role IN ('policy', 'reference')),
    paired    REAL,
    rung      INTEGER NOT NULL DEFAULT 0,
    UNIQUE (phase, round, rung, slot)
);
CREATE INDEX trials_status ON trials (status);
CREATE INDEX trials_key ON trials (key);
"""

_V1_COLUMNS = (
    "id, key, round, slot, tokens, payload, seed, status, reward, error, traceback, worker, "
    "started, finished, duration"
)
_V2_COLUMNS = _V1_COLUMNS + ", phase, role, paired"
_COLUMNS = _V2_COLUMNS + ", rung"


@dataclass(frozen=True)
class TrialSpec:
    """One trial to add to a batch: what to evaluate, under which key, with which seed."""

    key: str
    """Identity of what is evaluated (e.g. the tokens joined, or "N=2,M=9"); compared on resume."""
    payload: dict[str, Any]
    """JSON-serialisable input of the evaluation function (a policy, a grid point)."""
    seed: int
    """Seed of the evaluation (child model init, augmentation draws); 0 <= seed < 2**63."""
    tokens: Sequence[int] | None = None
    """The controller's tokens, when the trial came from the controller."""
    role: str = "policy"
    """"policy", or "reference": the child without a policy that pairs the policies of its seed."""


@dataclass(frozen=True)
class Trial:
    """One stored row of the `trials` table."""

    id: int
    key: str
    round: int
    slot: int
    tokens: tuple[int, ...] | None
    payload: dict[str, Any]
    seed: int
    status: str
    reward: float | None
    error: str | None
    traceback: str | None
    worker: str | None
    started: float | None
    finished: float | None
    duration: float | None
    phase: str = "search"
    role: str = "policy"
    paired: float | None = None
    """reward - the reward of the done reference trial of the same phase, seed and rung; None
    while there is none (no reference, or it is not done)."""
    rung: int = 0
    """The fidelity rung the child trained at (issue #21; `autoaug.search.fidelity`): 0 is the
    cheapest; a search with one rung, and every reeval trial, has only 0."""


def store_exists(path: str | os.PathLike[str]) -> bool:
    """Whether `path` is a trial store with content: a file of more than 0 bytes.

    A store SQLite has set up is never empty (WAL mode writes the header page at once), so
    a missing or 0-byte file next to a checkpoint means the store was deleted or emptied.
    """
    path = Path(path)
    return path.is_file() and path.stat().st_size > 0


class TrialStore:
    """The SQLite trial store of one run directory.

    WAL mode lets readers (a TensorBoard-side script, `autoaug export`) read while the search
    writes. `synchronous=FULL` rather than NORMAL: with WAL, NORMAL is already safe against a
    killed process, but a power loss or OS crash could drop the last commits while the fsynced
    checkpoint already counts them; FULL fsyncs the WAL on every commit, which costs one fsync
    per trial state change, nothing next to a child training that takes seconds to minutes.

    Connections are opened in autocommit mode; every `mark_*` is one committed statement and
    `add_pending` one `BEGIN IMMEDIATE` transaction (IMMEDIATE so two writers queue on the
    write lock instead of deadlocking on a read-to-write upgrade). Several processes may hold a
    store open at once; they wait up to `busy_timeout_s` for the write lock.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, busy_timeout_s: float = 60.0, read_only: bool = False
    ) -> None:
        """`read_only`: the caller only reads (an export, a report), so a file it may not write is
        fine, and a store that is not there is an error rather than a new empty one."""
        self.path = Path(path)
        if read_only and not self.path.exists():
            # Creating it would leave an empty store behind that a later search takes for an
            # interrupted one.
            raise AutoaugError(f"no trial store at {self.path}; expected the trials.sqlite of an `autoaug search` run")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise AutoaugError(
                f"cannot create run directory {self.path.parent}: {err.strerror or err}"
            ) from None
        if self.path.exists() and not self.path.is_file():
            raise AutoaugError(f"trial store {self.path} exists but is not a file")
        if not read_only and self.path.exists() and not os.access(self.path, os.W_OK):
            # SQLite would open it read-only and fail at the first write, mid-search.
            raise AutoaugError(f"trial store {self.path} is read-only; a search records every trial in it: "
                               "make it writable (chmod u+w) or use another --out")
        check_header(self.path)
        try:
            conn = sqlite3.connect(str(self.path), timeout=busy_timeout_s, isolation_level=None)
        except sqlite3.Error as err:
            raise AutoaugError(f"cannot open trial store {self.path}: {err}") from None
        self._conn = Connection(conn, self.path)
        try:
            self._prepare()
        except sqlite3.OperationalError as err:
            self._conn.close()
            raise AutoaugError(f"cannot write trial store {self.path}: {err}") from None
        except sqlite3.DatabaseError as err:
            # "file is not a database" and friends: some other file sits where the store goes.
            self._conn.close()
            if "malformed" in str(err):  # ours, with pages overwritten
                raise AutoaugError(damaged(self.path, str(err))) from None
            raise AutoaugError(f"{self.path} is not an autoaug trial store (SQLite says: {err})") from None
        except AutoaugError:
            self._conn.close()
            raise

    def _prepare(self) -> None:
        conn = self._conn.raw  # errors of these first statements are told apart just above
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise AutoaugError(f"trial store {self.path}: SQLite refused WAL mode (got {mode!r}); "
                               "is the run directory on a network file system?")
        conn.execute("PRAGMA synchronous=FULL")
        with self._transaction():
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                # Statement by statement: executescript() would COMMIT the open transaction
                # first, and two processes creating the store at once must not interleave.
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.executemany(
                    "INSERT INTO meta (name, value) VALUES (?, ?)",
                    [
                        ("kind", _STORE_KIND),
                        ("schema_version", str(SCHEMA_VERSION)),
                        ("created", repr(time.time())),
                    ],
                )
                return
            if "meta" not in tables or "trials" not in tables:
                raise AutoaugError(f"{self.path} is an SQLite database but not an autoaug trial store "
                                   f"(tables: {', '.join(sorted(tables))})")
            # A page overwritten on disk shows up here rather than halfway through a search.
            problems = [row[0] for row in conn.execute("PRAGMA quick_check(3)")]
            if problems != ["ok"]:
                raise AutoaugError(damaged(self.path, "; ".join(problems)))
            meta = dict(conn.execute("SELECT name, value FROM meta"))
            if meta.get("kind") != _STORE_KIND:
                raise AutoaugError(f"{self.path} is not an autoaug trial store "
                                   f"(meta kind {meta.get('kind')!r}, expected {_STORE_KIND!r})")
            version = meta.get("schema_version", "")
            if not (version.isascii() and version.isdigit()):
                raise AutoaugError(
                    f"trial store {self.path} has schema version {version!r}, expected an integer"
                )
            if int(version) > SCHEMA_VERSION:
                raise AutoaugError(f"trial store {self.path} has schema version {version}, newer than this "
                                   f"autoaug reads ({SCHEMA_VERSION}); upgrade autoaug")
            if int(version) in _OLD_COLUMNS:
                self._migrate(_OLD_COLUMNS[int(version)])
            elif int(version) != SCHEMA_VERSION:
                raise AutoaugError(f"trial store {self.path} has schema version {version}, expected "
                                   f"{SCHEMA_VERSION}")
            # Every row is input (issue #23): a value edited or damaged on disk is refused here,
            # naming its row and column, before a resume or an export acts on any of them.
            self._select("", ())

    def _migrate(self, columns: str) -> None:
        """An older schema -> the current one in place (inside _prepare's transaction), copying
        `columns`: schema 2 added phase, role and paired with UNIQUE (phase, round, slot), schema
        3 the rung with UNIQUE (phase, round, rung, slot). SQLite cannot change a constraint, so
        the table is rebuilt; a column the old rows lack takes its default (a v1 row becomes a
        search-phase policy trial, every older row rung 0: they had one rung)."""
        conn = self._conn
        conn.execute("ALTER TABLE trials RENAME TO trials_v1")
        conn.execute("DROP INDEX IF EXISTS trials_status")
        conn.execute("DROP INDEX IF EXISTS trials_key")
        for statement in _SCHEMA.split(";"):
            if "CREATE TABLE trials" in statement or "CREATE INDEX" in statement:
                conn.execute(statement)
        conn.execute(f"INSERT INTO trials ({columns}) SELECT {columns} FROM trials_v1")
        conn.execute("DROP TABLE trials_v1")
        conn.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'", (str(SCHEMA_VERSION),))

    # -- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> TrialStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def add_pending(
        self, round: int, specs: Sequence[TrialSpec], phase: str = "search", *, rung: int = 0,
        slots: Sequence[int] | None = None, partial: bool = False,
    ) -> list[Trial]:
        """Insert a whole batch as `round` of `phase` at `rung`, slot slots[i] (default i) =
        specs[i], in one transaction. A rung above 0 holds the policies promoted from the rung
        below under their own slots (`autoaug.search.fidelity`).

        Idempotent: if (`round`, `rung`) already exists with the same slots, keys and seeds (a
        resumed search re-sampling the round it was killed in), the stored rows are returned
        untouched, whatever their status. A different batch under the same round raises
        `AutoaugError`: the run directory belongs to another search or its checkpoint does
        not match its store.

        `partial`: the batch may be added in parts (a rung's reference child before the
        policies promoted to it, `autoaug.search.search.evaluate_round`). The slots stored and
        wanted must then agree on every slot both hold; the wanted ones missing are inserted, and
        the rows of the wanted slots are returned.
        """
        _check_int("round", round)
        _check_int("rung", rung)
        _check_choice("phase", phase, PHASES)
        if not specs:
            raise ValueError("add_pending needs at least one trial")
        slots = list(range(len(specs))) if slots is None else list(slots)
        if len(slots) != len(specs) or len(set(slots)) != len(slots) or any(
                isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in slots):
            raise ValueError(f"add_pending needs a distinct slot >= 0 per trial, got {slots} for {len(specs)} trials")
        encoded = {slot: (_encode_spec(slot, spec), spec.role) for slot, spec in zip(slots, specs)}
        where = ("WHERE phase = ? AND round = ? AND rung = ? ORDER BY slot", (phase, round, rung))
        with self._transaction():
            existing = self._select(*where)
            held = {t.slot for t in existing}
            stored = [(t.slot, t.key, t.seed) for t in existing if t.slot in encoded or not partial]
            wanted = sorted((slot, spec.key, spec.seed) for slot, spec in zip(slots, specs) if slot in held or not partial)
            if existing and stored != wanted:
                first = next(
                    (min(s[0], w[0]) for s, w in zip(stored, wanted) if s != w),
                    (stored + wanted)[min(len(stored), len(wanted))][0],
                )
                raise AutoaugError(
                    f"trial store {self.path}: {phase} round {round}{f' rung {rung}' if rung else ''} "
                    f"already holds a different batch ({len(stored)} trials, now {len(wanted)}; first "
                    f"difference at slot {first}); the run directory belongs to another search or its "
                    "checkpoint does not match its trial store"
                )
            new = [slot for slot in slots if slot not in held] if partial or not existing else []
            if new:
                self._conn.execute(
                    "INSERT INTO trials (key, round, slot, tokens, payload, seed, status, phase, role, rung) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
                    [(key, round, slot, tokens, payload, seed, phase, role, rung)
                     for slot in new for (key, tokens, payload, seed), role in [encoded[slot]]],
                    many=True,
                )
                existing = self._select(*where)
            return [t for t in existing if t.slot in encoded] if partial else existing

    def mark_running(self, trial_id: int, worker: str) -> None:
        """pending -> running on `worker` (now)."""
        cursor = self._conn.execute(
            "UPDATE trials SET status = 'running', worker = ?, started = ? "
            "WHERE id = ? AND status = 'pending'",
            (worker, time.time(), trial_id),
        )
        if cursor.rowcount != 1:
            self._bad_transition(trial_id, "running", ("pending",))

    def mark_done(self, trial_id: int, reward: float, duration: float) -> None:
        """pending | running -> done with `reward`; `duration` is the evaluation's seconds.

        Pairs in the same transaction: a policy gets `paired` if its reference is done, a
        reference gives it to every done policy of its phase, seed and rung.
        """
        reward = float(reward)
        if not math.isfinite(reward):
            raise ValueError(f"trial {trial_id}: reward must be finite, got {reward}")
        with self._transaction():
            self._finish(trial_id, "done", reward, None, None, duration)
            self._conn.execute(
                "UPDATE trials SET paired = reward - ("
                "  SELECT r.reward FROM trials r WHERE r.phase = trials.phase"
                "  AND r.seed = trials.seed AND r.rung = trials.rung AND r.role = 'reference'"
                "  AND r.status = 'done' ORDER BY r.id LIMIT 1) "
                "WHERE role = 'policy' AND status = 'done' AND (phase, seed, rung) = "
                "  (SELECT phase, seed, rung FROM trials WHERE id = ?)",
                (trial_id,),
            )

    def mark_failed(self, trial_id: int, error: str, duration: float, traceback: str | None = None) -> None:
        """pending | running -> failed with a one-line `error` (and the traceback, if any)."""
        self._finish(trial_id, "failed", None, error, traceback, duration)

    def note_retry(self, trial_id: int, error: str) -> None:
        """Record on a running trial that an attempt failed and it is being retried (a Ray
        worker that died under it). The note stays in `error` when the retry then succeeds;
        when the retry fails too, the final error comes first and the note follows it."""
        cursor = self._conn.execute(
            "UPDATE trials SET error = COALESCE(error || '; ', '') || ? "
            "WHERE id = ? AND status = 'running'",
            (f"{error} (retried)", trial_id),
        )
        if cursor.rowcount != 1:
            self._bad_transition(trial_id, "running", ("running",))

    def _finish(
        self,
        trial_id: int,
        status: str,
        reward: float | None,
        error: str | None,
        traceback: str | None,
        duration: float,
    ) -> None:
        finished = time.time()
        duration = float(duration)
        # A trial evaluated without mark_running (inline runs) still gets a start time; the
        # notes of retried attempts (note_retry) stay behind the final error, if any.
        cursor = self._conn.execute(
            "UPDATE trials SET status = ?, reward = ?, "
            "error = CASE WHEN ? IS NULL THEN error ELSE ? || COALESCE('; ' || error, '') END, "
            "traceback = ?, "
            "finished = ?, duration = ?, started = COALESCE(started, ?) "
            "WHERE id = ? AND status IN ('pending', 'running')",
            (status, reward, error, error, traceback, finished, duration, finished - duration,
             trial_id),
        )
        if cursor.rowcount != 1:
            self._bad_transition(trial_id, status, UNFINISHED)

    def requeue_running(self) -> int:
        """running -> pending for every row; returns how many.

        Call it on resume, after taking the `RunLock`: a row still `running` then belongs to
        a process that was killed before it finished, so its evaluation never counted. Not
        done on open, because another process may legitimately hold rows running.
        """
        cursor = self._conn.execute(
            "UPDATE trials SET status = 'pending', worker = NULL, started = NULL "
            "WHERE status = 'running'"
        )
        return cursor.rowcount

    def set_meta(self, name: str, value: str) -> None:
        """Store a run-level string (e.g. the config the search started with)."""
        _check_meta_name(name)
        self._conn.execute(
            "INSERT INTO meta (name, value) VALUES (?, ?) "
            "ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            (name, str(value)),
        )

    def record_meta(self, name: str, value: str) -> str | None:
        """Store `value` under `name` unless the store already holds one; return the stored value
        (None if there was none). For what must stay the same over a run's whole life, e.g. a
        fingerprint of the data its rewards were measured on: the caller compares."""
        _check_meta_name(name)
        with self._transaction():
            stored = self.get_meta(name)
            if stored is None:
                self._conn.execute("INSERT INTO meta (name, value) VALUES (?, ?)", (name, str(value)))
            return stored

    # -- reading ---------------------------------------------------------------------------

    def get_meta(self, name: str) -> str | None:
        row = self._conn.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else row[0]

    def get(self, trial_id: int) -> Trial:
        found = self._select("WHERE id = ?", (trial_id,))
        if not found:
            raise KeyError(f"no trial with id {trial_id} in {self.path}")
        return found[0]

    def rows(
        self,
        round: int | None = None,
        status: str | None = None,
        key: str | None = None,
        *,
        phase: str | None = None,
        role: str | None = None,
        rung: int | None = None,
    ) -> list[Trial]:
        """Trials matching every given filter, ordered by (phase, round, rung, slot)."""
        filters = {"phase": phase, "role": role, "round": round, "status": status, "key": key, "rung": rung}
        filters = {column: value for column, value in filters.items() if value is not None}
        for column, allowed in (("phase", PHASES), ("role", ROLES), ("status", STATUSES)):
            if column in filters:
                _check_choice(column, filters[column], allowed)
        where = ("WHERE " + " AND ".join(f"{c} = ?" for c in filters)) if filters else ""
        return self._select(f"{where} ORDER BY phase = 'reeval', round, rung, slot", tuple(filters.values()))

    def completed_count(self) -> int:
        """Search-phase policy trials of every rung that are done or failed: evaluated, never to
        be evaluated again (with one rung, what a search's budget counts)."""
        counts = self.counts()
        return counts["done"] + counts["failed"]

    def counts(self, phase: str = "search", role: str | None = "policy", rung: int | None = None) -> dict[str, int]:
        """Number of trials of `phase` (and `role`, `rung`; None: any) per status (every status
        present, zeros included). The defaults count every policy child; a search's budget counts
        its rung-0 ones, one per policy sampled."""
        _check_choice("phase", phase, PHASES)
        query, params = "SELECT status, COUNT(*) FROM trials WHERE phase = ?", [phase]
        if rung is not None:
            _check_int("rung", rung)
            query += " AND rung = ?"
            params.append(rung)
        if role is not None:
            _check_choice("role", role, ROLES)
            query += " AND role = ?"
            params.append(role)
        found = dict(self._conn.execute(query + " GROUP BY status", params))
        return {status: int(found.get(status, 0)) for status in STATUSES}

    def best(self, k: int, by: str = "reward", phase: str = "search") -> list[Trial]:
        """The `k` done policy trials of `phase` with the highest `by` ("reward", or "paired":
        only trials that have a paired reward), the highest rung first (issue #21: a child of more
        epochs or images measures a policy better than any cheaper one, and rewards of different
        rungs are on different scales); ties go to the earlier trial."""
        if k < 0:
            raise ValueError(f"best(k) needs k >= 0, got {k}")
        _check_choice("by", by, ("reward", "paired"))
        _check_choice("phase", phase, PHASES)
        return self._select(
            f"WHERE status = 'done' AND role = 'policy' AND phase = ? AND {by} IS NOT NULL "
            f"ORDER BY rung DESC, {by} DESC, id ASC LIMIT ?", (phase, k)
        )

    def rounds(self, phase: str = "search") -> list[int]:
        """Every round of `phase` that has trials, ascending."""
        _check_choice("phase", phase, PHASES)
        return [int(r[0]) for r in self._conn.execute(
            "SELECT DISTINCT round FROM trials WHERE phase = ? ORDER BY round", (phase,)
        )]

    # -- internals -------------------------------------------------------------------------

    def _select(self, tail: str, params: tuple[Any, ...]) -> list[Trial]:
        cursor = self._conn.execute(f"SELECT {_COLUMNS} FROM trials {tail}", params)
        return [_decode_row(row, self.path) for row in cursor]

    def _transaction(self) -> Transaction:
        return Transaction(self._conn)

    def _bad_transition(self, trial_id: int, target: str, allowed: tuple[str, ...]) -> None:
        row = self._conn.execute("SELECT status FROM trials WHERE id = ?", (trial_id,)).fetchone()
        if row is None:
            raise KeyError(f"no trial with id {trial_id} in {self.path}")
        raise ValueError(
            f"trial {trial_id} is {row[0]}; only a {' or '.join(allowed)} trial can become {target}"
        )


def _check_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")


def _check_meta_name(name: str) -> None:
    if name in ("kind", "schema_version"):
        raise ValueError(f"meta {name!r} is owned by the store")


def _check_choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"unknown {name} {value!r}, expected one of {', '.join(allowed)}")


def _encode_spec(slot: int, spec: TrialSpec) -> tuple[str, str | None, str, int]:
    if not isinstance(spec.key, str) or not spec.key:
        raise ValueError(f"slot {slot}: key must be a non-empty string, got {spec.key!r}")
    _check_choice(f"slot {slot}: role", spec.role, ROLES)
    _check_int(f"slot {slot}: seed", spec.seed)
    # SQLite INTEGER is a signed 64-bit value.
    if not 0 <= spec.seed < 2**63:
        raise ValueError(f"slot {slot}: seed must be in [0, 2**63), got {spec.seed}")
    if not isinstance(spec.payload, dict):
        raise TypeError(f"slot {slot}: payload must be a dict, got {type(spec.payload).__name__}")
    try:
        payload = json.dumps(spec.payload, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"slot {slot}: payload is not plain JSON ({err})") from None
    tokens = None
    if spec.tokens is not None:
        tokens = json.dumps([int(t) for t in spec.tokens])
    return spec.key, tokens, payload, spec.seed


# The columns an older schema's rows have, by its version: what a migration copies.
_OLD_COLUMNS = {1: _V1_COLUMNS, 2: _V2_COLUMNS}
_COLUMN_NAMES = tuple(name.strip() for name in _COLUMNS.split(","))
_OPTIONAL_TEXT = ("error", "traceback", "worker")
_OPTIONAL_NUMBERS = ("started", "finished", "duration", "paired")


def _decode_row(row: tuple[Any, ...], path: Path) -> Trial:
    """A row in _COLUMNS order, which is Trial's field order; tokens and payload are JSON. Every
    value is checked as a value read from a user's file is: AutoaugError naming the row and the
    column otherwise."""
    values = dict(zip(_COLUMN_NAMES, row))

    def bad(column: str, expected: str) -> AutoaugError:
        return AutoaugError(f"trial store {path}: row id {shown(values['id'])}, column {column}: expected "
                            f"{expected}, got {shown(values[column])}; the store was edited or damaged")

    for column in ("id", "round", "slot", "seed", "rung"):
        value = values[column]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise bad(column, "an integer >= 0")
    if not isinstance(values["key"], str) or not values["key"]:
        raise bad("key", "a non-empty text")
    for column, allowed in (("status", STATUSES), ("phase", PHASES), ("role", ROLES)):
        if values[column] not in allowed:
            raise bad(column, f"one of {', '.join(allowed)}")
    for column in _OPTIONAL_TEXT:
        if values[column] is not None and not isinstance(values[column], str):
            raise bad(column, "text or NULL")
    for column in ("reward",) + _OPTIONAL_NUMBERS:
        value = values[column]
        if value is None and (column != "reward" or values["status"] != "done"):
            continue
        if isinstance(value, int) and not isinstance(value, bool):
            value = values[column] = float(value)
        if not isinstance(value, float) or not math.isfinite(value):
            raise bad(column, "a finite number" + (" (the trial is done)" if column == "reward" else " or NULL"))
    tokens = values["tokens"]
    if tokens is not None:
        tokens = _json_column(values["tokens"], lambda doc: isinstance(doc, list) and all(
            isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31 for t in doc), bad, "tokens",
            "NULL or a JSON list of integers >= 0")
        tokens = tuple(tokens)
    payload = _json_column(values["payload"], lambda doc: isinstance(doc, dict), bad, "payload", "a JSON object")
    values.update(tokens=tokens, payload=payload)
    return Trial(**values)


def _json_column(text: Any, ok: Any, bad: Any, column: str, expected: str) -> Any:
    try:
        doc = json.loads(text) if isinstance(text, str) else None
    except (ValueError, RecursionError):
        doc = None
    if doc is None or not ok(doc):
        raise bad(column, expected)
    return doc
