"""Generated bad input (issue #12): mutated policy files (native and albumentations), datasets
and configs, each read in-process by the same reader the CLI uses. For every case the outcome
must be the project's own error (an `AutoaugError` with a one-line message) or acceptance of
something valid: an accepted policy must run on real images, an accepted dataset must hold the
invariants training relies on, an accepted config must write and read back to itself. Any other
exception is a failure that prints the seed and the case to reproduce it.

Issue #23 added whole albumentations pipelines of foreign transforms that must run as `show` and
`train` run them once validated, trial stores with a value edited or damaged, and files written
over special files (devices, FIFOs, directories, sockets).

The generator is seeded (`SEED`); a failing case is reproduced by `_policy_case(SEED, i)` and its
siblings. The whole file runs in well under a minute on one core; experiments/fuzz_scale.py runs
every generator (`run_policies`, ..., `run_outputs`) at a multiple of these sizes and counts
tracebacks and wrong accepts instead of stopping at the first.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import pickle
import random
import stat
import zipfile
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from autoaug.search.config import SearchConfig, load_config
from autoaug.settings import to_dict, to_toml, valid_keys
from autoaug.training.data import load_splits
from autoaug.errors import AutoaugError
from autoaug.space.albu import set_image_pool, walk
from autoaug.space.export import AlbumentationsFile, to_albumentations
from autoaug.space.ops import OP_NAMES
from autoaug.space.policy import Policy, published_policy
from autoaug.space.specs import resolve_policy
from autoaug.space.randaugment import RandAugment, TrivialAugment

SEED = 12
# experiments/fuzz_scale.py runs every generator at a multiple of these sizes (issue #23: 5x).
POLICY_CASES = 600  # half native (policy, randaugment, trivialaugment), half albumentations
DATASET_CASES = 80
CONFIG_CASES = 120  # files and overrides (enough that both outcomes come up whatever the defaults are)
PIPELINE_CASES = 120  # whole albumentations pipelines of foreign transforms, validated then run
STORE_CASES = 150  # trial stores with one value edited or damaged
OUTPUT_CASES = 48  # files written over special files: devices, FIFOs, directories, sockets

pytestmark = pytest.mark.usefixtures("one_thread")

# Values that stand in for anything a user or a damaged disk could put where a value goes.
NASTY: tuple[Any, ...] = (
    None, True, False, 0, 1, -1, 2, 7, 0.5, 0.35, -0.0, 1e-320, 1e308, 10**400, 2**63, 2**64 - 1,
    10**30, "", "x", "0.5", "ShearX", "Identity", "Compose", "Foo", "os.system", "autoaug.policy",
    [], [1], ["ShearX"], {}, {"op": "Rotate"}, [[["deep"]]], "\x00", "é" * 3,
)


def _one_line(err: AutoaugError) -> None:
    text = str(err)
    assert text and "\n" not in text and "\r" not in text, repr(text)
    assert len(text) < 600, f"{len(text)} characters: {text[:200]}..."


# --- the mutation engine -----------------------------------------------------------------------


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every place in a JSON tree: the root, each key's value, each list item."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, prefix + (key,))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, prefix + (i,))
    return out


def _get(doc: Any, path: tuple) -> Any:
    for part in path:
        doc = doc[part]
    return doc


def _mutate_tree(doc: Any, rng: random.Random, extra: tuple[Any, ...] = ()) -> Any:
    """One structural change at a random place (a value, a key, a list, the root)."""
    doc = copy.deepcopy(doc)
    path = rng.choice(_paths(doc)[1:] or [()])
    parent, key = (_get(doc, path[:-1]), path[-1]) if path else (None, None)
    value = _get(doc, path)
    kind = rng.randrange(8)
    if kind <= 2 or parent is None:
        new: Any = rng.choice(NASTY + extra)
    elif kind == 3:  # drop it
        del parent[key]
        return doc
    elif kind == 4 and isinstance(value, (list, dict)):  # empty the container
        new = type(value)()
    elif kind == 5 and isinstance(value, list) and value:  # repeat an item
        value.append(copy.deepcopy(rng.choice(value)))
        return doc
    elif kind == 6 and isinstance(value, dict):  # a key nobody knows
        value[rng.choice(["pp", "magnitude", "ops", "n", "extra", "prob "])] = rng.choice(NASTY)
        return doc
    elif isinstance(value, (int, float)) and not isinstance(value, bool):  # a nearby number
        try:
            new = rng.choice([value * 10, value + 0.05, -value, value / 3, value + 1])
        except OverflowError:  # 10**400 has no float neighbours
            new = -value
    else:
        new = [value]  # wrapped in a list
    if parent is None:
        return new
    parent[key] = new
    return doc


def _mutate_text(text: str, rng: random.Random) -> bytes:
    """A change at the byte level: cut short, a NaN or an overlong number, deep nesting, a
    non-UTF-8 byte, a flipped byte."""
    kind = rng.randrange(7)
    data = text.encode()
    if kind == 0:
        return data[: rng.randrange(len(data))]
    if kind in (1, 2, 3):
        number = rng.choice(["NaN", "Infinity", "-Infinity", "1e999", "1" * 5000, "1" + "0" * 400,
                             "1e-400", "0.1e1"])
        spots = [i for i in range(len(text)) if text[i].isdigit() and not text[i - 1].isalnum()]
        if spots:
            i = rng.choice(spots)
            j = i
            while j < len(text) and (text[j].isdigit() or text[j] in ".e-"):
                j += 1
            return (text[:i] + number + text[j:]).encode()
    if kind == 4:
        depth = rng.choice([100, 1000, 5000])
        return ("[" * depth + text + "]" * depth).encode()
    if kind == 5:
        i = rng.randrange(len(data))
        return data[:i] + bytes([rng.choice([0xFF, 0xC3, 0x00, 0x80])]) + data[i:]
    i = rng.randrange(len(data))
    return data[:i] + bytes([data[i] ^ (1 << rng.randrange(8))]) + data[i + 1:]


def _mutated(base: Any, rng: random.Random, extra: tuple[Any, ...] = ()) -> bytes:
    doc = base
    for _ in range(rng.choice([1, 1, 2, 3])):
        doc = _mutate_tree(doc, rng, extra)
    try:
        text = json.dumps(doc)
    except ValueError:  # an int Python will not print (never produced, but cheap to allow)
        text = json.dumps(base)
    return _mutate_text(text, rng) if rng.random() < 0.3 else text.encode()


# --- policy files ----------------------------------------------------------------------------


def _native_bases() -> list[dict[str, Any]]:
    small = Policy(published_policy("autoaugment-cifar10").sub_policies[:3])
    return [small.to_json(), RandAugment(2, 9.0, ("Rotate", "Identity", "Posterize")).to_json(),
            TrivialAugment(("Solarize", "ShearX")).to_json()]


def _albumentations_base() -> dict[str, Any]:
    subs = published_policy("autoaugment-cifar10").sub_policies
    # Sub-policies 0-2 and 22 (SamplePairing is not in the paper's CIFAR policy, so add it).
    policy = Policy((subs[0], subs[1], subs[2], ((Policy.from_tokens([15, 5, 3] * 2)).sub_policies[0])))
    return A.to_dict(to_albumentations(policy))


def _policy_case(seed: int, i: int, directory: Path) -> tuple[str, Path]:
    rng = random.Random(f"{seed}:{i}")
    path = directory / f"case{i}.json"
    if i % 2:
        kind = "albumentations"
        extra: tuple[Any, ...] = ("Blur", "NoOp", "OneOf", "Sequential", "autoaug.albu.Sharpness",
                                  "InvertImg", "Posterize", {"__class_fullname__": "NoOp", "p": 1.0})
        path.write_bytes(_mutated(_ALBUMENTATIONS, rng, extra))
    else:
        kind = "native"
        extra = tuple(OP_NAMES) + ("randaugment", "trivialaugment", "policy", 30, 31, 9, 10, 0.1)
        path.write_bytes(_mutated(rng.choice(_NATIVE), rng, extra))
    if rng.random() < 0.02:  # a path that cannot be read as a file at all
        path = rng.choice([path / "x.json", directory / ("n" * 300 + ".json"), directory])
    return kind, path


_NATIVE = _native_bases()
_ALBUMENTATIONS = _albumentations_base()


def _check_policy_runs(policy: Any, images: np.ndarray) -> None:
    """What `accepted` must mean: the policy is what the format says and runs on real images."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)
    g = torch.Generator().manual_seed(0)
    if isinstance(policy, AlbumentationsFile):
        set_image_pool(policy.pipeline, images)
        out = policy(x, g)
        for t in walk(policy.pipeline):  # every transform once, whatever its p
            if not isinstance(t, A.BaseCompose):
                p, t.p = t.p, 1.0
                assert t(image=images[0])["image"].dtype == np.uint8
                t.p = p
    elif isinstance(policy, Policy):
        for sub in policy.sub_policies:
            for op in sub:
                assert op.name in OP_NAMES and 0 <= op.prob <= 1
                assert op.magnitude_bin is None or 0 <= op.magnitude_bin <= 9
        out = policy(x, g)
    else:
        assert isinstance(policy, (RandAugment, TrivialAugment))
        out = policy(x, g)
    assert out.shape == x.shape and out.dtype == torch.uint8


