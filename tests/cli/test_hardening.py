"""Every reproducer of issue #23 outside the run directory, through the command line: exit code 2
and one line naming what is wrong, or, for a character device or a FIFO as the output, a correct
write with the special file left as it was. The run-directory reproducers (the store and the
checkpoint as input) are in tests/search/test_resume_faults.py; the generated variants in
tests/test_fuzz.py."""

from __future__ import annotations

import copy
import json
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest

from autoaug import cli
from autoaug.space.pipeline import train_pipeline

REPO = Path(__file__).resolve().parents[2]
CIFAR10_POLICY = REPO / "policies" / "autoaugment-cifar10.json"

pytestmark = pytest.mark.usefixtures("one_thread")


# --- 1. special files as outputs --------------------------------------------------------------


def _char_device(path: Path) -> Path:
    """A character device like /dev/null (major 1, minor 3), made here: never the real one."""
    try:
        os.mknod(path, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("mknod of a character device needs root")
    return path


@pytest.mark.parametrize("argv", [
    ["export-albumentations", "autoaugment-cifar10"],
    ["show", "autoaugment-cifar10", "--samples", "2"],
])
def test_a_character_device_is_written_into_not_replaced(tmp_path, capsys, argv) -> None:
    device = _char_device(tmp_path / "fakenull")
    assert cli.main([*argv, "--out", str(device)]) == 0
    assert stat.S_ISCHR(device.stat().st_mode) and device.stat().st_rdev == os.makedev(1, 3)
    assert not list(tmp_path.glob(".fakenull*"))  # no temp file left beside it


def _read_fifo(path: Path, into: list[bytes]) -> threading.Thread:
    def read() -> None:
        with open(path, "rb") as handle:
            into.append(handle.read())
    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("argv, name", [
    (["export-albumentations", "autoaugment-cifar10"], "p.json"),
    (["show", "autoaugment-cifar10", "--samples", "2"], "p.png"),
])
def test_a_fifo_gets_the_same_bytes_as_a_file(tmp_path, capsys, argv, name) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received: list[bytes] = []
    reader = _read_fifo(fifo, received)
    assert cli.main([*argv, "--out", str(fifo)]) == 0
    reader.join(timeout=30)
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert cli.main([*argv, "--out", str(tmp_path / name)]) == 0
    assert received == [(tmp_path / name).read_bytes()]


def test_a_directory_as_the_output_is_refused(tmp_path, cli_fails) -> None:
    cli_fails(["export-albumentations", "autoaugment-cifar10", "--out", str(tmp_path)],
           "it is a directory; expected a file name, a character device or a pipe")
    cli_fails(["show", "autoaugment-cifar10", "--out", str(tmp_path)], "it is a directory")


# --- 2. "valid" means "runs" ------------------------------------------------------------------


def _train_doc(crop: int | None = None) -> dict:
    doc = A.to_dict(train_pipeline(None, mean=[125.0] * 3, std=[63.0] * 3, image_size=(32, 32)))
    if crop is not None:
        for t in doc["transform"]["transforms"]:
            if t["__class_fullname__"] == "RandomCrop":
                t.update(height=crop, width=crop)
    return doc


def _moved_to_tensor(doc: dict) -> dict:
    doc = copy.deepcopy(doc)
    transforms = doc["transform"]["transforms"]
    transforms.insert(2, transforms.pop())  # ToTensorV2 between Pad and RandomCrop
    return doc


def _policy_doc(transform: dict) -> dict:
    return {"__version__": A.__version__, "transform": {
        "__class_fullname__": "Compose", "p": 1.0, "transforms": [transform]}}


def _with(doc: dict, index: int, **changes) -> dict:
    doc = copy.deepcopy(doc)
    doc["transform"]["transforms"][index].update(changes)
    return doc


def _one(transform: A.BasicTransform) -> dict:
    return A.to_dict(A.Compose([transform]))


_RANDOM_ORDER = A.to_dict(A.Compose([A.RandomOrder([A.HorizontalFlip(p=1), A.Normalize(), A.ToTensorV2()], n=3),
                                     A.ToTensorV2()]))
_PAD_IF_NEEDED = _policy_doc({"__class_fullname__": "PadIfNeeded", "p": 0.5, "min_height": 40, "min_width": 40,
                              "border_mode": 0, "fill": 0})


@pytest.mark.parametrize("doc, fragment", [
    (_train_doc(48), "RandomCrop fails inside the pipeline on 32x32 images, given float32 arrays of shape (40, 40, 3)"),
    (_train_doc(40), "the pipeline gives float32 tensors of shape (3, 40, 40) (made so by RandomCrop); "
                     "expected float32 (3, 32, 32) tensors"),
    (_moved_to_tensor(_train_doc()), "RandomCrop runs after ToTensorV2 and would get a tensor"),
    (_RANDOM_ORDER, "runs only on some draws (its p or a OneOf / SomeOf above it)"),
    (_with(_one(A.SomeOf([A.HorizontalFlip(), A.VerticalFlip()], n=1)), 0, n=-1), "SomeOf has n = -1"),
    (_with(_one(A.Affine(rotate=30, p=0.5)), 0, fit_output="1"),
     "Affine runs only on some draws (its p or a OneOf / SomeOf above it) and turns uint8 arrays of shape "
     "(32, 32, 3) into uint8 arrays of shape (46, 46, 3); expected a transform that may not run to keep"),
    (_one(A.Resize(20, 20, p=1.0)), "uint8 arrays of shape (20, 20, 3) (made so by Resize)"),
    (_one(A.Resize(20, 20, p=0.5)), "Resize runs only on some draws"),
    (_one(A.LongestMaxSize(40, p=0.5)), "LongestMaxSize runs only on some draws"),
    (_PAD_IF_NEEDED, "PadIfNeeded runs only on some draws"),
    (_one(A.Normalize()), "float32 arrays of shape (32, 32, 3) (made so by Normalize); expected uint8 32x32"),
])
def test_validate_runs_the_whole_pipeline(tmp_path, cli_fails, doc, fragment) -> None:
    path = tmp_path / "p.albumentations.json"
    path.write_text(json.dumps(doc))
    cli_fails(["validate", str(path)], fragment)


def test_validate_checks_at_the_image_size_asked_for(tmp_path, capsys) -> None:
    path = tmp_path / "p.albumentations.json"
    path.write_text(json.dumps(_train_doc(40)))
    assert cli.main(["validate", str(path), "--image-size", "40"]) == 0
    assert "valid" in capsys.readouterr().out


def test_show_refuses_a_policy_file_that_gives_floats(tmp_path, cli_fails) -> None:
    path = tmp_path / "p.albumentations.json"
    path.write_text(json.dumps(_one(A.Normalize())))
    cli_fails(["show", str(path), "--out", str(tmp_path / "g.png")], "(made so by Normalize)")
    assert not (tmp_path / "g.png").exists()


@pytest.mark.parametrize("crop, fragment", [
    (48, "RandomCrop fails inside the pipeline on 16x16 images"),
    (20, "(3, 20, 20) (made so by RandomCrop); expected float32 (3, 16, 16)"),
    (16, "(3, 40, 40) (made so by Pad)"),  # no crop at all: refused as read, at the default 32x32
])
def test_train_checks_the_pipeline_at_the_data_size_before_any_worker(tmp_path, cli_fails, tiny_npz, crop,
                                                                       fragment) -> None:
    doc = _train_doc(crop)
    if crop == 16:
        doc["transform"]["transforms"] = [t for t in doc["transform"]["transforms"]
                                          if t["__class_fullname__"] != "RandomCrop"]
    path = tmp_path / "p.train.albumentations.json"
    path.write_text(json.dumps(doc))
    cli_fails(["train", "--policy", str(path), "--augment", "albumentations", "--dataset",
                    f"npz:{tiny_npz}", "--out", str(tmp_path / "run"), "--set", "child.epochs=1"], fragment)
    assert not (tmp_path / "run" / "seed-0").exists()


# --- 4. paths, sizes, text --------------------------------------------------------------------


@pytest.mark.parametrize("argv", [
    ["validate", "~nosuchuser/p.json"],
    ["data", "info", "npz:~nosuchuser/x.npz"],
    ["data", "info", "folder:~nosuchuser/images"],
    ["data", "info", "cifar10:~nosuchuser/cifar"],
])
def test_a_home_directory_of_no_user(cli_fails, argv) -> None:
    cli_fails(argv, "'~nosuchuser' names no user with a home directory")


def test_names_too_long(tmp_path, cli_fails) -> None:
    err = cli_fails(["validate", str(tmp_path / ("p" * 5000 + ".json"))], "File name too long",
                 "(50")
    assert "p" * 200 not in err
    cli_fails(["export-albumentations", "autoaugment-cifar10", "--out", str(tmp_path / ("o" * 300))],
           "File name too long")


def test_an_image_size_beyond_memory(tmp_path, cli_fails, tiny_npz) -> None:
    cli_fails(["data", "info", f"npz:{tiny_npz}", "--image-size", "1000000"],
           "GiB, more than half of the", "this machine has available; expected a smaller --image-size")


def _folder(root: Path, splits: tuple[str, ...] = ("train", "test")) -> Path:
    rng = np.random.default_rng(0)
    for split in splits:
        for c in ("cat", "dog"):
            (root / split / c).mkdir(parents=True)
            for k in range(6):
                cv2.imwrite(str(root / split / c / f"{k}.png"), rng.integers(0, 256, (8, 8, 3), np.uint8))
    return root


def test_an_empty_val_folder(tmp_path, cli_fails) -> None:
    root = _folder(tmp_path / "images")
    (root / "val").mkdir()
    cli_fails(["data", "info", f"folder:{root}"], "the val folder", "holds no class folders")


def test_a_nul_in_a_toml_string(tmp_path, cli_fails) -> None:
    path = tmp_path / "c.toml"
    path.write_text('out = "\\u0000"\n')
    cli_fails(["search", "--config", str(path)], "out = '\\x00' holds a NUL character")


def test_a_closed_pipe_on_stdout(tmp_path) -> None:
    read, write = os.pipe()
    os.close(read)  # as `| head -1` after its first line: nobody reads any more
    env = {**os.environ, "PYTHONPATH": str(REPO), "NO_ALBUMENTATIONS_UPDATE": "1"}
    done = subprocess.run([sys.executable, "-m", "autoaug", "validate", "autoaugment-cifar10"], stdout=write,
                          stderr=subprocess.PIPE, text=True, env=env, timeout=120)
    os.close(write)
    assert done.returncode == 2
    assert done.stderr == ("autoaug validate: error: standard output was closed before the command finished "
                           "(a broken pipe)\n")


def test_a_long_policy_spec_gives_a_short_error(cli_fails) -> None:
    spec = "randaugment:N=2,M=9,ops=" + "ShearX+" * 700 + "Foo"
    err = cli_fails(["validate", spec], "unknown op 'Foo'", "characters)")
    assert len(err) < 400


# --- 5. wrongly accepted values ---------------------------------------------------------------


def test_a_key_given_twice_in_a_json_object(tmp_path, cli_fails) -> None:
    text = CIFAR10_POLICY.read_text().replace('"prob": 0.1', '"prob": 0.1, "prob": 0.9', 1)
    assert text != CIFAR10_POLICY.read_text()
    path = tmp_path / "p.json"
    path.write_text(text)
    cli_fails(["validate", str(path)], "key 'prob' appears twice in one object")


def test_a_string_in_toml_where_an_int_belongs(tmp_path, cli_fails) -> None:
    path = tmp_path / "c.toml"
    path.write_text('budget = "4"\n')
    cli_fails(["search", "--config", str(path), "--print-config"], "budget expects int, got '4'")


@pytest.mark.parametrize("value", ["٤", "４", "1_0"])
def test_digits_that_are_not_ascii(cli_fails, value) -> None:
    cli_fails(["search", "--set", f"budget={value}", "--print-config"], "budget expects int")


def test_more_density_folds_than_the_data_holds(tmp_path, cli_fails, tiny_npz) -> None:
    out = tmp_path / "run"
    cli_fails(["search", "--out", str(out), "--no-progress", "--set", f"dataset=npz:{tiny_npz}",
                    "reward.kind=density", "reward.folds=10000", "train_subset=none", "val_subset=none",
                    "child.batch_size=8"],
           "reward.folds = 10000 is more than the child-train set's largest class holds (12 images of 36",
           "set reward.folds <= 12")
    assert not out.exists()


def test_a_folder_dataset_says_what_it_skipped(tmp_path, capsys) -> None:
    root = _folder(tmp_path / "images")
    (root / "extra" / "bird").mkdir(parents=True)  # a stray class folder beside train/
    (root / "train" / "cat" / "more").mkdir()  # a nested folder of images
    cv2.imwrite(str(root / "train" / "cat" / "more" / "0.png"), np.zeros((8, 8, 3), np.uint8))
    assert cli.main(["data", "info", f"folder:{root}"]) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"warning: folder:{root}: skipped 2 folder(s)"), err
    assert "extra/" in err and "train/cat/more/" in err
