"""Trial store, atomic checkpoints and the run lock: schema, resume semantics, bad inputs, and
crashes (SIGKILL of a writer mid-run) that must lose nothing committed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from multiprocessing.connection import Connection
from pathlib import Path

import pytest
import torch

from autoaug.errors import AutoaugError
from autoaug.search.rundir import CHECKPOINT_FILENAME, RunLock, load_checkpoint, save_checkpoint
from autoaug.search.store import SCHEMA_VERSION, STORE_FILENAME, TrialSpec, TrialStore

REPO = Path(__file__).resolve().parents[2]


def _python(script: str, *args: str, **popen: object) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(script), *args],
        env=env, text=True, **popen,  # type: ignore[arg-type]
    )


def _batch(round_: int, n: int = 3) -> list[TrialSpec]:
    return [
        TrialSpec(key=f"r{round_}s{s}", payload={"round": round_, "slot": s, "p": [0.5, s]},
                  seed=1000 * round_ + s, tokens=[s, s + 1, s + 2])
        for s in range(n)
    ]


@pytest.fixture()
def store(tmp_path: Path) -> TrialStore:
    with TrialStore(tmp_path / "run" / STORE_FILENAME) as opened:
        yield opened


# -- schema and basic life cycle -------------------------------------------------------------


def test_schema_wal_and_meta(store: TrialStore) -> None:
    raw = sqlite3.connect(store.path)
    columns = [row[1] for row in raw.execute("PRAGMA table_info(trials)")]
    assert columns == ["id", "key", "round", "slot", "tokens", "payload", "seed", "status",
                       "reward", "error", "traceback", "worker", "started", "finished",
                       "duration", "phase", "role", "paired", "rung"]
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    meta = dict(raw.execute("SELECT name, value FROM meta"))
    assert meta["schema_version"] == str(SCHEMA_VERSION)
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    # UNIQUE(phase, round, slot) is enforced by SQLite itself, not only by add_pending.
    store.add_pending(0, _batch(0))
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO trials (key, round, slot, payload, seed, status) "
                    "VALUES ('x', 0, 1, '{}', 0, 'pending')")
    with pytest.raises(sqlite3.IntegrityError):
        raw.execute("INSERT INTO trials (key, round, slot, payload, seed, status) "
                    "VALUES ('x', 9, 0, '{}', 0, 'bogus')")
    raw.close()


def test_paired_reward_is_reward_minus_the_reference_of_the_same_phase_and_seed(
    store: TrialStore,
) -> None:
    batch = [TrialSpec(key=f"p{i}", payload={"i": i}, seed=7) for i in range(3)]
    batch.append(TrialSpec(key="reference", payload={"policy": None}, seed=7, role="reference"))
    trials = store.add_pending(0, batch)
    store.mark_done(trials[0].id, 0.50, 1.0)
    assert store.get(trials[0].id).paired is None  # the reference is not done yet
    store.mark_done(trials[3].id, 0.40, 1.0)  # the reference pairs the done policy at once
    store.mark_done(trials[1].id, 0.30, 1.0)  # and a policy done later pairs on arrival
    store.mark_failed(trials[2].id, "boom", 1.0)
    got = {t.key: (t.role, t.paired) for t in store.rows(round=0)}
    assert got["p0"] == ("policy", pytest.approx(0.10)) and got["p1"] == ("policy", pytest.approx(-0.10))
    assert got["p2"] == ("policy", None) and got["reference"] == ("reference", None)
    # Re-evaluation trials live in their own phase: same round numbers, own seeds, own pairing.
    reeval = store.add_pending(0, [TrialSpec(key="p0", payload={"i": 0}, seed=8),
                                   TrialSpec(key="reference", payload={}, seed=8, role="reference")],
                               phase="reeval")
    store.mark_done(reeval[0].id, 0.45, 1.0)
    store.mark_done(reeval[1].id, 0.44, 1.0)
    assert store.get(reeval[0].id).paired == pytest.approx(0.01)
    # Budgets, rankings and rounds count the search's policies only.
    assert store.counts() == {"pending": 0, "running": 0, "done": 2, "failed": 1}
    assert store.counts(role=None)["done"] == 3 and store.counts("reeval")["done"] == 1
    assert [t.key for t in store.best(5)] == ["p0", "p1"]
    assert [t.key for t in store.best(5, by="paired")] == ["p0", "p1"]
    assert [t.key for t in store.best(5, phase="reeval")] == ["p0"]
    assert store.rounds() == [0] and store.rounds("reeval") == [0]


def test_a_schema_1_store_is_migrated_in_place(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILENAME
    raw = sqlite3.connect(path)
    raw.executescript("""
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE trials (id INTEGER PRIMARY KEY, key TEXT NOT NULL, round INTEGER NOT NULL,
            slot INTEGER NOT NULL, tokens TEXT, payload TEXT NOT NULL, seed INTEGER NOT NULL,
            status TEXT NOT NULL, reward REAL, error TEXT, traceback TEXT, worker TEXT,
            started REAL, finished REAL, duration REAL, UNIQUE (round, slot));
        CREATE INDEX trials_status ON trials (status);
        CREATE INDEX trials_key ON trials (key);
        INSERT INTO meta VALUES ('kind', 'autoaug-trials'), ('schema_version', '1');
        INSERT INTO trials (key, round, slot, payload, seed, status, reward)
            VALUES ('a', 0, 0, '{}', 5, 'done', 0.5), ('b', 0, 1, '{}', 6, 'pending', NULL);
    """)
    raw.close()
    with TrialStore(path) as store:
        rows = store.rows()
        assert [(t.key, t.status, t.reward, t.phase, t.role, t.paired) for t in rows] == [
            ("a", "done", 0.5, "search", "policy", None), ("b", "pending", None, "search", "policy", None)]
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        store.mark_done(rows[1].id, 0.25, 1.0)  # and it works as a current store
    with TrialStore(path) as store:
        assert [t.reward for t in store.best(2)] == [0.5, 0.25]


def test_a_schema_2_store_gets_the_rung_column_in_place(tmp_path: Path) -> None:
    """Issue #21: a store written before rungs existed resumes, every row at rung 0, and takes a
    rung 1 under the same (round, slot), which schema 2's UNIQUE (phase, round, slot) refused."""
    path = tmp_path / STORE_FILENAME
    raw = sqlite3.connect(path)
    raw.executescript("""
        CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE trials (id INTEGER PRIMARY KEY, key TEXT NOT NULL, round INTEGER NOT NULL,
            slot INTEGER NOT NULL, tokens TEXT, payload TEXT NOT NULL, seed INTEGER NOT NULL,
            status TEXT NOT NULL, reward REAL, error TEXT, traceback TEXT, worker TEXT,
            started REAL, finished REAL, duration REAL,
            phase TEXT NOT NULL DEFAULT 'search', role TEXT NOT NULL DEFAULT 'policy', paired REAL,
            UNIQUE (phase, round, slot));
        CREATE INDEX trials_status ON trials (status);
        CREATE INDEX trials_key ON trials (key);
        INSERT INTO meta VALUES ('kind', 'autoaug-trials'), ('schema_version', '2');
        INSERT INTO trials (key, round, slot, payload, seed, status, reward, phase, role, paired)
            VALUES ('a', 0, 0, '{}', 5, 'done', 0.5, 'search', 'policy', 0.25),
                   ('reference', 0, 1, '{}', 5, 'done', 0.25, 'search', 'reference', NULL);
    """)
    raw.close()
    with TrialStore(path) as store:
        assert store.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert [(t.key, t.rung, t.role, t.paired) for t in store.rows()] == [
            ("a", 0, "policy", 0.25), ("reference", 0, "reference", None)]
        up = store.add_pending(0, [TrialSpec("a", {}, 5), TrialSpec("reference", {}, 5, role="reference")],
                               rung=1, slots=[0, 1])
        store.mark_done(up[0].id, 0.75, 1.0)
        store.mark_done(up[1].id, 0.5, 1.0)
        # Each rung pairs with its own reference; the top rung ranks first.
        assert [(t.rung, t.paired) for t in store.best(2, by="paired")] == [(1, 0.25), (0, 0.25)]
        assert [(t.rung, t.reward) for t in store.best(2)] == [(1, 0.75), (0, 0.5)]


