"""Top-k ensembles of trained models, and the per-model output files they are built from (issue #5).

An ensemble needs no weights: a trained model leaves its validation accuracy, its test accuracy
and its softmax on the (un-augmented) test split behind. The members are picked by validation
accuracy only; the test split is only measured.

Files of one model, in one directory (written by the RandAugment grid for every child, and by
anything else that calls `save_outputs`):
- `outputs.json`: {"format": "autoaug.outputs", "version": 1, "val_acc", "test_acc", "seed",
  "dataset", "policy", ...}
- `outputs.npz`: `test_proba` float32 (N, K) softmax, `test_labels` int64 (N,).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from autoaug.errors import AutoaugError, DataError
from autoaug.files import atomic_write, save_json

OUTPUTS_FORMAT = "autoaug.outputs"
OUTPUTS_VERSION = 1
META_FILE = "outputs.json"
ARRAYS_FILE = "outputs.npz"


def save_outputs(
    directory: str | Path,
    *,
    val_acc: float,
    test_proba: np.ndarray,
    test_labels: np.ndarray,
    seed: int | None = None,
    **meta: Any,
) -> Path:
    """Write one model's outputs to `directory` (created); returns the meta file's path.

    The arrays go first and the meta file last, each by temp file + rename, so a directory
    whose `outputs.json` exists always holds a whole set (a child killed mid-write leaves none).
    """
    proba = np.asarray(test_proba, dtype=np.float32)  # (N, K)
    labels = np.asarray(test_labels, dtype=np.int64)  # (N,)
    if proba.ndim != 2 or labels.shape != (proba.shape[0],):
        raise ValueError(f"expected test_proba (N, K) and test_labels (N,), got {proba.shape} and {labels.shape}")
    directory = Path(directory)
    atomic_write(directory / ARRAYS_FILE, lambda handle: np.savez(handle, test_proba=proba, test_labels=labels),
                 "model outputs")
    test_acc = accuracy(proba, labels) if len(labels) else None
    doc = {
        "format": OUTPUTS_FORMAT, "version": OUTPUTS_VERSION,
        "val_acc": float(val_acc), "test_acc": test_acc, "seed": seed, **meta,
    }
    save_json(doc, directory / META_FILE, "model outputs")
    return directory / META_FILE


def read_outputs_meta(directory: str | Path) -> dict[str, Any] | None:
    """The meta of the outputs in `directory`, or None if it holds none."""
    path = Path(directory) / META_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: cannot read model outputs ({err})") from None
    if not isinstance(doc, dict) or doc.get("format") != OUTPUTS_FORMAT:
        raise DataError(f"{path}: expected \"format\": \"{OUTPUTS_FORMAT}\", got {doc.get('format') if isinstance(doc, dict) else doc!r}")
    if doc.get("version") != OUTPUTS_VERSION:
        raise DataError(f"{path}: expected \"version\": {OUTPUTS_VERSION}, got {doc.get('version')!r}")
    val = doc.get("val_acc")
    if isinstance(val, bool) or not isinstance(val, (int, float)) or not 0 <= val <= 1:
        raise DataError(f"{path}: expected val_acc, a number in [0, 1], got {val!r}")
    return doc


@dataclass(frozen=True, eq=False)
class Member:
    """One trained model as the ensemble sees it."""

    name: str  # its directory
    val_acc: float
    test_proba: np.ndarray  # (N, K) float32
    test_labels: np.ndarray  # (N,) int64
    meta: dict[str, Any]

    @property
    def test_acc(self) -> float:
        return accuracy(self.test_proba, self.test_labels)


def accuracy(proba: np.ndarray, labels: np.ndarray) -> float:
    return float((proba.argmax(axis=1) == labels).mean())


def load_member(directory: str | Path) -> Member:
    directory = Path(directory)
    meta = read_outputs_meta(directory)
    if meta is None:
        raise DataError(f"{directory}: no {META_FILE} (expected a model's output directory)")
    path = directory / ARRAYS_FILE
    try:
        with np.load(path) as arrays:
            proba, labels = arrays["test_proba"], arrays["test_labels"]
    except FileNotFoundError:
        raise DataError(f"{path}: missing (it holds the test softmax)") from None
    except (OSError, KeyError, ValueError) as err:
        raise DataError(f"{path}: expected arrays test_proba and test_labels ({err})") from None
    if proba.ndim != 2 or labels.shape != (proba.shape[0],) or len(labels) == 0:
        raise DataError(f"{path}: expected test_proba (N, K) and test_labels (N,), got {proba.shape} and {labels.shape}")
    return Member(str(directory), float(meta["val_acc"]), proba, labels, meta)


def find_members(paths: Sequence[str | Path]) -> list[Member]:
    """Every model under `paths`: a model directory itself, or any directory holding some
    (an `autoaug randaugment` grid, a directory of training runs)."""
    members: list[Member] = []
    seen: set[Path] = set()
    for path in paths:
        path = Path(path)
        if not path.is_dir():
            raise DataError(f"{path}: no such directory (expected a run or model output directory)")
        found = [path] if (path / META_FILE).is_file() else sorted(p.parent for p in path.rglob(META_FILE))
        if not found:
            raise DataError(f"{path}: holds no model outputs ({META_FILE} files)")
        for directory in found:
            if directory.resolve() not in seen:
                seen.add(directory.resolve())
                members.append(load_member(directory))
    return members


@dataclass(frozen=True, eq=False)
class EnsembleResult:
    members: tuple[Member, ...]  # the K chosen, best validation accuracy first
    candidates: int  # how many models there were to choose from
    test_acc: float  # of the averaged softmax

    @property
    def best_single(self) -> Member:
        """The model with the best validation accuracy (the one you would ship alone)."""
        return self.members[0]

    @property
    def member_test_mean(self) -> float:
        return statistics.fmean(m.test_acc for m in self.members)

    def to_json(self) -> dict[str, Any]:
        return {
            "top": len(self.members),
            "candidates": self.candidates,
            "ensemble_test_acc": self.test_acc,
            "best_single": {"name": self.best_single.name, "val_acc": self.best_single.val_acc,
                            "test_acc": self.best_single.test_acc},
            "members": [{"name": m.name, "val_acc": m.val_acc, "test_acc": m.test_acc} for m in self.members],
        }


def top_k_ensemble(members: Sequence[Member], top: int) -> EnsembleResult:
    """Average the softmax of the `top` members with the best validation accuracy (ties: name)."""
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise AutoaugError(f"--top: expected a positive number of models, got {top!r}")
    if not members:
        raise AutoaugError("no models to ensemble")
    if top > len(members):
        raise AutoaugError(f"--top {top}: only {len(members)} model(s) found")
    first = members[0]
    for m in members[1:]:
        if m.test_proba.shape != first.test_proba.shape or not np.array_equal(m.test_labels, first.test_labels):
            raise DataError(
                f"{m.name} and {first.name} were tested on different test sets "
                f"(softmax {m.test_proba.shape} vs {first.test_proba.shape}); ensemble models of one dataset"
            )
    chosen = sorted(members, key=lambda m: (-m.val_acc, m.name))[:top]
    mean_proba = np.mean(np.stack([m.test_proba for m in chosen]), axis=0)  # (N, K)
    return EnsembleResult(tuple(chosen), len(members), accuracy(mean_proba, first.test_labels))


def report(result: EnsembleResult) -> str:
    width = max(len(m.name) for m in result.members)
    lines = [f"top {len(result.members)} of {result.candidates} models by validation accuracy:"]
    lines.append(f"  {'model':<{width}}  val %   test %")
    for m in result.members:
        lines.append(f"  {m.name:<{width}}  {100 * m.val_acc:5.2f}  {100 * m.test_acc:6.2f}")
    b = result.best_single
    lines.append(f"best single model (by val): test {100 * b.test_acc:.2f}%  ({b.name})")
    lines.append(f"mean of the {len(result.members)} members:   test {100 * result.member_test_mean:.2f}%")
    lines.append(
        f"ensemble of the top {len(result.members)}:      test {100 * result.test_acc:.2f}%  "
        f"({100 * (result.test_acc - b.test_acc):+.2f} points over the best single model)"
    )
    return "\n".join(lines)
