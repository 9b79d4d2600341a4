"""Faults in a run directory between two runs of one search (issue #12): every one is refused
with one line, leaves the trial store and the checkpoint byte for byte as they were, and loses
no finished trial; once the fault is undone the search resumes with every trial it had.

One real tiny search (npz data, 1 epoch, 4 policies, inline) is made once per module and copied
into each test; each fault is then done to the copy the way a user or a disk would do it.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shutil
import sqlite3
import stat
import subprocess
from pathlib import Path

import numpy as np
import pytest

from autoaug import cli
from autoaug.search.config import CONFIG_FILENAME, load_config
from autoaug.training.data import load_splits
from autoaug.errors import AutoaugError, ConfigError
from autoaug.search.rundir import CHECKPOINT_FILENAME
from autoaug.search.export import ExportOptions, export_policy
from autoaug.search.search import run_search
from autoaug.search.store import STORE_FILENAME, TrialStore

pytestmark = pytest.mark.usefixtures("one_thread")

# The paper's per-trial seeds, one rung and no re-evaluation before export: every row is a search policy.
SETTINGS = ["fidelity.train_subset=", "fidelity.image_size=", "budget=4", "batch_size=2", "backend=inline", "child.epochs=1", "child.batch_size=32",
            "train_subset=none", "val_subset=none", "reward.paired=false", "export.reevaluate_top=0"]


def _npz(path: Path, shift: int = 0) -> Path:
    """10 classes x 12 training images and 10 x 6 val images of real CIFAR-10 (test split)."""
    x, y = load_splits("cifar10-reduced").split("test")
    train = np.concatenate([np.flatnonzero(y == c)[:12] for c in range(10)])
    val = np.concatenate([np.flatnonzero(y == c)[12:18] for c in range(10)])
    x_train = x[train].copy()
    x_train[0, 0, 0, 0] += shift  # one changed pixel is another dataset
    np.savez(path, x=x_train, y=y[train], x_val=x[val], y_val=y[val], x_test=x[val], y_test=y[val])
    return path


def _config(run: Path, data: Path, *more: str):
    return load_config(None, [f"out={run}", f"dataset=npz:{data}", *SETTINGS, *more])


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """A folder with a run directory `run` whose 4 trials are done and its data `data.npz`,
    named by relative paths (the config records them) so that a copy is the same search."""
    root = tmp_path_factory.mktemp("base")
    cwd = Path.cwd()
    os.chdir(root)
    try:
        run_search(_config(Path("run"), _npz(Path("data.npz"))), progress=False)
    finally:
        os.chdir(cwd)
    return root


@pytest.fixture()
def copy(finished: Path, tmp_path: Path, monkeypatch) -> tuple[Path, Path]:
    shutil.copytree(finished, tmp_path / "c")
    monkeypatch.chdir(tmp_path / "c")
    return Path("run"), Path("data.npz")


def _digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def _snapshot(run: Path) -> dict[str, str | None]:
    return {name: _digest(run / name) for name in (STORE_FILENAME, CHECKPOINT_FILENAME)}


def _rows(run: Path) -> list[tuple]:
    conn = sqlite3.connect(run / STORE_FILENAME)
    try:
        return conn.execute("SELECT id, round, slot, key, seed, status, reward FROM trials "
                            "ORDER BY id").fetchall()
    finally:
        conn.close()


def _refused(run: Path, data: Path, match: str, *more: str) -> None:
    """A resume with a bigger budget must raise one line matching `match` and touch nothing."""
    before = _snapshot(run)
    with pytest.raises(AutoaugError, match=match) as err:
        run_search(_config(run, data, "budget=6", *more), progress=False)
    assert "\n" not in str(err.value)
    assert _snapshot(run) == before


def _resumes(run: Path, data: Path, kept: list[tuple]) -> None:
    result = run_search(_config(run, data, "budget=6"), progress=False)
    assert result.completed == 6
    assert _rows(run)[:4] == kept  # every finished trial is still there, unchanged


def test_deleted_store_is_refused_and_nothing_is_recreated(copy) -> None:
    run, data = copy
    kept = _rows(run)
    saved = run / "saved.sqlite"
    (run / STORE_FILENAME).rename(saved)
    _refused(run, data, r"trials.sqlite is missing or empty, but checkpoint checkpoint.pt .* says 4")
    assert not (run / STORE_FILENAME).exists()
    saved.rename(run / STORE_FILENAME)
    _resumes(run, data, kept)


def test_emptied_store_is_refused_and_stays_as_it_is(copy) -> None:
    run, data = copy
    (run / STORE_FILENAME).write_bytes(b"")
    _refused(run, data, r"missing or empty, but checkpoint .* says 4 trials were finished")
    assert (run / STORE_FILENAME).stat().st_size == 0


def test_store_rolled_back_to_fewer_trials_is_refused(copy) -> None:
    run, data = copy
    with sqlite3.connect(run / STORE_FILENAME) as conn:  # as if an older copy were put back
        conn.execute("DELETE FROM trials WHERE round = 1")
    _refused(run, data, r"holds 2 finished trials, but checkpoint checkpoint.pt says 4")


def test_changed_data_file_is_refused(copy) -> None:
    run, data = copy
    kept = _rows(run)
    original = data.read_bytes()
    _npz(data, shift=1)
    _refused(run, data, r"holds rewards measured on other data than npz:.*data.npz gives now")
    data.write_bytes(original)
    _resumes(run, data, kept)


def test_seed_edited_in_config_toml_is_refused(copy, capsys) -> None:
    run, data = copy
    kept = _rows(run)
    path = run / CONFIG_FILENAME
    text = path.read_text()
    assert "\nseed = 0\n" in text
    path.write_text(text.replace("\nseed = 0\n", "\nseed = 5\n"))
    before = _snapshot(run)
    assert cli.main(["search", "--out", str(run), "--no-progress", "--budget", "6"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "started with seed = 0, but its config now says 5" in err
    assert _snapshot(run) == before
    path.write_text(text)
    _resumes(run, data, kept)


def test_truncated_config_toml_names_what_is_missing(copy, capsys) -> None:
    run, data = copy
    path = run / CONFIG_FILENAME
    text = path.read_text()
    path.write_text(text[: text.index("[child]")])  # cut short before the [child] table
    before = _snapshot(run)
    # The options the search was started with, as a user would repeat them.
    args = ["search", "--out", str(run), "--no-progress", "--set", f"dataset=npz:{data}", *SETTINGS]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "config.toml lacks" in err and "child.model" in err
    assert "was started with child" not in err  # no made-up difference against the defaults
    assert _snapshot(run) == before


def test_garbage_in_the_store_is_refused(copy) -> None:
    run, data = copy
    store = run / STORE_FILENAME
    size = store.stat().st_size
    with open(store, "r+b") as handle:
        handle.seek(size // 2 - 2048)
        handle.write(np.random.default_rng(0).integers(0, 256, 4096, np.uint8).tobytes())
    _refused(run, data, r"trial store .*trials.sqlite is damaged \(SQLite: .*\.recover")


def _make_read_only(path: Path) -> bool:
    """chmod for a normal user; root ignores modes, so the immutable flag there (if allowed)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        return True
    return subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0


