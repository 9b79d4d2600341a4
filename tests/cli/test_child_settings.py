"""The child's training settings are one [child] table, spelled the same in every command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from autoaug.cli import build_parser
from autoaug.cli.common import child_config
from autoaug.training.config import TrainConfig


@pytest.mark.parametrize("args, message", [
    (["randaugment", "--set", "model=wrn-40-2"], "unknown key 'model' in --set model=wrn-40-2 (did you mean 'child.model'?)"),
    (["randaugment", "--set", "child.lrr=0.1"], "unknown key 'child.lrr'"),
    (["train", "--policy", "none", "--set", "child.epochs=0"], "epochs must be an int >= 1"),
    (["train", "--policy", "none", "--set", "child.standard=1"], "child.standard expects bool"),
    (["search", "--set", "child.epochs=zero"], "child.epochs expects int"),
])
def test_bad_child_settings_are_one_line_and_exit_2(tmp_path, args, message):
    run = subprocess.run([sys.executable, "-m", "autoaug", *args], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert message in run.stderr and "Traceback" not in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("command", [["train", "--policy", "none"], ["randaugment"]])
def test_flags_are_shorthand_for_set(command):
    base = TrainConfig(cutout=16)
    by_flags = build_parser().parse_args([*command, "--model", "wrn-40-2", "--epochs", "3"])
    by_set = build_parser().parse_args([*command, "--set", "child.model=wrn-40-2", "child.epochs=3"])
    config = child_config(by_flags, base)
    assert config == child_config(by_set, base)
    assert (config.model, config.epochs, config.lr, config.cutout) == ("wrn-40-2", 3, TrainConfig.for_model("wrn-40-2").lr, 16)
