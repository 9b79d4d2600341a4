"""Where each op of the table (`autoaug.space.ops`) differs from the AutoAugment paper, the
reference code and torchvision, and by how much, measured: the notes behind the op table of
policies/README.md, which `op_table()` renders from the table's rows and these notes.

"Reference" is the AutoAugment release's PIL code (`augmentation_transforms.py`, modelled in
`autoaug.space.reference`). Every figure is measured by experiments/reference_diff.py
(results/reference_diff.md): mean / largest grey-level difference and share of differing pixels,
64 CIFAR images, every bin and sign. "Bin for bin" compares our bin b with the reference's level
b (its level / 10 scaling included); "same value" gives our kernel the reference's own value,
leaving only how the op is carried out. "Kernel vs Pillow" is tests/space/test_reference.py.

`python -m autoaug.space.op_notes` rewrites the table in policies/README.md;
tests/space/test_op_notes.py fails when the file and the code disagree.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from autoaug.space.ops import TABLE, OpSpec
from autoaug.space.targets import EFFECTS


@dataclass(frozen=True)
class OpNote:
    """What the table's row of one op does not say: how it differs, and how much."""

    deviation: str
    """How the op is carried out where that differs from the paper, the reference code or torchvision."""
    measured: str
    """How far that puts it from them, measured."""
    source: str
    """Where the measurement comes from."""


_DIFF = "results/reference_diff.md"
_PILLOW = "test_reference.py"

NOTES: dict[str, OpNote] = {
    "ShearX": OpNote(
        "About the image centre, bilinear, grey 128 fill. The reference shears about the top-left "
        "corner (which also shifts the image, up to 0.27 of the side at its level 9), samples "
        "nearest and fills with the dataset mean.",
        "Same value 22.7 levels mean, 88% of pixels; bin for bin 22.6 / 88%. Kernel vs Pillow "
        "doing the same (bilinear, centre, grey): 0.77 mean, at most 1 level inside the image, up "
        "to 64 on the one-pixel rim.",
        f"{_DIFF}, {_PILLOW}",
    ),
    "ShearY": OpNote(
        "As ShearX.",
        "Vs the reference, same value 25.0 mean, 88%; bin for bin 25.0 / 88%. Kernel vs Pillow 0.78 mean.",
        f"{_DIFF}, {_PILLOW}",
    ),
    "TranslateX": OpNote(
        "Whole pixels, rounded half away from zero; grey fill. Range: the paper's 150 px of 331 "
        "(14.5 px of 32 at bin 9; torchvision's too), or with range_reading='reference' 10/32 of "
        "the side, the reference's 10 px of 32 (its level b moves b px; ours 10 b / 9 rounded, one "
        "pixel further on bins 5..9). Published CIFAR-10/SVHN use 'reference'.",
        "Bin for bin vs the reference: paper range 23.9 mean, 89% of pixels; reference range 7.7 / "
        "52%; same value 1.0 / 14% (only the fill: grey 128 vs the mean 125/123/114). Kernel = "
        "Pillow exactly. Training the published CIFAR-10 policy under both readings (tiny, 80 "
        "epochs, 5 paired seeds): reference - paper = +0.04 +/- 0.10 (SE) points.",
        f"{_DIFF}, {_PILLOW}, results/translate_range.md",
    ),
    "TranslateY": OpNote(
        "As TranslateX.",
        "Bin for bin, paper range 26.6 mean / 89%, reference range 8.2 / 53%.",
        _DIFF,
    ),
    "Rotate": OpNote(
        "About the centre, bilinear, grey fill; the reference rotates 3 x level degrees with PIL's "
        "default nearest sampling and the mean fill.",
        "Same value 6.2 mean, 86% of pixels; bin for bin 7.6 / 87%. Kernel vs Pillow bilinear: 1.1 "
        "mean, 1 level inside, up to 63 on the rim.",
        f"{_DIFF}, {_PILLOW}",
    ),
    "AutoContrast": OpNote(
        "PIL's rule (255 counts towards the range; truncates). The export is autoaug's own "
        "transform (albumentations' leaves 255 out of the range).",
        "Equal to the reference and to Pillow (0 pixels differ).",
        f"{_DIFF}, {_PILLOW}",
    ),
    "Invert": OpNote(
        "-",
        "Equal to the reference and to Pillow.",
        f"{_DIFF}, {_PILLOW}",
    ),
    "Equalize": OpNote(
        "PIL's rule. The export is autoaug's own transform: albumentations' mode='pil' is not PIL's rule.",
        "Equal to the reference and to Pillow (0 pixels differ); albumentations' mode='pil' +2.6 "
        "levels mean, 63% of pixels.",
        f"{_DIFF}, {_PILLOW}, issue #8",
    ),
    "Solarize": OpNote(
        "Inverts pixels at or above the threshold: 256 at bin 0 (nothing) down to 0 at bin 9 "
        "(everything), the reference's direction (256 - int(25.6 level): 256 .. 26) and torchvision's.",
        "Bin for bin 6.3 mean, 12.5% of pixels (worst bin 8: threshold 28 vs 52, 17.6 mean); same "
        "value: equal. Kernel = Pillow.",
        f"{_DIFF}, {_PILLOW}",
    ),
    "Posterize": OpNote(
        "The paper's [4, 8] bits, 8 at bin 0 down to 4 at bin 9, as torchvision. The reference "
        "keeps 4 - int(0.4 level) bits (4, 4, 4, 3, 3, 2, 2, 2, 1, 1).",
        "Bin for bin 24.9 mean, 99% of pixels (worst bin 55.8). Same value: equal; kernel = Pillow.",
        f"{_DIFF}, {_PILLOW}",
    ),
    "Contrast": OpNote(
        "Factor 0.1 + 0.2 b (the reference: 0.1 + 0.18 level, up to 1.72). torchvision reads the "
        "bin as a signed 1 +/- m (so its bin 0 is the identity). Blends with the exact mean grey "
        "(Pillow rounds it) and truncates.",
        "Same value 0.10 mean, at most 1 level; bin for bin 3.0 mean.",
        _DIFF,
    ),
    "Color": OpNote(
        "Saturation: blend with the grey image; factor as for Contrast. OpenCV's grey (14-bit) vs "
        "Pillow's (16-bit).",
        "Same value 0.40 mean, at most 1 level; bin for bin 1.2 mean.",
        _DIFF,
    ),
    "Brightness": OpNote(
        "Blend with black; factor as for Contrast.",
        "Same value: equal; bin for bin 7.5 mean.",
        _DIFF,
    ),
    "Sharpness": OpNote(
        "PIL's smoothing kernel, border kept. albumentations' Sharpen cannot blur (factor < 1), so "
        "the export is autoaug's own transform. Factor as for Contrast.",
        "Same value 0.35 mean, at most 1 level (Pillow rounds the smoothed image first); bin for "
        "bin 0.65 mean.",
        _DIFF,
    ),
    "Cutout": OpNote(
        "One grey hole of trunc(m x side) pixels square, wholly inside the image. Paper: [0, 20] "
        "px, which the reference applies to 32 px images, so 20/32 of the side. The reference meant "
        "a 2 x level px square centred anywhere and clipped, but paints range(upper[0], lower[1]) "
        "on both axes: a square on the diagonal from empty to the whole image.",
        "Mean painted area 111 px at level 1, 354 at level 9; ours 4 and 400. No published policy "
        "uses Cutout.",
        _DIFF,
    ),
    "SamplePairing": OpNote(
        "The partner is another image of the same batch (torch) or of the image pool given to the "
        "transform (albumentations). Not in the reference code nor torchvision.",
        "Vs Pillow's blend: 0.42 mean, at most 1 level (we round, Pillow truncates).",
        _PILLOW,
    ),
    "Identity": OpNote(
        "Leaves the image alone. Not in the AutoAugment search space (the paper's 16 ops); "
        "RandAugment and TrivialAugment may draw it.",
        "-",
        "-",
    ),
}