def test_reading_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    """A reader (export, a report) of a run that has no store yet gets an error and leaves no empty
    store behind: a later search would take that file for an interrupted run of its own."""
    missing = tmp_path / "run" / STORE_FILENAME
    with pytest.raises(AutoaugError, match="no trial store at .*trials.sqlite"):
        TrialStore(missing, read_only=True)
    assert not missing.parent.exists()


def test_add_pending_round_trips_and_is_idempotent(store: TrialStore) -> None:
    rows = store.add_pending(4, _batch(4))
    assert [(t.round, t.slot, t.status) for t in rows] == [(4, s, "pending") for s in range(3)]
    assert rows[1].payload == {"round": 4, "slot": 1, "p": [0.5, 1]}
    assert rows[1].tokens == (1, 2, 3) and rows[1].seed == 4001 and rows[1].key == "r4s1"

    store.mark_running(rows[0].id, "w0")
    store.mark_done(rows[0].id, 0.75, 2.0)
    again = store.add_pending(4, _batch(4))  # a resumed search re-adding the same round
    assert [t.id for t in again] == [t.id for t in rows]
    assert again[0].status == "done" and again[0].reward == 0.75
    assert len(store.rows()) == 3

    other = _batch(4)
    other[2] = TrialSpec("something-else", {}, seed=4002)
    with pytest.raises(AutoaugError, match="round 4 already holds a different batch.*slot 2"):
        store.add_pending(4, other)
    with pytest.raises(AutoaugError, match="3 trials, now 2"):
        store.add_pending(4, _batch(4, n=2))
    assert len(store.rows()) == 3  # the failed adds changed nothing


