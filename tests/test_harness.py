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


def test_draw_inputs_replaces_unusable_draws_and_gives_up_with_the_reason() -> None:
    from tests.conftest import DRAWS, draw_inputs

    seen: list[int] = []

    def make(s: int) -> int:
        seen.append(s)
        return s

    assert draw_inputs(make, lambda s: None if len(seen) == 3 else "too few", seed=5) == seen[-1]
    assert len(seen) == 3 and seen[0] == 5 and len(set(seen)) == 3
    seen.clear()
    with pytest.raises(AssertionError, match=f"{DRAWS} draws from seed 9 were all unusable; the last: too few"):
        draw_inputs(make, lambda s: "too few", seed=9)
    assert len(seen) == DRAWS
