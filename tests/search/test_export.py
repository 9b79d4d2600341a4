"""Export of a search run (`autoaug.search.export`): the best policies of its store concatenated,
written as native and albumentations JSON, the count taken from the run's export.top."""

from __future__ import annotations

from pathlib import Path

import albumentations as A
import numpy as np
import pytest

from autoaug import cli
from autoaug.errors import AutoaugError
from autoaug.search.config import CONFIG_FILENAME, load_config, save_config
from autoaug.search.export import ExportOptions, export_policy
from autoaug.search.store import STORE_FILENAME, TrialSpec, TrialStore
from autoaug.space.policy import SEARCH_NVEC, Policy
from autoaug.space.specs import load_policy


def _store_with(run: Path, rewards: list[float | None]) -> list[Policy]:
    """A real run directory's store: one round, trial i done with rewards[i] (None: left pending)."""
    policies = [Policy.from_tokens([(i + k) % n for k, n in enumerate(SEARCH_NVEC)])
                for i in range(len(rewards))]
    with TrialStore(run / STORE_FILENAME) as store:
        trials = store.add_pending(0, [
            TrialSpec(key=f"k{i}", payload={"policy": p.to_json()}, seed=i, tokens=p.to_tokens())
            for i, p in enumerate(policies)
        ])
        for trial, reward in zip(trials, rewards):
            if reward is not None:
                store.mark_done(trial.id, reward, duration=1.0)
    return policies


def test_export_takes_the_best_k_ties_to_the_earlier(tmp_path: Path) -> None:
    policies = _store_with(tmp_path, [0.5, 0.7, 0.7, 0.6, None])
    exported = export_policy(tmp_path, ExportOptions(top=3, out=tmp_path / "out" / "best.json"))
    assert [t.slot for t in exported.trials] == [1, 2, 3]
    expected = policies[1].sub_policies + policies[2].sub_policies + policies[3].sub_policies
    assert exported.policy.sub_policies == expected
    on_disk = load_policy(tmp_path / "out" / "best.json")
    assert on_disk == exported.policy
    assert on_disk.provenance["rewards"] == [0.7, 0.7, 0.6]
    assert on_disk.provenance["completed"] == 4 and on_disk.provenance["top"] == 3
    albu = A.load(str(tmp_path / "out" / "best.albumentations.json"), data_format="json")
    image = np.full((32, 32, 3), 128, np.uint8)
    from autoaug.space.albu import set_image_pool

    set_image_pool(albu, image[None])  # SamplePairing's partners, if the policy holds it
    assert albu(image=image)["image"].shape == image.shape
    # Asking for more than there are gives what there is.
    assert len(export_policy(tmp_path, ExportOptions(top=10)).trials) == 4



def test_export_top_defaults_to_the_runs_export_top(tmp_path: Path) -> None:
    """One key sets the export count: `autoaug export` without --top takes the run's export.top,
    as `autoaug search` did (without a config.toml, the paper's 5)."""
    _store_with(tmp_path, [0.5, 0.7, 0.6, 0.4, 0.3, 0.2])
    assert len(export_policy(tmp_path, ExportOptions()).trials) == 5
    save_config(load_config(None, [f"out={tmp_path}", "reward.paired=false", "export.top=2", "export.reevaluate_top=0"]),
                tmp_path / CONFIG_FILENAME)
    out = tmp_path / "default.json"
    assert cli.main(["export", str(tmp_path), "--out", str(out)]) == 0
    assert [t["slot"] for t in load_policy(out).provenance["trials"]] == [1, 2]
    assert cli.main(["export", str(tmp_path), "--out", str(out), "--top", "3"]) == 0
    assert len(load_policy(out).provenance["trials"]) == 3

def test_export_writes_pipelines_that_move_boxes_and_keypoints(tmp_path: Path, capsys) -> None:
    """`autoaug export --bbox-format / --keypoint-format` (issue #25): every albumentations file it
    writes carries them, and plain A.load of each takes bboxes= and keypoints= with the image."""
    _store_with(tmp_path, [0.5, 0.7])
    out = tmp_path / "best.json"
    assert cli.main(["export", str(tmp_path), "--out", str(out), "--top", "2", "--bbox-format", "yolo",
                     "--bbox-labels", "labels", "--keypoint-format", "xy", "--mask-fill", "9"]) == 0
    capsys.readouterr()
    image, mask = np.full((32, 32, 3), 128, np.uint8), np.ones((32, 32), np.uint8)
    for name in ("best.albumentations.json", "best.train.albumentations.json", "best.eval.albumentations.json"):
        pipeline = A.load(str(tmp_path / name), data_format="json")
        from autoaug.space.albu import set_image_pool

        set_image_pool(pipeline, image[None])
        got = pipeline(image=image, mask=mask, bboxes=[(0.5, 0.5, 0.25, 0.25)], labels=[4], keypoints=[(16.0, 16.0)])
        assert len(got["bboxes"]) == len(got["labels"]) <= 1 and len(got["keypoints"]) <= 1, name
        assert pipeline.processors["bboxes"].params.format == "yolo", name


def test_export_errors(tmp_path: Path) -> None:
    with pytest.raises(AutoaugError, match="not a search run directory"):
        export_policy(tmp_path)
    with pytest.raises(AutoaugError, match="not a search run directory .*does not exist"):
        export_policy(tmp_path / "nowhere")
    assert not (tmp_path / STORE_FILENAME).exists()  # looking did not create a store
    _store_with(tmp_path, [None, None])
    with pytest.raises(AutoaugError, match="no completed trials yet"):
        export_policy(tmp_path)
    with pytest.raises(AutoaugError, match=r"--top must be an integer >= 1, got 0"):
        export_policy(tmp_path, ExportOptions(top=0))


# --- faults and bad input ---------------------------------------------------------------------
