"""RandAugment, TrivialAugment, adaptive M, the grid search and top-k ensembles (issue #5).

Parity: at RandAugment magnitudes (fractional ones included) each candidate's torch execution and
its albumentations export give the same image within the lead's per-op tolerances, and both
executions draw candidates uniformly and apply exactly N (TrivialAugment: 1) ops per image.
The adaptive-M rule is checked on a hand-made accuracy sequence; the grid resumes after an
interruption (stub evaluation, same code path) and after a SIGKILL of the real CLI.
"""

from __future__ import annotations

import json
import math
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch

from autoaug.errors import AutoaugError, ConfigError, DataError, PolicyError
from autoaug.ops import MAGNITUDE_BINS, OP_NAMES, OPS, OPS_BY_NAME, OpContext
from autoaug.policy import load_policy, policy_from_json
from autoaug.randaugment import (
    DEFAULT_OPS,
    IDENTITY,
    M_MAX,
    PAPER_OPS,
    AdaptiveRandAugment,
    GridSpec,
    RandAugment,
    TrivialAugment,
    adapt_magnitude,
    magnitude_at,
    parse_spec,
    run_grid,
)
from test_parity import MAX_ABS_DIFF, MAX_MEAN_DIFF  # the lead's per-op tolerances

ROOT = Path(__file__).resolve().parents[1]


def _albumentations(aug, seed: int = 0) -> A.Compose:
    """The export with one shared random stream.

    Not `Compose(seed=...)`: albumentations 2.0.8 then seeds every nested transform with the same
    number, so RandAugment's N `OneOf`s would all draw the same op.
    """
    pipeline = A.Compose(aug.to_albumentations_transforms(), save_applied_params=True)
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline


@pytest.fixture
def one_thread():
    # tiny models on a loaded 2-core machine run many times faster on one thread
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ---- the magnitude scale and the candidates ------------------------------------------------


@pytest.mark.parametrize("op", [op for op in OPS if op.has_magnitude], ids=lambda op: op.name)
def test_m_scale_spans_the_table_range(op):
    assert magnitude_at(op.name, 0) == pytest.approx(op.magnitude(0))
    assert magnitude_at(op.name, M_MAX) == pytest.approx(op.magnitude(MAGNITUDE_BINS - 1))  # M=30 is bin 9
    mid = op.low + (op.high - op.low) * 9 / 30
    assert magnitude_at(op.name, 9) == pytest.approx(round(mid) if op.integer else mid)


def test_default_candidates_are_the_table_minus_invert_and_sample_pairing():
    assert len(DEFAULT_OPS) == 14
    assert set(DEFAULT_OPS) == set(OP_NAMES) - {"Invert", "SamplePairing"}
    assert len(PAPER_OPS) == 14 and IDENTITY in PAPER_OPS and "Cutout" not in PAPER_OPS
    assert RandAugment().ops == DEFAULT_OPS and TrivialAugment().ops == DEFAULT_OPS
    assert (RandAugment().n, RandAugment().m) == (2, 9.0)


# ---- parity (a): per candidate, torch vs albumentations at magnitude M ----------------------

PIXEL_CANDIDATES = [name for name in OP_NAMES if name not in ("Cutout", "SamplePairing")]


