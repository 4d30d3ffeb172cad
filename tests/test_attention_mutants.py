"""DistSelfAttention (docs/model.md §2.2) where mutation testing found no test (tests/README.md, "Mutation testing"):
the dropout it hands to the attention op in training and in evaluation, and the released initialisation of
``gen_tau`` (weight 0, bias U(0, 2)). The expectations are written here, not taken from the module."""

from __future__ import annotations

import math

import torch

from pgocc import ops
from pgocc.model.attention import DistSelfAttention

F64 = torch.float64


def _uniform_readout(dropout: float) -> DistSelfAttention:
    """C = 8, 2 heads of 4, Q = 4 queries x = e_0..e_3: q = k = 0 and τ = 0, so every probability is 1/4; head h's
    value of query j is e_j and out_proj = I, so output row i, channels 4h..4h+3 are head h's probabilities of i."""
    attn = DistSelfAttention(8, 2, dropout, ops.resolve("dist_attention", "reference")).double()
    with torch.no_grad():
        for p in attn.parameters():
            p.zero_()
        for h in range(2):
            for d in range(4):
                attn.in_proj.weight[16 + 4 * h + d, d] = 1.0
        attn.out_proj.weight.copy_(torch.eye(8, dtype=F64))
    return attn


def test_training_drops_and_rescales_the_probabilities_and_evaluation_does_not() -> None:
    """p = 1/2: each of the 32 probabilities 1/4 is dropped (0) or kept and rescaled, (1/4)/(1 − 1/2) = 1/2."""
    torch.manual_seed(0)
    attn = _uniform_readout(0.5)
    x = torch.eye(8, dtype=F64)[:4].unsqueeze(0)
    centres = torch.zeros(1, 4, 2, dtype=F64)
    with torch.no_grad():
        trained = attn.train()(x, centres, 0)
        evaluated = attn.eval()(x, centres, 0)
    assert set(trained.flatten().tolist()) == {0.0, 0.5}
    assert evaluated.flatten().tolist() == [0.25] * 32


def test_the_configured_dropout_reaches_the_op_in_training_only() -> None:
    seen: list[float] = []

    def spy(q, k, v, centres, tau, num_old, dropout_p):  # noqa: ANN001, ANN202
        seen.append(dropout_p)
        return v

    attn = DistSelfAttention(8, 2, 0.3, spy)
    x, centres = torch.zeros(1, 3, 8), torch.zeros(1, 3, 2)
    attn.train()(x, centres, 1)
    attn.eval()(x, centres, 1)
    assert seen == [0.3, 0.0]


def test_initialisation_gen_tau_bias_uniform_0_2_weight_0_and_the_projections() -> None:
    """20000 heads: the bias lies in [0, 2] and reaches within 0.01 of both ends (U(1, 2) or U(0, 3) would not:
    P(min > 0.01) = 0.995^20000 ≈ e^-100); its mean is 1 within 0.03 (7 standard deviations of 0.0041)."""
    torch.manual_seed(0)
    C, H = 8, 20000
    attn = DistSelfAttention(C, H, 0.0, ops.resolve("dist_attention", "reference"))
    bias = attn.gen_tau.bias.detach().double()
    assert 0.0 <= float(bias.min()) < 0.01 and 1.99 < float(bias.max()) <= 2.0
    assert abs(float(bias.mean()) - 1.0) < 0.03
    with torch.no_grad():
        assert float(attn.gen_tau.weight.abs().max()) == 0.0
        assert float(attn.in_proj.bias.abs().max()) == 0.0 and float(attn.out_proj.bias.abs().max()) == 0.0
    # Xavier uniform on the packed [3C, C] in_proj: U(−a, a), a = √(6 / (C + 3C)); 192 draws reach 0.9 a
    a = math.sqrt(6.0 / (C + 3 * C))
    w = attn.in_proj.weight.detach().abs()
    assert tuple(attn.in_proj.weight.shape) == (3 * C, C) and 0.9 * a < float(w.max()) <= a
