"""Decoder components against their formulas (docs/model.md §2, §3), each expectation derived here from the
parameters and not by the code under test: the distance-biased attention on hand-placed queries (bias size and sign,
the asymmetric stage mask) and against ``nn.MultiheadAttention`` with a float mask, AdaptiveMixing with non-square
mixing matrices, the Gaussian head's decoding, the position encoder, and the sampling pyramid + projection reading
a single bright pixel of the right frame, camera, level, group and channel.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pgocc import ops
from pgocc.model.attention import DistSelfAttention
from pgocc.model.decoder import Sampling
from pgocc.model.geometry import normalize_coords
from pgocc.model.heads import FFN, GaussianHead, PositionEncoder, decode_gaussians
from pgocc.model.mixing import AdaptiveMixing
from pgocc.model.pgocc import PGOcc

F64 = torch.float64


def _attention(C: int, H: int) -> DistSelfAttention:
    return DistSelfAttention(C, H, 0.0, ops.resolve("dist_attention", "reference")).double().eval()


# ------------------------------------------------------------------------------------------------------------------
# Distance-biased attention (§2.2)

# four queries in BEV (m): 0 and 1 are old (num_old = 2), 2 and 3 were added by this stage
CENTRES = [(0.0, 0.0), (1.0, 0.0), (0.0, 2.0), (3.0, 4.0)]
# τ[h][i]: head 0 positive (near keys preferred), head 1 negative (far keys preferred), different per query
TAU = [[0.5, 0.8, 0.3, 1.0], [-0.4, -0.2, -0.6, -0.1]]


def _probability_readout() -> DistSelfAttention:
    """C = 8, 2 heads of 4: q = k = 0, head h's value of query j is e_j (x = rows of the identity), out_proj = I, so
    output row i, channels 4h..4h+3 are head h's attention probabilities of query i; τ[h, i] from gen_tau."""
    attn = _attention(8, 2)
    with torch.no_grad():
        attn.in_proj.weight.zero_()
        attn.in_proj.bias.zero_()
        for h in range(2):
            for d in range(4):
                attn.in_proj.weight[16 + 4 * h + d, d] = 1.0
        attn.out_proj.weight.copy_(torch.eye(8, dtype=F64))
        attn.out_proj.bias.zero_()
        bias = torch.tensor([0.1, -0.05], dtype=F64)
        attn.gen_tau.bias.copy_(bias)
        attn.gen_tau.weight.zero_()
        attn.gen_tau.weight[:, :4] = torch.tensor(TAU, dtype=F64) - bias[:, None]
    return attn


def test_attention_probabilities_follow_the_distance_bias_and_the_stage_mask() -> None:
    attn = _probability_readout()
    x = torch.eye(8, dtype=F64)[:4].unsqueeze(0)
    with torch.no_grad():
        probs = attn(x, torch.tensor([CENTRES], dtype=F64), 2)[0].view(4, 2, 4).transpose(0, 1)  # [h, i, j]
        free = attn(x, torch.tensor([CENTRES], dtype=F64), 0)[0].view(4, 2, 4).transpose(0, 1)
    for h in range(2):
        for i in range(4):
            keys = [0, 1] if i < 2 else [0, 1, 2, 3]               # old queries do not see the new ones
            w = {j: math.exp(-TAU[h][i] * math.dist(CENTRES[i], CENTRES[j])) for j in keys}
            expected = [w.get(j, 0.0) / sum(w.values()) for j in range(4)]
            assert probs[h, i].tolist() == pytest.approx(expected, abs=1e-12), (h, i)
    # "by exactly the bias": query 2 (new) vs keys 0 (2 m) and 3 (√13 m)
    assert float(probs[0, 2, 0] / probs[0, 2, 3]) == pytest.approx(math.exp(0.3 * (math.sqrt(13) - 2)), rel=1e-12)
    assert float(probs[1, 2, 0] / probs[1, 2, 3]) == pytest.approx(math.exp(-0.6 * (math.sqrt(13) - 2)), rel=1e-12)
    # old query 0: the near old key wins under τ > 0, and the new keys get nothing although key 2 is near
    assert float(probs[0, 0, 0]) > float(probs[0, 0, 1]) > 0 and float(probs[0, 0, 2:].abs().sum()) == 0.0
    # stage 0 (num_old = 0): no mask at all
    assert bool((free > 0).all())


