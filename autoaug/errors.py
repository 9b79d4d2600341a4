"""The one exception type for user mistakes (bad config, policy file, dataset, CLI input).

The CLI turns an `AutoaugError` into one line on stderr and exit code 2; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations


class AutoaugError(Exception):
    """A user-facing error: the message says what was expected and what came."""


class PolicyError(AutoaugError):
    """A policy file or policy value that does not satisfy the search-space contract."""


class DataError(AutoaugError):
    """A dataset spec, path or content that cannot be used."""


class ConfigError(AutoaugError):
    """A configuration file, key or override that cannot be used."""


class PipelineError(AutoaugError):
    """An albumentations pipeline (file) that cannot serve where it was handed, e.g. one that does
    not end in ToTensorV2 given to something that needs tensors."""
