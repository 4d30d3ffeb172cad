"""Contract of ``st_fusion``: the AdaptiveMixing core that fuses the spatio-temporal samples of each query.

Glossary: B batch, Q queries, G channel groups, TP = T·P spatio-temporal samples per group (frames × points),
C channels per group (C_g), P_out output points of the point mix.

    st_fusion(x, channel_mix, point_mix, eps) -> out

Args:
    x: [B, Q, G, TP, C] sampled features (docs/model.md §2.3 output, point index t·P + p).
    channel_mix: [B, Q, G, C, C] per-query channel-mixing matrix M, laid out [in, out].
    point_mix: [B, Q, G, P_out, TP] per-query point-mixing matrix S, laid out [out_points, in_points].
    eps: LayerNorm epsilon (> 0); the decoder uses 1e-5.

Returns:
    [B, Q, G, P_out, C] in the dtype of ``x``.

Semantics (docs/model.md §2.4, §2.6), per (b, q, g):
    Y = relu(LayerNorm(X · M))      LayerNorm over the whole [TP, C] slab, no affine
    Z = relu(LayerNorm(S · Y))      LayerNorm over the whole [P_out, C] slab, no affine
LayerNorm uses the biased variance: (v - mean) / sqrt(var + eps). M and S are produced outside by one GEMM
(``Linear(256 -> G·(C·C + P_out·TP))``) and the output projection is another; this op is what lies between them.

Precision: all tensors share one dtype (bfloat16, float32 or float64). The Triton kernel multiplies with ``tl.dot``
on the tensor cores (float32 inputs as three TF32 products, "tf32x3", which keeps float32 accuracy), accumulates and
normalises in float32 (float64 for float64 inputs), rounds the first ReLU output to the input dtype before the point
mix (as a framework in that dtype would) and stores once. Gradients flow to x, channel_mix and point_mix; every
implementation is deterministic.
"""

from __future__ import annotations

import torch

from pgocc.ops._contract import Case, Impl, check_tensor, same_device

IMPLS: dict[str, Impl] = {
    "reference": Impl("reference.st_fusion:st_fusion", deterministic=True),
    "triton": Impl("kernels_triton.st_fusion:st_fusion", deterministic=True),
}

_DTYPES = (torch.bfloat16, torch.float32, torch.float64)

CASES: dict[str, list[Case]] = {
    "cpu": [
        Case("b1_q3_g2_tp32_c64_p128", {"B": 1, "Q": 3, "G": 2, "TP": 32, "C": 64, "P": 128},
             note="the model's slab sizes"),
        Case("b2_q2_g3_tp12_c20_p24", {"B": 2, "Q": 2, "G": 3, "TP": 12, "C": 20, "P": 24},
             note="odd sizes: every block padded and masked"),
    ],
    "gpu": [
        Case("b1_q300_g4_tp32_c64_p128", {"B": 1, "Q": 300, "G": 4, "TP": 32, "C": 64, "P": 128}),
        Case("b2_q77_g3_tp24_c40_p100", {"B": 2, "Q": 77, "G": 3, "TP": 24, "C": 40, "P": 100},
             note="odd sizes: every block padded and masked"),
    ],
    "bench": [
        Case("q6000", {"B": 1, "Q": 6000, "G": 4, "TP": 32, "C": 64, "P": 128},
             note="stage 2 at default sizes (docs/model.md §11 b)"),
    ],
}


def validate(x: torch.Tensor, channel_mix: torch.Tensor, point_mix: torch.Tensor, eps: float) -> None:
    """Check metadata; raises ValueError naming the argument."""
    dims: dict[str, int] = {}
    check_tensor("st_fusion", "x", x, ("B", "Q", "G", "TP", "C"), dtypes=_DTYPES, dims=dims)
    device = same_device("st_fusion", x=x, channel_mix=channel_mix, point_mix=point_mix)
    check_tensor("st_fusion", "channel_mix", channel_mix, ("B", "Q", "G", "C", "C"), dtypes=(x.dtype,),
                 device=device, dims=dims)
    check_tensor("st_fusion", "point_mix", point_mix, ("B", "Q", "G", "P_out", "TP"), dtypes=(x.dtype,),
                 device=device, dims=dims)
    for name in ("TP", "C", "P_out"):
        if dims[name] < 1:
            raise ValueError(f"st_fusion: {name} must be >= 1 (LayerNorm over an empty slab), got {dims[name]}")
    if not isinstance(eps, float | int) or isinstance(eps, bool) or not eps > 0:
        raise ValueError(f"st_fusion: eps must be a float > 0, got {eps!r}")


def make_inputs(case: Case, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                seed: int = 0) -> dict:
    """Random inputs for ``case``: unit-variance samples, mixing matrices scaled like a fan-in initialisation."""
    g = torch.Generator().manual_seed(seed)
    d = case.dims
    B, Q, G, TP, C, P = d["B"], d["Q"], d["G"], d["TP"], d["C"], d["P"]
    x = torch.randn(B, Q, G, TP, C, generator=g, dtype=torch.float64)
    channel_mix = torch.randn(B, Q, G, C, C, generator=g, dtype=torch.float64) / C**0.5
    point_mix = torch.randn(B, Q, G, P, TP, generator=g, dtype=torch.float64) / TP**0.5
    return {"x": x.to(device, dtype), "channel_mix": channel_mix.to(device, dtype),
            "point_mix": point_mix.to(device, dtype), "eps": 1e-5}


def bytes_moved(case: Case, dtype: torch.dtype) -> int:
    """Minimal DRAM traffic of the op: read x, M and S once, write the output once."""
    d = case.dims
    slabs = d["B"] * d["Q"] * d["G"]
    per_slab = d["TP"] * d["C"] + d["C"] * d["C"] + d["P"] * d["TP"] + d["P"] * d["C"]
    return slabs * per_slab * torch.finfo(dtype).bits // 8
