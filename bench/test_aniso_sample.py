"""aniso_sample benchmarks: every implementation on the contract's "bench" cases, forward and forward+backward.

Targets (issue 4, H100, fp32, default size): forward <= 1.0 ms, forward+backward <= 4 ms. ``bytes_moved`` is the
contract's memory floor for the mode, so ``pct_of_measured_bw`` is the achieved fraction of that floor.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from pgocc import ops

OP = "aniso_sample"
spec = ops.contract(OP)
DIFFERENTIABLE = ("centres", "quats", "scales", "offsets", "level_weights")


def flat_call(fn: Callable[..., Any], num_levels: int) -> Callable[..., Any]:
    """``fn`` taking the pyramid as ``features_0 .. features_{L-1}`` keywords, so that the harness sees every level
    as a leaf (and clears its gradient between steps instead of accumulating into it)."""
    def call(**kwargs: Any) -> Any:
        features = [kwargs.pop(f"features_{level}") for level in range(num_levels)]
        return fn(features=features, **kwargs)
    return call


@pytest.mark.parametrize("impl", ops.available(OP))
@pytest.mark.parametrize("case", spec.CASES["bench"], ids=lambda c: c.id)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_aniso_sample(gpu_bench, impl: str, case, dtype: torch.dtype, mode: str) -> None:
    inputs = spec.make_inputs(case, device="cuda", dtype=dtype, seed=0)
    features = inputs.pop("features")
    inputs.update({f"features_{level}": f for level, f in enumerate(features)})
    if mode == "fwd_bwd":
        for name in (*DIFFERENTIABLE, *(f"features_{level}" for level in range(len(features)))):
            inputs[name].requires_grad_(True)
    tag = "" if dtype == torch.float32 else "_bf16"
    gpu_bench(flat_call(ops.resolve(OP, impl), len(features)), inputs, mode=mode,
              group=f"{OP}/{case.id}{tag}/{mode}", impl=impl, bytes_moved=spec.bytes_moved(case, dtype, mode=mode),
              deterministic=ops.is_deterministic(OP, impl))
