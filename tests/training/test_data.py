"""Tests for autoaug.training.data: the embedded set, CIFAR batches, folders, npz, carving, download, CLI."""

from __future__ import annotations

import argparse
import hashlib
import http.server
import io
import pickle
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

from autoaug.cli import data as data_cli
from autoaug.training import data, download
from autoaug.errors import ConfigError, DataError

REPO = Path(__file__).resolve().parents[2]
LOSSLESS_TEST = REPO.parent / "shared" / "data" / "cifar10_test_first1k_lossless.npz"


# --- embedded reduced CIFAR-10 ----------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded() -> data.Splits:
    return data.load_splits("cifar10-reduced")


def test_embedded_shapes_counts_and_balance(embedded: data.Splits) -> None:
    expected = {"train": 400, "val": 500, "test": 1000}
    for split, per_class in expected.items():
        x, y = embedded.split(split)
        assert x.shape == (10 * per_class, 32, 32, 3) and x.dtype == np.uint8
        assert y.shape == (10 * per_class,) and y.dtype == np.int64
        assert embedded.class_counts(split).tolist() == [per_class] * 10
    assert embedded.num_classes == 10
    assert embedded.class_names[0] == "airplane" and embedded.class_names[9] == "truck"
    assert embedded.image_shape == (32, 32)
    assert embedded.test_y[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]


def test_embedded_load_matches_load_splits(embedded: data.Splits) -> None:
    x, y = data.load("cifar10-reduced", "val")
    np.testing.assert_array_equal(x, embedded.val_x)
    np.testing.assert_array_equal(y, embedded.val_y)


def test_embedded_cache_cannot_be_corrupted_by_callers() -> None:
    x, y = data.load("cifar10-reduced", "train")
    first_pixels, first_labels = x[:2].copy(), y[:2].copy()
    x[:2] = 0
    y[:2] = 99
    x2, y2 = data.load("cifar10-reduced", "train")
    np.testing.assert_array_equal(x2[:2], first_pixels)
    np.testing.assert_array_equal(y2[:2], first_labels)
    assert x2.flags.writeable  # callers get their own array, usable with torch.from_numpy


@pytest.mark.skipif(not LOSSLESS_TEST.is_file(), reason="shared lossless CIFAR-10 test file absent")
def test_embedded_pixels_are_rgb_and_close_to_the_originals(embedded: data.Splits) -> None:
    # The first 1,000 test images are in standard order; the JPEG copies differ by ~30 dB PSNR.
    # Swapped channels (BGR) would make the error several times larger.
    with np.load(LOSSLESS_TEST) as ref:
        original = ref["x"].astype(np.float64)
        np.testing.assert_array_equal(ref["y"], embedded.test_y[:1000])
    ours = embedded.test_x[:1000].astype(np.float64)
    assert np.abs(ours - original).mean() < 8.0
    assert np.abs(ours[..., ::-1] - original).mean() > 12.0


def test_embedded_resize() -> None:
    x, y = data.load("cifar10-reduced", "val", image_size=48)
    assert x.shape == (5000, 48, 48, 3) and x.dtype == np.uint8 and len(y) == 5000


# --- fake CIFAR python batches ----------------------------------------------------------------


def _cifar_rows(labels: np.ndarray) -> np.ndarray:
    """(N, 3072) rows whose pixel (r, c) of plane p encodes (image, plane, position)."""
    n = len(labels)
    rows = np.zeros((n, 3, 32, 32), np.uint8)
    rows[:, 0] = np.arange(n, dtype=np.uint8)[:, None, None]  # red = image index
    rows[:, 1] = 100  # green constant
    rows[:, 2, 0, :] = np.arange(32, dtype=np.uint8)  # blue first row = column
    return rows.reshape(n, 3072)


def _pickle(path: Path, obj: dict) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def make_fake_cifar10(parent: Path, per_class_per_batch: int = 2) -> Path:
    root = parent / "cifar-10-batches-py"
    root.mkdir(parents=True)
    for i in range(1, 6):
        labels = np.tile(np.arange(10), per_class_per_batch)
        batch = {b"data": _cifar_rows(labels), b"labels": labels.tolist()}
        _pickle(root / f"data_batch_{i}", batch)
    test_labels = np.arange(10).repeat(3)
    test = {b"data": _cifar_rows(test_labels), b"labels": test_labels.tolist()}
    _pickle(root / "test_batch", test)
    _pickle(root / "batches.meta", {b"label_names": [n.encode() for n in data.CIFAR10_CLASSES]})
    return root