def run_policies(n: int, directory: Path, images: np.ndarray, strict: bool = True) -> Counter:
    return _run(n, lambda i: _policy_case(SEED, i, directory), lambda p: resolve_policy(str(p)),
                lambda policy: _check_policy_runs(policy, images), strict)


def test_fuzzed_policy_files_are_rejected_in_one_line_or_run(tmp_path: Path, cifar_images) -> None:
    outcomes = run_policies(POLICY_CASES, tmp_path, cifar_images[:4])
    assert sum(outcomes.values()) == POLICY_CASES
    for kind in ("native", "albumentations"):  # the generator reaches both outcomes for both
        assert outcomes[(kind, "rejected")] > 50 and outcomes[(kind, "accepted")] > 10, outcomes


def _run(n: int, case: Callable[[int], tuple[str, Any]], read: Callable[[Any], Any],
         check: Callable[[Any], None], strict: bool = True) -> Counter:
    """Read case 0..n-1; count (kind, outcome); fail with the case's number on a traceback or a
    wrong accept. `strict` False (experiments/fuzz_scale.py) counts those as the outcomes
    "traceback" and "wrong accept" instead, with the first few printed."""
    outcomes: Counter = Counter()
    for i in range(n):
        kind, arg = case(i)
        try:
            value = read(arg)
        except AutoaugError as err:
            try:
                _one_line(err)
            except AssertionError as bad:
                _fail(outcomes, strict, kind, "traceback", f"case {i} ({kind}, seed {SEED}): not one line: {bad}")
                continue
            outcomes[(kind, "rejected")] += 1
            continue
        except Exception as err:  # noqa: BLE001 - the point of the test
            _fail(outcomes, strict, kind, "traceback", f"case {i} ({kind}, seed {SEED}): {type(err).__name__}: {err}",
                  err)
            continue
        try:
            check(value)
        except Exception as err:  # noqa: BLE001
            _fail(outcomes, strict, kind, "wrong accept", f"case {i} ({kind}, seed {SEED}) was accepted but is not "
                  f"valid: {type(err).__name__}: {err}", err)
            continue
        outcomes[(kind, "accepted")] += 1
    return outcomes


