"""Small constant tensors of Python values on a tensor's device, without a host→device copy per call.

A tensor built from Python data on a GPU (``torch.tensor(values, device=...)``, ``x.new_tensor(values)``, indexing
with a Python list) is a copy from pageable host memory: it synchronises the stream, so the host stops queueing
launches until the GPU has caught up (docs/performance.md §2). The model's constants (the point-cloud range, the
identity quaternion, the readout's label tables) are the same every call, so :func:`device_constant` copies each one
to a device once and returns the same tensor afterwards.

    device_constant(values, like)   cache hit: no device work; miss: one copy (a sync, once per values/device/dtype)

The cached tensors are shared: callers must not modify them in place. A CUDA graph capture needs a warm-up call
before it, as for any other first-call work (a copy cannot be captured).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import torch

Values = Sequence[Union[float, "Values"]]
"""Numbers, or (nested, rectangular) sequences of them."""

_CACHE: dict[tuple[str, torch.device, torch.dtype], torch.Tensor] = {}


def _key(values: Values) -> str:
    """The cache key of ``values``: the repr of their nested tuples, which tells 0.0 from -0.0 and matches NaN to NaN
    (numbers compared by ``==`` would do neither)."""
    def frozen(v: Values) -> tuple[object, ...]:
        return tuple(frozen(x) if isinstance(x, Sequence) else x for x in v)
    return repr(frozen(values))


def device_constant(values: Values, like: torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    """``torch.tensor(values)`` on ``like``'s device, in ``dtype`` (default ``like.dtype``), cached per device.

    Args:
        values: numbers, shape [n] (or nested sequences: [n, m, ...]).
        like: any tensor on the target device.
        dtype: the constant's dtype.

    Returns:
        A tensor of shape [n, ...] with ``requires_grad`` False; shared between callers, read-only by convention.

    The first call per (values, device, dtype) builds it (one host→device copy), outside inference mode so that the
    cached tensor is an ordinary one that autograd may later save. A ``torch.compile`` trace, and tensor subclasses
    (fake tensors of a tracing mode), get a fresh tensor each call: a compiled graph holds it as a constant, and a
    traced tensor must not outlive its trace in the cache.
    """
    dtype = like.dtype if dtype is None else dtype
    if torch.compiler.is_compiling() or type(like) not in (torch.Tensor, torch.nn.Parameter):
        return torch.tensor(values, dtype=dtype, device=like.device)
    key = (_key(values), like.device, dtype)
    out = _CACHE.get(key)
    if out is None:
        with torch.inference_mode(False):
            out = _CACHE[key] = torch.tensor(values, dtype=dtype, device=like.device)
    return out