def test_read_only_store_is_refused(copy) -> None:
    run, data = copy
    store = run / STORE_FILENAME
    if not _make_read_only(store):
        pytest.skip("cannot make a file read-only here (root without chattr)")
    try:
        _refused(run, data, r"trial store .*trials.sqlite is read-only")
        assert len(export_policy(run, ExportOptions(top=2)).trials) == 2  # reading it is fine
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(store)], check=True)
        store.chmod(0o644)


def test_damaged_checkpoint_never_suggests_weights_only_false(copy) -> None:
    run, data = copy
    kept = _rows(run)
    path = run / CHECKPOINT_FILENAME
    path.write_bytes(path.read_bytes()[:300])
    with pytest.raises(AutoaugError) as err:
        run_search(_config(run, data, "budget=6"), progress=False)
    message = str(err.value)
    assert "checkpoint.pt cannot be read: not a complete checkpoint file" in message
    assert "weights_only" not in message and "\n" not in message
    # The advice is true: without the checkpoint the search replays from its store.
    path.unlink()
    _resumes(run, data, kept)


def test_child_batch_larger_than_its_training_set_is_refused(copy) -> None:
    _, data = copy
    with pytest.raises(ConfigError, match=r"child.batch_size = 256 is larger than the child's "
                                          r"training set \(120 images of npz:data.npz\)"):
        run_search(_config(Path("new"), data, "child.batch_size=256"), progress=False)
    assert not Path("new").exists()


