"""The op table of policies/README.md is written from the code: every row of autoaug/space/ops.py
has its notes, and the committed table is what `python -m autoaug.space.op_notes` writes today."""

from __future__ import annotations

import dataclasses

from autoaug.space.op_notes import NOTES, README, op_table, readme_section, write_readme
from autoaug.space.ops import TABLE, get_op


def test_every_row_of_the_table_has_notes_and_no_other_op_does() -> None:
    assert list(NOTES) == [op.name for op in TABLE]  # the same ops, in the table's order
    for name, note in NOTES.items():
        assert all(value.strip() for value in dataclasses.astuple(note)), name
        assert "|" not in "".join(dataclasses.astuple(note)), name  # one markdown cell each


def test_the_readme_table_is_the_one_the_code_writes() -> None:
    assert readme_section(README.read_text()) == op_table(), "rerun python -m autoaug.space.op_notes"


def test_a_row_shows_its_range_unit_and_sign(tmp_path) -> None:
    rows = {line.split(" | ")[0][2:]: line for line in op_table().splitlines()[2:]}
    assert len(rows) == len(TABLE)
    assert rows["Rotate"].startswith(f"| Rotate | 0 .. 30 | {get_op('Rotate').unit} | random |")
    assert "| Solarize | 256 .. 0 | threshold, whole numbers | - |" in rows["Solarize"]
    assert "(reference reading: .. 0.3125)" in rows["TranslateX"]
    # Writing into a stale copy of the file puts today's table between the markers, once.
    stale = tmp_path / "README.md"
    stale.write_text(README.read_text().replace(rows["Rotate"], "| Rotate | 0 .. 45 | degrees | random | x | y | z |"))
    assert write_readme(stale) and readme_section(stale.read_text()) == op_table()
    assert stale.read_text() == README.read_text() and not write_readme(stale)