@pytest.mark.parametrize("name", PIXEL_CANDIDATES)
@pytest.mark.parametrize("m", [4.5, 9, 17, 30])
def test_pixel_parity_at_randaugment_magnitudes(name, m, cifar_images, cifar_batch):
    aug = RandAugment(1, m, (name,))
    n = len(cifar_images)
    spec = OPS_BY_NAME[name]
    magnitude = magnitude_at(name, m)
    ctx = OpContext(torch.Generator(), cifar_batch, torch.arange(n))
    signs = (1, -1) if spec.signed and magnitude else (1,)
    # the kernel at each sign: the only images either execution may produce
    refs = [spec.kernel(cifar_batch.clone(), torch.full((n,), s * magnitude), ctx).permute(0, 2, 3, 1).numpy().astype(int)
            for s in signs]
    ours = aug(cifar_batch, torch.Generator().manual_seed(1)).permute(0, 2, 3, 1).numpy().astype(int)
    pipeline = _albumentations(aug, seed=1)
    theirs = np.stack([pipeline(image=img)["image"] for img in cifar_images]).astype(int)
    used = Counter()
    for i in range(n):
        assert any(np.array_equal(ours[i], ref[i]) for ref in refs), f"{name} M={m}: torch image {i}"
        diffs = [np.abs(theirs[i] - ref[i]) for ref in refs]
        k = int(np.argmin([d.max() + d.mean() for d in diffs]))
        used[k] += 1
        assert diffs[k].max() <= MAX_ABS_DIFF.get(name, 0), f"{name} M={m} image {i}: max diff {diffs[k].max()}"
        assert diffs[k].mean() <= MAX_MEAN_DIFF
    if len(signs) == 2:
        assert used[0] and used[1], "the export never drew one of the signs"


@pytest.mark.parametrize("m", [6, 12.5, 30])
def test_cutout_parity_is_structural(m, cifar_images, cifar_batch):
    # the hole is random in both executions: compare its size, not its place
    side = int(magnitude_at("Cutout", m) * 32)
    aug = RandAugment(1, m, ("Cutout",))
    ours = aug(cifar_batch, torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).numpy()
    pipeline = _albumentations(aug)
    theirs = np.stack([pipeline(image=img)["image"] for img in cifar_images])
    for out in (ours, theirs):
        grey = (out == 128).all(axis=-1) & (out != cifar_images).any(axis=-1)  # (N, H, W)
        changed = (out != cifar_images).any(axis=-1)
        assert np.array_equal(grey, changed)
        for img_changed in changed:
            ys, xs = np.nonzero(img_changed)
            assert np.ptp(ys) < side and np.ptp(xs) < side
        assert np.median(changed.sum(axis=(1, 2))) > 0.5 * side * side


# ---- parity (b): uniform candidates, exactly N ops per image -------------------------------

# candidates whose albumentations transforms have distinct class names, so the applied list names them
DISTINCT = ("Rotate", "AutoContrast", "Equalize", "Solarize", "Posterize", "Sharpness", "Cutout", "Brightness", IDENTITY)
CLASS_OF = {"Rotate": "Affine", "AutoContrast": "AutoContrast", "Equalize": "Equalize", "Solarize": "Solarize",
            "Posterize": "Posterize", "Sharpness": "Sharpness", "Cutout": "CoarseDropout",
            "Brightness": "ColorJitter", IDENTITY: "NoOp"}


def _assert_uniform(counts: Counter, total: int, k: int, where: str) -> None:
    p = 1 / k
    sigma = math.sqrt(total * p * (1 - p))
    assert len(counts) == k, f"{where}: drew {sorted(counts)}"
    for key, count in counts.items():
        assert abs(count - total * p) <= 4.5 * sigma, f"{where}: {key} drawn {count} times, expected {total * p:.0f}"


@pytest.mark.parametrize("n", [1, 2, 3])
def test_both_executions_draw_n_uniform_ops_per_image(n):
    aug = RandAugment(n, 9, DISTINCT)
    images = 3000
    draws = aug.sample(images, torch.Generator().manual_seed(n))
    assert draws.op_ids.shape == (images, n)
    assert torch.equal(draws.fire, torch.tensor([name != IDENTITY for name in DISTINCT])[draws.candidates])
    _assert_uniform(Counter(DISTINCT[c] for c in draws.candidates.flatten().tolist()), images * n, len(DISTINCT), "torch")
    pipeline = _albumentations(aug, seed=n)
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    applied = [[name for name, _ in pipeline(image=img)["applied_transforms"]] for _ in range(images)]
    assert all(len(names) == n for names in applied)
    by_class = {v: k for k, v in CLASS_OF.items()}
    _assert_uniform(Counter(by_class[c] for names in applied for c in names), images * n, len(DISTINCT), "albumentations")
    if n > 1:  # the N slots are independent draws: the same op twice about 1/K of the time
        same = sum(len(set(names)) == 1 for names in applied) / images
        assert abs(same - (1 / len(DISTINCT)) ** (n - 1)) < 0.03


