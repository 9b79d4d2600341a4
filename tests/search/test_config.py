"""SearchConfig loading: TOML tables, dotted overrides, typed values, unknown keys, the presets in
experiments/ (cpu-quick must equal the built-in defaults), the TOML writer and the resume rule."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from autoaug.search.config import (
    ExportConfig,
    CONFIG_FILENAME,
    SearchConfig,
    check_resume,
    differences,
    load_config,
    resolve_config,
    save_config,
)
from autoaug.errors import ConfigError
from autoaug.settings import to_toml, valid_keys
from autoaug.search.ppo import PPOConfig
from autoaug.training.config import TrainConfig

REPO = Path(__file__).resolve().parents[2]
PRESETS = REPO / "experiments"


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "search.toml"
    path.write_text(text)
    return path


def test_toml_tables_and_dotted_overrides(tmp_path: Path) -> None:
    path = _write(tmp_path, """
        budget = 40
        algo = "random"
        trial_timeout_s = 30
        [child]
        epochs = 3
        standard = false
        [ppo]
        clip_coef = 0.1
        minibatch_size = 4
    """.replace("\n        ", "\n"))
    config = load_config(path, ["ppo.clip_coef=0.3", "child.lr=5e-2", "budget=41", "seed=7"])
    assert config.budget == 41  # the override wins over the file
    assert config.algo == "random" and config.seed == 7
    assert config.trial_timeout_s == 30.0 and isinstance(config.trial_timeout_s, float)
    assert (config.child.epochs, config.child.standard, config.child.lr) == (3, False, 0.05)
    assert (config.ppo.clip_coef, config.ppo.minibatch_size) == (0.3, 4)
    # Untouched keys keep the defaults, in the nested tables too.
    assert config.child.model == SearchConfig().child.model
    assert config.ppo.learning_rate == SearchConfig().ppo.learning_rate


def test_none_for_optional_fields() -> None:
    config = load_config(None, ["train_subset=none", "ppo.max_grad_norm=None", "trial_timeout_s=2.5"])
    assert config.train_subset is None and config.ppo.max_grad_norm is None
    assert config.trial_timeout_s == 2.5
    with pytest.raises(ConfigError, match="budget expects int"):
        load_config(None, ["budget=none"])  # not optional


def test_child_model_switch_takes_that_networks_recipe() -> None:
    config = load_config(None, ["child.model=wrn-40-2", "child.epochs=2"])
    recipe = TrainConfig.for_model("wrn-40-2")
    # The preset's Cutout after the policy is kept: the final training's, not the network's.
    assert config.child == dataclasses.replace(recipe, epochs=2, cutout=SearchConfig().child.cutout)
    assert config.child.cutout == "auto"  # half the image side: 16 px on CIFAR
    # ... which is more than a model name: the recipe differs from the default child elsewhere.
    assert recipe != dataclasses.replace(SearchConfig().child, model="wrn-40-2", epochs=recipe.epochs)
    # Without child.model, child keys change the default child.
    assert load_config(None, ["child.epochs=2"]).child == dataclasses.replace(SearchConfig().child, epochs=2)


@pytest.mark.parametrize("override, table_key", [
    ("ppo.lrr=1e-3", "ppo.learning_rate"),
    ("child.epoch=3", "child.epochs"),
    ("budjet=3", "batch_size"),
])
def test_unknown_key_lists_the_valid_ones(override: str, table_key: str) -> None:
    key = override.partition("=")[0]
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert f"unknown key {key!r}" in message and "valid keys:" in message
    assert table_key in message


def test_unknown_key_in_a_file_names_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "[ppo]\nlrr = 0.1\n")
    with pytest.raises(ConfigError, match=r"unknown key 'ppo.lrr' in .*search.toml.*ppo.learning_rate"):
        load_config(path)
    path = _write(tmp_path, "[controller]\nhidden = 3\n")
    with pytest.raises(ConfigError, match=r"unknown key 'controller.hidden'.*\[child\], \[ppo\]"):
        load_config(path)
    path = _write(tmp_path, "ppo = 3\n")
    with pytest.raises(ConfigError, match=r"'ppo' .* must be a table"):
        load_config(path)


@pytest.mark.parametrize("source, message", [
    (["budget=ten"], r"budget expects int, got 'ten'"),
    (["child.standard=maybe"], r"child.standard expects bool \(true/false\), got 'maybe'"),
    (["ppo.clip_coef=wide"], r"ppo.clip_coef expects float, got 'wide'"),
    ('budget = 2.5\n', r"budget expects int, got 2.5"),
    ('dataset = 3\n', r"dataset expects string, got 3"),
    ('[child]\nstandard = 1\n', r"child.standard expects bool \(true/false\), got 1"),
])
def test_wrong_type_names_key_type_and_value(tmp_path: Path, source, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        if isinstance(source, str):
            load_config(_write(tmp_path, source))
        else:
            load_config(None, source)


@pytest.mark.parametrize("overrides, message", [
    (["budget=0"], r"budget must be an int >= 1, got 0"),
    (["algo=bayes"], r"unknown algo 'bayes'; expected one of ppo, random"),
    (["backend=slurm"], r"unknown backend 'slurm'"),
    (["devices=gpu0"], r"devices: expected 'auto', 'cpu'"),
    (["child.epochs=0"], r"\[child\] epochs must be an int >= 1"),
    (["child.model=resnet"], r"unknown model 'resnet'; expected one of tiny"),
    (["ppo.baseline_decay=1.5"], r"ppo.baseline_decay must be in \[0, 1\)"),
    (["child.device=cuda"], r"cannot be set: each worker's device comes from `devices`"),
    (["budget"], r"expected key=value"),
])
def test_bad_values(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(_write(tmp_path, "budget = = 3\n"))


def test_cpu_quick_preset_equals_the_builtin_defaults() -> None:
    assert load_config(PRESETS / "cpu-quick.toml") == SearchConfig()


@pytest.mark.parametrize("name", ["cpu-quick", "gpu", "paper"])
def test_presets_parse(name: str) -> None:
    config = load_config(PRESETS / f"{name}.toml")
    assert config.budget >= 1
    if name == "paper":
        # What the issue asks of the paper preset: WRN-40-2 children, 120 epochs, 15,000 policies.
        assert (config.child.model, config.child.epochs, config.budget) == ("wrn-40-2", 120, 15000)
        assert config.train_subset is None and config.val_subset is None
        # The paper's controller constants, not the cpu-quick ones it would otherwise inherit.
        assert config.ppo == PPOConfig()
    if name == "gpu":
        assert config.child.model == "small" and config.workers > 1


def test_toml_writer_round_trips(tmp_path: Path) -> None:
    config = load_config(None, [
        "child.model=small", "train_subset=none", "ppo.max_grad_norm=none", "trial_timeout_s=1e-3",
        "dataset=folder:/data/with \"quotes\" and \\backslash", "ppo.ent_coef=0", "devices=cpu,cpu",
    ])
    path = save_config(config, tmp_path / CONFIG_FILENAME)
    assert load_config(path) == config
    assert differences(load_config(path), config) == []
    assert "[child]" in to_toml(config) and "[ppo]" in to_toml(config)


def test_every_key_is_settable_from_text() -> None:
    defaults = SearchConfig()
    text = to_toml(defaults)
    keys = valid_keys(SearchConfig)
    # Each valid key appears in the written file exactly once (tables flattened).
    assert len(keys) == len(set(keys)) == len([ln for ln in text.splitlines() if " = " in ln])


def test_check_resume_allows_budget_and_workers_only(tmp_path: Path) -> None:
    saved = SearchConfig()
    check_resume(saved, dataclasses.replace(saved, budget=saved.budget * 2, workers=2), tmp_path)
    for override, key in [("seed=1", "seed"), ("batch_size=3", "batch_size"),
                          ("child.epochs=2", "child.epochs"), ("algo=random", "algo"),
                          ("ppo.clip_coef=0.3", "ppo.clip_coef"), ("dataset=cifar10:/x", "dataset")]:
        with pytest.raises(ConfigError, match=rf"started with {key} = .*, now"):
            check_resume(saved, load_config(None, [override]), tmp_path)


def test_resolve_config_resumes_the_saved_preset(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    started = load_config(None, [f"out={run}", "child.epochs=2", "batch_size=3"])
    save_config(started, run / CONFIG_FILENAME)
    # `autoaug search --out RUN --budget 9`: the saved config is the base, not the defaults.
    config, saved = resolve_config(None, [f"out={run}", "budget=9"])
    assert saved == started
    assert config == dataclasses.replace(started, budget=9)
    # With an explicit --config, the file is the base (run_search then rejects the change).
    config, saved = resolve_config(_write(tmp_path, f'out = "{run}"\n'), [])
    assert config.child.epochs == SearchConfig().child.epochs and saved == started


def test_a_config_written_before_a_key_was_added_still_resumes(tmp_path: Path) -> None:
    """Issue #20 added child.flip and export.free: a run directory's config.toml from before lacks
    them and takes their defaults; any other missing key still means a file cut short."""
    path = tmp_path / "config.toml"
    save_config(SearchConfig(), path)
    text = path.read_text()
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith(("free =", "flip ="))) + "\n")
    assert load_config(path, complete=True) == SearchConfig()
    path.write_text("\n".join(line for line in text.splitlines() if not line.startswith("budget =")) + "\n")
    with pytest.raises(ConfigError, match=r"lacks 1 key\(s\) \(budget\)"):
        load_config(path, complete=True)
    with pytest.raises(ConfigError, match="export.free: unknown policy 'bogus'"):
        load_config(None, ["export.free=standard bogus"])


def test_a_run_config_from_before_export_top_moved_into_export_still_reads(tmp_path: Path) -> None:
    # Issue #24 made the export count one key, export.top; a run directory's config.toml written
    # before holds the top-level export_top, and resumes with it. --set knows only the new name.
    path = save_config(SearchConfig(export=ExportConfig(top=3, reevaluate_top=8)), tmp_path / "config.toml")
    text = path.read_text()
    assert "\ntop = 3\n" in text
    lines = text.replace("\ntop = 3\n", "\n").splitlines()
    lines.insert(next(i for i, line in enumerate(lines) if line.startswith("seed = ")), "export_top = 3")
    path.write_text("\n".join(lines) + "\n")
    assert load_config(path, complete=True).export.top == 3
    with pytest.raises(ConfigError, match="did you mean 'export.top'"):
        load_config(None, ["export_top=3"])