def _fail(outcomes: Counter, strict: bool, kind: str, outcome: str, message: str, err: Exception | None = None) -> None:
    if strict:
        raise AssertionError(message[:2000]) from err
    if outcomes[(kind, outcome)] < 3:
        print(message[:400])
    outcomes[(kind, outcome)] += 1


# --- datasets ---------------------------------------------------------------------------------


def _arrays(rng: np.random.Generator) -> dict[str, np.ndarray]:
    y = np.arange(30) % 3
    return {"x": rng.integers(0, 256, (30, 16, 16, 3), np.uint8), "y": y,
            "x_test": rng.integers(0, 256, (6, 16, 16, 3), np.uint8), "y_test": np.arange(6) % 3}


def _npy_bytes(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return buf.getvalue()


def _dataset_case(seed: int, i: int, directory: Path) -> tuple[str, str]:
    rng = random.Random(f"{seed}:data:{i}")
    nrng = np.random.default_rng(rng.randrange(2**32))
    arrays = _arrays(nrng)
    if i % 8 == 7:
        return "cifar10", _cifar_case(rng, nrng, directory / f"cifar{i}")
    if i % 8 == 3:
        return "folder", _folder_case(rng, nrng, directory / f"folder{i}")
    path = directory / f"case{i}.npz"
    kind = rng.randrange(12)
    key = rng.choice(list(arrays))
    if kind == 0:  # another dtype
        arrays[key] = arrays[key].astype(rng.choice([np.float32, np.int16, np.uint64, np.bool_, np.int8]))
    elif kind == 1:  # another shape
        a = arrays[key]
        arrays[key] = rng.choice([a[..., :1], a[:, :, :, None] if a.ndim == 4 else a[:, None],
                                  a.reshape(len(a), -1), a[:0], a[..., :2] if a.ndim == 4 else a[:3],
                                  np.zeros((len(a), 0, 0, 3), np.uint8)])
    elif kind == 2:  # a label out of range
        label = rng.choice([-1, 3, 2**31, 2**62, 2**63 - 1, 2**64 - 1, 255])
        y = arrays["y"].astype(np.uint64 if label >= 2**63 else np.int64)
        y[rng.randrange(len(y))] = label
        arrays["y"] = y
    elif kind == 3:  # images too small for a network (the reader accepts them; training refuses)
        h, w = rng.choice([(1, 1), (2, 2), (7, 5), (3, 40)])
        arrays["x"] = nrng.integers(0, 256, (30, h, w, 3), np.uint8)
        arrays["x_test"] = nrng.integers(0, 256, (6, h, w, 3), np.uint8)
    elif kind == 4:  # keys
        del arrays[rng.choice(["y", "x_test", "x"])]
        if rng.random() < 0.5:
            arrays["extra"] = np.zeros(3)
    elif kind == 5:  # class names
        arrays["class_names"] = rng.choice([np.array(["a", "b"]), np.array([1, 2, 3]),
                                            np.array(["a", "b", "c", "d"]), np.array([["a", "b", "c"]])])
    if kind == 6:
        np.save(path.with_suffix(".npy"), arrays["x"])  # one array, not an .npz
        path.with_suffix(".npy").rename(path)
        return "npz", f"npz:{path}"
    np.savez(path, **arrays)
    if kind in (7, 8, 9, 10):  # damage the file
        members = {name: _npy_bytes(a) for name, a in ((k + ".npy", v) for k, v in arrays.items())}
        name = rng.choice(list(members))
        data = bytearray(members[name])
        if kind == 7:  # a zeroed stretch of the header
            start, length = rng.randrange(8, 40), rng.randrange(4, 60)
            data[start:start + length] = bytes(len(data[start:start + length]))
        elif kind == 8:  # a header claiming far more images than the member holds
            array = arrays[name[:-4]]
            header = io.BytesIO()
            claim = rng.choice([10**10, 99999, 2**62])
            np.lib.format.write_array_header_1_0(header, {
                "descr": np.lib.format.dtype_to_descr(array.dtype), "fortran_order": False,
                "shape": (claim,) + array.shape[1:]})
            data = bytearray(header.getvalue() + array.tobytes())
        elif kind == 9:  # a member that is not .npy
            members[name.replace(".npy", "")] = bytes(data)
            del members[name]
            data = None
        else:  # cut short
            data = data[: rng.randrange(len(data))]
        if data is not None:
            members[name] = bytes(data)
        with zipfile.ZipFile(path, "w") as archive:
            for member, raw in members.items():
                archive.writestr(member, raw)
    elif kind == 11:  # bytes of the zip flipped or cut
        raw = bytearray(path.read_bytes())
        if rng.random() < 0.5:
            raw = raw[: rng.randrange(len(raw))]
        else:
            for _ in range(rng.randrange(1, 20)):
                raw[rng.randrange(len(raw))] ^= 0xFF
        path.write_bytes(bytes(raw))
    return "npz", f"npz:{path}"


def _cifar_case(rng: random.Random, nrng: np.random.Generator, root: Path) -> str:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]
    for name in names:
        batch = {b"data": nrng.integers(0, 256, (10, 3072), np.uint8), b"labels": list(range(10))}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(
        pickle.dumps({b"label_names": [f"c{k}".encode() for k in range(10)]}, protocol=2))
    target = folder / rng.choice(names + ["batches.meta"])
    raw = target.read_bytes()
    kind = rng.randrange(4)
    if kind == 0:  # a damaged encoding name (numpy arrays pickle through codecs.encode)
        raw = raw.replace(b"latin1", rng.choice([b"latinQ", b"\x00atin1", b"utf-99"]))
    elif kind == 1:
        raw = raw[: rng.randrange(len(raw))]
    elif kind == 2:
        raw = bytes(b ^ 0xFF if rng.random() < 0.01 else b for b in raw)
    else:  # labels out of range
        batch = pickle.loads(raw, encoding="bytes")
        if b"labels" in batch:
            batch[b"labels"] = [rng.choice([10, -1, 2**62, 2**70])] * len(batch[b"labels"])
        raw = pickle.dumps(batch, protocol=2)
    target.write_bytes(raw)
    return f"cifar10:{root}"


