"""Reading one file of a dataset, checked: a CIFAR batch pickle, an image file, an .npz member.

Each reader returns arrays or raises a one-line `DataError` naming the dataset spec and the file;
`autoaug.training.data` puts what they read together into splits.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import cv2
import numpy as np

from autoaug.errors import DataError


def read_cifar_batch(
    path: Path, label_key: str, num_classes: int, spec: str
) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_pickle(path, spec)
    data = np.asarray(cifar_key(batch, "data", path, spec))
    labels = np.asarray(cifar_key(batch, label_key, path, spec))
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{spec}: {str(path)!r} data must be uint8 (N, 3072), got {data.dtype} {data.shape}")
    if labels.shape != (len(data),) or not np.issubdtype(labels.dtype, np.integer):
        raise DataError(f"{spec}: {str(path)!r} needs {len(data)} integer labels, "
                        f"got {labels.dtype} {labels.shape}")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise DataError(f"{spec}: {str(path)!r} labels must be in [0, {num_classes}), "
                        f"got {labels.min()}..{labels.max()}")
    # Each row is the red plane, then green, then blue, each 32x32 row-major: (N, C, H, W).
    x = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), labels.astype(np.int64)


def read_cifar_pickle(path: Path, spec: str) -> dict:
    # The official CIFAR files are Python pickles, and unpickling can run arbitrary code: only
    # point cifar10:/cifar100: at files you trust (e.g. ones `download` checked by MD5).
    # encoding="bytes" reads the Python 2 pickles the archives hold (keys come back as bytes).
    try:
        with open(path, "rb") as f:
            obj = pickle.load(f, encoding="bytes")
    except Exception as err:  # noqa: BLE001 - a damaged pickle raises almost anything
        # (UnpicklingError, EOFError, LookupError for a damaged encoding name, KeyError, ...)
        text = " ".join(str(err).split())[:120] or type(err).__name__
        raise DataError(f"{spec}: cannot read {str(path)!r} as a CIFAR pickle: {text}") from None
    if not isinstance(obj, dict):
        raise DataError(f"{spec}: {str(path)!r} holds a {type(obj).__name__}, expected a CIFAR batch dict")
    return obj


def cifar_key(obj: dict, key: str, path: Path, spec: str) -> object:
    # Original files have bytes keys; accept str keys too (files re-pickled under Python 3).
    for k in (key.encode(), key):
        if k in obj:
            return obj[k]
    raise DataError(f"{spec}: {str(path)!r} has no {key!r} entry")


def read_image(path: Path, spec: str) -> np.ndarray:
    """One image file -> (H, W, 3) uint8 RGB; grey is replicated, alpha dropped."""
    try:
        # fromfile + imdecode rather than imread: imread cannot open non-ASCII paths on Windows.
        buf = np.fromfile(path, np.uint8)
        bgr = cv2.imdecode(buf, cv2.IMREAD_COLOR) if len(buf) else None
    except (OSError, cv2.error) as err:
        raise DataError(f"{spec}: cannot read image {str(path)!r}: {err}") from None
    if bgr is None:
        raise DataError(f"{spec}: cannot read image {str(path)!r} (not a valid PNG or JPEG)")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def check_npz_members(spec: str, path: Path) -> None:
    """DataError unless every member of the .npz is a .npy array whose header is readable and
    whose shape fits in the bytes the member holds: a damaged header claiming 1e10 images must
    not make numpy allocate terabytes before it finds out the data is not there."""
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy"):
                    raise DataError(f"{spec}: {str(path)!r} holds {info.filename!r}, which is not a .npy "
                                    "array; an .npz holds only arrays (x, y, ...)")
                key = info.filename[:-4]
                with archive.open(info) as member:
                    try:
                        version = np.lib.format.read_magic(member)
                        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                       else np.lib.format.read_array_header_2_0)
                        shape, _, dtype = read_header(member)
                    except Exception as err:  # noqa: BLE001 - numpy parses the header with
                        # ast/tokenize: ValueError, SyntaxError, TokenError, ... for a damaged one
                        raise DataError(f"{spec}: array {key!r} in {str(path)!r} has a damaged .npy header "
                                        f"({type(err).__name__})") from None
                    header_bytes = member.tell()
                if dtype.hasobject:
                    continue  # refused with its own message when read (no pickles)
                claimed = int(np.prod(shape, dtype=object)) * dtype.itemsize
                if claimed > info.file_size - header_bytes:
                    raise DataError(f"{spec}: array {key!r} in {str(path)!r} claims shape {shape} "
                                    f"({claimed:,} bytes) but holds {info.file_size - header_bytes:,} bytes; "
                                    "the file is damaged or cut short")
    except (OSError, EOFError, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError) as err:
        raise DataError(f"{spec}: cannot read {str(path)!r} as .npz: {err}") from None


def npz_array(pack: np.lib.npyio.NpzFile, key: str, spec: str) -> np.ndarray:
    try:
        array = pack[key]
        if not isinstance(array, np.ndarray):
            raise DataError(f"{spec}: member {key!r} is not a .npy array")
        return array
    except ValueError:
        # np.savez turns a list of differently shaped images into an object array, which only
        # loads with pickling, and we never unpickle a data file.
        raise DataError(f"{spec}: array {key!r} holds Python objects (images of mixed shapes?); expected one "
                        "numeric array, e.g. x uint8 (N, H, W, C)") from None
    except (OSError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{spec}: cannot read array {key!r}: {err}") from None