@pytest.mark.parametrize("n, inverted", [(1, True), (2, False), (3, True)])
def test_exactly_n_ops_reach_the_pixels(n, inverted, cifar_images, cifar_batch):
    # with Invert as the only candidate, an image is inverted iff an odd number of ops ran
    aug = RandAugment(n, 9, ("Invert",))
    expected = 255 - cifar_images if inverted else cifar_images
    ours = aug(cifar_batch, torch.Generator().manual_seed(0)).permute(0, 2, 3, 1).numpy()
    pipeline = _albumentations(aug)
    theirs = np.stack([pipeline(image=img)["image"] for img in cifar_images])
    assert np.array_equal(ours, expected) and np.array_equal(theirs, expected)
    ta = TrivialAugment(("Invert",))
    assert np.array_equal(ta(cifar_batch, torch.Generator()).permute(0, 2, 3, 1).numpy(), 255 - cifar_images)
    assert np.array_equal(_albumentations(ta)(image=cifar_images[0])["image"], 255 - cifar_images[0])


def test_identity_candidate_leaves_images_alone(cifar_batch):
    out = RandAugment(3, 30, (IDENTITY,))(cifar_batch, torch.Generator())
    assert torch.equal(out, cifar_batch)


def test_signs_are_drawn_half_the_time():
    draws = RandAugment(2, 12, ("Rotate",)).sample(4000, torch.Generator().manual_seed(0))
    assert set(draws.magnitudes.unique().tolist()) == {-12.0, 12.0}
    assert abs((draws.magnitudes > 0).float().mean().item() - 0.5) < 4 * math.sqrt(0.25 / 8000)


def test_trivialaugment_draws_one_op_and_uniform_bins_in_both_executions():
    images = 3000
    # some bins of Solarize, Posterize and Cutout export as NoOp, which would read as Identity
    candidates = ("Rotate", "AutoContrast", "Equalize", "Sharpness", "Brightness", IDENTITY)
    ta = TrivialAugment(candidates)
    draws = ta.sample(images, torch.Generator().manual_seed(0))
    assert draws.op_ids.shape == (images, 1)
    _assert_uniform(Counter(candidates[c] for c in draws.candidates.flatten().tolist()), images, len(candidates), "torch TA")
    pipeline = _albumentations(ta)
    img = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    applied = [pipeline(image=img)["applied_transforms"] for _ in range(images)]
    assert all(len(a) == 1 for a in applied)
    by_class = {v: k for k, v in CLASS_OF.items()}
    _assert_uniform(Counter(by_class[a[0][0]] for a in applied), images, len(candidates), "albumentations TA")
    # magnitudes: uniform over the 10 bins of the table, in both executions
    bins = [OPS_BY_NAME["Rotate"].magnitude(b) for b in range(MAGNITUDE_BINS)]
    rot = TrivialAugment(("Rotate",))
    torch_angles = rot.sample(images, torch.Generator().manual_seed(1)).magnitudes.abs().flatten().tolist()
    pipeline = _albumentations(rot, seed=1)
    albu_angles = [abs(pipeline(image=img)["applied_transforms"][0][1]["rotate"]) for _ in range(images)]
    for angles, where in ((torch_angles, "torch"), (albu_angles, "albumentations")):
        nearest = Counter(int(np.argmin([abs(a - b) for b in bins])) for a in angles)
        assert all(min(abs(a - b) for b in bins) < 1e-4 for a in angles)
        _assert_uniform(nearest, images, MAGNITUDE_BINS, f"{where} bins")


