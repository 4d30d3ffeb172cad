"""``assert_parity``: compare an implementation's tensor to the float64 reference with the calibrated tolerances."""

from __future__ import annotations

import torch

from tests.tolerances import tolerance


def assert_finite(name: str, t: torch.Tensor) -> None:
    """Fail with the count and first position of NaN/Inf values in ``t``."""
    if t.is_floating_point():
        bad = ~torch.isfinite(t)
        if bool(bad.any()):
            first = tuple(int(i) for i in bad.nonzero()[0])
            raise AssertionError(f"{name}: {int(bad.sum())} non-finite values (first at {first}: {t[first].item()})")


def assert_parity(name: str, out: torch.Tensor, ref: torch.Tensor, *, op: str, quantity: str = "out",
                  dtype: torch.dtype | None = None) -> None:
    """Assert ``out`` (implementation under test) matches ``ref`` (float64 reference).

    Args:
        name: what is compared, e.g. "features" or "d means"; used in the report.
        out: tensor of the implementation under test.
        ref: tensor of the reference, computed in float64.
        op: op name (tolerance table key).
        quantity: "out" or "grad".
        dtype: dtype the implementation ran in (default ``out.dtype``).

    Fails on NaN/Inf in either tensor, on a shape mismatch, on the whole-tensor relative error above ``ratio`` and on
    any element outside ``atol + rtol * |ref|``; the report gives both errors, the worst element and how many fail.
    """
    dtype = dtype or out.dtype
    tol = tolerance(op, quantity, dtype)
    assert_finite(f"{op}/{name} (implementation)", out)
    assert_finite(f"{op}/{name} (reference)", ref)
    if out.shape != ref.shape:
        raise AssertionError(f"{op}/{name}: shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
    o = out.detach().to(torch.float64).cpu()
    r = ref.detach().to(torch.float64).cpu()
    err = (o - r).abs()
    ratio = float(err.norm() / r.norm().clamp_min(1e-30)) if r.numel() else 0.0
    bound = tol.atol + tol.rtol * r.abs()
    over = err > bound
    if ratio > tol.ratio or bool(over.any()):
        worst = int((err - bound).flatten().argmax()) if err.numel() else 0
        idx = tuple(int(i) for i in torch.unravel_index(torch.tensor(worst), err.shape)) if err.numel() else ()
        raise AssertionError(
            f"{op}/{name} ({quantity}, {dtype}) differs from the float64 reference:\n"
            f"  relative error ||out-ref||/||ref|| = {ratio:.3e} (limit {tol.ratio:.1e})\n"
            f"  elements outside atol={tol.atol:.1e} + rtol={tol.rtol:.1e}*|ref|: {int(over.sum())} of {err.numel()}\n"
            f"  worst at {idx}: out={o.flatten()[worst]:.6e} ref={r.flatten()[worst]:.6e} "
            f"|diff|={err.flatten()[worst]:.3e}\n"
            f"  max |diff| = {float(err.max()) if err.numel() else 0.0:.3e}, max |ref| = "
            f"{float(r.abs().max()) if r.numel() else 0.0:.3e}"
        )


def assert_parity_scaled(name: str, out: torch.Tensor, ref: torch.Tensor, *, op: str, quantity: str = "out",
                         dtype: torch.dtype | None = None, low: torch.Tensor | None = None,
                         low_factor: float = 0.0) -> None:
    """``assert_parity`` on both tensors divided by max|ref|, so that atol is relative to the largest element (for
    gradients whose entries span orders of magnitude).

    With ``low`` (torch's own result in the implementation's precision) each element's error up to ``low_factor``
    times that of ``low`` at the same element is allowed first, and only the excess must meet the tolerance row: for
    ops whose conditioning in that precision limits any implementation (tests/test_aniso_sample.py says why there).
    """
    dtype = dtype or out.dtype
    scale = ref.detach().abs().max().clamp_min(1e-30)
    o, r = out.detach().double() / scale, ref.detach().double() / scale
    if low is None:
        assert_parity(f"{name} / max|ref|", o, r, op=op, quantity=quantity, dtype=dtype)
        return
    err = o - r
    excess = err.sign() * (err.abs() - low_factor * (low.detach().double() / scale - r).abs()).clamp_min(0)
    assert_parity(f"{name} / max|ref| (error beyond {low_factor:g}x torch-{str(dtype)[6:]}'s)", r + excess, r, op=op,
                  quantity=quantity, dtype=dtype)


def assert_not_worse_than_torch(name: str, out: torch.Tensor, low: torch.Tensor, ref: torch.Tensor, *, op: str,
                                quantity: str) -> None:
    """Low-precision rule (docs/architecture.md §5 rule 4): the largest error of ``out`` relative to max|ref| is at
    most twice that of ``low`` (torch's own path in the same dtype) plus the tolerance row's atol."""
    scale = ref.detach().abs().max()
    err = float((out.detach().double() - ref).abs().max() / scale)
    low_err = float((low.detach().double() - ref).abs().max() / scale)
    limit = 2 * low_err + tolerance(op, quantity, out.dtype).atol
    assert err <= limit, (f"{op}/{name}: {out.dtype} error {err:.3e} of max|ref| exceeds 2 x torch's own "
                          f"({low_err:.3e}) + atol")