def test_a_rung_added_in_parts_agrees_on_the_slots_it_shares(store: TrialStore) -> None:
    """A rung's reference child is stored before the policies promoted to it (issue #21)."""
    reference, promoted = TrialSpec("reference", {}, seed=7, role="reference"), _batch(0, n=3)
    [early] = store.add_pending(2, [reference], rung=1, slots=[16], partial=True)
    store.mark_running(early.id, "w0")
    store.mark_done(early.id, 0.5, 1.0)
    rows = store.add_pending(2, [promoted[0], promoted[2], reference], rung=1, slots=[3, 9, 16], partial=True)
    assert [(t.slot, t.key, t.status) for t in rows] == [(3, "r0s0", "pending"), (9, "r0s2", "pending"),
                                                         (16, "reference", "done")]
    assert rows[-1].id == early.id and min(t.id for t in rows[:2]) > early.id
    # resumed: each part again returns its own rows, untouched
    assert store.add_pending(2, [reference], rung=1, slots=[16], partial=True) == [rows[-1]]
    assert store.add_pending(2, [promoted[0], promoted[2], reference], rung=1, slots=[3, 9, 16], partial=True) == rows
    # a part that disagrees on a slot both hold is another search's
    with pytest.raises(AutoaugError, match="round 2 rung 1 already holds a different batch.*slot 9"):
        store.add_pending(2, [promoted[1], reference], rung=1, slots=[9, 16], partial=True)
    with pytest.raises(AutoaugError, match="3 trials, now 1"):  # not in parts: the whole rung must match
        store.add_pending(2, [reference], rung=1, slots=[16])
    assert len(store.rows()) == 3


def test_bad_specs_are_refused_before_anything_is_written(store: TrialStore) -> None:
    with pytest.raises(ValueError, match="not plain JSON"):
        store.add_pending(0, [TrialSpec("a", {"x": 1}, 0), TrialSpec("b", {"x": object()}, 1)])
    with pytest.raises(ValueError, match="seed"):
        store.add_pending(0, [TrialSpec("a", {}, 2**63)])
    with pytest.raises(ValueError, match="key"):
        store.add_pending(0, [TrialSpec("", {}, 0)])
    with pytest.raises(ValueError, match="at least one"):
        store.add_pending(0, [])
    assert store.rows() == []


