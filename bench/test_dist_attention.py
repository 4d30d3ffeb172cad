"""dist_attention on the GPU: the Triton flash-style kernel beside the materialising PyTorch reference, bf16,
Q = 6000, 8 heads × 32. The issue's target: <= 1 ms forward with O(Q) peak memory (``peak_mem_mb`` is the memory
allocated by the call beyond its inputs). The FlexAttention peer's figures are in docs/kernels.md §8 (see the
contract)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from pgocc import ops
from pgocc.ops._contract import Case

OP = "dist_attention"
spec = ops.contract(OP)


@pytest.mark.parametrize("impl", ops.available(OP))
@pytest.mark.parametrize("case", spec.CASES["bench"], ids=[c.id for c in spec.CASES["bench"]])
@pytest.mark.parametrize("mode", ["fwd", "fwd_bwd"])
def test_dist_attention(gpu_bench: Callable[..., dict], case: Case, impl: str, mode: str) -> None:
    inputs = spec.make_inputs(case, device="cuda", dtype=torch.bfloat16, seed=0)
    if mode == "fwd_bwd":
        for name in ("q", "k", "v", "tau"):
            inputs[name].requires_grad_(True)
    gpu_bench(ops.resolve(OP, impl), inputs, mode=mode, group=f"{OP}/{case.id}-bf16/{mode}", impl=impl,
              bytes_moved=spec.bytes_moved(case, torch.bfloat16), deterministic=spec.IMPLS[impl].deterministic)