def test_same_seed_same_pixels(cifar_batch):
    for aug in (RandAugment(2, 9), TrivialAugment()):
        a = aug(cifar_batch, torch.Generator().manual_seed(3))
        b = aug(cifar_batch, torch.Generator().manual_seed(3))
        c = aug(cifar_batch, torch.Generator().manual_seed(4))
        assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_execution_matches_cpu(cifar_batch):
    from autoaug.augment import apply_ops

    ops = tuple(name for name in DEFAULT_OPS if name != "Cutout")  # Cutout's hole follows the generator's device
    x = cifar_batch.repeat(4, 1, 1, 1)  # (256, 3, 32, 32)
    report = {}
    for aug in (TrivialAugment(ops), RandAugment(1, 12, ops), RandAugment(3, 12, ops)):
        out = aug(x.cuda(), torch.Generator(device="cuda").manual_seed(0))
        assert out.device.type == "cuda" and out.dtype == torch.uint8
        assert torch.equal(out, aug(x.cuda(), torch.Generator(device="cuda").manual_seed(0)))  # same seed
        d = aug.sample(len(x), torch.Generator(device="cuda").manual_seed(0))  # the same draws
        ref = apply_ops(x, d.op_ids, d.magnitudes, d.fire, torch.Generator())
        diff = (out.cpu().int() - ref.int()).abs().amax(dim=1)  # (B, H, W)
        per_op = {}
        for k, name in enumerate(ops):
            rows = (d.candidates == k).any(dim=1)
            if rows.any():
                per_op[name] = (int(diff[rows].max()), round(float((diff[rows] > 0).float().mean()), 4))
        report[repr(aug)[:40]] = per_op
        frac = float((diff > 0).float().mean())
        if isinstance(aug, TrivialAugment) or aug.n == 1:
            # one op: bilinear warps and float blends may round the other way on the GPU
            assert int(diff.max()) <= 1 and frac < 0.01, report
        else:
            # a chain amplifies a one-level difference (Solarize or Posterize thresholds, Equalize's
            # lookup), so only the share of differing pixels is bounded
            assert frac < 0.01, report


# ---- native JSON, specs, the policy commands --------------------------------------------------


def test_json_round_trip_and_file_loading(tmp_path):
    ra = RandAugment(3, 7.25, ("Rotate", IDENTITY, "Solarize"), {"source": "test"})
    assert policy_from_json(json.loads(json.dumps(ra.to_json()))) == ra
    ta = TrivialAugment(("ShearX", "Color"))
    assert policy_from_json(ta.to_json()) == ta
    ra.save(tmp_path / "ra.json")
    loaded = load_policy(tmp_path / "ra.json")
    assert isinstance(loaded, RandAugment) and loaded.m == 7.25 and loaded.provenance == {"source": "test"}
    assert RandAugment(2, 9).to_json()["m"] == 9  # whole numbers stay whole in the file


@pytest.mark.parametrize("change, message", [
    ({"n": 0}, "n: expected N"),
    ({"n": 1.5}, "n: expected N"),
    ({"n": True}, "n: expected N"),
    ({"m": 30.5}, r"m: expected M, a number in \[0, 30\], got 30.5"),  # never clamped
    ({"m": -1}, "m: expected M"),
    ({"m": "9"}, "m: expected M"),
    ({"ops": ["Rotate", "Spin"]}, r"ops\[1\]: unknown op 'Spin'; expected one of ShearX, .*Identity"),
    ({"ops": ["Rotate", "Rotate"]}, "each op at most once, got Rotate"),
    ({"ops": []}, "expected a non-empty list"),
    ({"ops": "Rotate"}, "expected a non-empty list"),
    ({"extra": 1}, r"unknown keys \['extra'\]"),
    ({"version": 2}, "expected \"version\": 1, got 2"),
    ({"provenance": []}, "provenance: expected an object"),
])
def test_bad_documents_name_file_place_and_expectation(change, message, tmp_path):
    doc = {**RandAugment(2, 9).to_json(), **change}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(PolicyError, match=message) as err:
        load_policy(path)
    assert str(path) in str(err.value)


def test_missing_n_or_m_is_an_error():
    doc = RandAugment().to_json()
    del doc["m"]
    with pytest.raises(PolicyError, match='missing "m"'):
        policy_from_json(doc, "x.json")