def _folder_case(rng: random.Random, nrng: np.random.Generator, root: Path) -> str:
    for c in range(3):
        (root / f"class{c}").mkdir(parents=True)
        for k in range(6):
            image = nrng.integers(0, 256, (12, 12, 3), np.uint8)
            cv2.imwrite(str(root / f"class{c}" / f"{k}.png"), image)
    target = root / f"class{rng.randrange(3)}" / f"{rng.randrange(6)}.png"
    kind = rng.randrange(6)
    if kind == 0:  # damaged bytes
        raw = bytearray(target.read_bytes())
        raw[rng.randrange(8, len(raw))] ^= 0xFF
        target.write_bytes(bytes(raw[: rng.randrange(8, len(raw))]))
    elif kind == 1:
        target.write_bytes(b"")
    elif kind == 2:  # another size without --image-size
        cv2.imwrite(str(target), nrng.integers(0, 256, (rng.choice([1, 7]), 5, 3), np.uint8))
    elif kind == 3:  # a class without images
        for image in target.parent.iterdir():
            image.unlink()
    elif kind == 4:  # not an image at all
        target.write_text("hello")
    else:  # a grey image (valid: replicated to RGB)
        cv2.imwrite(str(target), nrng.integers(0, 256, (12, 12), np.uint8))
    return f"folder:{root}"


def _check_splits(splits: Any) -> None:
    for split in ("train", "val", "test"):
        x, y = splits.split(split)
        assert x.dtype == np.uint8 and x.ndim == 4 and x.shape[3] == 3 and min(x.shape[1:3]) >= 1
        assert y.dtype == np.int64 and len(y) == len(x) > 0
        assert 0 <= y.min() and y.max() < splits.num_classes