def test_store_fault_messages_stay_one_line_in_a_live_store(copy) -> None:
    """A fault that appears while a store is open (not only at open) is one line too."""
    run, _ = copy
    with TrialStore(run / STORE_FILENAME) as store:
        store._conn.raw.close()  # the connection is gone, as after a failed disk
        with pytest.raises(AutoaugError, match=r"trial store .*: SQLite failed"):
            store.counts()


# --- issue #23: the store and the checkpoint are input too ------------------------------------


@pytest.mark.parametrize("value, fragment", [
    (None, "column reward: expected a finite number (the trial is done), got None"),
    ("'abc'", "column reward: expected a finite number (the trial is done), got 'abc'"),
    ("9e999", "column reward: expected a finite number (the trial is done), got inf"),
])
def test_a_bad_reward_in_the_store_is_refused_by_resume_and_export(copy, cli_fails, value, fragment) -> None:
    run, _ = copy
    with sqlite3.connect(run / STORE_FILENAME) as conn:
        conn.execute(f"UPDATE trials SET reward = {'NULL' if value is None else value} WHERE id = 2")
    before = _snapshot(run)
    cli_fails(["search", "--out", str(run), "--no-progress", "--budget", "6"], "row id 2", fragment)
    cli_fails(["export", str(run), "--reevaluate-top", "0", "--out", "p.json"], "row id 2", fragment)
    assert _snapshot(run) == before and not Path("p.json").exists()


@pytest.mark.parametrize("column, value, fragment", [
    ("seed", "'x'", "column seed: expected an integer >= 0"),
    ("payload", "'[1]'", "column payload: expected a JSON object"),
    ("tokens", "'[1, \"a\"]'", "column tokens: expected NULL or a JSON list of integers"),
    ("duration", "'slow'", "column duration: expected a finite number or NULL"),
])
def test_other_wrong_types_in_the_store_name_row_and_column(copy, column, value, fragment) -> None:
    run, data = copy
    with sqlite3.connect(run / STORE_FILENAME) as conn:
        conn.execute(f"UPDATE trials SET {column} = {value} WHERE id = 3")
    _refused(run, data, f"row id 3, {fragment}")


def test_a_checkpoint_of_another_search_is_refused(copy) -> None:
    run, data = copy
    kept = _rows(run)
    run_search(_config(Path("other"), data, "seed=1"), progress=False)
    own = (run / CHECKPOINT_FILENAME).read_bytes()
    shutil.copy(Path("other") / CHECKPOINT_FILENAME, run / CHECKPOINT_FILENAME)
    _refused(run, data, r"checkpoint run/checkpoint.pt holds a search started with seed = 1, but its config "
                        r"now says 0; it was copied from another search")
    (run / CHECKPOINT_FILENAME).write_bytes(own)
    _resumes(run, data, kept)


def test_a_damaged_store_header_is_not_called_read_only(copy, cli_fails) -> None:
    run, data = copy
    with open(run / STORE_FILENAME, "r+b") as handle:  # byte 18: the file format write version
        handle.seek(18)
        handle.write(bytes([0x7F]))
    _refused(run, data, r"trials.sqlite is damaged \(SQLite: the file header is damaged: format versions 127 "
                        r"and 2 at bytes 18-19")
    cli_fails(["export", str(run), "--reevaluate-top", "0"], "is damaged", "bytes 18-19")


def test_a_plain_pickle_checkpoint_gives_one_line(copy, cli_fails) -> None:
    run, _ = copy
    (run / CHECKPOINT_FILENAME).write_bytes(pickle.dumps({"step": 4}, protocol=4))
    cli_fails(["search", "--out", str(run), "--no-progress", "--budget", "6"],
               "it holds objects other than tensors and plain data")


def test_export_writes_into_a_character_device(copy, capsys) -> None:
    run, _ = copy
    device = Path("fakenull")
    try:
        os.mknod(device, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers, never the real one
    except PermissionError:
        pytest.skip("mknod of a character device needs root")
    assert cli.main(["export", str(run), "--reevaluate-top", "0", "--no-progress", "--out", str(device)]) == 0
    assert stat.S_ISCHR(device.stat().st_mode)
    # no albumentations files beside a device: with /dev/null they would land in /dev
    assert not list(Path(".").glob("fakenull.*")) and "no albumentations files" in capsys.readouterr().out