def test_specs():
    assert parse_spec("randaugment") == RandAugment(2, 9)
    assert parse_spec("randaugment:N=3,M=5.5") == RandAugment(3, 5.5)
    assert parse_spec("RandAugment:m=4,n=1,ops=Rotate+Identity") == RandAugment(1, 4, ("Rotate", IDENTITY))
    assert parse_spec("trivialaugment") == TrivialAugment()
    assert parse_spec("trivialaugment:ops=Color+Equalize") == TrivialAugment(("Color", "Equalize"))
    for bad, message in (("randaugment:N=2,M=31", "expected M"), ("randaugment:N=two", "N an integer"),
                         ("randaugment:K=2", "key out of N, M, ops"), ("trivialaugment:M=3", "key out of ops"),
                         ("randaugment:ops=Spin", "unknown op 'Spin'"), ("randomaugment", "expected randaugment")):
        with pytest.raises(PolicyError, match=message):
            parse_spec(bad)


def test_validate_show_and_export_commands(tmp_path, capsys):
    from autoaug.cli import main

    for aug, name in ((RandAugment(2, 9, ("Rotate", "SamplePairing")), "ra"), (TrivialAugment(), "ta")):
        native = aug.save(tmp_path / f"{name}.json")
        assert main(["validate", str(native)]) == 0
        assert main(["show", str(native), "--out", str(tmp_path / f"{name}.png"), "--samples", "4"]) == 0
        assert (tmp_path / f"{name}.png").stat().st_size > 0
        exported = tmp_path / f"{name}.albumentations.json"
        assert main(["export-albumentations", str(native), "--out", str(exported)]) == 0
        loaded = A.load(str(exported), data_format="json")
        from autoaug.albu import set_image_pool

        pool = np.random.default_rng(0).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
        set_image_pool(loaded, pool)
        assert loaded(image=pool[0])["image"].shape == (32, 32, 3)
    out = capsys.readouterr().out
    assert "RandAugment: N=2 ops per image at M=9" in out and "TrivialAugment: 1 op per image" in out


# ---- adaptive magnitude ----------------------------------------------------------------------


def test_adaptive_rule_on_a_hand_made_accuracy_sequence():
    # (val acc, M after the epoch) with M0 = 5, step = 30, m_max = 30
    sequence = [
        (0.50, 5.0),    # first epoch: nothing to compare with
        (0.60, 5.0),    # a new best
        (0.55, 7.5),    # 5 + 30 * (0.60 - 0.55) / 0.60
        (0.62, 7.5),    # a new best
        (0.62, 7.5),    # equal to the best is not below it
        (0.31, 22.5),   # 7.5 + 30 * 0.31 / 0.62
        (0.70, 22.5),
        (0.35, 30.0),   # 22.5 + 15 = 37.5, capped at the top bin
        (0.10, 30.0),   # stays at the cap
    ]
    aug = AdaptiveRandAugment(RandAugment(2, 5), step=30)
    m, best = 5.0, None
    for epoch, (acc, expected) in enumerate(sequence):
        m = adapt_magnitude(m, acc, best, 30.0)
        best = acc if best is None else max(best, acc)
        aug.on_epoch_end(epoch, acc)
        assert m == pytest.approx(expected), f"epoch {epoch}"
        assert aug.m == pytest.approx(expected)
    assert [h.m_before for h in aug.history][:4] == pytest.approx([5, 5, 5, 7.5])
    final = aug.final_policy()
    assert final.m == 30 and final.n == 2 and final.to_json()["m"] == 30
    record = final.provenance["adaptive_m"]
    assert record["m_start"] == 5 and record["m_final"] == 30 and len(record["epochs"]) == len(sequence)
    assert adapt_magnitude(3.0, 0.5, 0.6, 6.0, m_max=3.5) == 3.5  # a lower ceiling is honoured
    assert adapt_magnitude(3.0, 0.5, 0.6, 0.0) == 3.0  # step 0 is fixed M