def run_datasets(n: int, directory: Path, strict: bool = True) -> Counter:
    return _run(n, lambda i: _dataset_case(SEED, i, directory), load_splits, _check_splits, strict)


def test_fuzzed_datasets_are_rejected_in_one_line_or_valid(tmp_path: Path) -> None:
    outcomes = run_datasets(DATASET_CASES, tmp_path)
    assert sum(outcomes.values()) == DATASET_CASES
    assert outcomes[("npz", "rejected")] > 20 and outcomes[("npz", "accepted")] > 5, outcomes
    assert outcomes[("cifar10", "rejected")] >= 5 and outcomes[("folder", "rejected")] >= 5, outcomes


# --- configs ----------------------------------------------------------------------------------

_TOML_VALUES = ("inf", "-inf", "nan", "+nan", "1e400", "1" * 5000, "-1", "0", "9223372036854775808",
                "1e-320", '"none"', '"auto"', "true", "[1, 2]", "[" * 5000 + "]" * 5000, "{ a = 1 }",
                '"x"', "0.5", "3", "2000", '"tiny"', '"cuda:0"', '"ppo"', "1.0e308", "0x10")


def _config_case(seed: int, i: int, directory: Path) -> tuple[str, Any]:
    rng = random.Random(f"{seed}:config:{i}")
    if i % 2:  # overrides
        keys = valid_keys(SearchConfig) + ["ppo.lrr", "child", "budget.x", "", "child.device", "a\nb"]
        overrides = [f"{rng.choice(keys)}={rng.choice(_TOML_VALUES).strip(chr(34))}"
                     for _ in range(rng.randrange(1, 3))]
        return "override", overrides
    lines = to_toml(load_config(None, ["budget=4", "train_subset=200"])).splitlines()
    for _ in range(rng.randrange(1, 3)):
        k = rng.randrange(len(lines))
        if "=" in lines[k]:
            key, old = (part.strip() for part in lines[k].split("=", 1))
            if rng.random() < 0.4 and old.replace(".", "", 1).isdigit():  # another plausible number
                new = str(rng.randrange(1, 50)) if old.isdigit() else repr(rng.uniform(0.01, 0.9))
            else:
                new = rng.choice(_TOML_VALUES)
            lines[k] = f"{key} = {new}"
        else:
            lines.insert(k, rng.choice(["[child.extra]", "zzz = 1", "budget = 5", "[ppo]"]))
    text = "\n".join(lines) + "\n"
    data = _mutate_text(text, rng) if rng.random() < 0.3 else text.encode()
    path = directory / f"case{i}.toml"
    path.write_bytes(data)
    return "file", path


def _read_config(arg: Any):
    if isinstance(arg, list):
        return load_config(None, arg)
    return load_config(arg)


def _check_config(config: Any) -> None:
    for key, value in _flat(config).items():
        if isinstance(value, float):
            assert math.isfinite(value), key
        if isinstance(value, int):
            assert -(2**63) <= value < 2**63, key
    text = to_toml(config)
    path = Path(_CONFIG_DIR[0]) / "round-trip.toml"
    path.write_text(text)
    assert load_config(path) == config


def _flat(config: Any) -> dict[str, Any]:
    doc = to_dict(config)
    flat = {k: v for k, v in doc.items() if not isinstance(v, dict)}
    for table in ("child", "ppo"):
        flat.update({f"{table}.{k}": v for k, v in doc[table].items()})
    return flat


_CONFIG_DIR: list[Path] = []


def run_configs(n: int, directory: Path, strict: bool = True) -> Counter:
    _CONFIG_DIR[:] = [directory]
    return _run(n, lambda i: _config_case(SEED, i, directory), _read_config, _check_config, strict)


def test_fuzzed_configs_and_overrides_are_rejected_in_one_line_or_valid(tmp_path: Path) -> None:
    outcomes = run_configs(CONFIG_CASES, tmp_path)
    assert sum(outcomes.values()) == CONFIG_CASES
    for kind in ("file", "override"):
        assert outcomes[(kind, "rejected")] > 10 and outcomes[(kind, "accepted")] > 3, outcomes



# --- whole albumentations pipelines (issue #23): validated, then run as show / train run them ----


def _leaf_pool() -> list[dict[str, Any]]:
    """Transforms a user might put in a file, foreign ones included: each as A.to_dict gives it."""
    from albumentations.pytorch import ToTensorV2

    from autoaug.space.albu import ClippedCutout, Sharpness

    leaves = [
        A.HorizontalFlip(p=0.5), A.VerticalFlip(p=0.5), A.Blur(blur_limit=3, p=0.5), A.InvertImg(p=0.5),
        A.RandomBrightnessContrast(p=0.5), A.Posterize(p=0.5), A.Solarize(p=0.5), A.ToGray(p=0.5),
        A.CoarseDropout(p=0.5), A.Affine(rotate=(-30, 30), p=0.5), A.Affine(rotate=20, fit_output=True, p=0.5),
        A.Resize(20, 20, p=0.5), A.Resize(32, 32, p=0.5), A.RandomCrop(28, 28, p=0.5), A.CenterCrop(28, 28, p=0.5),
        A.LongestMaxSize(40, p=0.5), A.SmallestMaxSize(32, p=0.5), A.RandomResizedCrop(size=(32, 32), p=0.5),
        A.Pad(padding=4, p=0.5), A.Normalize(), ToTensorV2(), Sharpness(1.5, p=0.5), ClippedCutout(8, p=0.5),
        A.NoOp(),
    ]
    return [A.to_dict(t)["transform"] for t in leaves]


