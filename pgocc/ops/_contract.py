"""Shared pieces of the hot-path contracts: implementation records, named cases and metadata checks.

Checks read only metadata (shape, dtype, device), never values, so they cost no host sync and stay cheap as
``torch.compile`` guards.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True, slots=True)
class Impl:
    """One implementation of an op: where it lives and what it promises."""

    target: str
    """``module:function`` imported on first use (so a reference-only run never imports triton)."""
    deterministic: bool
    """Bit-identical results run to run (no float atomics, no order-dependent reductions)."""
    devices: tuple[str, ...] = ("cpu", "cuda")
    """Device types it runs on (CPU Triton runs need TRITON_INTERPRET=1, which tests set)."""


@dataclass(frozen=True, slots=True)
class Case:
    """A named problem size shared by parity tests and benchmarks."""

    id: str
    """Short name used in test ids and benchmark groups."""
    dims: Mapping[str, Any]
    """Sizes and switches the op's ``make_inputs`` understands."""
    note: str = ""
    """What the case exercises."""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Op-specific extras (e.g. edge-case flags)."""


def check_tensor(
    op: str,
    name: str,
    t: Any,
    shape: Sequence[int | None | str],
    dtypes: Sequence[torch.dtype] | None = None,
    device: torch.device | None = None,
    dims: dict[str, int] | None = None,
) -> None:
    """Check one tensor argument's metadata and bind symbolic dims.

    Args:
        op: op name, for the message.
        name: argument name, for the message.
        t: the argument.
        shape: expected shape; an int must match, None matches anything, a str is a symbolic dim that must agree
            with every other use of the same symbol (bound in ``dims``).
        dtypes: allowed dtypes (None: any floating dtype).
        device: required device (None: any).
        dims: symbol table shared across the arguments of one call; updated in place.

    Raises:
        ValueError naming the argument, the expectation and the actual value.
    """
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(t).__name__}")
    spec = "[" + ", ".join("*" if s is None else str(s) for s in shape) + "]"
    if t.ndim != len(shape):
        raise ValueError(f"{op}: {name} must be {spec} ({len(shape)}-D), got shape {tuple(t.shape)}")
    for axis, (want, got) in enumerate(zip(shape, t.shape, strict=True)):
        if want is None:
            continue
        if isinstance(want, str):
            if dims is None:
                continue
            bound = dims.setdefault(want, int(got))
            if bound != got:
                raise ValueError(f"{op}: {name} must be {spec}; dim {axis} ({want}) is {got} but {want}={bound} "
                                 f"elsewhere")
        elif want != got:
            raise ValueError(f"{op}: {name} must be {spec}; dim {axis} is {got}, expected {want}")
    if dtypes is None:
        if not t.is_floating_point():
            raise ValueError(f"{op}: {name} must be a floating-point tensor, got {t.dtype}")
    elif t.dtype not in dtypes:
        raise ValueError(f"{op}: {name} must have dtype in {[str(d) for d in dtypes]}, got {t.dtype}")
    if device is not None and t.device != device:
        raise ValueError(f"{op}: {name} is on {t.device}, but the other inputs are on {device}")


def same_device(op: str, **tensors: torch.Tensor) -> torch.device:
    """Return the common device of ``tensors`` or raise ValueError listing each argument's device."""
    devices = {name: t.device for name, t in tensors.items() if isinstance(t, torch.Tensor)}
    if len(set(devices.values())) > 1:
        listing = ", ".join(f"{k}={v}" for k, v in devices.items())
        raise ValueError(f"{op}: all tensors must be on one device, got {listing}")
    return next(iter(devices.values()))