def test_adaptive_bad_settings():
    with pytest.raises(ConfigError, match="step must be a number >= 0"):
        AdaptiveRandAugment(RandAugment(), step=-1)
    with pytest.raises(ConfigError, match="above m_max"):
        AdaptiveRandAugment(RandAugment(2, 20), m_max=10)


def test_adaptive_m_in_training_logs_to_tensorboard(tmp_path, tiny_data, one_thread):
    from torch.utils.tensorboard import SummaryWriter
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from autoaug.train import TrainConfig, train_model

    writer = SummaryWriter(str(tmp_path / "tb"))
    aug = AdaptiveRandAugment(RandAugment(2, 5), step=30, logger=writer)
    config = TrainConfig.for_model("tiny", epochs=4, batch_size=16, device="cpu")
    _, history = train_model(aug, tiny_data, config, 0, on_epoch_end=aug.on_epoch_end, logger=writer)
    writer.close()
    assert [h.val_acc for h in aug.history] == [h.val_acc for h in history]
    # replay the rule on the accuracies the training produced
    m, best = 5.0, None
    for h in aug.history:
        assert h.m_before == pytest.approx(m)
        m = adapt_magnitude(m, h.val_acc, best, 30.0)
        best = h.val_acc if best is None else max(best, h.val_acc)
    assert aug.m == pytest.approx(m)
    events = EventAccumulator(str(tmp_path / "tb"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("augment/magnitude")]
    assert [s for s, _ in logged] == list(range(5))
    assert [v for _, v in logged] == pytest.approx([5.0] + [h.m_after for h in aug.history])


def test_train_cli_adaptive_m_writes_the_final_m(tmp_path, tiny_npz, one_thread, capsys):
    from autoaug.cli import main

    out = tmp_path / "train"
    assert main(["train", "--policy", "randaugment:N=2,M=5", "--adaptive-m", "--adaptive-step", "60",
                 "--dataset", f"npz:{tiny_npz}", "--epochs", "5", "--device", "cpu", "--out", str(out)]) == 0
    policy = load_policy(out / "seed-0" / "policy.json")
    epochs = policy.provenance["adaptive_m"]["epochs"]
    m, best = 5.0, None
    for e in epochs:
        m = adapt_magnitude(m, e["val_acc"], best, 60.0)
        best = e["val_acc"] if best is None else max(best, e["val_acc"])
    assert isinstance(policy, RandAugment) and len(epochs) == 5 and policy.m == pytest.approx(m)
    results = json.loads((out / "results.json").read_text())
    assert results["seeds"][0]["final_m"] == pytest.approx(m)
    assert A.load(str(out / "seed-0" / "policy.albumentations.json"), data_format="json") is not None
    assert main(["train", "--policy", "trivialaugment", "--adaptive-m", "--dataset", f"npz:{tiny_npz}",
                 "--out", str(tmp_path / "ta")]) == 2
    assert "--adaptive-m needs a RandAugment policy" in capsys.readouterr().err


# ---- grid search -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory) -> Path:
    """36 train / 36 val / 36 test 16x16 crops of 3 CIFAR classes: a child trains in a blink."""
    from autoaug.data import load

    x, y = load("cifar10-reduced", "train")
    idx = np.concatenate([np.where(y == c)[0][:12] for c in range(3)])
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, x=x[idx, :16, :16], y=y[idx], x_val=x[idx, 16:, 16:], y_val=y[idx],
             x_test=x[idx, :16, 16:], y_test=y[idx])
    return path


@pytest.fixture(scope="module")
def tiny_data(tiny_npz):
    from autoaug.data import load_splits
    from autoaug.train import prepare

    return prepare(load_splits(f"npz:{tiny_npz}"), "cpu")


def _stub_reward(payload, seed, device) -> float:
    """A grid evaluation without training: a known reward per (N, M, seed), best at N=2, M=6."""
    return 0.5 - 0.01 * abs(payload["n"] - 2) - 0.002 * abs(payload["m"] - 6) + 0.0001 * seed


