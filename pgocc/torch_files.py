"""Reading ``torch.save`` files safely, with one-line errors.

Every file pgocc reads with ``torch.load`` (state dicts, prototype tables, the per-rank part of a training
checkpoint) goes through :func:`load_torch_file`: ``weights_only=True`` always, a file that is not a PyTorch file is
named as such (torch would fail on it with an unrelated ``KeyError`` or unpickling message), and torch's own advice
to load a refused file as an arbitrary pickle never reaches the user.
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch

from pgocc.errors import CheckpointError, PgoccError


def is_torch_file(head: bytes) -> bool:
    """Whether the first bytes ``head`` are those of a ``torch.save`` file: a zip archive (the format since torch 1.6)
    or a legacy pickle (protocol 2 to 5)."""
    return head.startswith(b"PK\x03\x04") or (len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5)


def load_torch_file(path: Path, what: str, argument: str | None, error: type[PgoccError] = CheckpointError) -> Any:
    """The object ``torch.load(path, weights_only=True)`` reads from ``path`` (tensors on the CPU).

    Args:
        path: the file.
        what: what the file should be, for the messages (e.g. "checkpoint file").
        argument: the command-line argument or config field it came from (e.g. "--checkpoint"), or None where the
            caller does not know it.
        error: the exception class raised.

    Raises:
        ``error`` naming ``path`` for a missing file, a file that is not a PyTorch file, a corrupt or truncated one,
        or one holding Python objects other than tensors and plain containers (refused, never unpickled).
    """
    source = f" ({argument})" if argument else ""
    if not path.is_file():
        raise error(f"{path}: {what} not found{source}")
    with open(path, "rb") as f:
        head = f.read(4)
    if not is_torch_file(head):
        raise error(f"{path}: cannot read the {what}{source}: not a PyTorch file (a torch.save file starts "
                    f"with a zip or pickle header; this one starts with {head!r})")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message goes on to advise loading the file as an arbitrary pickle; only its reason is kept.
        reason = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\. |\n|$)", str(exc))
        raise error(f"{path}: cannot read the {what}{source}: not loadable as tensors only "
                    f"({reason.group(1) if reason else 'unpickling failed'}); pgocc loads tensors and plain "
                    "containers and never unpickles other objects") from None
    except Exception as exc:  # torch.load raises unrelated types (zip, runtime, EOF) for a damaged file
        first = re.split(r"\. |\n", str(exc).strip())[0]
        raise error(f"{path}: cannot read the {what}{source}: corrupt or truncated PyTorch file "
                    f"({type(exc).__name__}{': ' + first if first else ''})") from None
