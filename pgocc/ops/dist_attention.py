"""Contract of ``dist_attention``: multi-head self-attention with a BEV-distance bias and the asymmetric stage mask.

Glossary: B batch, H heads, Q queries (keys are the same queries), D head dim, K_old = ``num_old`` queries carried
over from earlier stages (rows and columns [0, K_old)).

    dist_attention(q, k, v, centres, tau, num_old, dropout_p) -> out

Args:
    q, k, v: [B, H, Q, D] per-head projections (any strides).
    centres: [B, Q, 2] float32/float64 BEV box centres (x, y) in metres; no gradient flows to them (§2.2).
    tau: [B, H, Q] per-query, per-head distance weight τ; either sign.
    num_old: K_old in [0, Q]: query i < K_old may not attend to key j >= K_old; 0 means no mask (stage 0).
    dropout_p: dropout probability on the attention probabilities in [0, 1); 0 in evaluation.

Returns:
    [B, H, Q, D] in the dtype of ``q``.

Semantics (docs/model.md §2.2):
    logit[b,h,i,j] = (q_i · k_j) / sqrt(D) - τ[b,h,i] · ‖c_i - c_j‖₂          (-inf where i < K_old <= j)
    out[b,h,i]     = Σ_j dropout(softmax_j(logit[b,h,i,:]))_j · v_j
The distance is sqrt(dx² + dy²) of the centres, computed in their dtype. Dropout zeroes each probability with
probability ``dropout_p`` and scales the kept ones by 1 / (1 - dropout_p). No row is ever fully masked. Gradients flow
to q, k, v and tau.

Implementations: ``reference`` materialises the [B, H, Q, Q] logits (torch's dropout); ``triton`` is a flash-style
kernel (logits generated per tile, O(Q) memory, Philox dropout keyed by a seed drawn from torch's generator on the
inputs' device, so ``torch.manual_seed`` reproduces the mask and the backward regenerates it exactly). A torch
FlexAttention version (``score_mod`` + block mask) was written and dropped: it has no dropout on the probabilities,
its compile took over 50 s per shape on the H100 and its published figures (docs/kernels.md §8: 0.77 ms forward, 2.31 ms
forward + backward) are slower than the Triton kernel's (bench/RESULTS.md).

Precision: q, k, v share one dtype (bfloat16, float32 or float64); tau any floating dtype. The Triton kernel
accumulates logits, softmax statistics and outputs in float32 (float64 for float64 inputs), runs float32 products as
three TF32 tensor-core products ("tf32x3", float32 accuracy) and feeds the probabilities to P·V in the input dtype.
"""

from __future__ import annotations

import torch

from pgocc.ops._contract import Case, Impl, check_tensor, same_device

IMPLS: dict[str, Impl] = {
    "reference": Impl("reference.dist_attention:dist_attention", deterministic=True),
    "triton": Impl("kernels_triton.dist_attention:dist_attention", deterministic=True),
}

_DTYPES = (torch.bfloat16, torch.float32, torch.float64)

# Stage boundaries K_old / Q = 0, 4000/5000 and 5000/6000 of the default config, scaled down in the small cases.
CASES: dict[str, list[Case]] = {
    "cpu": [
        Case("b1_h2_q37_d32_old0", {"B": 1, "H": 2, "Q": 37, "D": 32, "num_old": 0}, note="stage 0: no mask"),
        Case("b2_h2_q37_d32_old30", {"B": 2, "H": 2, "Q": 37, "D": 32, "num_old": 30},
             note="stage 1 boundary (5/6), Q not a multiple of the block"),
        Case("b1_h3_q29_d24_old19", {"B": 1, "H": 3, "Q": 29, "D": 24, "num_old": 19},
             note="stage 2 boundary (4/6 -> 2/3 of Q), head dim padded"),
    ],
    "gpu": [
        Case("b1_h8_q1000_d32_old0", {"B": 1, "H": 8, "Q": 1000, "D": 32, "num_old": 0}),
        Case("b2_h8_q1237_d32_old1031", {"B": 2, "H": 8, "Q": 1237, "D": 32, "num_old": 1031},
             note="5/6 boundary, odd Q"),
        Case("b1_h4_q613_d24_old409", {"B": 1, "H": 4, "Q": 613, "D": 24, "num_old": 409},
             note="2/3 boundary, head dim padded"),
    ],
    "bench": [
        Case("q6000_old5000", {"B": 1, "H": 8, "Q": 6000, "D": 32, "num_old": 5000},
             note="stage 2 at default sizes (docs/model.md §11 f)"),
    ],
}