README = Path(__file__).resolve().parents[2] / "policies" / "README.md"
BEGIN = "<!-- op table: written by `python -m autoaug.space.op_notes` from autoaug/space/ops.py and op_notes.py -->"
END = "<!-- end of the op table -->"


def _range(op: OpSpec) -> str:
    """Bin 0 .. bin 9 of a row, as the table holds them (4 significant digits)."""
    if op.low is None or op.high is None:
        return "-"
    text = f"{op.low:.4g} .. {op.high:.4g}"
    if op.reference_high is not None:
        text += f" (reference reading: .. {op.reference_high:.4g})"
    return text


def op_table() -> str:
    """The op table of policies/README.md: one row per op of `TABLE`, its range, unit, sign and
    effect on targets (`autoaug.space.targets`) from the row, how it differs and by how much from `NOTES`."""
    lines = [
        "| op | bin 0 .. bin 9 | unit | sign | masks, boxes, keypoints | how it differs from the paper, the reference code, "
        "torchvision | measured | source |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for op in TABLE:
        note = NOTES[op.name]
        unit = op.unit + (", whole numbers" if op.integer else "")
        sign = "random" if op.signed else "-"
        lines.append(f"| {op.name} | {_range(op)} | {unit} | {sign} | {EFFECTS[op.targets]} | {note.deviation} | "
                     f"{note.measured} | {note.source} |")
    return "\n".join(lines)


def readme_section(text: str) -> str:
    """The part of README text between the BEGIN and END markers."""
    try:
        start = text.index(BEGIN) + len(BEGIN)
        return text[start : text.index(END, start)].strip("\n")
    except ValueError:
        raise ValueError(f"{README} lacks the op table markers {BEGIN!r} ... {END!r}") from None


def write_readme(path: Path = README) -> bool:
    """Write `op_table()` between the markers of `path`; True if the file changed."""
    text = path.read_text()
    if readme_section(text) == op_table():
        return False
    start = text.index(BEGIN) + len(BEGIN)
    path.write_text(text[:start] + "\n" + op_table() + "\n" + text[text.index(END, start):])
    return True


if __name__ == "__main__":
    changed = write_readme()
    print(f"{'rewrote' if changed else 'unchanged:'} the op table of {README}", file=sys.stderr)
