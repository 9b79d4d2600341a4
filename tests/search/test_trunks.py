"""Shared trunks in the search (issue #21, `fidelity.trunk`, `autoaug.search.trunks`): the config's
checks, real tiny searches whose top rung goes on from a trunk trained once per round (the rewards
are those of children trained from it by hand, the reference's is the whole child's, the
re-evaluation goes on from a trunk of its own seed, the verdict trains whole children), the same store from two worker processes as from one, and
the trunk cache under a lock: trained once for two processes, a killed holder blocks nobody, a
damaged file is trained again, a worker without the run directory trains its own.

Children are real but tiny (rung 0: 1 epoch on 80 images, rung 1: 3 epochs on 160 of which the
first 2 are the trunk, batch 32, scored on 200 val images); nothing is stubbed.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from autoaug.errors import ConfigError
from autoaug.search.config import load_config, save_config
from autoaug.search.fidelity import RUNG_KEY, rung_payload, top_payload, without_rung
from autoaug.search.rewards import REFERENCE_KEY, evaluate_policy
from autoaug.search.search import batch_seed, run_search
from autoaug.search.store import STORE_FILENAME, TrialStore
from autoaug.search.trials import FUSED, ChildTask
from autoaug.search.trunks import TRUNK_DIRNAME, _last, shared_trunk, trunk_key
from autoaug.space.specs import policy_from_json
from autoaug.training.loop import TrainState, train_child, train_trunk
from tests.conftest import torch_threads
from tests.search.test_fidelity import BUDGET, ONE_RUNG, _done_at_rung_1, _env

TINY = ["child.epochs=3", "child.batch_size=32", "train_subset=160", "val_subset=200"]
# every policy at 1 epoch on 80 images, the best half at the search's child from a 2-epoch trunk
TRUNK = [*ONE_RUNG, "fidelity.epochs=1,3", "fidelity.train_subset=80,160", "fidelity.promote=0.5", "fidelity.trunk=0,2"]

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(run: Path, *overrides: str):
    return load_config(None, [f"out={run}", "backend=inline", *TINY, *overrides])


def _rows(run: Path) -> list[tuple]:
    with TrialStore(run / STORE_FILENAME, read_only=True) as store:
        return [(t.phase, t.round, t.rung, t.slot, t.key, t.seed, t.status, t.reward) for t in store.rows()]


@pytest.fixture(scope="module")
def trunk_run(tmp_path_factory) -> Path:
    """A search of 2 rounds of 4 policies in 2 rungs, the top one from a trunk; the best 2
    re-evaluated on 1 seed."""
    run = tmp_path_factory.mktemp("trunk") / "inline"
    with torch_threads(1):
        run_search(_config(run, *BUDGET, *TRUNK, "export.reevaluate_top=2", "export.top=2", "export.reevaluate_seeds=1"),
                   progress=False)
    return run


# --- config -----------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides, message", [
    ([*ONE_RUNG, "fidelity.trunk=x"], r"fidelity.trunk must be epoch counts >= 0 separated by commas"),
    ([*ONE_RUNG, "fidelity.trunk=-1"], r"fidelity.trunk must be epoch counts >= 0"),
    ([*ONE_RUNG, "fidelity.trunk=0,20"], r"fidelity.trunk = '0,20' names 2 rungs, the other lists 1"),
    (["fidelity.trunk=20"], r"fidelity.trunk = '20' names 1 rungs, the other lists 2"),
    ([*ONE_RUNG, "fidelity.trunk=40"], r"rung 0's trunk of 40 epochs leaves none of its 40 to the policy"),
    ([*ONE_RUNG, "fidelity.epochs=10,40", "fidelity.trunk=10,20"], r"rung 0's trunk of 10 epochs leaves none of its 10"),
    ([*ONE_RUNG, "fidelity.trunk=20", "reward.kind=density"], r"reward.kind 'density' trains none per trial: set fidelity.trunk"),
    ([*ONE_RUNG, "fidelity.trunk=20", "reward.paired=false"], r"fidelity.trunk .* needs reward.paired = true"),
])
def test_bad_trunk_config_is_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as err:
        load_config(None, overrides)
    assert "\n" not in str(err.value)


def test_a_trunk_follows_its_rung_when_the_fractions_resolve() -> None:
    config = load_config(None, ["fidelity.trunk=0,20"])
    on_cifar = config.for_images((32, 32), 4000)
    assert on_cifar.fidelity.trunk == "0,20"
    assert [s.get("trunk") for s in on_cifar.rung_settings] == [None, 20]
    # the top rung's payload names its trunk, and so does the re-evaluation's child (top_payload),
    # from either rung; the verdict's (without_rung) trains whole
    top = rung_payload(on_cifar, 1, {"policy": None})
    assert top == {"policy": None, RUNG_KEY: {"trunk": 20}} and without_rung(top) == {"policy": None}
    assert top_payload(on_cifar, top) == top == top_payload(on_cifar, rung_payload(on_cifar, 0, {"policy": None}))
    assert rung_payload(on_cifar, 0, {"policy": None})[RUNG_KEY] == {"train_subset": 500, "image_size": 16, "cutout": 8}
    # images that are not square keep the search's child alone, with the top rung's trunk
    alone = config.for_images((32, 40), 4000)
    assert alone.fidelity.rungs == 1 and alone.fidelity.trunk == "20"
    assert alone.rung_settings[0]["trunk"] == 20

def test_the_default_trunk_is_the_top_rungs_first_half_where_a_round_shares_a_seed(tmp_path: Path) -> None:
    on_cifar = load_config(None, []).for_images((32, 32), 4000)
    assert on_cifar.fidelity.trunk == "0,20" and on_cifar.budget == 256
    # fractions name the rungs from the top: one rung gets the top's half; a 3-epoch child 2 (rounded)
    assert load_config(None, ["fidelity.train_subset=", "fidelity.image_size="]).for_images((32, 32)).fidelity.trunk == "20"
    assert load_config(None, ["child.epochs=3"]).for_images((32, 32), 4000).fidelity.trunk == "0,2"
    assert load_config(None, ["child.epochs=1"]).for_images((32, 32), 4000).fidelity.trunk == ""  # none left to share
    # no child per trial, or a seed per policy: nothing to share, and no error either
    assert load_config(None, ["reward.kind=density"]).for_images((32, 32), 4000).fidelity.trunk == ""
    assert load_config(None, ["reward.paired=false"]).for_images((32, 32), 4000).fidelity.trunk == ""
    # an old run directory's config without the key meant no trunk
    path = save_config(on_cifar, tmp_path / "config.toml")
    path.write_text("\n".join(line for line in path.read_text().splitlines() if not line.startswith("trunk")))
    assert load_config(path, complete=True).fidelity.trunk_list == ()


# --- a search with a trunk --------------------------------------------------------------------


def test_the_top_rung_goes_on_from_one_trunk_per_round(trunk_run: Path) -> None:
    config = _config(trunk_run, *BUDGET, *TRUNK).for_images((32, 32))
    task = ChildTask.from_config(config)
    data = task.data("cpu")
    recipe = dataclasses.replace(config.child, device="cpu")
    # one per round, none for rung 0, and one for the re-evaluation's seed
    assert len(list((trunk_run / TRUNK_DIRNAME).glob("*.pt"))) == 3
    with TrialStore(trunk_run / STORE_FILENAME, read_only=True) as store:
        for round_ in (0, 1):
            seed = batch_seed(config.seed, round_)
            top = store.rows(round=round_, phase="search", rung=1)
            assert len(top) == 3 and top[-1].key == REFERENCE_KEY
            assert all(t.payload[RUNG_KEY] == {"trunk": 2} for t in top)
            assert all(RUNG_KEY in t.payload and "trunk" not in t.payload[RUNG_KEY]
                       for t in store.rows(round=round_, phase="search", rung=0))
            trunk = train_trunk(data, recipe, seed, 2)
            # the stored trunk is that trunk, to the bit, trained by the top rung's reference child,
            # which was stored and trained first with rung 0 (before the promoted children asked
            # for the trunk)
            path = trunk_run / TRUNK_DIRNAME / f"{trunk_key(seed, 2, recipe, _where(task))}.pt"
            reference, rung_0 = top[-1], store.rows(round=round_, phase="search", rung=0)
            assert reference.id < min(t.id for t in rung_0) and reference.started <= min(t.started for t in rung_0)
            assert reference.started <= path.stat().st_mtime <= reference.finished <= min(t.started for t in top[:-1])
            saved = TrainState.from_dict(torch.load(path, weights_only=True))
            assert all(torch.equal(a, b) for a, b in zip(saved.model.values(), trunk.model.values()))
            # each policy's reward is its child from the trunk; the reference's is the whole child
            for t in top[:-1]:
                assert t.reward == train_child(policy_from_json(t.payload["policy"]), data, recipe, seed, trunk)
            assert reference.reward == train_child(None, data, recipe, seed)
        # the re-evaluation trains its children from a trunk of its own seed, as the top rung does;
        # the verdict's children after it train whole
        again = store.rows(phase="reeval", round=0)
        assert len(again) == 3 and again[-1].key == REFERENCE_KEY
        assert all(t.payload[RUNG_KEY] == {"trunk": 2} for t in again)
        assert all(RUNG_KEY not in t.payload for t in store.rows(phase="reeval") if t.round > 0)
        t, seed = again[0], again[0].seed
        trunk = train_trunk(data, recipe, seed, 2)
        assert t.reward == train_child(policy_from_json(t.payload["policy"]), data, recipe, seed, trunk)
        assert again[-1].reward == train_child(None, data, recipe, seed)
        assert (trunk_run / TRUNK_DIRNAME / f"{trunk_key(seed, 2, recipe, _where(task))}.pt").is_file()


def _where(task: ChildTask) -> dict:
    return {"dataset": task.dataset, "val_subset": task.val_subset, "train_subset": task.train_subset,
            "image_size": task.image_size}


def test_two_workers_store_what_one_does(trunk_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "two"
    run_search(_config(run, *BUDGET, *TRUNK, "export.reevaluate_top=2", "export.top=2", "export.reevaluate_seeds=1",
                       "backend=process", "workers=2"), progress=False)
    assert _rows(run) == _rows(trunk_run)
    assert sorted(p.name for p in (run / TRUNK_DIRNAME).glob("*.pt")) == \
        sorted(p.name for p in (trunk_run / TRUNK_DIRNAME).glob("*.pt"))


def test_a_fused_group_goes_on_from_its_trunk(trunk_run: Path) -> None:
    """On a GPU a rung's children train fused (`fuse`): from the round's trunk, the rewards the
    store holds to float rounding (a few of 200 val images may flip, tests/search/test_fidelity.py)."""
    config = _config(trunk_run, *BUDGET, *TRUNK).for_images((32, 32))
    task = dataclasses.replace(ChildTask.from_config(config), trunk_dir=str(trunk_run / TRUNK_DIRNAME))
    with TrialStore(trunk_run / STORE_FILENAME, read_only=True) as store:
        top = store.rows(round=0, phase="search", rung=1)
    fused = evaluate_policy(task, {FUSED: [[t.payload, t.seed] for t in top]}, 0, "cpu")
    assert fused == pytest.approx([t.reward for t in top], abs=(6 + 0.01) / 200)


def test_resume_after_sigkill_in_the_trunk_rung_gives_the_uninterrupted_store(trunk_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "killed"
    args = [sys.executable, "-m", "autoaug", "search", "--out", str(run), "--no-progress", "--set", "backend=inline",
            *TINY, *BUDGET, *TRUNK, "export.reevaluate_top=2", "export.top=2", "export.reevaluate_seeds=1"]
    env = _env()
    proc = subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while _done_at_rung_1(run) < 2:  # round 0's trunk is trained, its reference and a policy of it done
        assert proc.poll() is None, f"the search ended before it could be stopped: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "the search made no progress"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    resumed = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    # the budget's policies: round 0's 4 at rung 0 (its promoted children there count once)
    assert f"resuming {run}: 4 of 8 policies evaluated" in resumed.stderr
    assert _rows(run) == _rows(trunk_run)


# --- the trunk cache --------------------------------------------------------------------------


def _tiny_state(epochs: int = 1) -> TrainState:
    return TrainState(epochs=epochs, model={"w": torch.arange(3.0)}, optimizer={"state": {}, "param_groups": []},
                      scheduler={"last_epoch": 3}, order=torch.zeros(2, dtype=torch.uint8),
                      standard=torch.ones(2, dtype=torch.uint8))


def _slow_train(counter: str) -> TrainState:
    with open(counter, "a") as handle:
        handle.write("trained\n")
    time.sleep(1.0)
    return _tiny_state()


def _want(directory: str, counter: str, key: str) -> None:
    state = shared_trunk(directory, key, lambda: _slow_train(counter))
    assert torch.equal(state.model["w"], torch.arange(3.0))


def test_two_processes_wanting_one_trunk_train_it_once(tmp_path: Path) -> None:
    directory, counter = str(tmp_path / "run" / TRUNK_DIRNAME), str(tmp_path / "count")
    (tmp_path / "run").mkdir()
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=_want, args=(directory, counter, "k1")) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]
    assert Path(counter).read_text() == "trained\n"


def _hold_the_lock(directory: str, counter: str) -> None:
    shared_trunk(directory, "k2", lambda: (_slow_train(counter), time.sleep(60))[0])


def test_a_killed_holder_blocks_nobody_and_leaves_no_trunk(tmp_path: Path) -> None:
    directory, counter = str(tmp_path / "run" / TRUNK_DIRNAME), str(tmp_path / "count")
    (tmp_path / "run").mkdir()
    holder = multiprocessing.get_context("spawn").Process(target=_hold_the_lock, args=(directory, counter))
    holder.start()
    deadline = time.monotonic() + 60
    while not Path(counter).exists():  # it holds the lock, training
        assert time.monotonic() < deadline and holder.is_alive()
        time.sleep(0.02)
    os.kill(holder.pid, signal.SIGKILL)
    holder.join()
    assert not list(Path(directory).glob("*.pt"))
    _last.clear()
    state = shared_trunk(directory, "k2", _tiny_state)
    assert state.scheduler == {"last_epoch": 3} and (Path(directory) / "k2.pt").is_file()


def test_a_damaged_trunk_is_trained_again_and_no_run_directory_trains_in_memory(tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    directory = tmp_path / "run" / TRUNK_DIRNAME
    directory.mkdir()
    (directory / "k3.pt").write_bytes(b"not a trunk")
    _last.clear()
    assert shared_trunk(str(directory), "k3", _tiny_state).epochs == 1
    assert torch.load(directory / "k3.pt", weights_only=True)["epochs"] == 1
    # a Ray node without the run directory: trained here, kept in memory, nothing created
    missing = tmp_path / "elsewhere" / "run" / TRUNK_DIRNAME
    assert shared_trunk(str(missing), "k4", lambda: _tiny_state(2)).epochs == 2
    assert not (tmp_path / "elsewhere").exists()
    assert shared_trunk(str(missing), "k4", lambda: pytest.fail("trained twice")).epochs == 2  # this worker's last
