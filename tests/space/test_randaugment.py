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
import random
from collections import Counter
from pathlib import Path

import albumentations as A
import numpy as np
import pytest
import torch

from autoaug.errors import ConfigError, PolicyError
from autoaug.space.ops import MAGNITUDE_BINS, OP_NAMES, OPS, OPS_BY_NAME, OpContext
from autoaug.space.specs import load_policy, policy_from_json
from autoaug.space.randaugment import (
    DEFAULT_OPS,
    IDENTITY,
    M_MAX,
    PAPER_OPS,
    AdaptiveRandAugment,
    RandAugment,
    TrivialAugment,
    adapt_magnitude,
    magnitude_at,
    parse_spec,
)
from tests.space.test_parity import MAX_ABS_DIFF, MAX_MEAN_DIFF, SAME_KERNEL  # the per-op tolerances

ROOT = Path(__file__).resolve().parents[2]


def _albumentations(aug, seed: int = 0) -> A.Compose:
    """The export with one shared random stream.

    Not `Compose(seed=...)`: albumentations 2.0.8 then seeds every nested transform with the same
    number, so RandAugment's N `OneOf`s would all draw the same op.
    """
    pipeline = A.Compose(aug.to_albumentations_transforms(), save_applied_params=True)
    pipeline.set_random_state(np.random.default_rng(seed), random.Random(seed))
    return pipeline


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


@pytest.mark.parametrize("name", [name for name in PIXEL_CANDIDATES if name not in SAME_KERNEL])
@pytest.mark.parametrize("m", [4.5, 9, 17, 30])
def test_pixel_parity_at_randaugment_magnitudes(name, m, cifar_images, cifar_batch):
    _check_randaugment_parity(name, m, cifar_images, cifar_batch)


@pytest.mark.parametrize("name", [name for name in PIXEL_CANDIDATES if name in SAME_KERNEL])
@pytest.mark.parametrize("m", [4.5, 9, 17, 30])
def test_same_kernel_in_its_albumentations_wrapper_at_randaugment_magnitudes(name, m, cifar_images, cifar_batch):
    _check_randaugment_parity(name, m, cifar_images, cifar_batch)


def _check_randaugment_parity(name, m, cifar_images, cifar_batch) -> None:
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
    assert draws.fire.all()  # Identity is a row of the op table: applied, it leaves the image alone
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
    from autoaug.space.augment import apply_ops

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
        from autoaug.space.albu import set_image_pool

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

    from autoaug.training.config import TrainConfig
    from autoaug.training.loop import train_model

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
