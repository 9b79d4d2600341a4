"""Policy format: tokens <-> policy, native JSON round trips, and every bad file is one clear error."""

from __future__ import annotations

import json

import gymnasium
import numpy as np
import pytest
import torch

from autoaug.errors import PolicyError
from autoaug.space.export import to_albumentations
from autoaug.space.ops import TABLE, OpContext
from autoaug.space.policy import SEARCH_NVEC, Operation, Policy, apply_policies, published_policy
from autoaug.space.specs import load_policy


def test_search_space_is_multidiscrete_16_11_10_times_10():
    assert SEARCH_NVEC == (16, 11, 10) * 10


def test_tokens_round_trip_random_actions():
    space = gymnasium.spaces.MultiDiscrete(np.array(SEARCH_NVEC))
    space.seed(0)
    for _ in range(200):
        tokens = space.sample().tolist()
        policy = Policy.from_tokens(tokens)
        assert len(policy.sub_policies) == 5 and all(len(s) == 2 for s in policy.sub_policies)
        assert policy.to_tokens() == tokens


def test_tokens_decode_to_names_and_physical_probabilities():
    policy = Policy.from_tokens([4, 7, 3, 6, 10, 0] * 5)
    rotate, invert = policy.sub_policies[0]
    assert (rotate.name, rotate.prob, rotate.magnitude_bin) == ("Rotate", 0.7, 3)
    assert rotate.magnitude_in("paper") == pytest.approx(10.0)
    assert (invert.name, invert.prob) == ("Invert", 1.0)


@pytest.mark.parametrize("tokens, message", [
    ([0] * 29, "multiple of 6"),
    ([16, 0, 0, 0, 0, 0], "op id in 0..15, got 16"),
    ([0, 11, 0, 0, 0, 0], "prob bin in 0..10, got 11"),
    ([0, 0, 10, 0, 0, 0], "magnitude bin in 0..9, got 10"),
])
def test_bad_tokens(tokens, message):
    with pytest.raises(PolicyError, match=message):
        Policy.from_tokens(tokens)


def test_json_round_trip_keeps_names_probabilities_and_provenance(tmp_path):
    policy = published_policy("autoaugment-cifar10")
    path = policy.save(tmp_path / "p.json")
    doc = json.loads(path.read_text())
    assert doc["sub_policies"][0][0] == {"op": "Invert", "prob": 0.1, "magnitude_bin": None}
    again = load_policy(path)
    assert again == policy
    assert again.provenance["source"].startswith("autoaugment-cifar10")


def test_range_reading_is_kept_in_files_and_changes_only_translate(tmp_path, cifar_batch):
    subs = ((Operation("TranslateX", 1.0, 9), Operation("Rotate", 1.0, 9)),)
    paper, reference = Policy(subs), Policy(subs, range_reading="reference")
    assert paper.range_reading == "paper" and paper != reference
    assert load_policy(reference.save(tmp_path / "r.json")) == reference
    doc = json.loads((tmp_path / "r.json").read_text())
    del doc["range_reading"]  # files written before the reading existed mean "paper"
    assert Policy.from_json(doc) == paper
    translate, rotate = subs[0]
    assert paper.magnitude(translate) == pytest.approx(150 / 331)
    assert reference.magnitude(translate) == pytest.approx(10 / 32)
    assert paper.magnitude(rotate) == reference.magnitude(rotate) == 30
    # both executions shift by 10 px of 32 under "reference" (by 15 px under "paper")
    for policy, px in ((Policy(((translate,),), range_reading="reference"), 10), (Policy(((translate,),)), 15)):
        x = cifar_batch[:16]
        ours = policy(x, torch.Generator().manual_seed(0)).numpy()
        pipeline = to_albumentations(policy, seed=0)
        theirs = np.stack([pipeline(image=img)["image"] for img in x.permute(0, 2, 3, 1).numpy()]).transpose(0, 3, 1, 2)
        x = x.numpy()
        for out in (ours, theirs):
            right = (out[..., px:] == x[..., :-px]).all(axis=(1, 2, 3))
            left = (out[..., :-px] == x[..., px:]).all(axis=(1, 2, 3))
            assert (right | left).all() and right.any() and left.any()
    with pytest.raises(PolicyError, match="range_reading: expected one of paper, reference"):
        Policy(subs, range_reading="Reference")


def test_any_number_of_sub_policies_in_files(tmp_path):
    policy = Policy(((Operation("Rotate", 0.5, 2), Operation("Equalize", 1.0, None)),) * 3)
    assert load_policy(policy.save(tmp_path / "p.json")) == policy


def _doc(**override):
    doc = {"format": "autoaug.policy", "version": 1, "kind": "policy",
           "sub_policies": [[{"op": "Rotate", "prob": 0.5, "magnitude_bin": 3},
                             {"op": "Invert", "prob": 0.2, "magnitude_bin": None}]]}
    doc.update(override)
    return doc


def _op(**override):
    op = {"op": "Rotate", "prob": 0.5, "magnitude_bin": 3}
    op.update(override)
    return _doc(sub_policies=[[op]])