def test_status_transitions(store: TrialStore) -> None:
    a, b, c = store.add_pending(0, _batch(0))
    store.mark_running(a.id, "worker0@cpu pid 1")
    assert store.get(a.id).status == "running" and store.get(a.id).worker == "worker0@cpu pid 1"
    store.mark_done(a.id, 0.5, 1.5)
    store.mark_failed(b.id, "ValueError: boom", 0.25, traceback="Traceback ...\nValueError: boom")
    got_a, got_b = store.get(a.id), store.get(b.id)
    assert (got_a.status, got_a.reward, got_a.duration) == ("done", 0.5, 1.5)
    assert got_a.finished >= got_a.started
    assert (got_b.status, got_b.error, got_b.reward) == ("failed", "ValueError: boom", None)
    assert got_b.traceback.endswith("ValueError: boom")
    assert got_b.started is not None  # failed straight from pending still gets a start time

    with pytest.raises(ValueError, match="trial .* is done"):
        store.mark_running(a.id, "w")
    with pytest.raises(ValueError, match="is failed"):
        store.mark_done(b.id, 1.0, 1.0)
    with pytest.raises(ValueError, match="finite"):
        store.mark_done(c.id, float("nan"), 1.0)
    with pytest.raises(KeyError):
        store.mark_done(12345, 1.0, 1.0)

    assert [t.id for t in store.rows(round=0, status="pending")] == [c.id]
    assert store.completed_count() == 2
    assert store.counts() == {"pending": 1, "running": 0, "done": 1, "failed": 1}
    store.mark_done(c.id, 0.1, 0.1)
    assert store.rows(round=0, status="pending") == []