def _pipeline_doc(rng: random.Random) -> dict[str, Any]:
    def leaf() -> dict[str, Any]:
        return copy.deepcopy(rng.choice(_LEAVES))

    def node() -> dict[str, Any]:
        if rng.random() < 0.7:
            return leaf()
        kind = rng.choice(["OneOf", "SomeOf", "RandomOrder", "Sequential"])
        doc: dict[str, Any] = {"__class_fullname__": kind, "p": rng.choice([1.0, 0.5]),
                               "transforms": [leaf() for _ in range(rng.randrange(1, 4))]}
        if kind in ("SomeOf", "RandomOrder"):
            doc.update(n=rng.choice([-1, 0, 1, 2, 5]), replace=rng.random() < 0.2)
        return doc

    transforms = [node() for _ in range(rng.randrange(1, 4))]
    if rng.random() < 0.5:  # a train pipeline: the recipe after the policy, sometimes altered
        crop = rng.choice([32, 32, 32, 28, 40, 48])
        recipe = [A.Normalize(), A.Pad(padding=4, fill=0.0, border_mode=cv2.BORDER_CONSTANT),
                  A.RandomCrop(height=crop, width=crop), A.HorizontalFlip(p=0.5)]
        recipe = [A.to_dict(t)["transform"] for t in recipe]
        if rng.random() < 0.2:
            del recipe[rng.randrange(len(recipe))]
        transforms += recipe
        transforms.append(A.to_dict(A.pytorch.ToTensorV2())["transform"])
        if rng.random() < 0.15:  # ToTensorV2 moved up
            transforms.insert(rng.randrange(len(transforms)), transforms.pop())
    doc = {"__version__": A.__version__, "transform": {"__class_fullname__": "Compose", "p": 1.0,
                                                       "transforms": transforms}}
    if rng.random() < 0.3:
        doc = _mutate_tree(doc, rng, (2, 40, -1, 0, True, "1", 48))
    return doc


_LEAVES = _leaf_pool()


def _pipeline_case(seed: int, i: int, directory: Path) -> tuple[str, Path]:
    rng = random.Random(f"{seed}:pipeline:{i}")
    doc = _pipeline_doc(rng)
    path = directory / f"pipeline{i}.albumentations.json"
    path.write_text(json.dumps(doc))
    top = doc.get("transform") if isinstance(doc, dict) else None
    last = top.get("transforms") if isinstance(top, dict) else None
    tensors = isinstance(last, list) and last and isinstance(last[-1], dict) and \
        last[-1].get("__class_fullname__") == "ToTensorV2"
    return ("train pipeline" if tensors else "policy pipeline"), path


def _validate_pipeline(path: Path) -> Any:
    """What `autoaug validate` does to an albumentations file (at its default 32x32)."""
    from autoaug.space.albu import check_runs

    policy = resolve_policy(str(path))
    check_runs(policy.pipeline, str(path), (32, 32))
    return policy


def _check_pipeline_runs(policy: Any, images: np.ndarray) -> None:
    """An accepted file runs as `show` and `train --augment albumentations` run it: many natural
    draws (probabilities as written) give uint8 images of the input's shape, or float32 (3, H, W)
    tensors for a train pipeline."""
    from autoaug.space.albu import ends_in_tensor, seed_pipeline

    pipeline = policy.pipeline
    set_image_pool(pipeline, images)
    for draw in range(8):
        seed_pipeline(pipeline, draw)
        for image in images:
            out = pipeline(image=image)["image"]
            if ends_in_tensor(pipeline):
                assert isinstance(out, torch.Tensor) and out.dtype == torch.float32, type(out)
                assert tuple(out.shape) == (3, *image.shape[:2]), tuple(out.shape)
            else:
                assert isinstance(out, np.ndarray) and out.dtype == np.uint8 and out.shape == image.shape, \
                    f"{getattr(out, 'dtype', type(out))} {getattr(out, 'shape', '')}"
    if not ends_in_tensor(pipeline):  # what `show` calls
        x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()  # (B, C, H, W)
        out = policy(x, torch.Generator().manual_seed(0))
        assert out.shape == x.shape and out.dtype == torch.uint8


