"""The exceptions every public entry point raises for bad input.

Each message names the file, argument or config path at fault and what was expected, so that a user can fix the
input without reading the code. Nothing is silently replaced: a fallback the specification defines is applied and
announced once, everything else raises.
"""

from __future__ import annotations


class PgoccError(Exception):
    """Base class of pgocc's user-facing errors."""


class ConfigError(PgoccError, ValueError):
    """A configuration value is invalid; the message starts with its dotted path (e.g. ``train.num_steps``)."""


class DataError(PgoccError, ValueError):
    """A dataset file or table is missing, corrupt or of the wrong shape; the message names the file."""


class CheckpointError(PgoccError, ValueError):
    """A checkpoint is missing, corrupt or does not match the model; the message lists what differs."""