class _Interrupt:
    """Evaluates like `_stub_reward` and raises KeyboardInterrupt at call number `stop_at`."""

    def __init__(self, stop_at: int | None = None, fail_key: str | None = None):
        self.calls: list[tuple[str, int]] = []
        self.stop_at = stop_at
        self.fail_key = fail_key

    def __call__(self, payload, seed, device):
        key = f"N={payload['n']},M={payload['m']:g}"
        self.calls.append((key, seed))
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        if key == self.fail_key:
            raise ValueError("diverged")
        return _stub_reward(payload, seed, device)


def _grid(**kw) -> GridSpec:
    from autoaug.train import TrainConfig

    base = dict(dataset="cifar10-reduced", ns=(1, 2, 3), ms=(3, 6, 9), seeds=2, save_outputs=False,
                train=TrainConfig.for_model("tiny", epochs=1))
    return GridSpec(**{**base, **kw})


def _rows(out: Path) -> list[tuple]:
    with sqlite3.connect(out / "trials.sqlite") as conn:
        return conn.execute("SELECT id, key, seed, status, reward, finished FROM trials ORDER BY id").fetchall()


def test_grid_resumes_without_retraining_and_grows(tmp_path):
    out = tmp_path / "grid"
    first = _Interrupt(stop_at=7)
    with pytest.raises(KeyboardInterrupt):
        run_grid(_grid(), out, backend="inline", fn=first, progress=False)
    before = {r[0]: r for r in _rows(out)}
    assert len(before) == 18 and sum(r[3] == "done" for r in before.values()) == 6
    assert sum(r[3] == "running" for r in before.values()) == 1  # the one the interrupt hit

    second = _Interrupt()
    result = run_grid(_grid(), out, backend="inline", fn=second, progress=False)
    assert len(second.calls) == 12 and result.evaluated == 12  # 18 - 6 finished
    assert not set(second.calls) & set(first.calls[:6])
    after = {r[0]: r for r in _rows(out)}
    assert len(after) == 18 and all(r[3] == "done" for r in after.values())
    for trial_id, row in before.items():
        if row[3] == "done":
            assert after[trial_id] == row  # untouched: same reward, same finish time
    assert (result.best.n, result.best.m) == (2, 6)
    assert result.best.val_accs == pytest.approx([0.5, 0.5001])

    third = _Interrupt()
    again = run_grid(_grid(), out, backend="inline", fn=third, progress=False)
    assert third.calls == [] and again.evaluated == 0

    grown = _Interrupt()
    result = run_grid(_grid(ms=(3, 6, 9, 12), seeds=3), out, backend="inline", fn=grown, progress=False)
    assert len(grown.calls) == 3 * 4 * 3 - 18 and len(_rows(out)) == 36

    with pytest.raises(AutoaugError, match="started with another dataset"):
        run_grid(_grid(dataset="cifar10:/elsewhere"), out, backend="inline", fn=_Interrupt(), progress=False)
    with pytest.raises(AutoaugError, match="started with another ops"):
        run_grid(_grid(ops=("Rotate",)), out, backend="inline", fn=_Interrupt(), progress=False)


