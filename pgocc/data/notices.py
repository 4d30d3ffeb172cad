"""One-time notices for the fallbacks the specification defines (everything else raises DataError)."""

from __future__ import annotations

import warnings

_SEEN: set[str] = set()


class DataFallbackWarning(UserWarning):
    """A specified fallback was applied (e.g. Pillow instead of libjpeg-turbo, a camera missing from a sweep)."""


def warn_once(key: str, message: str) -> None:
    """Emit ``message`` as a DataFallbackWarning the first time ``key`` is seen in this process."""
    if key not in _SEEN:
        _SEEN.add(key)
        warnings.warn(message, DataFallbackWarning, stacklevel=3)
