"""Datasets: turning a `--dataset SPEC` into uint8 train / val / test arrays.

- `cifar10-reduced` (the default): the AutoAugment paper's reduced CIFAR-10, shipped inside the
  package as JPEG bytes (`_data/cifar10_reduced_jpeg.npz`, see ../shared/data/README.md), so a
  fresh machine needs no download: train 4,000 (400 per class), val 5,000 (500 per class,
  disjoint from train), test 10,000 (the whole CIFAR-10 test set).
- `cifar10:DIR`, `cifar100:DIR`: the official python-version batches.
- `folder:DIR`: one sub-folder per class, PNG or JPEG files.
- `npz:FILE`: arrays `x` (N, H, W, C) uint8 and `y` integer labels.

Every spec gives the same thing, a `Splits`: RGB uint8 images (N, H, W, 3), int64 labels in
[0, num_classes), and the class names. Where a source has no val (or test) split, one is carved
out of train, stratified by class and seeded, so the same seed always gives the same split.
All of a dataset is held in memory; it is meant for CIFAR-sized work, not ImageNet.

Bad input is a `DataError` with one line naming the path, file or array key.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import os
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from autoaug.errors import ConfigError, DataError
from autoaug.files import expand_user
from autoaug.training import readers

DATASET_SPECS = (
    "cifar10-reduced (embedded, the default) | cifar10:DIR | cifar100:DIR | folder:DIR | npz:FILE"
)

SPLIT_NAMES = ("train", "val", "test")

# Standard CIFAR-10 label order (batches.meta); the embedded pack uses it too.
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

EMBEDDED_NAME = "cifar10-reduced"
_EMBEDDED_FILE = "_data/cifar10_reduced_jpeg.npz"


@dataclass(frozen=True, eq=False)  # eq=False: `==` on arrays is elementwise, not a bool
class Splits:
    """One dataset as three in-memory splits; images RGB uint8 (N, H, W, 3), labels int64."""

    name: str
    """The spec it came from, e.g. `cifar10-reduced` or `folder:/data/pets`."""
    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    num_classes: int
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise DataError(
                f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes"
            )
        if self.num_classes < 2:
            raise DataError(f"{self.name}: needs at least 2 classes, got {self.num_classes}")
        shape = self.train_x.shape[1:]
        if len(shape) == 3 and min(shape[:2]) < 1:
            raise DataError(f"{self.name}: images are {_hw(shape)}; an image needs at least 1x1 pixels")
        for split in SPLIT_NAMES:
            x, y = self.split(split)
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[3] != 3:
                raise DataError(f"{self.name}: {split} images must be uint8 (N, H, W, 3), "
                                f"got {x.dtype} {x.shape}")
            if x.shape[1:] != shape:
                raise DataError(f"{self.name}: {split} images are {_hw(x.shape[1:])} "
                                f"but train images are {_hw(shape)}")
            if y.dtype != np.int64 or y.shape != (len(x),):
                raise DataError(f"{self.name}: {split} labels must be int64 of shape ({len(x)},), "
                                f"got {y.dtype} {y.shape}")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"{self.name}: {split} labels must be in [0, {self.num_classes}), "
                                f"got values from {y.min()} to {y.max()}")
            if len(y) == 0:
                raise DataError(f"{self.name}: the {split} split is empty")

    def split(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of one split by name: "train", "val" or "test"."""
        _check_split_name(split)
        return getattr(self, f"{split}_x"), getattr(self, f"{split}_y")

    @property
    def image_shape(self) -> tuple[int, int]:
        """(H, W) of every image."""
        return int(self.train_x.shape[1]), int(self.train_x.shape[2])

    def class_counts(self, split: str) -> np.ndarray:
        """Images per class in one split, (num_classes,) int64."""
        return np.bincount(self.split(split)[1], minlength=self.num_classes)


# --- public entry points ----------------------------------------------------------------------


