"""Top-k ensembles of saved model outputs (issue #5)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from autoaug.errors import AutoaugError, DataError


# ---- ensembles -------------------------------------------------------------------------------


def _member(directory: Path, val_acc: float, proba: np.ndarray, labels: np.ndarray) -> None:
    from autoaug.training.ensemble import save_outputs

    save_outputs(directory, val_acc=val_acc, test_proba=proba, test_labels=labels, seed=0)


def test_top_k_ensemble_averages_the_best_by_validation(tmp_path):
    from autoaug.training.ensemble import find_members, top_k_ensemble

    labels = np.array([0, 1, 2, 0, 1, 2])
    eye = np.eye(3, dtype=np.float32)
    # a: right on 0..3; b: right on 2..5; c: wrong everywhere but best on val (chosen first);
    # d: lowest val, never chosen with top 3
    a = eye[[0, 1, 2, 0, 2, 0]] * 0.6 + 0.4 / 3
    b = eye[[1, 2, 2, 0, 1, 2]] * 0.6 + 0.4 / 3
    c = np.full((6, 3), 1 / 3, np.float32)
    c[:, 0] += 0.01
    d = eye[labels]
    for name, val, proba in (("a", 0.8, a), ("b", 0.7, b), ("c", 0.9, c), ("d", 0.1, d)):
        _member(tmp_path / "runs" / name, val, proba, labels)
    members = find_members([tmp_path / "runs"])
    assert len(members) == 4
    result = top_k_ensemble(members, 3)
    assert [Path(m.name).name for m in result.members] == ["c", "a", "b"]
    mean = (a + b + c) / 3
    assert result.test_acc == pytest.approx(((mean.argmax(1)) == labels).mean())
    assert result.best_single.test_acc == pytest.approx(2 / 6)  # c: class 0 everywhere
    assert top_k_ensemble(members, 1).test_acc == pytest.approx(2 / 6)
    # a single model directory works as a RUN_DIR too, and is not counted twice
    assert len(find_members([tmp_path / "runs", tmp_path / "runs" / "a"])) == 4


def test_ensemble_bad_input(tmp_path):
    from autoaug.training.ensemble import find_members, top_k_ensemble

    labels = np.array([0, 1])
    _member(tmp_path / "x", 0.5, np.eye(2, dtype=np.float32), labels)
    _member(tmp_path / "y", 0.6, np.eye(2, dtype=np.float32), labels[::-1].copy())
    with pytest.raises(DataError, match="different test sets"):
        top_k_ensemble(find_members([tmp_path]), 2)
    with pytest.raises(AutoaugError, match="--top 3: only 2 model"):
        top_k_ensemble(find_members([tmp_path]), 3)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no model outputs"):
        find_members([tmp_path / "empty"])
    with pytest.raises(DataError, match="no such directory"):
        find_members([tmp_path / "nope"])
    (tmp_path / "x" / "outputs.json").write_text("{\"format\": \"other\"}")
    with pytest.raises(DataError, match="expected \"format\": \"autoaug.outputs\""):
        find_members([tmp_path / "x"])
