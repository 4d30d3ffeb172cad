"""The exceptions every public entry point raises for bad input.

Each message names the file, argument or config path at fault and what was expected, so that a user can fix the
input without reading the code. Nothing is silently replaced: a fallback the specification defines is applied and
announced once, everything else raises.
"""

from __future__ import annotations

import re
import sys


class PgoccError(Exception):
    """Base class of pgocc's user-facing errors."""


class ConfigError(PgoccError, ValueError):
    """A configuration value is invalid; the message starts with its dotted path (e.g. ``train.num_steps``)."""


class DataError(PgoccError, ValueError):
    """A dataset file or table is missing, corrupt or of the wrong shape; the message names the file."""


class CheckpointError(PgoccError, ValueError):
    """A checkpoint is missing, corrupt or does not match the model; the message lists what differs."""


_WORKER_WRAPPED = re.compile(r"^Caught \w+ in DataLoader worker process \d+\.\nOriginal Traceback")
"""The start of the message torch gives an exception re-raised from a DataLoader worker (``ExceptionWrapper``)."""


def user_message(exc: PgoccError) -> str:
    """The message of ``exc`` as the user should read it.

    A DataLoader worker's exception reaches the main process re-created by torch from a message holding the worker's
    whole traceback, whose last line is ``<module>.<class>: <the original message>``; the original message is what
    names the file, so only it is returned. Any other exception's message is returned as it is.
    """
    text = str(exc)
    if not _WORKER_WRAPPED.match(text):
        return text
    marker = f"\n{type(exc).__module__}.{type(exc).__qualname__}: "
    at = text.rfind(marker)
    return text[at + len(marker):].strip() if at >= 0 else text


def report(command: str, exc: PgoccError) -> int:
    """Print ``pgocc <command>: error: <message>`` to stderr and return the exit code of bad input, 2."""
    print(f"pgocc {command}: error: {user_message(exc)}", file=sys.stderr)
    return 2
