"""Every reproducer of issue #12, through the command line in-process: exit code 2 and one line
naming the file and what is wrong (or, for a pipeline that never fires, a warning line and
exit 0). The generated variants of these live in tests/test_fuzz.py."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from autoaug import cli
from autoaug.training.data import load_splits

REPO = Path(__file__).resolve().parents[2]
CIFAR10_POLICY = REPO / "policies" / "autoaugment-cifar10.json"
CIFAR10_ALBUMENTATIONS = REPO / "policies" / "autoaugment-cifar10.albumentations.json"

pytestmark = pytest.mark.usefixtures("one_thread")


# --- policy files -----------------------------------------------------------------------------


def _native(tmp_path: Path, edit) -> str:
    doc = json.loads(CIFAR10_POLICY.read_text())
    text = edit(doc)
    path = tmp_path / "p.json"
    path.write_text(text if isinstance(text, str) else json.dumps(doc))
    return str(path)


def _set_op(doc, key, value):
    doc["sub_policies"][0][0][key] = value


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: _set_op(d, "op", ["ShearX"]), "sub_policies[0][0].op: unknown op [\"ShearX\"]"),
    (lambda d: _set_op(d, "prob", 10**400), "sub_policies[0][0].prob: expected a probability"),
    (lambda d: json.dumps(d).replace('"prob": 0.1', '"prob": ' + "1" * 5000, 1), "integer too long"),
    (lambda d: json.dumps(d).replace('"prob": 0.1', '"prob": NaN', 1), "NaN is not a number"),
    (lambda d: json.dumps(d).replace('"prob": 0.1', '"prob": 1e999', 1), "1e999 is beyond the range"),
    (lambda d: "[" * 1000 + "]" * 1000, "JSON nested too deeply"),
    (lambda d: d.update(version=True), 'expected "version": 1, got true'),
    (lambda d: json.dumps({"format": "autoaug.policy", "version": 1, "kind": "randaugment",
                           "n": 10**30, "m": 9}), "n: expected N, the number of ops per image, an integer in 1..30"),
    (lambda d: json.dumps({"format": "autoaug.policy", "version": 1, "kind": "randaugment",
                           "n": 2, "m": 10**400}), "m: expected M, a number in [0, 30]"),
])
def test_bad_native_policy_files(tmp_path, cli_fails, edit, fragment) -> None:
    path = _native(tmp_path, edit)
    cli_fails(["validate", path], path, fragment)


def test_unreadable_policy_paths(tmp_path, cli_fails) -> None:
    loop = tmp_path / "loop.json"
    os.symlink(loop, loop)
    cli_fails(["validate", str(loop)], "Too many levels of symbolic links")
    cli_fails(["validate", str(tmp_path / ("n" * 300 + ".json"))], "File name too long")
    (tmp_path / "f.json").write_text("{}")
    cli_fails(["validate", str(tmp_path / "f.json" / "x.json")], "Not a directory")
    cli_fails(["train", "--policy", "autoaugment-" + "y" * 300], "unknown")


def _albumentations(tmp_path: Path, edit) -> str:
    doc = json.loads(CIFAR10_ALBUMENTATIONS.read_text())
    edit(doc)
    path = tmp_path / "a.json"
    path.write_text(json.dumps(doc))
    return str(path)


def _first_leaf(doc) -> dict:
    return doc["transform"]["transforms"][0]["transforms"][0]["transforms"][0]


@pytest.mark.parametrize("edit, fragment", [
    (lambda d: _first_leaf(d).update(__class_fullname__="Foo"), "unknown albumentations transform or missing key 'Foo'"),
    (lambda d: d["transform"].update(p="0.5"), "Compose has p = '0.5'; expected a number in [0, 1]"),
    (lambda d: _first_leaf(d).update(pp=0.3), "Argument(s) 'pp' are not valid"),
    (lambda d: _first_leaf(d).pop("p"), "has no 'p' parameter"),
    (lambda d: _first_leaf(d).update(p=float("nan")), "NaN is not a number"),
])
def test_bad_albumentations_files(tmp_path, cli_fails, edit, fragment) -> None:
    path = _albumentations(tmp_path, edit)
    cli_fails(["validate", path], path, fragment)


@pytest.mark.parametrize("edit", [
    lambda d: d["transform"].update(transforms=[]),
    lambda d: d["transform"].update(p=0.0),
])
def test_a_pipeline_that_never_fires_is_valid_with_a_warning(tmp_path, capsys, edit) -> None:
    path = _albumentations(tmp_path, edit)
    assert cli.main(["validate", path]) == 0
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "warning:" in captured.err and "never changes an image" in captured.err


# --- datasets ---------------------------------------------------------------------------------


def _npz(path: Path, x=None, y=None) -> str:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 32, 32, 3), np.uint8) if x is None else x
    y = np.arange(40) % 4 if y is None else y
    np.savez(path, x=x, y=y)
    return f"npz:{path}"


def _with_member(path: Path, name: str, data: bytes) -> str:
    buf = io.BytesIO()
    np.save(buf, np.arange(40) % 4)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(name, data)
        archive.writestr("y.npy", buf.getvalue())
    return f"npz:{path}"


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


def _claims(shape: tuple[int, ...]) -> bytes:
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
    return header.getvalue() + bytes(40 * 32 * 32 * 3)


@pytest.mark.parametrize("make, fragment", [
    (lambda p: _npz(p, y=np.r_[np.uint64(2**64 - 1), np.arange(1, 40, dtype=np.uint64) % 4]),
     "array 'y' has label 18446744073709551615"),
    (lambda p: _npz(p, y=np.where(np.arange(40) == 0, 2**62, np.arange(40) % 4)), "has label 4611686018427387904"),
    (lambda p: _npz(p, x=np.zeros((40, 0, 0, 3), np.uint8)), "images are 0x0"),
    (lambda p: _with_member(p, "x.npy", bytes(10) + _npy(np.zeros((40, 8, 8, 3), np.uint8))[10:]),
     "array 'x' in"),
    (lambda p: _with_member(p, "x", b"hello"), "holds 'x', which is not a .npy array"),
    (lambda p: _with_member(p, "x.npy", _claims((10**10, 32, 32, 3))),
     "claims shape (10000000000, 32, 32, 3) (30,720,000,000,000 bytes) but holds"),
])
def test_bad_npz_files(tmp_path, cli_fails, make, fragment) -> None:
    spec = make(tmp_path / "d.npz")
    cli_fails(["data", "info", spec], spec, fragment)


@pytest.mark.parametrize("size", [(1, 1), (2, 2), (7, 5)])
def test_images_smaller_than_the_child_network_takes(tmp_path, cli_fails, size) -> None:
    spec = _npz(tmp_path / "d.npz", x=np.zeros((40, *size, 3), np.uint8))
    load_splits(spec)  # a dataset of small images is fine; the network is what cannot take them
    cli_fails(["search", "--out", str(tmp_path / "run"), "--dataset", spec, "--no-progress",
                    "--set", "train_subset=none", "val_subset=none"],
           f"images of {size[0]}x{size[1]} are too small for model tiny, which takes at least 15x15")
    assert not (tmp_path / "run").exists()


def test_cifar_pickle_with_a_damaged_encoding_name(tmp_path, cli_fails) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    data = np.zeros((10, 3072), np.uint8)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": list(range(10))}, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"c"] * 10}, protocol=2))
    batch = folder / "data_batch_1"
    batch.write_bytes(batch.read_bytes().replace(b"latin1", b"latinQ"))
    cli_fails(["data", "info", f"cifar10:{tmp_path}"], "data_batch_1", "unknown encoding: latinQ")


# --- config files and overrides ---------------------------------------------------------------


@pytest.mark.parametrize("text, fragment", [
    (b"budget = 4\nout = \"\xff\xfe\"\n", "is not UTF-8 text (byte 0xff at offset"),
    (b"budget = " + b"[" * 5000 + b"]" * 5000 + b"\n", "nests arrays or tables too deeply"),
    (b"budget = " + b"1" * 5000 + b"\n", "is not valid TOML"),
    (b"[ppo]\nlearning_rate = inf\n", "ppo.learning_rate must be a finite number, got inf"),
    (b"seed = 99999999999999999999\n", "seed = 99999999999999999999 is out of range"),
])
def test_bad_config_files(tmp_path, cli_fails, text, fragment) -> None:
    path = tmp_path / "c.toml"
    path.write_bytes(text)
    cli_fails(["search", "--config", str(path), "--out", str(tmp_path / "run")], str(path), fragment)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("override, fragment", [
    ("ppo.learning_rate=inf", "ppo.learning_rate must be a finite number, got 'inf'"),
    ("ppo.ent_coef=inf", "ppo.ent_coef must be a finite number"),
    ("ppo.adam_eps=inf", "ppo.adam_eps must be a finite number"),
    ("ppo.clip_coef=nan", "ppo.clip_coef must be a finite number"),
    ("trial_timeout_s=1e400", "trial_timeout_s must be a finite number"),
    ("budget=" + "9" * 5000, "budget expects int, got '9999999999999999999...9999999' (5002 characters)"),
])
def test_bad_overrides(tmp_path, cli_fails, override, fragment) -> None:
    cli_fails(["search", "--out", str(tmp_path / "run"), "--set", override], fragment)


@pytest.mark.parametrize("argv, fragment", [
    (["data", "download", "cifar10", "--dest", "{tmp}/dl", "--timeout", "inf"],
     "download timeout must be a finite number > 0 of seconds, got inf"),
    (["randaugment", "--out", "{tmp}/grid", "--timeout", "nan"], "timeout_s must be > 0 seconds and finite, got nan"),
    (["randaugment", "--out", "{tmp}/grid", "--backend", "ray", "--ray-gpus", "inf"],
     "RayOptions.num_gpus must be a finite number >= 0, got inf"),
])
def test_non_finite_command_line_numbers(tmp_path, cli_fails, argv, fragment) -> None:
    cli_fails([arg.format(tmp=tmp_path) for arg in argv], fragment)