def test_grid_outputs_and_failed_points(tmp_path):
    out = tmp_path / "grid"
    run = _Interrupt(fail_key="N=1,M=3")
    result = run_grid(_grid(ns=(1, 2), ms=(3, 6)), out, backend="inline", fn=run, progress=False)
    table = (out / "grid.md").read_text()
    assert "| 1 | failed | " in table and "Best: N=2, M=6" in table
    doc = json.loads((out / "grid.json").read_text())
    assert doc["best"]["n"] == 2 and doc["best"]["m"] == 6
    point = next(p for p in doc["points"] if (p["n"], p["m"]) == (2, 3))
    assert point["val_acc"] == pytest.approx([_stub_reward({"n": 2, "m": 3}, s, "") for s in (0, 1)])
    best = load_policy(out / "best.json")
    assert isinstance(best, RandAugment) and (best.n, best.m) == (2, 6)
    assert best.provenance["val_acc_mean"] == pytest.approx(result.best.val_mean)
    pipeline = A.load(str(out / "best.albumentations.json"), data_format="json")
    assert len(pipeline.transforms) == 2  # N = 2 OneOfs

    again = _Interrupt(fail_key="N=1,M=3")
    run_grid(_grid(ns=(1, 2), ms=(3, 6)), out, backend="inline", fn=again, progress=False)
    assert again.calls == []  # failed stays failed
    retry = _Interrupt()
    result = run_grid(_grid(ns=(1, 2), ms=(3, 6)), out, backend="inline", fn=retry, progress=False, retry_failed=True)
    assert sorted(retry.calls) == [("N=1,M=3", 0), ("N=1,M=3", 1)]
    assert all(not p.failed for p in result.points)


def test_every_point_failing_is_a_clear_error(tmp_path):
    def broken(payload, seed, device):
        raise RuntimeError("out of memory")

    with pytest.raises(AutoaugError, match="every child of the grid failed.*out of memory"):
        run_grid(_grid(ns=(1,), ms=(3,)), tmp_path, backend="inline", fn=broken, progress=False)


def test_grid_runs_on_worker_processes(tmp_path):
    result = run_grid(_grid(ns=(1, 2), ms=(6,), seeds=1), tmp_path, backend="process",
                      devices=["cpu"], fn=_stub_reward, progress=False)
    assert [p.val_accs for p in result.points] == [(0.49,), (0.5,)]
    assert all(r[3] == "done" and r[5] is not None for r in _rows(tmp_path))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "autoaug", *args]


def test_grid_cli_killed_mid_run_resumes_then_ensembles(tmp_path, tiny_npz, capsys):
    out = tmp_path / "grid"
    args = ["randaugment", "--dataset", f"npz:{tiny_npz}", "--n", "1,2", "--m", "3,9,15", "--epochs", "2",
            "--set", "batch_size=12", "--backend", "inline", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.Popen(_cli(*args), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        done = 0
        while done < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
            if (out / "trials.sqlite").exists():
                try:
                    done = sum(r[3] == "done" for r in _rows(out))
                except sqlite3.OperationalError:
                    done = 0  # the schema is being created
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    killed = _rows(out)
    finished = {r[0]: r for r in killed if r[3] == "done"}
    assert 2 <= len(finished) < 6

    run = subprocess.run(_cli(*args), cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"trained {6 - len(finished)} of 6 children now" in run.stdout
    rows = _rows(out)
    assert len(rows) == 6 and all(r[3] == "done" for r in rows)
    for row in rows:
        if row[0] in finished:
            assert row == finished[row[0]]
    assert len(list((out / "models").glob("*/outputs.json"))) == 6

    from autoaug.cli import main

    capsys.readouterr()
    assert main(["ensemble", str(out), "--top", "3", "--out", str(tmp_path / "ens.json")]) == 0
    assert "ensemble of the top 3" in capsys.readouterr().out
    doc = json.loads((tmp_path / "ens.json").read_text())
    vals = sorted((json.loads(p.read_text())["val_acc"] for p in (out / "models").glob("*/outputs.json")), reverse=True)
    assert [m["val_acc"] for m in doc["members"]] == vals[:3]

    assert main([*args, "--ops", "Rotate"]) == 2
    err = capsys.readouterr().err
    assert "started with another ops" in err and len(err.strip().splitlines()) == 1


# ---- ensembles -------------------------------------------------------------------------------


def _member(directory: Path, val_acc: float, proba: np.ndarray, labels: np.ndarray) -> None:
    from autoaug.ensemble import save_outputs

    save_outputs(directory, val_acc=val_acc, test_proba=proba, test_labels=labels, seed=0)


def test_top_k_ensemble_averages_the_best_by_validation(tmp_path):
    from autoaug.ensemble import find_members, top_k_ensemble

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
    from autoaug.ensemble import find_members, top_k_ensemble

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
