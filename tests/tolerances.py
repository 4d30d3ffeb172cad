"""The one calibrated tolerance table of the parity tests.

Key: (op, quantity, dtype of the implementation under test); quantity is "out" for forward outputs and "grad" for
gradients. Every test compares against the float64 reference. A row says where its numbers come from.

    rtol, atol: elementwise  |out - ref| <= atol + rtol * |ref|
    ratio:      relative error of the whole tensor  ||out - ref||_2 / max(||ref||_2, tiny) <= ratio
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True)
class Tol:
    rtol: float
    atol: float
    ratio: float


F32, BF16, F64 = torch.float32, torch.bfloat16, torch.float64

TOL: dict[tuple[str, str, torch.dtype], Tol] = {
    # float64 runs of any implementation against the float64 reference: only reordering error.
    ("*", "out", F64): Tol(rtol=1e-9, atol=1e-10, ratio=1e-10),
    ("*", "grad", F64): Tol(rtol=1e-8, atol=1e-9, ratio=1e-9),
    # ---- aniso_sample ----
    # ---- st_fusion ----
    # ---- gs_raster ----
    # ---- gs2vox ----
    # ---- fps ----  (indices must be identical; no tolerance row)
    # ---- dist_attention ----
}


def tolerance(op: str, quantity: str, dtype: torch.dtype) -> Tol:
    """The row for (op, quantity, dtype), falling back to the op-independent float64 row."""
    for key in ((op, quantity, dtype), ("*", quantity, dtype)):
        if key in TOL:
            return TOL[key]
    raise KeyError(f"tests/tolerances.py has no row for ({op!r}, {quantity!r}, {dtype}); calibrate one and add it")
