"""README.md's promises that no other test holds (issue #22): the install line says what it
installs and how to get the CPU-only torch in one line a user can copy."""

from __future__ import annotations

import re
from pathlib import Path

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


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
