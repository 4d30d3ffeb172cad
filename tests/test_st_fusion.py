"""st_fusion: the Triton kernel against the float64 reference (forward and every gradient), the reference against an
explicit per-slab formula and gradcheck, strided views, empty input, determinism, compile, opcheck, bad input.

On CPU the kernels run under TRITON_INTERPRET=1 on the tiny "cpu" cases; with a GPU the same tests run the "gpu"
cases natively.

Both ReLUs have a kink at 0: where an implementation's rounding puts a LayerNorm output on the other side of 0 than
the float64 reference does, the gradient of that element legitimately differs by the whole upstream value. In
float32 such flips happen only within ~1e-6 of the kink, so the gradients are compared on the (b, q, g) slabs whose
reference pre-activations all stay KINK_MARGIN away from 0. In bf16 flips are part of the rounding error (every slab
has elements within bf16 reach of 0), so bf16 gradients are compared on all slabs with the bf16 rows.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pgocc import ops
from pgocc.ops._contract import Case
from tests.conftest import HAS_GPU, parity_cases
from tests.parity import assert_not_worse_than_torch, assert_parity_scaled

OP = "st_fusion"
spec = ops.contract(OP)
KERNELS = [name for name in ops.available(OP) if name != "reference"]
GRAD_ARGS = ("x", "channel_mix", "point_mix")
F64, F32, BF16 = torch.float64, torch.float32, torch.bfloat16
KINK_MARGIN = {F64: 0.0, F32: 2e-5, BF16: 0.0}
EPS = 1e-5
# The model's tile sizes (one autotune key on the GPU) at 4 slabs, for the tests that are not about sizes.
SMALL = Case("small", {"B": 1, "Q": 2, "G": 2, "TP": 32, "C": 64, "P": 128})

# Every case in float32 and bf16; float64 (exact logic check: any indexing or formula slip shows at 1e-9) on every
# CPU case and on the first GPU case.
_CASES = parity_cases(OP)
COMBOS = [(c, F64) for c in (_CASES[:1] if HAS_GPU else _CASES)] + [(c, dt) for c in _CASES for dt in (F32, BF16)]


def leaves(inputs: dict, dtype: torch.dtype) -> dict:
    """A copy of ``inputs`` cast to ``dtype`` whose tensors are fresh leaves requiring grad."""
    return {k: v.detach().to(dtype).requires_grad_(True) if isinstance(v, torch.Tensor) else v
            for k, v in inputs.items()}


def check(name: str, got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, quantity: str) -> None:
    assert_parity_scaled(name, got, want, op=OP, quantity=quantity, dtype=dtype)


def pre_activations(inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """The two LayerNorm outputs (before each ReLU) of the float64 reference formula."""
    y = inputs["x"] @ inputs["channel_mix"]
    yn = F.layer_norm(y, y.shape[-2:], eps=inputs["eps"])
    z = inputs["point_mix"] @ yn.relu()
    return yn, F.layer_norm(z, z.shape[-2:], eps=inputs["eps"])


def kink_free_slabs(inputs: dict, margin: float) -> torch.Tensor:
    """[B, Q, G] bool: slabs whose reference pre-activations all stay ``margin`` away from the ReLU kink."""
    with torch.no_grad():
        yn, zn = pre_activations(inputs)
    return (yn.abs().amin((-2, -1)) > margin) & (zn.abs().amin((-2, -1)) > margin)


@pytest.mark.parametrize("impl", KERNELS)
@pytest.mark.parametrize("case,dtype", COMBOS, ids=[f"{c.id}-{str(d)[6:]}" for c, d in COMBOS])
def test_matches_reference(impl: str, case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> None:
    inputs = spec.make_inputs(case, device=device, dtype=dtype, seed=seed)
    ins, ref_in = leaves(inputs, dtype), leaves(inputs, F64)
    out = ops.resolve(OP, impl)(**ins)
    ref = ops.resolve(OP, "reference")(**ref_in)
    cot = torch.randn(ref.shape, dtype=F64, device=device).to(dtype)
    out.backward(cot)
    ref.backward(cot.to(F64))
    check("out", out, ref, dtype, "out")
    keep = kink_free_slabs(ref_in, KINK_MARGIN[dtype])
    assert keep.any(), "every slab has a pre-activation within KINK_MARGIN of 0; the gradient check would be empty"
    for name in GRAD_ARGS:
        assert ins[name].grad is not None, f"no gradient reached {name}"
        check(f"d {name}", ins[name].grad[keep], ref_in[name].grad[keep], dtype, "grad")
    if dtype == BF16:
        # The forward must not be worse than twice torch's own bf16 path (docs/architecture.md §5 rule 4).
        low = ops.resolve(OP, "reference")(**leaves(inputs, dtype))
        assert_not_worse_than_torch("out", out, low, ref, op=OP, quantity="out")


@pytest.mark.parametrize("impl", KERNELS)
def test_strided_views_match_contiguous(impl: str, device: torch.device, seed: int) -> None:
    """M and S as views into one generated-parameter tensor and a transposed-layout x, as the decoder passes them."""
    inputs = spec.make_inputs(parity_cases(OP)[0], device=device, dtype=F32, seed=seed)
    x, m, s = inputs["x"], inputs["channel_mix"], inputs["point_mix"]
    C, P, TP = m.shape[-1], s.shape[-2], s.shape[-1]
    fn = ops.resolve(OP, impl)
    params = torch.cat([m.flatten(-2), s.flatten(-2)], dim=-1).requires_grad_(True)   # [B, Q, G, C·C + P·TP]
    x_t = x.transpose(-1, -2).contiguous().transpose(-1, -2).requires_grad_(True)     # strides (.., 1, TP)
    out_v = fn(x_t, params[..., :C * C].unflatten(-1, (C, C)), params[..., C * C:].unflatten(-1, (P, TP)), EPS)
    contiguous = leaves(inputs, F32)
    out_c = fn(**contiguous)
    cot = torch.randn_like(out_c)
    out_v.backward(cot)
    out_c.backward(cot)
    close = {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(out_v, out_c, **close)
    torch.testing.assert_close(x_t.grad, contiguous["x"].grad, **close)
    torch.testing.assert_close(params.grad, torch.cat([contiguous["channel_mix"].grad.flatten(-2),
                                                       contiguous["point_mix"].grad.flatten(-2)], -1), **close)


@pytest.mark.parametrize("impl", KERNELS)
def test_empty_query_set(impl: str, device: torch.device) -> None:
    case = Case("q0", {"B": 1, "Q": 0, "G": 2, "TP": 8, "C": 16, "P": 8})
    ins = leaves(spec.make_inputs(case, device=device), F32)
    out = ops.resolve(OP, impl)(**ins)
    assert out.shape == (1, 0, 2, 8, 16)
    out.sum().backward()
    assert all(ins[name].grad.shape == ins[name].shape for name in GRAD_ARGS)


@pytest.mark.parametrize("impl", [i for i in KERNELS if spec.IMPLS[i].deterministic])
def test_deterministic(impl: str, device: torch.device, seed: int) -> None:
    inputs = spec.make_inputs(SMALL, device=device, seed=seed)
    cot = None
    runs = []
    for _ in range(2):
        ins = leaves(inputs, F32)
        out = ops.resolve(OP, impl)(**ins)
        cot = torch.randn_like(out) if cot is None else cot
        out.backward(cot)
        runs.append([out.detach()] + [ins[n].grad for n in GRAD_ARGS])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("impl", KERNELS)
def test_compiles_fullgraph(impl: str, device: torch.device, seed: int) -> None:
    """The op traces into one graph (fake and autograd registrations) and matches eager, forward and backward."""
    fn = ops.resolve(OP, impl)
    inputs = spec.make_inputs(SMALL, device=device, seed=seed)
    compiled = torch.compile(lambda x, m, s: fn(x, m, s, EPS), fullgraph=True)
    eager_in, comp_in = leaves(inputs, F32), leaves(inputs, F32)
    out_e = fn(**eager_in)
    cot = torch.randn_like(out_e)
    out_c = compiled(comp_in["x"], comp_in["channel_mix"], comp_in["point_mix"])
    out_e.backward(cot)
    out_c.backward(cot)
    torch.testing.assert_close(out_c, out_e, rtol=1e-6, atol=1e-6)
    for name in GRAD_ARGS:
        torch.testing.assert_close(comp_in[name].grad, eager_in[name].grad, rtol=1e-6, atol=1e-6)


def test_opcheck(device: torch.device, seed: int) -> None:
    """Schema, fake-tensor and autograd registration of the custom ops (torch.library.opcheck)."""
    import kernels_triton.st_fusion  # noqa: F401  (registers torch.ops.pgocc.st_fusion_*)

    ins = leaves(spec.make_inputs(SMALL, device=device, seed=seed), F32)
    args = (ins["x"], ins["channel_mix"], ins["point_mix"], EPS)
    torch.library.opcheck(torch.ops.pgocc.st_fusion_fwd.default, args)
    dout = torch.randn(1, 2, 2, 128, 64, device=device)   # [B, Q, G, P_out, C] of SMALL
    torch.library.opcheck(torch.ops.pgocc.st_fusion_bwd.default, (dout, *(a.detach() for a in args[:3]), EPS))


def test_reference_matches_explicit_per_slab_formula(seed: int) -> None:
    """LayerNorm over the whole [rows, C] slab (not per row), biased variance, no affine, ReLU after each."""
    inputs = spec.make_inputs(Case("t", {"B": 2, "Q": 2, "G": 2, "TP": 5, "C": 4, "P": 3}), dtype=F64, seed=seed)
    out = ops.resolve(OP, "reference")(**inputs)
    x, m, s = inputs["x"], inputs["channel_mix"], inputs["point_mix"]

    def norm_relu(t: torch.Tensor) -> torch.Tensor:
        mean = t.sum() / t.numel()
        var = ((t - mean) ** 2).sum() / t.numel()
        return torch.clamp((t - mean) / torch.sqrt(var + EPS), min=0)

    for b in range(2):
        for q in range(2):
            for g in range(2):
                y = norm_relu(x[b, q, g] @ m[b, q, g])
                torch.testing.assert_close(out[b, q, g], norm_relu(s[b, q, g] @ y), rtol=1e-12, atol=1e-12)


def test_reference_gradcheck() -> None:
    # A fixed draw that keeps every pre-activation 1e-4 away from the ReLU kink, where finite differences break.
    ins = leaves(spec.make_inputs(Case("t", {"B": 1, "Q": 2, "G": 1, "TP": 3, "C": 4, "P": 2}), dtype=F64, seed=0),
                 F64)
    assert kink_free_slabs(ins, 1e-4).all(), "gradcheck inputs sit on a ReLU kink"
    ref = ops.resolve(OP, "reference")
    assert torch.autograd.gradcheck(lambda x, m, s: ref(x, m, s, EPS),
                                    (ins["x"], ins["channel_mix"], ins["point_mix"]), fast_mode=True)


@pytest.mark.parametrize("impl", ops.available(OP))
def test_rejects_bad_input(impl: str) -> None:
    fn = ops.resolve(OP, impl)
    x, m, s = torch.zeros(1, 2, 3, 8, 4), torch.zeros(1, 2, 3, 4, 4), torch.zeros(1, 2, 3, 5, 8)
    with pytest.raises(ValueError, match=r"st_fusion: x must be \[B, Q, G, TP, C\] \(5-D\), got shape \(2, 3, 8, 4\)"):
        fn(x[0], m, s, EPS)
    with pytest.raises(ValueError, match=r"channel_mix must be \[B, Q, G, C, C\]; dim 4 \(C\) is 5 but C=4"):
        fn(x, torch.zeros(1, 2, 3, 4, 5), s, EPS)
    with pytest.raises(ValueError, match=r"point_mix must be .*dim 4 \(TP\) is 7 but TP=8"):
        fn(x, m, torch.zeros(1, 2, 3, 5, 7), EPS)
    with pytest.raises(ValueError, match=r"channel_mix must have dtype in \['torch.float32'\], got torch.float64"):
        fn(x, m.double(), s, EPS)
    with pytest.raises(ValueError, match=r"x must have dtype in .*got torch.float16"):
        fn(x.half(), m.half(), s.half(), EPS)
    with pytest.raises(ValueError, match="eps must be a float > 0, got 0.0"):
        fn(x, m, s, 0.0)
    with pytest.raises(ValueError, match="TP must be >= 1"):
        fn(torch.zeros(1, 2, 3, 0, 4), m, torch.zeros(1, 2, 3, 5, 0), EPS)
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        fn(x, m.to("meta"), s, EPS)