def make_fake_cifar100(parent: Path) -> Path:
    root = parent / "cifar-100-python"
    root.mkdir(parents=True)
    train_labels = np.tile(np.arange(100), 3)
    test_labels = np.arange(100)
    train = {b"data": _cifar_rows(train_labels), b"fine_labels": train_labels.tolist(),
             b"coarse_labels": (train_labels // 5).tolist()}
    _pickle(root / "train", train)
    test = {b"data": _cifar_rows(test_labels), b"fine_labels": test_labels.tolist()}
    _pickle(root / "test", test)
    _pickle(root / "meta", {b"fine_label_names": [f"c{i:02d}".encode() for i in range(100)]})
    return root


@pytest.mark.parametrize("use_parent", [False, True])
def test_cifar10_batches(tmp_path: Path, use_parent: bool) -> None:
    root = make_fake_cifar10(tmp_path)
    spec = f"cifar10:{tmp_path if use_parent else root}"
    s = data.load_splits(spec, val_fraction=0.1)
    # 5 batches x 20 = 100 train images, 10 per class; 10% per class -> 1 val image per class.
    assert len(s.train_y) == 90 and len(s.val_y) == 10 and len(s.test_y) == 30
    assert s.class_counts("val").tolist() == [1] * 10
    assert s.class_counts("test").tolist() == [3] * 10
    assert s.class_names == data.CIFAR10_CLASSES and s.name == spec
    # Rows are CHW planes: red plane holds the image index, blue's first row the column.
    assert s.test_x.shape == (30, 32, 32, 3)
    assert (s.test_x[7, :, :, 0] == 7).all()
    assert (s.test_x[..., 1] == 100).all()
    assert s.test_x[0, 0, :, 2].tolist() == list(range(32))
    assert (s.test_x[0, 1:, :, 2] == 0).all()


def test_cifar100_batches(tmp_path: Path) -> None:
    make_fake_cifar100(tmp_path)
    s = data.load_splits(f"cifar100:{tmp_path}", val_fraction=0.34)
    assert s.num_classes == 100 and s.class_names[42] == "c42"
    assert s.class_counts("val").tolist() == [1] * 100
    assert s.class_counts("train").tolist() == [2] * 100
    assert s.test_y.tolist() == list(range(100))
    assert (s.test_x[5, :, :, 0] == 5).all()


def test_cifar_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        data.load_splits(f"cifar10:{tmp_path / 'nope'}")
    root = make_fake_cifar10(tmp_path)
    (root / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        data.load_splits(f"cifar10:{root}")
    _pickle(root / "data_batch_3", {b"data": _cifar_rows(np.array([0, 11])), b"labels": [0, 11]})
    with pytest.raises(DataError, match=r"data_batch_3.*labels must be in \[0, 10\)"):
        data.load_splits(f"cifar10:{root}")
    (root / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match=r"cannot read .*data_batch_3. as a CIFAR pickle"):
        data.load_splits(f"cifar10:{root}")


# --- folder datasets --------------------------------------------------------------------------


def _write(path: Path, img: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)


def make_folder(root: Path, classes: dict[str, int], size: int = 8) -> None:
    """root/<class>/<i>.png; class k's images are filled with value 10 * (k + 1) in red (RGB)."""
    for k, (name, n) in enumerate(classes.items()):
        for i in range(n):
            rgb = np.zeros((size, size, 3), np.uint8)
            rgb[..., 0] = 10 * (k + 1)
            rgb[..., 1] = i
            _write(root / name / f"{i:03d}.png", rgb[..., ::-1])  # cv2 writes BGR


def test_folder_flat_layout_with_grey_and_rgba(tmp_path: Path) -> None:
    make_folder(tmp_path, {"cat": 5, "dog": 6})
    _write(tmp_path / "cat" / "grey.png", np.full((8, 8), 77, np.uint8))
    bgra = np.zeros((8, 8, 4), np.uint8)
    bgra[..., 0], bgra[..., 2], bgra[..., 3] = 200, 50, 0  # blue 200, red 50, fully transparent
    _write(tmp_path / "dog" / "rgba.PNG", bgra)
    (tmp_path / "dog" / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden").mkdir()

    s = data.load_splits(f"folder:{tmp_path}", val_fraction=0.2)
    assert s.class_names == ("cat", "dog") and s.num_classes == 2
    total = s.class_counts("train") + s.class_counts("val") + s.class_counts("test")
    assert total.tolist() == [6, 7]
    assert s.class_counts("val").tolist() == [1, 1] and s.class_counts("test").tolist() == [1, 1]
    x = np.concatenate([s.train_x, s.val_x, s.test_x])
    y = np.concatenate([s.train_y, s.val_y, s.test_y])
    assert x.shape[1:] == (8, 8, 3) and x.dtype == np.uint8
    grey = [img for img in x if (img == 77).all()]
    assert len(grey) == 1  # grey replicated into R, G and B
    rgba = [img for img in x if (img[..., 2] == 200).all()]
    assert len(rgba) == 1 and (rgba[0][..., 0] == 50).all()  # alpha dropped, RGB order kept
    # Labels follow sorted class names, and class pixels stay with their labels.
    for img, label in zip(x, y):
        if not ((img == 77).all() or (img[..., 2] == 200).all()):
            assert img[0, 0, 0] == 10 * (label + 1)


def test_folder_split_layout_and_resize(tmp_path: Path) -> None:
    make_folder(tmp_path / "train", {"b": 4, "a": 4}, size=8)
    make_folder(tmp_path / "test", {"b": 2}, size=8)
    _write(tmp_path / "train" / "a" / "big.jpg", np.full((16, 12, 3), 128, np.uint8))
    with pytest.raises(DataError, match=r"different sizes.*--image-size"):
        data.load_splits(f"folder:{tmp_path}")
    s = data.load_splits(f"folder:{tmp_path}", image_size=10, val_fraction=0.2)
    assert s.class_names == ("a", "b") and s.image_shape == (10, 10)
    assert s.train_x.shape[1:] == (10, 10, 3)
    assert len(s.test_y) == 2 and set(s.test_y.tolist()) == {1}  # test/b only; "a" sorts first
    assert s.class_counts("val").tolist() == [1, 1]  # val carved, test used as it is
    assert len(s.train_y) == 9 - 2


def test_folder_bad_inputs(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such directory"):
        data.load_splits(f"folder:{tmp_path / 'missing'}")
    with pytest.raises(DataError, match="no class folders"):
        data.load_splits(f"folder:{tmp_path}")

    make_folder(tmp_path / "one", {"only": 5})
    with pytest.raises(DataError, match="only 1 class"):
        data.load_splits(f"folder:{tmp_path / 'one'}")

    make_folder(tmp_path / "empty", {"full": 5})
    (tmp_path / "empty" / "hollow").mkdir()
    with pytest.raises(DataError, match=r"hollow.*no PNG or JPEG"):
        data.load_splits(f"folder:{tmp_path / 'empty'}")

    make_folder(tmp_path / "broken", {"a": 4, "b": 4})
    (tmp_path / "broken" / "b" / "bad.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(DataError, match=r"cannot read image .*bad\.jpg"):
        data.load_splits(f"folder:{tmp_path / 'broken'}")
    (tmp_path / "broken" / "b" / "bad.jpg").write_bytes(b"")
    with pytest.raises(DataError, match=r"bad\.jpg"):
        data.load_splits(f"folder:{tmp_path / 'broken'}")

    make_folder(tmp_path / "few", {"a": 4, "b": 2})
    with pytest.raises(DataError, match=r"class 'b' has 2 training image\(s\).*at least 3"):
        data.load_splits(f"folder:{tmp_path / 'few'}")

    make_folder(tmp_path / "split" / "val", {"a": 2})
    with pytest.raises(DataError, match="no train folder"):
        data.load_splits(f"folder:{tmp_path / 'split'}")
    make_folder(tmp_path / "split" / "train", {"a": 4, "b": 4})
    make_folder(tmp_path / "split" / "test", {"zebra": 2})
    with pytest.raises(DataError, match=r"zebra.*not a class of the train folder"):
        data.load_splits(f"folder:{tmp_path / 'split'}")


# --- npz --------------------------------------------------------------------------------------


def _images(n: int, size: int = 6, channels: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, channels), dtype=np.uint8)


def test_npz_carves_val_and_test(tmp_path: Path) -> None:
    y = np.repeat(np.arange(3), 10).astype(np.int32)
    x = _images(30)
    x[:, 0, 0, 0] = np.arange(30)  # tag each image with its index
    path = tmp_path / "d.npz"
    np.savez(path, x=x, y=y)
    s = data.load_splits(f"npz:{path}", val_fraction=0.2)
    assert s.class_names == ("0", "1", "2") and s.train_y.dtype == np.int64
    for split in ("val", "test"):
        assert s.class_counts(split).tolist() == [2, 2, 2]
    assert s.class_counts("train").tolist() == [6, 6, 6]
    tags = np.concatenate([s.train_x, s.val_x, s.test_x])[:, 0, 0, 0]
    labels = np.concatenate([s.train_y, s.val_y, s.test_y])
    assert sorted(tags.tolist()) == list(range(30))  # a partition: nothing lost or repeated
    np.testing.assert_array_equal(labels, y[tags])  # every image kept its label
    np.testing.assert_array_equal(s.train_x[:, 0, 0, 0], np.sort(s.train_x[:, 0, 0, 0]))


def test_npz_with_all_splits_channels_and_class_names(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    grey = _images(4, channels=1)
    rgba = _images(2, channels=4)
    np.savez(path, x=grey, y=np.array([0, 1, 0, 1]), x_val=rgba, y_val=np.array([1, 0]),
             x_test=_images(2), y_test=np.array([0, 0]), class_names=np.array(["neg", "pos"]))
    s = data.load_splits(f"npz:{path}")
    assert s.class_names == ("neg", "pos")
    np.testing.assert_array_equal(s.train_x, np.repeat(grey, 3, axis=3))
    np.testing.assert_array_equal(s.val_x, rgba[..., :3])
    assert s.test_y.tolist() == [0, 0]
    x, y = data.load(f"npz:{path}", "val")
    np.testing.assert_array_equal(x, rgba[..., :3])
    assert y.tolist() == [1, 0]


def test_stratified_split_is_seeded_and_deterministic(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    x = _images(200)
    x[:, 0, 0, 0] = np.arange(200)
    np.savez(path, x=x, y=np.arange(200) % 4)
    a = data.load_splits(f"npz:{path}", seed=3)
    b = data.load_splits(f"npz:{path}", seed=3)
    c = data.load_splits(f"npz:{path}", seed=4)
    for split in data.SPLIT_NAMES:
        np.testing.assert_array_equal(a.split(split)[0], b.split(split)[0])
        np.testing.assert_array_equal(a.split(split)[1], b.split(split)[1])
    assert not np.array_equal(a.val_x[:, 0, 0, 0], c.val_x[:, 0, 0, 0])
    assert a.class_counts("val").tolist() == [5] * 4 == c.class_counts("val").tolist()
    # Carved splits come in a shuffled order, so any prefix mixes the classes.
    assert len(set(a.val_y[:8].tolist())) > 1


def _save(tmp_path: Path, name: str, **arrays: np.ndarray) -> str:
    path = tmp_path / name
    np.savez(path, **arrays)
    return f"npz:{path}"


def test_npz_bad_inputs(tmp_path: Path) -> None:
    y10 = np.arange(10) % 2
    with pytest.raises(DataError, match="no such file"):
        data.load_splits(f"npz:{tmp_path / 'missing.npz'}")
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(DataError, match=r"junk\.npz.*cannot read"):
        data.load_splits(f"npz:{tmp_path / 'junk.npz'}")
    ragged = np.empty(2, dtype=object)
    ragged[0], ragged[1] = _images(1, 4)[0], _images(1, 6)[0]
    with pytest.raises(DataError, match=r"'x' holds Python objects \(images of mixed shapes"):
        data.load_splits(_save(tmp_path, "ragged.npz", x=ragged, y=np.array([0, 1])))
    mixed = r"'x_val' has 4x4 images but 'x' has 6x6; pass --image-size"
    with pytest.raises(DataError, match=mixed):
        data.load_splits(_save(tmp_path, "mixed.npz", x=_images(10, 6), y=y10,
                               x_val=_images(2, 4), y_val=np.array([0, 1])))
    with pytest.raises(DataError, match="'x' must be uint8, got float32"):
        data.load_splits(_save(tmp_path, "f.npz", x=_images(10).astype(np.float32), y=y10))
    with pytest.raises(DataError, match="'y' must be 1-D integer labels, got float64"):
        data.load_splits(_save(tmp_path, "fy.npz", x=_images(10), y=y10.astype(np.float64)))
    with pytest.raises(DataError, match=r"'x' must be \(N, H, W, C\) with C 1, 3 or 4"):
        data.load_splits(_save(tmp_path, "c2.npz", x=_images(10, channels=2), y=y10))
    with pytest.raises(DataError, match="'x' has 10 images but 'y' has 9 labels"):
        data.load_splits(_save(tmp_path, "len.npz", x=_images(10), y=y10[:9]))
    with pytest.raises(DataError, match="'y' has negative labels"):
        data.load_splits(_save(tmp_path, "neg.npz", x=_images(10), y=y10 - 1))
    with pytest.raises(DataError, match=r"label 5 but 'class_names' lists only 2 classes"):
        data.load_splits(_save(tmp_path, "range.npz", x=_images(10), y=y10,
                               x_test=_images(1), y_test=np.array([5]),
                               class_names=np.array(["a", "b"])))
    with pytest.raises(DataError, match=r"no training images: '2'"):
        data.load_splits(_save(tmp_path, "gap.npz", x=_images(10), y=y10,
                               x_test=_images(1), y_test=np.array([2])))
    with pytest.raises(DataError, match="only 1 class"):
        data.load_splits(_save(tmp_path, "one.npz", x=_images(10), y=np.zeros(10, int)))
    with pytest.raises(DataError, match=r"class '1' has 1 training image"):
        data.load_splits(_save(tmp_path, "few.npz", x=_images(5), y=np.array([0, 0, 0, 0, 1])))
    with pytest.raises(DataError, match=r"unknown array\(s\) x_train.*valid: x, y"):
        data.load_splits(_save(tmp_path, "keys.npz", x_train=_images(10), y_train=y10))
    with pytest.raises(DataError, match="needs arrays 'x_val' and 'y_val' together"):
        data.load_splits(_save(tmp_path, "pair.npz", x=_images(10), y=y10, x_val=_images(2)))


def test_bad_specs_and_arguments() -> None:
    unknown = r"unknown dataset spec 'imagenet'; expected one of: cifar10-reduced.*npz:FILE"
    with pytest.raises(DataError, match=unknown):
        data.load_splits("imagenet")
    with pytest.raises(DataError, match=r"needs a path: cifar10:DIR.*autoaug data download"):
        data.load_splits("cifar10")
    with pytest.raises(DataError, match=r"needs a path: npz:FILE"):
        data.load("npz:", "train")
    with pytest.raises(DataError, match=r"unknown split 'valid'.*train, val, test"):
        data.load("cifar10-reduced", "valid")
    with pytest.raises(ConfigError, match="val_fraction"):
        data.load_splits("cifar10-reduced", val_fraction=0.5)
    with pytest.raises(ConfigError, match="image_size"):
        data.load("cifar10-reduced", "train", image_size=0)


def test_error_messages_are_one_line(tmp_path: Path) -> None:
    bad_specs = ["nope", f"folder:{tmp_path}", f"npz:{tmp_path / 'x.npz'}", f"cifar100:{tmp_path}"]
    for spec in bad_specs:
        with pytest.raises(DataError) as info:
            data.load_splits(spec)
        assert "\n" not in str(info.value)


# --- download ---------------------------------------------------------------------------------


def _fake_archive(tmp_path: Path) -> tuple[Path, str]:
    """A tiny cifar-10-python.tar.gz holding a fake cifar-10-batches-py; returns (path, md5)."""
    src = tmp_path / "src"
    make_fake_cifar10(src, per_class_per_batch=1)
    archive = tmp_path / "serve" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(src / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive, hashlib.md5(archive.read_bytes()).hexdigest()


def _patch_md5(monkeypatch: pytest.MonkeyPatch, md5: str) -> None:
    old = download.ARCHIVES["cifar10"]
    monkeypatch.setitem(download.ARCHIVES, "cifar10", download._Archive(old.url, md5, old.folder))


def test_download_offline_fails_fast_with_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        download.download("cifar10", tmp_path / "dl", url="http://127.0.0.1:9/", timeout=5.0)
    message = str(info.value)
    assert "\n" not in message
    assert "http://127.0.0.1:9/" in message and "internet" in message
    assert "cifar-10-python.tar.gz" in message  # where to put a hand-downloaded archive
    assert list((tmp_path / "dl").iterdir()) == []  # no partial file left behind


def test_download_rejects_wrong_md5_and_leaves_nothing(tmp_path: Path) -> None:
    archive, _ = _fake_archive(tmp_path)
    dest = tmp_path / "dl"
    # The real published MD5 cannot match our fake archive.
    official = r"MD5 [0-9a-f]{32}, expected c58f30108f718f92721af3b95e74349a"
    with pytest.raises(DataError, match=official):
        download.download("cifar10", dest, url=archive.as_uri())
    assert list(dest.iterdir()) == []


def test_download_verifies_and_extracts_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, md5 = _fake_archive(tmp_path)
    _patch_md5(monkeypatch, md5)

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(archive.parent), **kwargs)

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{archive.name}"
        folder = download.download("cifar10", tmp_path / "dl", url=url, timeout=10.0)
    finally:
        server.shutdown()
        server.server_close()
    assert folder == tmp_path / "dl" / "cifar-10-batches-py"
    assert (tmp_path / "dl" / "cifar-10-python.tar.gz").read_bytes() == archive.read_bytes()
    s = data.load_splits(f"cifar10:{folder}")
    assert len(s.test_y) == 30 and s.num_classes == 10


def test_download_uses_archive_placed_by_hand(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive, md5 = _fake_archive(tmp_path)
    _patch_md5(monkeypatch, md5)
    dest = tmp_path / "dl"
    dest.mkdir()
    (dest / archive.name).write_bytes(archive.read_bytes())
    # The URL is unreachable: success proves the local archive was used without the network.
    folder = download.download("cifar10", dest, url="http://127.0.0.1:9/")
    assert (folder / "test_batch").is_file()
    (dest / archive.name).write_bytes(archive.read_bytes()[:-10])
    with pytest.raises(DataError, match="has MD5 .* delete it and run again"):
        download.download("cifar10", dest, url="http://127.0.0.1:9/")


def test_download_refuses_unsafe_archive_members(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        payload = b"escaped"
        member = tarfile.TarInfo("../escaped.txt")
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))
    _patch_md5(monkeypatch, hashlib.md5(archive.read_bytes()).hexdigest())
    with pytest.raises(DataError, match="cannot extract"):
        download.download("cifar10", tmp_path / "dl", url=archive.as_uri())
    assert not (tmp_path / "escaped.txt").exists()


def test_download_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"unknown dataset 'mnist'.*cifar10, cifar100"):
        download.download("mnist", tmp_path)


# --- command line -----------------------------------------------------------------------------


def _data_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="autoaug")
    data_cli.add_commands(parser.add_subparsers(dest="command"))
    return parser


def test_cli_info(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    make_fake_cifar10(tmp_path)
    args = _data_parser().parse_args(["data", "info", f"cifar10:{tmp_path}", "--seed", "1"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "10 classes, images 32x32" in out
    assert any(line.split() == ["airplane", "9", "1", "3"] for line in out.splitlines())
    assert any(line.split() == ["total", "90", "10", "30"] for line in out.splitlines())


def test_cli_download_offline_exits_2_with_one_line(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "autoaug", "data", "download", "cifar10",
         "--dest", str(tmp_path / "dl"), "--url", "http://127.0.0.1:9/", "--timeout", "5"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "could not download http://127.0.0.1:9/" in lines[0]


def test_the_second_dataset_mnist5k_loads_as_committed() -> None:
    # experiments/make_mnist5k.py's output (issue #20): 28x28 grey digits, balanced splits.
    path = Path(__file__).resolve().parents[2] / "experiments" / "data" / "mnist5k.npz"
    splits = data.load_splits(f"npz:{path}")
    assert splits.image_shape == (28, 28) and splits.num_classes == 10
    for split, per_class in (("train", 200), ("val", 150), ("test", 150)):
        assert splits.class_counts(split).tolist() == [per_class] * 10
    x = splits.train_x  # grey repeated to RGB: the three channels are equal
    assert np.array_equal(x[..., 0], x[..., 1]) and np.array_equal(x[..., 0], x[..., 2])