def load(
    spec: str, split: str, *, image_size: int | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """One split of a dataset: (x uint8 (N, H, W, 3) RGB, y int64 (N,)).

    `seed` only matters where a split has to be carved (see `load_splits`); loading several
    splits of a non-embedded dataset is cheaper with one `load_splits` call.
    """
    _check_split_name(split)
    _check_image_size(image_size)
    kind, _ = _parse_spec(spec)
    if kind == EMBEDDED_NAME:
        # Decode only the split asked for: the search loads train and val, not the 10k test.
        x, y = _embedded_split(split)
        return _resize_all(x, image_size, spec), y.copy()
    return load_splits(spec, image_size=image_size, seed=seed).split(split)


def load_splits(
    spec: str, *, image_size: int | None = None, seed: int = 0, val_fraction: float = 0.1
) -> Splits:
    """All three splits of a dataset (see DATASET_SPECS for the valid specs).

    `image_size` resizes every image to image_size x image_size; None keeps the source size
    (an error for a folder or npz whose images disagree). Where the source lacks a val or test
    split, `val_fraction` of every class of train is carved out for each missing split, with
    `seed` choosing which images; the embedded set and CIFAR's test split are used as they are.
    """
    _check_image_size(image_size)
    if not 0.0 < val_fraction < 0.5:
        raise ConfigError(f"val_fraction must be in (0, 0.5), got {val_fraction!r}")
    kind, arg = _parse_spec(spec)
    if kind == EMBEDDED_NAME:
        arrays = {split: _embedded_split(split) for split in SPLIT_NAMES}
        return Splits(
            name=spec,
            **_split_fields(
                {s: (_resize_all(x, image_size, spec), y.copy()) for s, (x, y) in arrays.items()}
            ),
            num_classes=len(CIFAR10_CLASSES),
            class_names=CIFAR10_CLASSES,
        )
    if kind in ("cifar10", "cifar100"):
        return _load_cifar(kind, spec, expand_user(arg, DataError, spec), image_size, seed, val_fraction)
    if kind == "folder":
        return _load_folder(spec, expand_user(arg, DataError, spec), image_size, seed, val_fraction)
    assert kind == "npz", kind
    return _load_npz(spec, expand_user(arg, DataError, spec), image_size, seed, val_fraction)


def fingerprint(*arrays: np.ndarray) -> str:
    """A content hash of `arrays` (dtype, shape and bytes of each, in order): what a trial store
    records so that a resumed search can tell that the data behind its dataset spec changed.

    SHA-256 runs at about 1 GB/s, so the search's default 2 x 2,000 CIFAR images cost ~10 ms.
    """
    digest = hashlib.sha256()
    for array in arrays:
        array = np.ascontiguousarray(array)
        digest.update(f"{array.dtype.str}{array.shape};".encode())
        digest.update(memoryview(array).cast("B"))
    return "sha256:" + digest.hexdigest()


# --- spec parsing and shared helpers ----------------------------------------------------------


def _parse_spec(spec: str) -> tuple[str, str]:
    """'folder:/data/x' -> ('folder', '/data/x'); 'cifar10-reduced' -> ('cifar10-reduced', '')."""
    if not isinstance(spec, str):
        raise DataError(f"dataset spec must be a string, got {type(spec).__name__}")
    if spec == EMBEDDED_NAME:
        return spec, ""
    kind, sep, arg = spec.partition(":")
    if kind in ("cifar10", "cifar100", "folder", "npz"):
        if not sep or not arg:
            what = "FILE" if kind == "npz" else "DIR"
            hint = (
                f" (get it with `autoaug data download {kind} --dest DIR`)"
                if kind.startswith("cifar") else ""
            )
            raise DataError(f"dataset spec {spec!r} needs a path: {kind}:{what}{hint}")
        return kind, arg
    raise DataError(f"unknown dataset spec {spec!r}; expected one of: {DATASET_SPECS}")


def _check_split_name(split: str) -> None:
    if split not in SPLIT_NAMES:
        raise DataError(f"unknown split {split!r}; expected one of: {', '.join(SPLIT_NAMES)}")


def _check_image_size(image_size: int | None) -> None:
    if image_size is not None and (
        isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 1
    ):
        raise ConfigError(f"image_size must be a positive integer or None, got {image_size!r}")


def _hw(shape: tuple[int, ...]) -> str:
    return f"{shape[0]}x{shape[1]}"


def _split_fields(arrays: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, np.ndarray]:
    fields = {}
    for split, (x, y) in arrays.items():
        fields[f"{split}_x"] = x
        fields[f"{split}_y"] = y
    return fields


def _check_fits(count: int, image_size: int | None, where: str) -> None:
    """DataError unless `count` RGB images of image_size x image_size fit in half of the memory
    this machine has available (the other half: the source images, their copies on the device,
    the model). Checked before anything is allocated: a size far too large would otherwise ask
    the allocator for terabytes and fail inside OpenCV."""
    if image_size is None:
        return
    need = count * image_size * image_size * 3
    have = _available_memory()
    if have is not None and need > have // 2:
        raise DataError(f"{where}: {count} images at {image_size}x{image_size} need {need / 2**30:.1f} GiB, "
                        f"more than half of the {have / 2**30:.1f} GiB this machine has available; expected "
                        "a smaller --image-size")


def _available_memory() -> int | None:
    """Bytes this machine can give without swapping: Linux's MemAvailable (free memory plus the
    page cache it can drop), else the free pages, else None (unknown: not checked)."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # a platform without these names (Windows)
        return None


def _resize_all(x: np.ndarray, image_size: int | None, where: str) -> np.ndarray:
    """A copy of x (N, H, W, 3) at image_size x image_size (or at its own size for None)."""
    if image_size is None or x.shape[1:3] == (image_size, image_size):
        return x.copy()
    _check_fits(len(x), image_size, where)
    return np.stack([_resize(img, image_size) for img in x]) if len(x) else np.empty(
        (0, image_size, image_size, 3), np.uint8
    )


def _resize(img: np.ndarray, image_size: int) -> np.ndarray:
    # Squash to a square (no aspect-preserving crop): every pixel stays in the picture, and the
    # ops' magnitudes are fractions of the image size, so a square frame is all they assume.
    # INTER_AREA averages when shrinking (no aliasing); INTER_LINEAR when enlarging.
    h, w = img.shape[:2]
    shrink = image_size < h or image_size < w
    interp = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
    return cv2.resize(img, (image_size, image_size), interpolation=interp)


def _to_rgb(x: np.ndarray, where: str) -> np.ndarray:
    """(N, H, W, C) with C 1 (grey), 3 (RGB) or 4 (RGBA) -> (N, H, W, 3); alpha is dropped."""
    channels = x.shape[3]
    if channels == 3:
        return x
    if channels == 1:
        return np.repeat(x, 3, axis=3)
    if channels == 4:
        return x[..., :3]
    raise DataError(f"{where}: expected 1, 3 or 4 channels (grey, RGB, RGBA), got {channels}")


def _carve(
    y: np.ndarray,
    num_classes: int,
    fraction: float,
    parts: int,
    seed: int,
    where: str,
    class_names: tuple[str, ...],
) -> list[np.ndarray]:
    """Stratified, seeded split of indices into y: [rest, part_1, ..., part_parts].

    Each part takes round(fraction * n_c) images of every class c (at least one, and at least
    one is left in rest). `rest` keeps the source order; each part is in a seeded random order,
    so a prefix of a carved split is close to class-balanced even when the source is sorted by
    class. numpy's seeded Generator (not the global RNG) keeps this module free of torch.
    """
    rng = np.random.default_rng(seed)
    rest: list[np.ndarray] = []
    taken: list[list[np.ndarray]] = [[] for _ in range(parts)]
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        n = len(idx)
        if n < parts + 1:
            raise DataError(f"{where}: class {class_names[c]!r} has {n} training image(s); carving "
                            f"{'val and test' if parts == 2 else 'a split'} out of train needs at least "
                            f"{parts + 1} per class")
        k = min(max(1, int(np.floor(fraction * n + 0.5))), (n - 1) // parts)
        for p in range(parts):
            taken[p].append(idx[p * k:(p + 1) * k])
        rest.append(idx[parts * k:])
    return [np.sort(np.concatenate(rest))] + [rng.permutation(np.concatenate(t)) for t in taken]


def _finish(
    spec: str,
    arrays: dict[str, tuple[np.ndarray, np.ndarray] | None],
    num_classes: int,
    class_names: tuple[str, ...],
    image_size: int | None,
    seed: int,
    val_fraction: float,
) -> Splits:
    """Check labels, carve the missing splits out of train, resize, and build the Splits."""
    if num_classes < 2:
        raise DataError(f"{spec}: found only {num_classes} class ({', '.join(class_names) or 'none'}); "
                        "a classifier needs at least 2")
    train = arrays["train"]
    assert train is not None
    train_x, train_y = train
    present = np.bincount(train_y, minlength=num_classes) > 0
    if not present.all():
        missing = [class_names[c] for c in np.flatnonzero(~present)]
        raise DataError(f"{spec}: classes with no training images: {', '.join(map(repr, missing[:10]))}"
                        f"{' ...' if len(missing) > 10 else ''} (labels must cover 0..{num_classes - 1})")
    missing_splits = [s for s in ("val", "test") if arrays[s] is None]
    if missing_splits:
        rest, *carved = _carve(
            train_y, num_classes, val_fraction, len(missing_splits), seed, spec, class_names
        )
        for split, idx in zip(missing_splits, carved):
            arrays[split] = (train_x[idx], train_y[idx])
        arrays["train"] = (train_x[rest], train_y[rest])
    shapes = {s: a[0].shape[1:3] for s, a in arrays.items() if a is not None}
    if image_size is None and len(set(shapes.values())) > 1:
        raise DataError(f"{spec}: splits have different image sizes "
                        f"({', '.join(f'{s} {_hw(hw)}' for s, hw in shapes.items())}); "
                        "pass --image-size N to resize them all")
    final = {}
    for split in SPLIT_NAMES:
        pair = arrays[split]
        assert pair is not None
        x, y = pair
        final[split] = (_resize_all(x, image_size, spec), y.astype(np.int64, copy=True))
    return Splits(name=spec, **_split_fields(final), num_classes=num_classes, class_names=class_names)


# --- embedded reduced CIFAR-10 ----------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _embedded_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """Decoded embedded split, cached per process; read-only so no caller can corrupt the cache
    (public functions hand out copies)."""
    resource = importlib.resources.files("autoaug").joinpath(_EMBEDDED_FILE)
    try:
        with resource.open("rb") as f, np.load(f, allow_pickle=False) as pack:
            blob = pack[f"{split}_jpeg"]
            offsets = pack[f"{split}_offsets"]
            y = pack[f"{split}_y"].astype(np.int64)
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as err:
        raise DataError(f"embedded dataset {EMBEDDED_NAME} is missing or damaged "
                        f"(autoaug/{_EMBEDDED_FILE}: {err}); reinstall autoaug") from None
    x = np.empty((len(offsets) - 1, 32, 32, 3), np.uint8)
    for i in range(len(x)):
        bgr = cv2.imdecode(blob[offsets[i]:offsets[i + 1]], cv2.IMREAD_COLOR)
        cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=x[i])
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y


# --- CIFAR-10 / CIFAR-100 python batches ------------------------------------------------------

_CIFAR_LAYOUT = {
    # kind: (folder name, train files, test file, meta file, label key, class-names key)
    "cifar10": (
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        "test_batch",
        "batches.meta",
        "labels",
        "label_names",
    ),
    "cifar100": ("cifar-100-python", ("train",), "test", "meta", "fine_labels", "fine_label_names"),
}


def _load_cifar(
    kind: str, spec: str, path: Path, image_size: int | None, seed: int, val_fraction: float
) -> Splits:
    folder_name, train_files, test_file, meta_file, label_key, names_key = _CIFAR_LAYOUT[kind]
    if not path.is_dir():
        raise DataError(f"{spec}: no such directory {str(path)!r} "
                        f"(get it with `autoaug data download {kind} --dest DIR`)")
    root = path if (path / test_file).is_file() else path / folder_name
    for name in (*train_files, test_file, meta_file):
        if not (root / name).is_file():
            raise DataError(f"{spec}: missing {name!r} in {str(root)!r}; expected the official "
                            f"{folder_name} folder or its parent")
    meta = readers.read_cifar_pickle(root / meta_file, spec)
    class_names = tuple(
        n.decode("utf-8") if isinstance(n, bytes) else str(n)
        for n in readers.cifar_key(meta, names_key, root / meta_file, spec)
    )
    num_classes = len(class_names)
    parts = [readers.read_cifar_batch(root / n, label_key, num_classes, spec) for n in train_files]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    test = readers.read_cifar_batch(root / test_file, label_key, num_classes, spec)
    return _finish(
        spec,
        {"train": train, "val": None, "test": test},
        num_classes,
        class_names,
        image_size,
        seed,
        val_fraction,
    )


# --- folder of class sub-folders --------------------------------------------------------------


def _load_folder(spec: str, path: Path, image_size: int | None, seed: int, val_fraction: float) -> Splits:
    if not path.is_dir():
        raise DataError(f"{spec}: no such directory {str(path)!r}")
    split_dirs = {s: path / s for s in SPLIT_NAMES if (path / s).is_dir()}
    if split_dirs and "train" not in split_dirs:
        raise DataError(f"{spec}: found {', '.join(split_dirs)} but no train folder in {str(path)!r}")
    train_root = split_dirs.get("train", path)
    class_names = tuple(sorted(d.name for d in _class_dirs(train_root)))
    if not class_names:
        raise DataError(f"{spec}: no class folders in {str(train_root)!r}; expected "
                        "DIR/<class>/*.png|jpg or DIR/train/<class>/*.png|jpg")
    label_of = {name: i for i, name in enumerate(class_names)}
    skipped = _skipped_folders(path, split_dirs)
    files: dict[str, tuple[list[Path], list[int]]] = {}
    for split in SPLIT_NAMES:
        if split == "train":
            root = train_root
        elif split in split_dirs:
            root = split_dirs[split]
        else:
            continue
        paths: list[Path] = []
        labels: list[int] = []
        if not _class_dirs(root):
            raise DataError(f"{spec}: the {split} folder {str(root)!r} holds no class folders; expected "
                            f"{split}/<class>/*.png|jpg like train/, or no {split} folder (then {split} is "
                            "carved out of train)")
        for class_dir in sorted(_class_dirs(root), key=lambda d: d.name):
            if class_dir.name not in label_of:
                raise DataError(f"{spec}: {str(class_dir)!r} is not a class of the train folder "
                                f"(classes: {', '.join(class_names)})")
            images = sorted(
                p for p in class_dir.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
            )
            if not images:
                raise DataError(f"{spec}: class folder {str(class_dir)!r} has no PNG or JPEG images")
            skipped += [d for d in class_dir.iterdir() if d.is_dir() and not d.name.startswith(".")]
            paths.extend(images)
            labels.extend([label_of[class_dir.name]] * len(images))
        files[split] = (paths, labels)

    if skipped:  # images a user put there and would expect to be used (issue #23)
        names = ", ".join(str(d.relative_to(path)) + "/" for d in sorted(skipped)[:3])
        print(f"warning: {spec}: skipped {len(skipped)} folder(s) that are not classes of a split "
              f"({names}{', ...' if len(skipped) > 3 else ''}); expected DIR/<class>/*.png or "
              "DIR/{train,val,test}/<class>/*.png, one level deep", file=sys.stderr)
    _check_fits(sum(len(ps) for ps, _ in files.values()), image_size, spec)
    decoded = {s: [readers.read_image(p, spec) for p in ps] for s, (ps, _) in files.items()}
    if image_size is None:
        sizes: dict[tuple[int, int], Path] = {}
        for split, images in decoded.items():
            for img, p in zip(images, files[split][0]):
                sizes.setdefault(img.shape[:2], p)
        if len(sizes) > 1:
            (hw_a, p_a), (hw_b, p_b) = list(sizes.items())[:2]
            raise DataError(f"{spec}: images have different sizes ({_hw(hw_a)} in {str(p_a)!r}, "
                            f"{_hw(hw_b)} in {str(p_b)!r}); pass --image-size N to resize them all")
    arrays: dict[str, tuple[np.ndarray, np.ndarray] | None] = {s: None for s in SPLIT_NAMES}
    for split, images in decoded.items():
        if image_size is not None:
            images = [_resize(img, image_size) if img.shape[:2] != (image_size,) * 2 else img
                      for img in images]
        arrays[split] = (np.stack(images), np.asarray(files[split][1], np.int64))
    return _finish(spec, arrays, len(class_names), class_names, image_size, seed, val_fraction)


def _skipped_folders(path: Path, split_dirs: dict[str, Path]) -> list[Path]:
    """Folders beside train/, val/ and test/ when DIR has split folders: never read."""
    if not split_dirs:
        return []
    return [d for d in _class_dirs(path) if d.name not in split_dirs]


def _class_dirs(root: Path) -> list[Path]:
    # Hidden folders (.ipynb_checkpoints, .git) are never classes.
    return [d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")]


# --- .npz arrays ------------------------------------------------------------------------------

_NPZ_SPLITS = {"train": ("x", "y"), "val": ("x_val", "y_val"), "test": ("x_test", "y_test")}  # split: arrays
_NPZ_KEYS = (*(key for pair in _NPZ_SPLITS.values() for key in pair), "class_names")


def _load_npz(spec: str, path: Path, image_size: int | None, seed: int, val_fraction: float) -> Splits:
    if not path.is_file():
        raise DataError(f"{spec}: no such file {str(path)!r}")
    if zipfile.is_zipfile(path):
        readers.check_npz_members(spec, path)
    try:
        pack = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise DataError(f"{spec}: cannot read {str(path)!r} as .npz: {err}") from None
    if not isinstance(pack, np.lib.npyio.NpzFile):
        raise DataError(f"{spec}: {str(path)!r} holds one array; expected an .npz with arrays x and y")
    with pack:
        keys = set(pack.files)
        unknown = sorted(keys - set(_NPZ_KEYS))
        if unknown:
            raise DataError(f"{spec}: unknown array(s) {', '.join(unknown)} in {str(path)!r}; "
                            f"valid: {', '.join(_NPZ_KEYS)}")
        for xk, yk in _NPZ_SPLITS.values():
            if (xk in keys) != (yk in keys) or (xk == "x" and xk not in keys):
                raise DataError(f"{spec}: {str(path)!r} needs arrays {xk!r} and {yk!r} together "
                                f"(has: {', '.join(sorted(keys)) or 'none'})")
        arrays = {split: (readers.npz_array(pack, xk, spec), readers.npz_array(pack, yk, spec)) if xk in keys
                  else None for split, (xk, yk) in _NPZ_SPLITS.items()}
        names = readers.npz_array(pack, "class_names", spec) if "class_names" in keys else None

    checked: dict[str, tuple[np.ndarray, np.ndarray] | None] = {}
    for split, pair in arrays.items():
        xk, yk = _NPZ_SPLITS[split]
        if pair is None:
            checked[split] = None
            continue
        x, y = pair
        if x.dtype != np.uint8:
            raise DataError(f"{spec}: array {xk!r} must be uint8, got {x.dtype}")
        if x.ndim != 4 or x.shape[3] not in (1, 3, 4):
            raise DataError(f"{spec}: array {xk!r} must be (N, H, W, C) with C 1, 3 or 4, "
                            f"got shape {x.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
            raise DataError(f"{spec}: array {yk!r} must be 1-D integer labels, got {y.dtype} {y.shape}")
        if len(x) != len(y):
            raise DataError(f"{spec}: {xk!r} has {len(x)} images but {yk!r} has {len(y)} labels")
        if len(y) == 0:
            raise DataError(f"{spec}: arrays {xk!r} and {yk!r} are empty")
        if y.min() < 0:
            raise DataError(f"{spec}: array {yk!r} has negative labels (min {y.min()})")
        # Labels number the classes 0..K-1, and every class has training images, so no label
        # reaches the number of training images; checked before the int64 cast (a uint64
        # 2**64-1 would wrap to -1) and before anything is sized by the largest label.
        if int(y.max()) >= len(arrays["train"][1]):
            raise DataError(f"{spec}: array {yk!r} has label {int(y.max())}, but labels must number the "
                            f"classes 0..K-1 and there are only {len(arrays['train'][1])} training images")
        checked[split] = (_to_rgb(x, f"{spec}: array {xk!r}"), y.astype(np.int64))

    hw = checked["train"][0].shape[1:3]  # type: ignore[index]
    for split, pair in checked.items():
        if image_size is None and pair is not None and pair[0].shape[1:3] != hw:
            raise DataError(f"{spec}: array 'x_{split}' has {_hw(pair[0].shape[1:3])} images but 'x' has "
                            f"{_hw(hw)}; pass --image-size N to resize them all")
    max_label = max(int(p[1].max()) for p in checked.values() if p is not None)
    if names is None:
        num_classes = max_label + 1
        class_names = tuple(str(c) for c in range(num_classes))
    else:
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise DataError(f"{spec}: array 'class_names' must be 1-D strings, "
                            f"got {names.dtype} {names.shape}")
        class_names = tuple(str(n) for n in names.tolist())
        num_classes = len(class_names)
        for split, pair in checked.items():
            if pair is not None and pair[1].max() >= num_classes:
                raise DataError(f"{spec}: array {_NPZ_SPLITS[split][1]!r} has label {pair[1].max()} but "
                                f"'class_names' lists only {num_classes} classes (labels must be in "
                                f"[0, {num_classes}))")
    return _finish(spec, checked, num_classes, class_names, image_size, seed, val_fraction)