def test_attention_equals_multihead_attention_with_the_released_float_mask() -> None:
    """The released layer: nn.MultiheadAttention (packed in_proj q, k, v) with attn_mask [B·heads, Q, Q] =
    −τ[b, h, i]·‖c_i − c_j‖ and −inf where an old query would see a new key."""
    B, Q, C, H, num_old = 2, 5, 8, 2, 3
    attn = _attention(C, H)
    with torch.no_grad():
        for p in attn.parameters():
            p.copy_(torch.randn_like(p) * 0.5)
    x = torch.randn(B, Q, C, dtype=F64)
    centres = torch.randn(B, Q, 2, dtype=F64) * 3
    mha = nn.MultiheadAttention(C, H, dropout=0.0, batch_first=True).double()
    with torch.no_grad():
        mha.in_proj_weight.copy_(attn.in_proj.weight)
        mha.in_proj_bias.copy_(attn.in_proj.bias)
        mha.out_proj.weight.copy_(attn.out_proj.weight)
        mha.out_proj.bias.copy_(attn.out_proj.bias)
    tau = x @ attn.gen_tau.weight.T + attn.gen_tau.bias                                     # [B, Q, H]
    dist = torch.cdist(centres, centres)                                                  # [B, Q, Q]
    mask = -tau.permute(0, 2, 1)[..., None] * dist[:, None]                               # [B, H, Q, Q]
    mask[:, :, :num_old, num_old:] = float("-inf")
    want, _ = mha(x, x, x, attn_mask=mask.reshape(B * H, Q, Q), need_weights=False)
    got = attn(x, centres, num_old)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------------------------------------------------------
# AdaptiveMixing (§2.4)

def test_adaptive_mixing_against_its_formula_with_non_square_matrices() -> None:
    """C = 8, G = 2 (C_g = 4), TP = 3 points in, P_out = 5 out: M_g [C_g in, C_g out] row-major, then S_g
    [P_out, TP], per group contiguous in the generated parameters; LayerNorm over the whole slab, no affine."""
    C, G, Cg, TP, Pout = 8, 2, 4, 3, 5
    mix = AdaptiveMixing(C, G, TP, Pout, ops.resolve("st_fusion", "reference")).double()
    with torch.no_grad():
        mix.parameter_generator.weight.normal_(0, 0.3)
    B, Q = 2, 3
    x = torch.randn(B, Q, G, TP, Cg, dtype=F64)
    query = torch.randn(B, Q, C, dtype=F64)
    with torch.no_grad():
        got = mix(x, query)

    def ln(a: torch.Tensor) -> torch.Tensor:
        return (a - a.mean()) / torch.sqrt(((a - a.mean()) ** 2).mean() + 1e-5)

    W, b = mix.parameter_generator.weight, mix.parameter_generator.bias
    for bi in range(B):
        for qi in range(Q):
            params = (W @ query[bi, qi] + b).detach()
            flat = []
            for g in range(G):
                block = params[g * (Cg * Cg + Pout * TP):(g + 1) * (Cg * Cg + Pout * TP)]
                M = torch.tensor([[float(block[i * Cg + o]) for o in range(Cg)] for i in range(Cg)], dtype=F64)
                S = torch.tensor([[float(block[Cg * Cg + o * TP + p]) for p in range(TP)] for o in range(Pout)],
                                 dtype=F64)
                Y = ln(x[bi, qi, g] @ M).relu()
                Z = ln(S @ Y).relu()
                flat += [Z[o, c] for o in range(Pout) for c in range(Cg)]
            want = mix.out_proj.weight @ torch.stack(flat) + mix.out_proj.bias
            torch.testing.assert_close(got[bi, qi], want, rtol=1e-10, atol=1e-10)


