"""The parity helper itself must fail where it should."""

from __future__ import annotations

import pytest
import torch

from tests.parity import assert_parity
from tests.tolerances import Tol, tolerance


def test_parity_passes_on_equal() -> None:
    ref = torch.randn(50, dtype=torch.float64)
    assert_parity("x", ref.clone(), ref, op="any_op")


def test_parity_fails_on_small_elementwise_error() -> None:
    ref = torch.randn(50, dtype=torch.float64)
    out = ref.clone()
    out[7] += 1e-6
    with pytest.raises(AssertionError, match=r"worst at \(7,\)"):
        assert_parity("x", out, ref, op="any_op")


def test_parity_fails_on_nan() -> None:
    ref = torch.randn(5, dtype=torch.float64)
    out = ref.clone()
    out[2] = float("nan")
    with pytest.raises(AssertionError, match="non-finite"):
        assert_parity("x", out, ref, op="any_op")


def test_parity_fails_on_shape() -> None:
    with pytest.raises(AssertionError, match="shape"):
        assert_parity("x", torch.zeros(3, dtype=torch.float64), torch.zeros(4, dtype=torch.float64), op="any_op")


def test_missing_tolerance_row_is_an_error() -> None:
    with pytest.raises(KeyError, match="no row"):
        tolerance("no_such_op", "out", torch.float16)
    assert isinstance(tolerance("no_such_op", "out", torch.float64), Tol)
