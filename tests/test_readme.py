"""README.md's promises that no other test holds (issue #22): the install line says what it
installs and how to get the CPU-only torch in one line a user can copy."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from autoaug.cli import build_parser, main
from autoaug.space.render import default_targets

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_the_first_two_commands_are_setup_plus_search_and_the_tests():
    block = re.search(r"```bash\n(.*?)```", README, re.S).group(1).splitlines()
    assert block[0].startswith('pip install torch==2.13.0 && pip install -e ".[dev]" && autoaug search')
    assert block[1].startswith("python -m pytest -q")


def test_the_install_note_names_the_cuda_build_and_the_cpu_index_in_one_line():
    note = README[: README.index("## What a user does")]
    assert "CUDA build" in note
    lines = [line for line in note.splitlines() if "--index-url https://download.pytorch.org/whl/cpu" in line]
    assert len(lines) == 1 and "pip install torch==2.13.0" in lines[0] and 'pip install -e ".[dev]"' in lines[0]
    assert "installs the CPU build of torch;" not in note  # what it said before, untrue on Linux


# --- "Segmentation and detection" (issue #25): its commands and examples run as written ---------


def example(name: str, language: str = "python") -> str:
    found = re.search(rf"<!-- example: {name} -->\s*```{language}\n(.*?)```", README, re.S)
    assert found, f"README.md lost its example (marker `<!-- example: {name} -->`)"
    return found.group(1)


def commands(block: str) -> list[list[str]]:
    """The `autoaug ...` command lines of a bash block, continuations joined, comments dropped."""
    joined = block.replace("\\\n", " ")
    return [shlex.split(line, comments=True)[1:] for line in joined.splitlines() if line.startswith("autoaug ")]


@pytest.fixture(scope="module")
def targets_workdir(tmp_path_factory, cifar_images) -> Path:
    """A folder as the examples expect it: data/images, data/masks, data/boxes.json (12 CIFAR
    images, an ellipse of class 1 or 2 each, one to three boxes), and the export commands run."""
    root = tmp_path_factory.mktemp("targets")
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "masks").mkdir()
    target = default_targets(32, 32)
    boxes = {}
    for i, image in enumerate(cifar_images[:12]):
        cv2.imwrite(str(root / "data" / "images" / f"{i}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / "data" / "masks" / f"{i}.png"), target.mask * (1 + i % 2))
        boxes[f"{i}.png"] = [[*target.boxes[0].tolist(), 1 + i % 2], [2, 3, 12, 10, 3]][: 1 + i % 2]
    (root / "data" / "boxes.json").write_text(json.dumps(boxes))
    here = os.getcwd()
    os.chdir(root)  # the commands write where the examples read
    try:
        for argv in commands(example("targets export", "bash")):
            if argv[0] == "export":  # needs a search's run directory: its flags must parse
                build_parser().parse_args(argv)
            else:
                assert main(argv) == 0, argv
    finally:
        os.chdir(here)
    return root


@pytest.mark.parametrize("name, printed", [
    ("masks", r"\(8, 3, 32, 32\) \(8, 32, 32\)\n"),
    ("boxes", r"\(8, 3, 32, 32\) \[[0-2](, [0-2]){7}\]\n"),
])
def test_readme_target_examples_run_as_written(targets_workdir, name, printed):
    (targets_workdir / f"{name}.py").write_text(example(name))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}  # `import autoaug` from this checkout, run elsewhere
    run = subprocess.run([sys.executable, f"{name}.py"], capture_output=True, text=True, cwd=targets_workdir,
                         timeout=120, env=env)
    assert run.returncode == 0, run.stderr
    assert re.fullmatch(printed, run.stdout), run.stdout


def test_readme_shows_the_committed_targets_picture():
    picture = re.search(r"!\[[^]]*\]\((experiments/results/show_targets\.png)\)", README)
    assert picture and (ROOT / picture.group(1)).is_file()
    command = ("autoaug show policies/autoaugment-cifar10.train.albumentations.json --targets "
               "--out experiments/results/show_targets.png")
    assert command in README


def test_readme_batched_targets_example_runs_as_written(capsys, one_thread):
    exec(compile(example("targets torch"), "README.md example", "exec"), {})
    printed = capsys.readouterr().out
    found = re.fullmatch(r"\(4, 3, 32, 32\) \(4, 32, 32\) (\[.*\])\n", printed)
    assert found, printed
    boxes = json.loads(found.group(1))
    assert len(boxes) <= 1 and all(0 <= v <= 32 for box in boxes for v in box)


def test_every_flag_the_section_names_is_a_flag_of_the_commands_it_names():
    section = README[README.index("### Segmentation and detection"):]
    parser = build_parser()
    subcommands = next(a for a in parser._actions if a.dest == "command").choices
    known = {flag for name in ("export-albumentations", "export", "show")
             for action in subcommands[name]._actions for flag in action.option_strings}
    named = set(re.findall(r"(?<![\w-])--[a-z][a-z-]+", section))
    assert {"--bbox-format", "--mask-fill", "--cutout-mask-fill", "--keypoint-format", "--targets"} <= named
    assert named <= known, sorted(named - known)