def test_adaptive_mixing_under_autocast_hands_the_slab_to_out_proj_without_widening_it() -> None:
    """bf16 autocast with a float32 query (the decoder's residual stream): the output equals out_proj of the fused
    slab cast up and back (what the code did before, bit for bit), and no float32 copy of the [B, Q, G·P_out·C_g]
    slab is made. Outside autocast a bf16 slab meets a float32 out_proj as float32."""
    from torch.utils._python_dispatch import TorchDispatchMode

    C, G, Cg, TP, Pout = 16, 2, 8, 3, 5
    mix = AdaptiveMixing(C, G, TP, Pout, ops.resolve("st_fusion", "reference"))
    with torch.no_grad():
        mix.parameter_generator.weight.normal_(0, 0.3)
    B, Q = 2, 7
    x = torch.randn(B, Q, G, TP, Cg).to(torch.bfloat16)
    query = torch.randn(B, Q, C)
    slab = B * Q * G * Pout * Cg
    widened: list[tuple[int, ...]] = []

    class Casts(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN202
            out = func(*args, **(kwargs or {}))
            if func is torch.ops.aten._to_copy.default and out.dtype == torch.float32 and out.numel() == slab:
                widened.append(tuple(out.shape))
            return out

    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        with Casts():
            got = mix(x, query)
        params = mix.parameter_generator(query).view(B, Q, G, -1)
        m, s = params.split([Cg * Cg, Pout * TP], -1)
        fused = mix._fusion(x, m.reshape(B, Q, G, Cg, Cg), s.reshape(B, Q, G, Pout, TP), 1e-5)
        want = mix.out_proj(fused.reshape(B, Q, -1).float())
    assert widened == [] and got.dtype == torch.bfloat16
    assert torch.equal(got, want)
    with torch.no_grad():
        plain = mix(x, query)                                # no autocast: the slab meets out_proj in float32
    assert plain.dtype == torch.float32


# ------------------------------------------------------------------------------------------------------------------
# Heads and position encoding (§2.1, §3)

def test_decode_gaussians_by_hand() -> None:
    raw = [0.3, -1.2, 2.0, 0.5, -0.5, 1.5, 2.5, -0.7, 0.0, 1.1, -2.0]
    delta, quats, scales, opacity = decode_gaussians(torch.tensor([raw], dtype=F64), max_delta=0.3, max_scale=5.0)

    def sig(v: float) -> float:
        return 1 / (1 + math.exp(-v))

    norm = math.sqrt(sum(v * v for v in raw[3:7]))
    assert delta[0].tolist() == pytest.approx([(2 * sig(v) - 1) * 0.3 for v in raw[0:3]], abs=1e-14)
    assert quats[0].tolist() == pytest.approx([v / norm for v in raw[3:7]], abs=1e-14)
    assert scales[0].tolist() == pytest.approx([5.0 * sig(v) for v in raw[7:10]], abs=1e-14)
    assert float(opacity[0]) == pytest.approx(sig(-2.0), abs=1e-14)


def test_decode_gaussians_normalises_each_quaternion_over_its_own_four_values() -> None:
    # [2, 3, 11] raw outputs: each query's quaternion is its own 4 values over their norm, whatever the leading dims.
    raw = torch.randn(2, 3, 11, dtype=F64) * 2
    _, quats, _, _ = decode_gaussians(raw, max_delta=0.3, max_scale=5.0)
    for b in range(2):
        for q in range(3):
            v = raw[b, q, 3:7].tolist()
            norm = math.sqrt(sum(x * x for x in v))
            assert quats[b, q].tolist() == pytest.approx([x / norm for x in v], abs=1e-14)


def test_gaussian_head_initial_scale_and_opacity() -> None:
    # With the last layer's weights zeroed the raw output is its bias: decoding it must give exactly the configured
    # initial scale (of the decoder's max_scale) and opacity; the other outputs keep PyTorch's default bias.
    max_scale = 6.4
    head = GaussianHead(8, 16, init_scale=0.5, init_opacity=0.8, max_scale=max_scale).double()
    default = GaussianHead(8, 16, max_scale=max_scale).double()
    assert head[2].out_features == 11                     # Δxyz 3, quaternion 4, scales 3, opacity 1
    with torch.no_grad():
        head[2].weight.zero_()
    _, _, scales, opacity = decode_gaussians(head(torch.randn(4, 8, dtype=F64)), max_delta=0.3, max_scale=max_scale)
    torch.testing.assert_close(scales, torch.full((4, 3), 0.5, dtype=F64), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(opacity, torch.full((4,), 0.8, dtype=F64), rtol=1e-6, atol=1e-6)
    bound = 1 / math.sqrt(16)                             # nn.Linear's default bias range: ±1/sqrt(fan_in)
    assert default[2].bias.abs().max() <= bound and head[2].bias[:7].abs().max() <= bound


def test_ffn_is_a_residual_relu_mlp() -> None:
    ffn = FFN(5, 7, dropout=0.0).double()
    x = torch.randn(3, 5, dtype=F64)
    want = x + (x @ ffn.fc1.weight.T + ffn.fc1.bias).relu() @ ffn.fc2.weight.T + ffn.fc2.bias
    torch.testing.assert_close(ffn(x), want, rtol=1e-12, atol=1e-12)


def test_normalize_coords_by_hand() -> None:
    pts = torch.tensor([[20.0, -10.0, 2.2], [-40.0, 50.0, -1.0]], dtype=F64)
    out = normalize_coords(pts, (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4))
    assert out.flatten().tolist() == pytest.approx([0.75, 0.375, 0.5, 0.0, 1.125, 0.0], abs=1e-14)


def test_position_encoder_against_its_formula() -> None:
    C = 6
    pe = PositionEncoder(C).double()
    with torch.no_grad():
        for p in pe.parameters():
            p.copy_(torch.randn_like(p))                   # LayerNorm affine included (not the identity)
    x = torch.rand(2, 4, 3, dtype=F64) * 1.4 - 0.2

    def ln(a: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        mu = a.mean(-1, keepdim=True)
        return (a - mu) / torch.sqrt(((a - mu) ** 2).mean(-1, keepdim=True) + 1e-5) * w + b

    h = ln(x @ pe[0].weight.T + pe[0].bias, pe[1].weight, pe[1].bias).relu()
    want = ln(h @ pe[3].weight.T + pe[3].bias, pe[4].weight, pe[4].bias).relu()
    torch.testing.assert_close(pe(x), want, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------------------------------------------------------
# Sampling pyramid + projection (§1.3, §2.3): a single bright pixel

def _look(forward: bool) -> torch.Tensor:
    """ego → camera (OpenCV) of a camera at the ego origin looking along +x (forward) or −x."""
    E = torch.zeros(4, 4, dtype=F64)
    E[3, 3] = 1
    if forward:
        E[0, 1], E[1, 2], E[2, 0] = -1, -1, 1              # x_c = −y, y_c = −z, z_c = x
    else:
        E[0, 1], E[1, 2], E[2, 0] = 1, -1, -1
    return E


@pytest.mark.parametrize("released", [False, True])
def test_sampling_reads_one_bright_pixel_of_the_right_frame_camera_level_and_group(released: bool) -> None:
    B, T, N, G, P, L, Cg = 1, 2, 3, 2, 3, 2, 2
    H_in, W_in = 32, 64
    sizes = [(8, 16), (4, 8)]
    t_s, n_s, l_s, g_s, p_s, c_s, i_s, j_s = 1, 1, 1, 0, 2, 1, 2, 5
    # feature maps in the FPN's layout [B, T·N, C, H_l, W_l]: image k = t·N + n, channel g·C_g + c
    maps = [torch.zeros(B, T * N, G * Cg, h, w, dtype=F64) for h, w in sizes]
    maps[l_s][0, t_s * N + n_s, g_s * Cg + c_s, i_s, j_s] = 1.0
    pyramid = PGOcc.sampling_pyramid(SimpleNamespace(cfg=SimpleNamespace(num_groups=G)), maps, T)
    # camera 0 looks backwards (the point is behind it), cameras 1 and 2 forwards: the first valid one is camera 1
    f, cx, cy = 40.0, 30.0, 17.0
    K4 = torch.eye(4, dtype=F64)
    K4[0, 0], K4[1, 1], K4[0, 2], K4[1, 2] = f, f, cx, cy
    ego2img = torch.stack([K4 @ _look(n > 0) for n in range(N)]).expand(B, T, N, 4, 4)
    # the point that lands on texel (i_s, j_s) of level l_s: h = v (H_l − 1), w = u (W_l − 1), u = x / W_in
    H_l, W_l = sizes[l_s]
    x_img, y_img = j_s / (W_l - 1) * W_in, i_s / (H_l - 1) * H_in
    depth = 6.0
    xc, yc = (x_img - cx) * depth / f, (y_img - cy) * depth / f
    target = torch.tensor([depth, -xc, -yc], dtype=F64)
    # only point (g_s, p_s) is moved onto it; every other point is pushed 10+ m sideways, out of every image
    box = 0.8
    o_s = torch.tensor([0.1, -0.2, 0.15], dtype=F64)
    centre = target - box * o_s
    offsets = torch.zeros(G, P, 3, dtype=F64)
    offsets[..., 1] = 12.5 + torch.arange(G * P, dtype=F64).view(G, P)
    offsets[g_s, p_s] = o_s
    sampling = Sampling(8, G, P, L, released, ops.resolve("aniso_sample", "reference")).double()
    with torch.no_grad():
        sampling.sampling_offset.weight.zero_()
        sampling.sampling_offset.bias.copy_(offsets.flatten())
        sampling.scale_weights.weight.zero_()
        sampling.scale_weights.bias.copy_(torch.randn(G * P * L, dtype=F64))
    out = sampling(torch.randn(B, 1, 8, dtype=F64), centre.view(1, 1, 3),
                   torch.tensor([1.0, 0, 0, 0], dtype=F64).view(1, 1, 4), torch.full((1, 1, 3), box, dtype=F64),
                   ego2img, pyramid, (H_in, W_in))
    assert out.shape == (B, 1, G, T * P, Cg)
    # level weights (g·P + p)·L + l, softmaxed over l; released order: frame t, group g uses group (t·G + g) // T
    g_w = (t_s * G + g_s) // T if released else g_s
    weight = F.softmax(sampling.scale_weights.bias.view(G, P, L)[g_w, p_s], -1)[l_s]
    expected = torch.zeros_like(out)
    expected[0, 0, g_s, t_s * P + p_s, c_s] = weight
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)
