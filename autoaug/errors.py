"""The one exception type for user mistakes (bad config, policy file, dataset, CLI input).

The CLI turns an `AutoaugError` into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import re
from typing import Any


class AutoaugError(Exception):
    """A user-facing error: the message says what was expected and what came."""


class PolicyError(AutoaugError):
    """A policy file or policy value that does not satisfy the search-space contract."""


class DataError(AutoaugError):
    """A dataset spec, path or content that cannot be used."""


class ConfigError(AutoaugError):
    """A configuration file, key or override that cannot be used."""


class TargetError(AutoaugError):
    """Targets handed with images (masks, boxes, keypoints, their formats) that cannot be used,
    or a pipeline that cannot carry them (issue #25)."""


class PipelineError(AutoaugError):
    """An albumentations pipeline (file) that cannot serve where it was handed, e.g. one that does
    not end in ToTensorV2 given to something that needs tensors."""


def shown(value: Any) -> str:
    """repr(value) cut to fit one line of an error (a 5,000-digit number or a value nested a
    thousand lists deep stays readable)."""
    try:
        text = repr(value)
    except (ValueError, RecursionError):  # an int beyond Python's digit limit, or too deep
        return f"a {type(value).__name__} too large to print"
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(text)} characters)"


def cut(text: str, limit: int = 120) -> str:
    """`text` cut to `limit` characters, its head and tail kept (a 5,000-character path or spec)."""
    if len(text) <= limit:
        return text
    return f"{text[:limit // 2]}...{text[-(limit // 3):]} ({len(text)} characters)"


def one_line(message: str) -> str:
    """An error message as the CLI prints it: one line, every word longer than a line cut with
    `cut` (a long value that reached a message unshortened)."""
    return re.sub(r"\S{160,}", lambda m: cut(m.group()), " ".join(message.splitlines()))
