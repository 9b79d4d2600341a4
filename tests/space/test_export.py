"""albumentations export: structure, A.load with and without autoaug, and the files in policies/."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import albumentations as A
import numpy as np
import pytest

from autoaug.space.export import (
    albumentations_path, loading_note, pipeline_document, save_albumentations, seed_pipeline, to_albumentations,
)
from autoaug.space.policy import Operation, Policy, published_policy
from autoaug.space.specs import load_policy
from autoaug.space.published import PUBLISHED

ROOT = Path(__file__).resolve().parents[2]


def test_structure_is_compose_oneof_sequential():
    policy = Policy(((Operation("Rotate", 0.3, 9), Operation("Invert", 0.6, None)),
                     (Operation("Equalize", 1.0, None), Operation("Posterize", 0.2, 9))))
    pipeline = to_albumentations(policy)
    (one_of,) = pipeline.transforms
    assert isinstance(one_of, A.OneOf) and one_of.p == 1.0 and len(one_of.transforms) == 2
    seq = one_of.transforms[0]
    assert isinstance(seq, A.Sequential) and seq.p == 1.0
    rotate, invert = seq.transforms
    # a signed op is a OneOf of the +m and -m transforms, firing with the op's probability
    assert isinstance(rotate, A.OneOf) and rotate.p == 0.3
    assert [t.rotate for t in rotate.transforms] == [(30.0, 30.0), (-30.0, -30.0)]
    assert isinstance(invert, A.InvertImg) and invert.p == 0.6


NATIVE_ONLY = Policy((
    (Operation("ShearX", 0.9, 4), Operation("Invert", 0.2, None)),
    (Operation("Rotate", 0.9, 3), Operation("Solarize", 0.6, 6)),
    (Operation("Posterize", 0.5, 7), Operation("Contrast", 0.3, 3)),
    (Operation("Color", 0.5, 2), Operation("Brightness", 0.4, 8)),
    (Operation("ShearY", 0.7, 6), Operation("Cutout", 0.4, 8)),
))


def test_native_only_policy_loads_in_a_process_that_never_imports_autoaug(tmp_path, cifar_images):
    policy = NATIVE_ONLY
    assert loading_note(policy) is None  # plain A.load reads it
    # the published SVHN policy has AutoContrast, Equalize and TranslateY, which follow PIL's
    # rules only with autoaug's own transforms (issue #8)
    assert loading_note(published_policy("autoaugment-svhn")) is not None
    path = save_albumentations(policy, tmp_path / "native.albumentations.json")
    np.save(tmp_path / "img.npy", cifar_images[0])
    code = (
        "import sys, numpy as np, albumentations as A\n"
        f"t = A.load({str(path)!r}, data_format='json')\n"
        f"out = t(image=np.load({str(tmp_path / 'img.npy')!r}))['image']\n"
        "assert out.shape == (32, 32, 3) and out.dtype == np.uint8\n"
        "assert not any(m == 'autoaug' or m.startswith('autoaug.') for m in sys.modules)\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_cifar10_policy_loads_with_plain_A_load_after_import_autoaug(tmp_path, cifar_images):
    policy = published_policy("autoaugment-cifar10")
    assert loading_note(policy) is not None  # Sharpness below 1.0 is autoaug's own transform
    path = save_albumentations(policy, tmp_path / "c10.json")
    code = (
        "import numpy as np, albumentations as A, autoaug\n"
        f"t = A.load({str(path)!r}, data_format='json')\n"
        "img = np.full((32, 32, 3), 90, np.uint8); img[8:24, 8:24] = 200\n"
        "outs = [t(image=img)['image'] for _ in range(200)]\n"
        "assert any((o != img).any() for o in outs)\n"
        "print('ok')\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_loaded_pipeline_reproduces_the_saved_one(tmp_path, cifar_images):
    policy = published_policy("autoaugment-cifar10")
    path = save_albumentations(policy, tmp_path / "c10.json")
    loaded = A.load(str(path), data_format="json")
    seed_pipeline(loaded, 3)
    fresh = to_albumentations(policy, seed=3)
    for img in cifar_images[:32]:
        assert np.array_equal(loaded(image=img)["image"], fresh(image=img)["image"])


def test_a_file_exported_before_the_layers_still_loads(tmp_path, cifar_images):
    # Until issue #9's restructure the module was autoaug/albu.py, and files name its transforms so.
    text = (ROOT / "policies" / "autoaugment-cifar10.train.albumentations.json").read_text()
    assert '"autoaug.space.albu.ClippedCutout"' in text
    old = tmp_path / "old.json"
    old.write_text(text.replace('"autoaug.space.albu.', '"autoaug.albu.'))
    loaded = A.load(str(old), data_format="json")
    today = A.load(str(ROOT / "policies" / "autoaugment-cifar10.train.albumentations.json"), data_format="json")
    assert A.to_dict(loaded) == A.to_dict(today)  # the same classes, saved under today's names
    seed_pipeline(loaded, 5)
    seed_pipeline(today, 5)
    for img in cifar_images[:16]:
        assert np.array_equal(loaded(image=img)["image"].numpy(), today(image=img)["image"].numpy())


def test_sample_pairing_pool_after_load(tmp_path, cifar_images):
    from autoaug.space.albu import set_image_pool

    policy = Policy(((Operation("SamplePairing", 1.0, 9),),))
    loaded = A.load(str(save_albumentations(policy, tmp_path / "sp.json")), data_format="json")
    assert set_image_pool(loaded, cifar_images[1:5]) == 1
    out = loaded(image=cifar_images[0])["image"]
    assert not np.array_equal(out, cifar_images[0])


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_policies_folder_holds_the_published_policies_in_sync(name):
    native = ROOT / "policies" / f"{name}.json"
    assert load_policy(native) == published_policy(name)
    # the albumentations file is exactly what the exporter writes today
    expected = pipeline_document(to_albumentations(published_policy(name)))
    on_disk = json.loads(albumentations_path(native).read_text())
    assert on_disk["transform"] == expected["transform"]
    assert on_disk["transform"]["strict"] is True  # A.load gives albumentations' clear errors (issue #25)


def test_a_seeded_pipeline_draws_its_ops_independently():
    # two identical ops in a row: with one shared stream the second fires independently of the
    # first (about p * p of the time both fire); per-transform seeding would make them agree always
    policy = Policy(((Operation("Invert", 0.5, None), Operation("Invert", 0.5, None)),))
    pipeline = to_albumentations(policy, seed=0)
    img = np.zeros((2, 2, 3), np.uint8)
    inverted = [pipeline(image=img)["image"][0, 0, 0] == 255 for _ in range(2000)]
    # inverted once = exactly one of the two fired: probability 0.5
    assert 0.45 < np.mean(inverted) < 0.55


def test_an_op_of_probability_zero_is_left_out_and_its_sub_policy_kept():
    """Issue #22: a zero-probability op never fires, so the export drops it; the sub-policy count
    (each one's 1/K chance) stays, an empty Sequential where nothing is left."""
    doc = {"format": "autoaug.policy", "version": 1, "kind": "policy", "sub_policies": [
        [{"op": "Invert", "prob": 0.0, "magnitude_bin": None}, {"op": "Rotate", "prob": 0.7, "magnitude_bin": 3}],
        [{"op": "Equalize", "prob": 0.0, "magnitude_bin": None}, {"op": "Solarize", "prob": 0.0, "magnitude_bin": 4}],
        [{"op": "Invert", "prob": 1.0, "magnitude_bin": None}, {"op": "Cutout", "prob": 0.3, "magnitude_bin": 2}],
    ]}
    (one_of,) = to_albumentations(Policy.from_json(doc)).transforms
    assert [len(sub.transforms) for sub in one_of.transforms] == [1, 0, 2]
    image = np.full((8, 8, 3), 10, np.uint8)
    loaded = A.from_dict(A.to_dict(to_albumentations(Policy.from_json(doc))))  # and it round-trips
    outs = {int(loaded(image=image)["image"][0, 0, 0]) for _ in range(60)}
    assert 10 in outs and 245 in outs  # the empty sub-policy leaves the image; the third inverts it
