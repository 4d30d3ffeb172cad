"""st_fusion on the GPU: the op alone (Triton kernel beside the PyTorch reference) and AdaptiveMixing as a whole
(parameter GEMM -> op -> output GEMM, docs/model.md §2.4), the issue's target: <= 1.0 ms forward in bf16 at Q = 6000.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from pgocc import ops
from pgocc.ops._contract import Case

OP = "st_fusion"
spec = ops.contract(OP)
D_MODEL = 256


def adaptive_mixing(fusion: Callable[..., torch.Tensor], q: torch.Tensor, x: torch.Tensor, w_params: torch.Tensor,
                    b_params: torch.Tensor, w_out: torch.Tensor, b_out: torch.Tensor) -> torch.Tensor:
    """AdaptiveMixing without its residual: q [B, Q, 256], x [B, Q, G, TP, C] -> [B, Q, 256].

    ``Linear(256 -> G·(C·C + P_out·TP))`` gives per group M (first C·C values, [in, out]) and S ([P_out, TP]); the op
    fuses them with x; ``Linear(G·P_out·C -> 256)`` projects the flattened result (index g·P_out·C + o·C + c).
    """
    B, Q, G, TP, C = x.shape
    P = (w_params.shape[0] // G - C * C) // TP
    params = F.linear(q, w_params, b_params).view(B, Q, G, C * C + P * TP)
    m = params[..., :C * C].unflatten(-1, (C, C))
    s = params[..., C * C:].unflatten(-1, (P, TP))
    return F.linear(fusion(x, m, s, 1e-5).flatten(2), w_out, b_out)


def _adamix_inputs(case: Case, dtype: torch.dtype) -> dict:
    d = case.dims
    g = torch.Generator(device="cuda").manual_seed(0)
    n_params = d["G"] * (d["C"] * d["C"] + d["P"] * d["TP"])
    n_out = d["G"] * d["P"] * d["C"]

    def randn(*shape: int, scale: float) -> torch.Tensor:
        return (torch.randn(*shape, generator=g, device="cuda") * scale).to(dtype)

    return {"q": randn(d["B"], d["Q"], D_MODEL, scale=1.0),
            "x": spec.make_inputs(case, device="cuda", dtype=dtype, seed=0)["x"],
            "w_params": randn(n_params, D_MODEL, scale=D_MODEL**-0.5), "b_params": randn(n_params, scale=1.0),
            "w_out": randn(D_MODEL, n_out, scale=n_out**-0.5), "b_out": randn(D_MODEL, scale=0.0)}


# The op alone in bf16; AdaptiveMixing also in float32 forward (the anchor's torch figure is 7.2 ms there).
MODES = [("fwd", torch.bfloat16), ("fwd_bwd", torch.bfloat16)]
ADAMIX_MODES = [*MODES, ("fwd", torch.float32)]


@pytest.mark.parametrize("impl", ops.available(OP))
@pytest.mark.parametrize("case", spec.CASES["bench"], ids=[c.id for c in spec.CASES["bench"]])
@pytest.mark.parametrize("mode,dtype", MODES, ids=[f"{m}-{str(d)[6:]}" for m, d in MODES])
def test_st_fusion(gpu_bench: Callable[..., dict], case: Case, impl: str, mode: str, dtype: torch.dtype) -> None:
    inputs = spec.make_inputs(case, device="cuda", dtype=dtype, seed=0)
    if mode == "fwd_bwd":
        for name in ("x", "channel_mix", "point_mix"):
            inputs[name].requires_grad_(True)
    gpu_bench(ops.resolve(OP, impl), inputs, mode=mode, group=f"{OP}/{case.id}-{str(dtype)[6:]}/{mode}", impl=impl,
              bytes_moved=spec.bytes_moved(case, dtype), deterministic=spec.IMPLS[impl].deterministic)


@pytest.mark.parametrize("impl", ops.available(OP))
@pytest.mark.parametrize("case", spec.CASES["bench"], ids=[c.id for c in spec.CASES["bench"]])
@pytest.mark.parametrize("mode,dtype", ADAMIX_MODES, ids=[f"{m}-{str(d)[6:]}" for m, d in ADAMIX_MODES])
def test_adaptive_mixing(gpu_bench: Callable[..., dict], case: Case, impl: str, mode: str,
                         dtype: torch.dtype) -> None:
    inputs = _adamix_inputs(case, dtype)
    if mode == "fwd_bwd":
        for tensor in inputs.values():
            tensor.requires_grad_(True)
    fusion = ops.resolve(OP, impl)
    gpu_bench(lambda **kw: adaptive_mixing(fusion, **kw), inputs, mode=mode,
              group=f"{OP}/{case.id}-adamix-{str(dtype)[6:]}/{mode}", impl=impl,
              deterministic=spec.IMPLS[impl].deterministic)