@pytest.mark.parametrize("doc, message", [
    (_op(op="Rotat"), r"sub_policies\[0\]\[0\]\.op: unknown op 'Rotat'; expected one of ShearX, .*SamplePairing"),
    (_op(prob=1.5), r"sub_policies\[0\]\[0\]\.prob: expected a probability in 0.0, 0.1, ..., 1.0, got 1.5"),
    (_op(prob=-0.1), r"\.prob: expected a probability in 0.0, 0.1"),
    (_op(prob=0.15), r"\.prob: expected a probability in 0.0, 0.1, ..., 1.0, got 0.15"),
    (_op(prob="0.5"), r"\.prob: expected a probability \(number\)"),
    (_op(magnitude_bin=10), r"\.magnitude_bin: expected a magnitude bin in 0..9, got 10"),
    (_op(magnitude_bin=-1), r"\.magnitude_bin: expected a magnitude bin in 0..9, got -1"),
    (_op(magnitude_bin=2.5), r"\.magnitude_bin: expected a magnitude bin \(integer 0..9\)"),
    (_op(magnitude_bin=None), r"Rotate needs a magnitude bin"),
    (_op(extra=1), r"unknown keys \['extra'\]"),
    (_doc(version=2), r"expected \"version\": 1, got 2"),
    (_doc(format="other"), r"expected \"format\": \"autoaug.policy\""),
    (_doc(sub_policies=[]), r"sub_policies: expected a non-empty list"),
    (_doc(sub_policies=[[]]), r"sub_policies\[0\]: expected a non-empty list of operations"),
    (_doc(sub_policies={"a": 1}), r"sub_policies: expected a non-empty list"),
    (_doc(range_reading="tf"), r"range_reading: expected one of paper, reference, got 'tf'"),
    ([1, 2], r"expected a JSON object, got list"),
])
def test_bad_files_name_the_file_the_place_and_what_was_expected(tmp_path, doc, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(PolicyError, match=message) as err:
        load_policy(path)
    assert str(err.value).startswith(str(path)) and "\n" not in str(err.value)


def test_not_json_and_missing_file(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text("{nope")
    with pytest.raises(PolicyError, match=r"bad.json: not JSON \(line 1"):
        load_policy(path)
    with pytest.raises(PolicyError, match="no such file"):
        load_policy(tmp_path / "missing.json")


def test_nothing_is_clamped_in_code_either():
    with pytest.raises(PolicyError):
        Operation("Rotate", 0.55, 3)
    with pytest.raises(PolicyError):
        Operation("Rotate", 0.5, 12)


@pytest.mark.parametrize("name", ["autoaugment-cifar10", "autoaugment-svhn", "autoaugment-imagenet"])
def test_published_policies_have_25_two_op_sub_policies(name):
    policy = published_policy(name)
    assert len(policy.sub_policies) == 25 and all(len(s) == 2 for s in policy.sub_policies)


def test_unknown_published_policy():
    with pytest.raises(PolicyError, match="expected one of autoaugment-cifar10"):
        published_policy("autoaugment-mnist")


# --- several policies on one batch in one apply_ops call (fused children, issue #11) ----------


def test_apply_policies_gives_each_copy_its_own_pixels(cifar_batch):
    space = gymnasium.spaces.MultiDiscrete(np.array(SEARCH_NVEC))
    space.seed(3)
    # every op firing often, Cutout and SamplePairing (the ops that draw) among them
    drawing = Policy((((Operation("Cutout", 0.8, 5), Operation("SamplePairing", 0.9, 9)),
                       (Operation("Rotate", 0.7, 4), Operation("Cutout", 1.0, 9)))))
    policies = [Policy.from_tokens(space.sample().tolist()), drawing, None,
                published_policy("autoaugment-cifar10"), drawing]
    seeds = [0, 1, 2, 1, 1]  # a shared seed too: the copies still differ by their policies
    fused = apply_policies(cifar_batch, policies, [torch.Generator().manual_seed(s) for s in seeds])
    assert fused.shape == (64, 3 * len(policies), 32, 32)
    for j, (policy, seed) in enumerate(zip(policies, seeds)):
        alone = cifar_batch if policy is None else policy(cifar_batch, torch.Generator().manual_seed(seed))
        assert torch.equal(fused[:, 3 * j : 3 * j + 3], alone), j
    assert not torch.equal(fused[:, 3:6], cifar_batch)


@pytest.mark.parametrize("row", TABLE, ids=lambda op: op.name)
def test_only_the_ops_marked_draws_use_the_generator(row, cifar_batch):
    # `apply_ops` merges the children's images for every op not marked `draws`: such a kernel
    # must not touch the generator, or merged children would share its stream.
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    m = torch.full((8,), row.magnitude(5) if row.has_magnitude else 0.0)
    ctx = OpContext(generator=generator, batch=cifar_batch, index=torch.arange(8))
    row.kernel(cifar_batch[:8].clone(), m, ctx)
    assert torch.equal(generator.get_state(), before) != row.draws
