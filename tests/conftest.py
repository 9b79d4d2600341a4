from __future__ import annotations

import contextlib

import numpy as np
import pytest
import torch

from pathlib import Path

from autoaug.training.data import load, load_splits
from autoaug.training.device import prepare


@pytest.fixture(scope="session")
def cifar_images() -> np.ndarray:
    """64 real CIFAR-10 test images, (64, 32, 32, 3) uint8 RGB, from the embedded pack."""
    x, _ = load("cifar10-reduced", "test")
    return x[:64].copy()


@pytest.fixture(scope="session")
def cifar_batch(cifar_images) -> torch.Tensor:
    return torch.from_numpy(cifar_images).permute(0, 3, 1, 2).contiguous()  # (64, 3, 32, 32)


@contextlib.contextmanager
def torch_threads(n: int):
    """torch's intra-op threads set to n inside the block. A module fixture that trains children
    runs before the function-scoped `one_thread`, so it sets this itself: a 2-thread child sums
    in another order than a worker's 1-thread child, and rewards a test reproduces to the bit
    (or to a few val images on a tiny child) must come from the same thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


@pytest.fixture
def one_thread():
    """Run a test single-threaded: its tensors are tiny, and on a busy machine intra-op thread
    hand-offs cost more than the arithmetic (10x on the controller's 32 x 100 steps)."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> Path:
    """36 train / 36 val / 36 test 16x16 crops of 3 CIFAR classes: a child trains in a blink."""
    x, y = load("cifar10-reduced", "train")
    idx = np.concatenate([np.where(y == c)[0][:12] for c in range(3)])
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x=x[idx, :16, :16], y=y[idx], x_val=x[idx, 16:, 16:], y_val=y[idx],
             x_test=x[idx, :16, 16:], y_test=y[idx])
    return path


@pytest.fixture(scope="module")
def tiny_data(tiny_npz):
    return prepare(load_splits(f"npz:{tiny_npz}"), "cpu")


@pytest.fixture
def cli_fails(capsys):
    """`cli_fails(argv, *fragments)`: run the command line in-process and check that it failed
    as a user mistake must: exit code 2 and one line on stderr holding every fragment (returned)."""
    from autoaug import cli

    def fails(argv: list[str], *fragments: str) -> str:
        assert cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith(f"autoaug {argv[0]}: error: "), err
        assert len(err) < 600, err
        for fragment in fragments:
            assert fragment in err, err
        return err

    return fails
def _done_trials(store: Path) -> int:
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=10)
        try:
            return conn.execute("SELECT COUNT(*) FROM trials WHERE status = 'done'").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0  # the schema is being created


@pytest.fixture
def sigkill_cli():
    """`kill(args, out, done=2)`: run `autoaug ARGS` (inline backend, one thread) in a
    subprocess, SIGKILL it once OUT/trials.sqlite holds `done` finished trials (or after 120 s)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    root = Path(__file__).resolve().parents[1]

    def kill(args: list[str], out: Path, done: int = 2) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
        proc = subprocess.Popen([sys.executable, "-m", "autoaug", *args], cwd=root, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
                if (out / "trials.sqlite").exists() and _done_trials(out / "trials.sqlite") >= done:
                    break
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait()
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]

    return kill