def test_resume_turns_running_back_to_pending(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILENAME
    with TrialStore(path) as first:
        a, b, c = first.add_pending(0, _batch(0))
        first.mark_running(a.id, "w0")
        first.mark_done(a.id, 0.9, 1.0)
        first.mark_running(b.id, "w1")  # the process "dies" here, b in flight
    with TrialStore(path) as second:
        assert second.get(b.id).status == "running"  # opening alone changes nothing
        assert second.requeue_running() == 1
        again = second.get(b.id)
        assert (again.status, again.worker, again.started) == ("pending", None, None)
        assert second.get(a.id).status == "done" and second.get(a.id).reward == 0.9
        assert [t.id for t in second.rows(round=0, status="pending")] == [b.id, c.id]
        second.set_meta("config", '{"rounds": 3}')
    with TrialStore(path) as third:
        assert third.get_meta("config") == '{"rounds": 3}'
        assert third.get_meta("missing") is None
        with pytest.raises(ValueError):
            third.set_meta("schema_version", "7")


def test_best_rounds_and_filters(store: TrialStore) -> None:
    for r in range(3):
        store.add_pending(r, _batch(r))
    rewards = {(0, 0): 0.2, (0, 1): 0.9, (1, 0): 0.9, (1, 2): 0.5, (2, 1): 0.1}
    for trial in store.rows():
        if (trial.round, trial.slot) in rewards:
            store.mark_done(trial.id, rewards[trial.round, trial.slot], 1.0)
    store.mark_failed(store.rows(round=2)[0].id, "RuntimeError: x", 1.0)

    best = store.best(3)
    # The tie at 0.9 goes to the earlier trial; failed and pending trials never rank.
    assert [(t.round, t.slot) for t in best] == [(0, 1), (1, 0), (1, 2)]
    assert len(store.best(100)) == 5 and store.best(0) == []
    assert store.rounds() == [0, 1, 2]
    assert [(t.round, t.slot) for t in store.rows(status="failed")] == [(2, 0)]
    assert [t.slot for t in store.rows(round=1, status="done")] == [0, 2]
    assert [t.round for t in store.rows(key="r1s1")] == [1]
    with pytest.raises(ValueError, match="unknown status 'finished'.*pending"):
        store.rows(status="finished")


# -- files that are not (writable) stores -----------------------------------------------------


def test_unwritable_run_directory(tmp_path: Path) -> None:
    # Tests run as root, where chmod does not stop writes; a path under a regular file does.
    (tmp_path / "afile").write_text("not a directory")
    with pytest.raises(AutoaugError, match="cannot create run directory .*afile"):
        TrialStore(tmp_path / "afile" / "run" / STORE_FILENAME)


def test_files_that_are_not_trial_stores(tmp_path: Path) -> None:
    text = tmp_path / "text.sqlite"
    text.write_text("hello, I am a text file that happens to be long enough " * 20)
    with pytest.raises(AutoaugError, match="is not an autoaug trial store"):
        TrialStore(text)

    other = tmp_path / "other.sqlite"
    raw = sqlite3.connect(other)
    raw.execute("CREATE TABLE customers (name TEXT)")
    raw.commit()
    raw.close()
    with pytest.raises(AutoaugError, match="not an autoaug trial store.*customers"):
        TrialStore(other)

    newer = tmp_path / "newer.sqlite"
    TrialStore(newer).close()
    raw = sqlite3.connect(newer)
    raw.execute("UPDATE meta SET value = ? WHERE name = 'schema_version'",
                (str(SCHEMA_VERSION + 1),))
    raw.commit()
    raw.close()
    with pytest.raises(AutoaugError, match="newer than this autoaug reads"):
        TrialStore(newer)

    (tmp_path / "adir").mkdir()
    with pytest.raises(AutoaugError, match="not a file"):
        TrialStore(tmp_path / "adir")


# -- several processes, and processes that die --------------------------------------------------


# Store-only children are forked: they need nothing but sqlite, and a spawned interpreter would
# spend seconds importing the package (torch, albumentations) before writing a row.
_FORK = multiprocessing.get_context("fork")


def _mark_parity(path: Path, parity: int) -> None:
    with TrialStore(path) as store:
        for trial in store.rows():
            if trial.id % 2 == parity:
                store.mark_running(trial.id, f"proc{parity}")
                store.mark_done(trial.id, trial.id * 0.5, 0.01)


def test_concurrent_writer_processes_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / STORE_FILENAME
    with TrialStore(path) as store:
        for r in range(6):
            store.add_pending(r, _batch(r, n=10))
    procs = [_FORK.Process(target=_mark_parity, args=(path, parity)) for parity in (0, 1)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    assert [proc.exitcode for proc in procs] == [0, 0]
    with TrialStore(path) as store:
        rows = store.rows()
        assert len(rows) == 60
        assert all(t.status == "done" and t.reward == t.id * 0.5 for t in rows)
        assert all(t.worker == f"proc{t.id % 2}" for t in rows)


def _specs(round_: int) -> list[TrialSpec]:
    return [TrialSpec(f"r{round_}s{s}", {"r": round_, "s": s}, seed=10 * round_ + s)
            for s in range(4)]


def _write_rounds_forever(run: Path, conn: Connection) -> None:
    with RunLock(run), TrialStore(run / STORE_FILENAME) as store:
        for r in range(100_000):
            for trial in store.add_pending(r, _specs(r)):
                store.mark_running(trial.id, "writer")
                store.mark_done(trial.id, r + trial.slot / 10, 0.0)
                conn.send((r, trial.slot))  # only after the commit


def test_sigkill_mid_run_keeps_every_committed_trial_once(tmp_path: Path) -> None:
    run = tmp_path / "run"
    parent_conn, child_conn = _FORK.Pipe(duplex=False)
    proc = _FORK.Process(target=_write_rounds_forever, args=(run, child_conn))
    proc.start()
    child_conn.close()
    committed = [parent_conn.recv() for _ in range(41)]  # not a multiple of 4: likely mid-batch
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    while parent_conn.poll():  # what it committed between our last recv and the kill
        try:
            committed.append(parent_conn.recv())
        except EOFError:
            break

    # The killed writer's lock died with it.
    with RunLock(run), TrialStore(run / STORE_FILENAME) as store:
        assert store._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = store.rows()
        by_position = {(t.round, t.slot): t for t in rows}
        assert len(by_position) == len(rows)  # no (round, slot) twice
        assert len({t.key for t in rows}) == len(rows)  # no key twice
        for r, s in committed:
            assert by_position[r, s].status == "done" and by_position[r, s].reward == r + s / 10
        assert store.counts()["running"] <= 1  # at most the trial in flight

        # Resume: requeue, re-add the last round (a no-op), finish what is left.
        store.requeue_running()
        last = max(store.rounds())
        store.add_pending(last, _specs(last))
        for trial in store.rows(round=last, status="pending"):
            store.mark_done(trial.id, last + trial.slot / 10, 0.0)
        rows = store.rows()
        assert len(rows) == 4 * (last + 1)
        assert all(t.status == "done" for t in rows)
        assert store.completed_count() == len(rows)


def test_run_lock_is_exclusive(tmp_path: Path) -> None:
    with RunLock(tmp_path / "run"):
        with pytest.raises(AutoaugError, match=f"in use by another autoaug process \\(pid {os.getpid()}\\)"):
            RunLock(tmp_path / "run").acquire()
    with RunLock(tmp_path / "run"):  # released on exit
        pass
    (tmp_path / "afile").write_text("x")
    with pytest.raises(AutoaugError, match="cannot create run directory lock"):
        RunLock(tmp_path / "afile" / "run").acquire()


# -- checkpoints -------------------------------------------------------------------------------


def _state(step: int) -> dict[str, object]:
    generator = torch.Generator().manual_seed(step)
    model = torch.nn.Linear(3, 2)
    # SGD with momentum has per-parameter state like Adam, without Adam's 2 s first step.
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    optimiser.step()
    return {"step": step, "baseline": 0.25 * step, "rng": generator.get_state(),
            "controller": model.state_dict(), "optimizer": optimiser.state_dict()}


def test_checkpoint_round_trip_restores_rng(tmp_path: Path) -> None:
    path = tmp_path / "run" / CHECKPOINT_FILENAME
    assert load_checkpoint(path) is None
    state = _state(7)
    save_checkpoint(path, state)
    loaded = load_checkpoint(path)
    assert loaded is not None
    assert loaded["step"] == 7 and loaded["baseline"] == 1.75
    assert loaded["optimizer"]["state"][0]["momentum_buffer"].shape == (2, 3)
    generator = torch.Generator()
    generator.set_state(loaded["rng"])
    expected = torch.Generator().manual_seed(7)
    assert torch.equal(torch.rand(5, generator=generator), torch.rand(5, generator=expected))
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind


def test_checkpoint_crash_mid_write_keeps_previous(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_FILENAME
    save_checkpoint(path, _state(1))
    # A writer that died before its rename leaves a half-written temp file: ignored by load,
    # removed by the next save.
    stray = tmp_path / f".{CHECKPOINT_FILENAME}.abc123.tmp"
    stray.write_bytes(b"PK\x03\x04 half a zip file")
    assert load_checkpoint(path)["step"] == 1
    # A save that fails half-way (torch.save can't pickle a lambda) leaves the old one.
    with pytest.raises(Exception):
        save_checkpoint(path, {"step": 2, "weights": torch.zeros(1000), "bad": lambda: 0})
    assert load_checkpoint(path)["step"] == 1
    save_checkpoint(path, _state(3))
    assert load_checkpoint(path)["step"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILENAME]


def test_checkpoint_survives_sigkill_during_save_loop(tmp_path: Path) -> None:
    path = tmp_path / CHECKPOINT_FILENAME
    saver = """
        import sys, torch
        from autoaug.search.rundir import save_checkpoint
        for step in range(1, 100000):
            save_checkpoint(sys.argv[1], {"step": step, "blob": torch.full((1 << 20,), float(step))})
            print(step, flush=True)
    """
    proc = _python(saver, str(path), stdout=subprocess.PIPE)
    assert proc.stdout is not None
    last = 0
    while last < 4:
        line = proc.stdout.readline()
        assert line, f"saver exited early with code {proc.poll()}"
        last = int(line)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    state = load_checkpoint(path)
    assert state is not None and state["step"] >= last
    assert torch.equal(state["blob"], torch.full((1 << 20,), float(state["step"])))


def test_bad_checkpoints_are_clear_errors(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00\x01 definitely not a checkpoint")
    with pytest.raises(AutoaugError, match="checkpoint .*garbage.pt cannot be read"):
        load_checkpoint(garbage)

    code = tmp_path / "code.pt"
    torch.save({"obj": _NotData()}, code)  # weights_only refuses arbitrary classes
    with pytest.raises(AutoaugError, match="code.pt cannot be read"):
        load_checkpoint(code)

    tensor = tmp_path / "tensor.pt"
    torch.save(torch.zeros(2), tensor)
    with pytest.raises(AutoaugError, match="holds a Tensor, expected a dict"):
        load_checkpoint(tensor)

    (tmp_path / "afile").write_text("x")
    with pytest.raises(AutoaugError, match="cannot write checkpoint"):
        save_checkpoint(tmp_path / "afile" / CHECKPOINT_FILENAME, {"step": 1})


class _NotData:
    pass