def validate(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centres: torch.Tensor, tau: torch.Tensor,
             num_old: int, dropout_p: float) -> None:
    """Check metadata; raises ValueError naming the argument."""
    op = "dist_attention"
    dims: dict[str, int] = {}
    check_tensor(op, "q", q, ("B", "H", "Q", "D"), dtypes=_DTYPES, dims=dims)
    device = same_device(op, q=q, k=k, v=v, centres=centres, tau=tau)
    check_tensor(op, "k", k, ("B", "H", "Q", "D"), dtypes=(q.dtype,), device=device, dims=dims)
    check_tensor(op, "v", v, ("B", "H", "Q", "D"), dtypes=(q.dtype,), device=device, dims=dims)
    check_tensor(op, "centres", centres, ("B", "Q", 2), dtypes=(torch.float32, torch.float64), device=device,
                 dims=dims)
    check_tensor(op, "tau", tau, ("B", "H", "Q"), device=device, dims=dims)
    if dims["Q"] < 1 or dims["D"] < 1:
        raise ValueError(f"{op}: needs Q >= 1 and D >= 1, got Q={dims['Q']}, D={dims['D']}")
    if not isinstance(num_old, int) or isinstance(num_old, bool) or not 0 <= num_old <= dims["Q"]:
        raise ValueError(f"{op}: num_old must be an int in [0, Q={dims['Q']}], got {num_old!r}")
    if not isinstance(dropout_p, float | int) or isinstance(dropout_p, bool) or not 0 <= dropout_p < 1:
        raise ValueError(f"{op}: dropout_p must be a float in [0, 1), got {dropout_p!r}")


def make_inputs(case: Case, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                seed: int = 0) -> dict:
    """Random inputs for ``case``: unit-variance q/k/v, centres in a square whose side grows like sqrt(Q) (the density
    of an 80 m scene at Q = 6000), τ uniform in [-0.5, 1) (both signs), no dropout."""
    g = torch.Generator().manual_seed(seed)
    d = case.dims
    B, H, Q, D = d["B"], d["H"], d["Q"], d["D"]
    q, k, v = (torch.randn(B, H, Q, D, generator=g, dtype=torch.float64) for _ in range(3))
    side = 80.0 * (Q / 6000) ** 0.5
    centres = (torch.rand(B, Q, 2, generator=g, dtype=torch.float64) - 0.5) * side
    tau = torch.rand(B, H, Q, generator=g, dtype=torch.float64) * 1.5 - 0.5
    return {"q": q.to(device, dtype), "k": k.to(device, dtype), "v": v.to(device, dtype),
            "centres": centres.to(device, torch.float64 if dtype == torch.float64 else torch.float32),
            "tau": tau.to(device, dtype), "num_old": int(d["num_old"]), "dropout_p": 0.0}


def bytes_moved(case: Case, dtype: torch.dtype) -> int:
    """Minimal DRAM traffic of the forward: read q, k, v, τ and the centres, write the output (no Q×Q tensor)."""
    d = case.dims
    el = torch.finfo(dtype).bits // 8
    return 4 * d["B"] * d["H"] * d["Q"] * d["D"] * el + d["B"] * d["H"] * d["Q"] * el + d["B"] * d["Q"] * 2 * 4