def run_pipelines(n: int, directory: Path, images: np.ndarray, strict: bool = True) -> Counter:
    return _run(n, lambda i: _pipeline_case(SEED, i, directory), _validate_pipeline,
                lambda policy: _check_pipeline_runs(policy, images), strict)


def test_fuzzed_whole_pipelines_that_validate_also_run(tmp_path: Path, cifar_images) -> None:
    outcomes = run_pipelines(PIPELINE_CASES, tmp_path, cifar_images[:4])
    assert sum(outcomes.values()) == PIPELINE_CASES
    for kind in ("policy pipeline", "train pipeline"):
        assert outcomes[(kind, "rejected")] > 10 and outcomes[(kind, "accepted")] > 5, outcomes


# --- trial stores with a value edited or damaged (issue #23) ------------------------------------

_STORE_VALUES = ("NULL", "'abc'", "''", "9e999", "-9e999", "1e308", "-1", "9223372036854775807", "0.5", "3",
                 "X'00ff'", "'[1, 2]'", "'{\"a\": 1}'", "'[1, \"a\"]'", "'null'", "'{'", "'[[[[[[[[[[1]]]]]]]]]]'",
                 "'done'", "'failed'", "'reeval'", "'reference'", "'[-1]'", "'[1e400]'", "'{\"x\": NaN}'")
_STORE_COLUMNS = ("key", "round", "slot", "tokens", "payload", "seed", "status", "reward", "error", "traceback",
                  "worker", "started", "finished", "duration", "phase", "role", "paired")


def _base_store(path: Path) -> Path:
    from autoaug.search.store import TrialSpec, TrialStore

    with TrialStore(path) as store:
        for round_ in range(2):
            specs = [TrialSpec(key=f"r{round_}s{s}", payload={"ops": [["Rotate", 0.5, s]]}, seed=7 + round_,
                               tokens=[s, s + 1, 3]) for s in range(3)]
            specs.append(TrialSpec(key="reference", payload={}, seed=7 + round_, role="reference"))
            trials = store.add_pending(round_, specs)
            for t in trials[: 3 + round_]:
                if t.slot == 1 and round_ == 1:
                    store.mark_failed(t.id, "boom", 0.1)
                else:
                    store.mark_done(t.id, 0.25 + 0.1 * t.slot, 1.0)
    return path


def _store_case(seed: int, i: int, directory: Path, base: Path) -> tuple[str, Path]:
    import shutil
    import sqlite3

    rng = random.Random(f"{seed}:store:{i}")
    path = directory / f"store{i}.sqlite"
    shutil.copy(base, path)
    if i % 10 == 9:  # the SQLite header: the write / read versions and their neighbours
        raw = bytearray(path.read_bytes())
        raw[rng.choice([16, 17, 18, 19, 20, 21, 28])] = rng.choice([0, 3, 0x7F, 0xFF])
        path.write_bytes(bytes(raw))
        return "header", path
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA ignore_check_constraints = ON")
        for _ in range(rng.choice([1, 1, 2])):
            if rng.random() < 0.1:
                conn.execute("UPDATE meta SET value = ? WHERE name = ?",
                             (rng.choice(["", "3", "x", "autoaug-trials", "99"]), rng.choice(["kind", "schema_version"])))
                continue
            column, value = rng.choice(_STORE_COLUMNS), rng.choice(_STORE_VALUES)
            try:
                conn.execute(f"UPDATE trials SET {column} = {value} WHERE id = ?", (rng.randrange(1, 9),))
            except sqlite3.DatabaseError:  # NOT NULL / UNIQUE: this edit cannot be stored; leave the row
                pass
        conn.commit()
    finally:
        conn.close()
    return "row", path


def _read_store(path: Path) -> list[Any]:
    """What a resume and an export read: every row, the best by reward and by paired reward."""
    from autoaug.search.store import TrialStore

    with TrialStore(path, read_only=True) as store:
        return [store.rows(), store.best(3), store.best(3, by="paired"), store.counts(), store.completed_count()]


def _check_trials(read: list[Any]) -> None:
    from autoaug.search.store import PHASES, ROLES, STATUSES

    rows, best, paired, counts, completed = read
    for t in rows + best + paired:
        for name in ("id", "round", "slot", "seed"):
            value = getattr(t, name)
            assert type(value) is int and 0 <= value < 2**63, (name, value)
        assert isinstance(t.key, str) and t.key and isinstance(t.payload, dict)
        assert t.tokens is None or all(type(x) is int and x >= 0 for x in t.tokens)
        assert t.status in STATUSES and t.phase in PHASES and t.role in ROLES
        for name in ("reward", "started", "finished", "duration", "paired"):
            value = getattr(t, name)
            assert value is None or (type(value) is float and math.isfinite(value)), (name, value)
        assert t.status != "done" or t.reward is not None
        for name in ("error", "traceback", "worker"):
            assert getattr(t, name) is None or isinstance(getattr(t, name), str)
    assert sorted((t.reward for t in best), reverse=True) == [t.reward for t in best]
    assert completed == counts["done"] + counts["failed"]


def run_stores(n: int, directory: Path, strict: bool = True) -> Counter:
    base = _base_store(directory / "base.sqlite")
    return _run(n, lambda i: _store_case(SEED, i, directory, base), _read_store, _check_trials, strict)


def test_fuzzed_trial_stores_are_refused_in_one_line_or_hold_valid_trials(tmp_path: Path) -> None:
    outcomes = run_stores(STORE_CASES, tmp_path)
    assert sum(outcomes.values()) == STORE_CASES
    assert outcomes[("row", "rejected")] > 30 and outcomes[("row", "accepted")] > 10, outcomes
    assert outcomes[("header", "rejected")] > 3, outcomes


# --- writing over special files (issue #23) ----------------------------------------------------

_TARGETS = ("nothing", "regular", "chardev", "fifo", "directory", "socket", "link to chardev", "dangling link",
            "link to directory", "under a file", "name too long")
_WRITE_INTO = ("chardev", "fifo", "link to chardev")
_REPLACE = ("nothing", "regular", "dangling link")


def _make_target(kind: str, directory: Path) -> Path:
    import socket

    path = directory / "out.json"
    if kind == "regular":
        path.write_text("old")
    elif kind in ("chardev", "link to chardev"):
        target = path if kind == "chardev" else directory / "device"
        try:
            os.mknod(target, 0o666 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers, made here
        except PermissionError:
            os.mkfifo(target)  # not root: a FIFO stands in for the device
        if kind == "link to chardev":
            path.symlink_to(target)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(path))
        server.close()
    elif kind == "dangling link":
        path.symlink_to(directory / "nowhere")
    elif kind == "link to directory":
        (directory / "folder").mkdir()
        path.symlink_to(directory / "folder")
    elif kind == "under a file":
        (directory / "file").write_text("x")
        path = directory / "file" / "out.json"
    elif kind == "name too long":
        path = directory / ("n" * 300 + ".json")
    return path


def _output_case(seed: int, i: int, directory: Path) -> tuple[str, Any]:
    from autoaug.files import save_json, save_text
    from autoaug.space.export import save_pipeline

    rng = random.Random(f"{seed}:output:{i}")
    kind = _TARGETS[i % len(_TARGETS)]
    folder = directory / f"out{i}"
    folder.mkdir()
    path = _make_target(kind, folder)
    writer, payload = rng.choice([
        ("save_json", {"a": list(range(rng.randrange(1, 5000)))}),
        ("save_text", "x" * rng.randrange(0, 200_000)),
        ("save_pipeline", to_albumentations(published_policy("autoaugment-cifar10"))),
    ])
    write = {"save_json": save_json, "save_text": save_text, "save_pipeline": save_pipeline}[writer]
    return kind, (kind, path, write, payload)


def _is_special(path: Path) -> bool:
    mode = path.stat().st_mode
    return stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)


def _write_output(arg: tuple) -> tuple:
    import threading

    kind, path, write, payload = arg
    received: list[bytes] = []
    reader = None
    fifo = os.path.exists(path) and stat.S_ISFIFO(os.stat(path).st_mode)  # False for a name too long
    if fifo:
        def read() -> None:
            with open(path, "rb") as handle:
                received.append(handle.read())
        reader = threading.Thread(target=read, daemon=True)
        reader.start()
    try:
        write(payload, path)
    finally:
        if reader is not None:
            if reader.is_alive() and not received:  # nothing was written: let the reader see EOF
                try:
                    os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
                except OSError:
                    pass
            reader.join(timeout=30)
    return kind, path, write, payload, received if fifo else None


def _check_output(result: tuple) -> None:
    kind, path, write, payload, received = result
    assert kind in _REPLACE + _WRITE_INTO, f"{kind} was written to without an error"
    reference = path.parent / "reference.json"
    write(payload, reference)
    if kind in _WRITE_INTO:
        assert _is_special(path), f"the {kind} was replaced by a regular file"
        if received is not None:
            assert received == [reference.read_bytes()], "the FIFO's reader got other bytes"
    else:
        assert path.is_file() and path.read_bytes() == reference.read_bytes()


def run_outputs(n: int, directory: Path, strict: bool = True) -> Counter:
    return _run(n, lambda i: _output_case(SEED, i, directory), _write_output, _check_output, strict)


def test_fuzzed_outputs_never_replace_a_special_file(tmp_path: Path) -> None:
    outcomes = run_outputs(OUTPUT_CASES, tmp_path)
    assert sum(outcomes.values()) == OUTPUT_CASES
    for kind in _TARGETS:  # each target reaches the outcome it must
        assert outcomes[(kind, "accepted" if kind in _REPLACE + _WRITE_INTO else "rejected")] >= 3, outcomes
