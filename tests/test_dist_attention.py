"""dist_attention: the Triton kernel against the float64 reference (forward and the gradients of q, k, v and τ),
dropout against the reference with the kernel's own mask, the reference against closed forms and gradcheck, strided
views, Q = 1, determinism, compile, opcheck, bad input.

On CPU the Triton kernels run under TRITON_INTERPRET=1 on the tiny "cpu" cases; with a GPU the same tests run the
"gpu" cases natively.
"""

from __future__ import annotations

import math

import pytest
import torch

from pgocc import ops
from pgocc.ops._contract import Case
from tests.conftest import HAS_GPU, parity_cases
from tests.parity import assert_not_worse_than_torch, assert_parity_scaled

OP = "dist_attention"
spec = ops.contract(OP)
KERNELS = [name for name in ops.available(OP) if name != "reference"]
GRAD_ARGS = ("q", "k", "v", "tau")
F64, F32, BF16 = torch.float64, torch.float32, torch.bfloat16

_CASES = parity_cases(OP)


def _combos() -> list:
    """(impl, case, dtype): float32 and bf16 on every case, float64 (exact logic check) on every CPU case (the GPU run
    spends its compile time on the dtypes that train)."""
    pairs = [] if HAS_GPU else [(c, F64) for c in _CASES]
    pairs += [(c, dt) for c in _CASES for dt in (F32, BF16)]
    return [pytest.param(impl, c, dt, id=f"{impl}-{c.id}-{str(dt)[6:]}") for impl in KERNELS for c, dt in pairs]


def leaves(inputs: dict, dtype: torch.dtype) -> dict:
    """A copy of ``inputs`` with q, k, v, τ cast to ``dtype`` as fresh leaves requiring grad (centres float64 for a
    float64 run, else unchanged)."""
    out = dict(inputs)
    for name in GRAD_ARGS:
        out[name] = inputs[name].detach().to(dtype).requires_grad_(True)
    if dtype == F64:
        out["centres"] = inputs["centres"].to(F64)
    return out


def check(name: str, got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype, quantity: str) -> None:
    assert_parity_scaled(name, got, want, op=OP, quantity=quantity, dtype=dtype)


@pytest.mark.parametrize("impl,case,dtype", _combos())
def test_matches_reference(impl: str, case: Case, dtype: torch.dtype, device: torch.device, seed: int) -> None:
    inputs = spec.make_inputs(case, device=device, dtype=dtype, seed=seed)
    ins, ref_in = leaves(inputs, dtype), leaves(inputs, F64)
    out = ops.resolve(OP, impl)(**ins)
    ref = ops.resolve(OP, "reference")(**ref_in)
    cot = torch.randn(ref.shape, dtype=F64, device=device).to(dtype)
    out.backward(cot)
    ref.backward(cot.to(F64))
    check("out", out, ref, dtype, "out")
    for name in GRAD_ARGS:
        assert ins[name].grad is not None, f"no gradient reached {name}"
        check(f"d {name}", ins[name].grad, ref_in[name].grad, dtype, "grad")
    if dtype == BF16:
        low_in = leaves(inputs, dtype)
        low = ops.resolve(OP, "reference")(**low_in)
        low.backward(cot)
        assert_not_worse_than_torch("out", out, low, ref, op=OP, quantity="out")
        for name in GRAD_ARGS:
            assert_not_worse_than_torch(f"d {name}", ins[name].grad, low_in[name].grad, ref_in[name].grad, op=OP,
                                        quantity="grad")


@pytest.mark.parametrize("impl", KERNELS)
def test_dropout_matches_reference_with_the_kernels_mask(impl: str, device: torch.device, seed: int) -> None:
    """With v = identity (Q <= D) the output rows are the dropped, rescaled probabilities, which exposes the mask; the
    same generator state reproduces it for random v, and forward and all gradients then match the float64 reference
    with that mask applied. The mask keeps a 1 - p fraction, differs between heads and between seeds."""
    B, H, Q, D, num_old, p = 2, 2, 24, 32, 16, 0.3
    inputs = spec.make_inputs(Case("drop", {"B": B, "H": H, "Q": Q, "D": D, "num_old": num_old}), device=device,
                              dtype=F32, seed=seed)
    inputs["dropout_p"] = p
    fn = ops.resolve(OP, impl)
    eye = torch.eye(Q, D, device=device).expand(B, H, Q, D)
    torch.manual_seed(seed)
    probe = fn(**{**inputs, "v": eye})[..., :Q]                                      # [B, H, Q, Q]
    torch.manual_seed(seed + 1)
    other_seed = fn(**{**inputs, "v": eye})[..., :Q]
    ins = leaves(inputs, F32)
    torch.manual_seed(seed)
    out = fn(**ins)
    cot = torch.randn(B, H, Q, D, dtype=F64, device=device)
    out.backward(cot.to(F32))

    ref_in = leaves(inputs, F64)
    probs = ops.resolve(OP, "reference")(**{**ref_in, "v": eye.to(F64), "dropout_p": 0.0})[..., :Q]
    visible = probs.detach() > 0
    keep = probe > 0
    ref = torch.matmul(probs * keep / (1 - p), ref_in["v"])
    ref.backward(cot)
    check("out (dropout)", out, ref, F32, "out")
    check("dropped probabilities", probe.double(), (probs * keep / (1 - p)).detach(), F32, "out")
    for name in GRAD_ARGS:
        check(f"d {name} (dropout)", ins[name].grad, ref_in[name].grad, F32, "grad")

    n = int(visible.sum())
    kept = float(keep[visible].double().mean())
    assert abs(kept - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n), f"kept fraction {kept:.3f}, expected {1 - p}"
    assert not torch.equal(keep[:, 0] & visible[:, 0], keep[:, 1] & visible[:, 1]), "heads share one mask"
    assert not torch.equal(keep & visible, (other_seed > 0) & visible), "another seed gave the same mask"


@pytest.mark.parametrize("impl", KERNELS)
def test_strided_views_match_contiguous(impl: str, device: torch.device, seed: int) -> None:
    """q, k, v as head views of one packed in-projection [B, Q, 3·H·D] and τ as the transpose of Linear(...)(x)."""
    inputs = spec.make_inputs(_CASES[-1], device=device, dtype=F32, seed=seed)
    B, H, Q, D = inputs["q"].shape
    packed = torch.stack([inputs[n].permute(0, 2, 1, 3) for n in ("q", "k", "v")], dim=2)   # [B, Q, 3, H, D]
    packed = packed.reshape(B, Q, 3 * H * D).requires_grad_(True)
    tau_bqh = inputs["tau"].transpose(1, 2).contiguous().requires_grad_(True)                # [B, Q, H]
    views = packed.view(B, Q, 3, H, D).permute(2, 0, 3, 1, 4)                               # 3 × [B, H, Q, D]
    fn = ops.resolve(OP, impl)
    out_v = fn(views[0], views[1], views[2], inputs["centres"], tau_bqh.transpose(1, 2), inputs["num_old"], 0.0)
    contiguous = leaves(inputs, F32)
    out_c = fn(**contiguous)
    cot = torch.randn_like(out_c)
    out_v.backward(cot)
    out_c.backward(cot)
    close = {"rtol": 1e-6, "atol": 1e-6}
    torch.testing.assert_close(out_v, out_c, **close)
    grads = torch.stack([contiguous[n].grad.permute(0, 2, 1, 3) for n in ("q", "k", "v")], dim=2)
    torch.testing.assert_close(packed.grad, grads.reshape(B, Q, 3 * H * D), **close)
    torch.testing.assert_close(tau_bqh.grad, contiguous["tau"].grad.transpose(1, 2), **close)


@pytest.mark.parametrize("impl", KERNELS)
@pytest.mark.parametrize("num_old", [0, 1])
def test_single_query_attends_to_itself(impl: str, num_old: int, device: torch.device, seed: int) -> None:
    inputs = leaves(spec.make_inputs(Case("q1", {"B": 2, "H": 3, "Q": 1, "D": 32, "num_old": num_old}),
                                     device=device, seed=seed), F32)
    out = ops.resolve(OP, impl)(**inputs)
    torch.testing.assert_close(out, inputs["v"].detach(), rtol=1e-6, atol=1e-6)
    cot = torch.randn_like(out)
    out.backward(cot)
    torch.testing.assert_close(inputs["v"].grad, cot, rtol=1e-6, atol=1e-6)
    # Exactly 0 in exact arithmetic: dS = P·(dO·v - Σ dO·O) with P = 1 and O = v; the two float32 dot products differ
    # by rounding, ~1e-7·|dO||v|·sqrt(D) (dτ is exactly 0: the only distance is 0).
    for name in ("q", "k", "tau"):
        assert inputs[name].grad.abs().max() < 1e-4, f"d {name} must vanish with a single key"


@pytest.mark.parametrize("impl", [i for i in KERNELS if spec.IMPLS[i].deterministic])
def test_deterministic(impl: str, device: torch.device, seed: int) -> None:
    """Two runs bit-identical, dropout included (same generator state, same mask)."""
    inputs = spec.make_inputs(Case("small", {"B": 1, "H": 2, "Q": 20, "D": 32, "num_old": 12}), device=device,
                              dtype=F32, seed=seed)
    inputs["dropout_p"] = 0.2
    cot = None
    runs = []
    for _ in range(2):
        ins = leaves(inputs, F32)
        torch.manual_seed(seed)
        out = ops.resolve(OP, impl)(**ins)
        cot = torch.randn_like(out) if cot is None else cot
        out.backward(cot)
        runs.append([out.detach()] + [ins[n].grad for n in GRAD_ARGS])
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)


def test_triton_compiles_fullgraph(device: torch.device, seed: int) -> None:
    """The op traces into one graph (fake and autograd registrations) and matches eager, forward and backward."""
    fn = ops.resolve(OP, "triton")
    inputs = spec.make_inputs(Case("small", {"B": 1, "H": 2, "Q": 20, "D": 32, "num_old": 12}), device=device,
                              seed=seed)
    compiled = torch.compile(lambda q, k, v, tau: fn(q, k, v, inputs["centres"], tau, 12, 0.0), fullgraph=True)
    eager_in, comp_in = leaves(inputs, F32), leaves(inputs, F32)
    out_e = fn(**eager_in)
    out_c = compiled(*(comp_in[n] for n in GRAD_ARGS))
    cot = torch.randn_like(out_e)
    out_e.backward(cot)
    out_c.backward(cot)
    torch.testing.assert_close(out_c, out_e, rtol=1e-6, atol=1e-6)
    for name in GRAD_ARGS:
        torch.testing.assert_close(comp_in[name].grad, eager_in[name].grad, rtol=1e-6, atol=1e-6)


def test_opcheck(device: torch.device, seed: int) -> None:
    """Schema, fake-tensor and autograd registration of the custom ops (torch.library.opcheck)."""
    import kernels_triton.dist_attention  # noqa: F401  (registers torch.ops.pgocc.dist_attention_*)

    ins = leaves(spec.make_inputs(Case("tiny", {"B": 1, "H": 1, "Q": 16, "D": 32, "num_old": 9}), device=device,
                                  seed=seed), F32)
    seed_t = torch.zeros(1, dtype=torch.int64, device=device)
    args = (ins["q"], ins["k"], ins["v"], ins["centres"], ins["tau"], seed_t, 9, 0.0)
    torch.library.opcheck(torch.ops.pgocc.dist_attention_fwd.default, args)
    _, out_acc, lse = torch.ops.pgocc.dist_attention_fwd(*(a.detach() if isinstance(a, torch.Tensor) else a
                                                           for a in args))
    dout = torch.randn_like(out_acc)
    detached = [ins[n].detach() for n in ("q", "k", "v")]
    torch.library.opcheck(torch.ops.pgocc.dist_attention_bwd.default,
                          (dout, *detached, ins["centres"], ins["tau"].detach(), seed_t, out_acc, lse, 9, 0.0))


def test_reference_closed_forms() -> None:
    """Zero logits: old queries average the old values, new queries all values. A large τ > 0 on centres 1 m apart:
    each query sees only itself. A large τ < 0: each query sees the farthest key it may see."""
    B, H, Q, D, num_old = 1, 2, 7, 3, 4
    ref = ops.resolve(OP, "reference")
    v = torch.randn(B, H, Q, D, dtype=F64)
    zeros = torch.zeros(B, H, Q, D, dtype=F64)
    centres = torch.stack([torch.arange(Q, dtype=F64), torch.zeros(Q, dtype=F64)], -1)[None]   # x = 0..6 m
    out = ref(zeros, zeros, v, centres, torch.zeros(B, H, Q, dtype=F64), num_old, 0.0)
    torch.testing.assert_close(out[:, :, :num_old], v[:, :, :num_old].mean(2, keepdim=True).expand(-1, -1, num_old, -1))
    torch.testing.assert_close(out[:, :, num_old:], v.mean(2, keepdim=True).expand(-1, -1, Q - num_old, -1))
    out = ref(zeros, zeros, v, centres, torch.full((B, H, Q), 60.0, dtype=F64), num_old, 0.0)
    torch.testing.assert_close(out, v, rtol=0, atol=1e-20)
    out = ref(zeros, zeros, v, centres, torch.full((B, H, Q), -60.0, dtype=F64), num_old, 0.0)
    farthest = torch.tensor([3, 3, 0, 0, 0, 0, 0])    # old queries 0..3 see keys 0..3; new ones see all 7
    torch.testing.assert_close(out, v[:, :, farthest], rtol=0, atol=1e-20)


def test_reference_bf16_logits_are_float32() -> None:
    """bf16 q, k, v: the logits are scaled by 1/√D in float32 (the released code adds a float32 bias). D = 2,
    q·k = 512 and 510: float32 logits 512/√2 and 510/√2, a difference of √2, so the second key's weight is
    1/(1+e^√2) = 0.196; bf16 would round them to 362 and 360 (spacing 2 there) and give 1/(1+e^2) = 0.119."""
    bf16 = torch.bfloat16
    q = torch.full((1, 1, 2, 2), 16.0, dtype=bf16)
    k = torch.tensor([[16.0, 16.0], [16.0, 15.875]], dtype=bf16).reshape(1, 1, 2, 2)
    v = torch.tensor([[0.0, 0.0], [1.0, 1.0]], dtype=bf16).reshape(1, 1, 2, 2)
    centres = torch.zeros(1, 2, 2)
    tau = torch.zeros(1, 1, 2, dtype=bf16)
    out = ops.resolve(OP, "reference")(q, k, v, centres, tau, 0, 0.0)
    assert out.dtype == bf16
    second = 1 / (1 + math.exp(math.sqrt(2)))
    torch.testing.assert_close(out.float(), torch.full((1, 1, 2, 2), second), rtol=0, atol=2**-8)


def test_reference_dropout_drops_and_rescales(seed: int) -> None:
    """Zero logits and v = I over Q = 8 visible keys: the output row is the dropped probability row, each entry
    either 0 (dropped) or (1/8)/(1 − 1/2) = 1/4 (kept and rescaled); 64 entries, so both occur."""
    Q = 8
    eye = torch.eye(Q, dtype=F64)[None, None]
    zeros = torch.zeros(1, 1, Q, Q, dtype=F64)
    out = ops.resolve(OP, "reference")(zeros, zeros, eye, torch.zeros(1, Q, 2, dtype=F64),
                                       torch.zeros(1, 1, Q, dtype=F64), 0, 0.5)
    assert set(out.flatten().tolist()) == {0.0, 0.25}


def test_reference_gradcheck(seed: int) -> None:
    inputs = leaves(spec.make_inputs(Case("t", {"B": 1, "H": 2, "Q": 5, "D": 3, "num_old": 3}), dtype=F64,
                                     seed=seed), F64)
    ref = ops.resolve(OP, "reference")
    assert torch.autograd.gradcheck(lambda q, k, v, tau: ref(q, k, v, inputs["centres"], tau, 3, 0.0),
                                    tuple(inputs[n] for n in GRAD_ARGS))


@pytest.mark.parametrize("impl", ops.available(OP))
def test_rejects_bad_input(impl: str) -> None:
    fn = ops.resolve(OP, impl)
    q, c, tau = torch.zeros(1, 2, 5, 4), torch.zeros(1, 5, 2), torch.zeros(1, 2, 5)
    with pytest.raises(ValueError, match=r"dist_attention: q must be \[B, H, Q, D\] \(4-D\), got shape \(2, 5, 4\)"):
        fn(q[0], q, q, c, tau, 0, 0.0)
    with pytest.raises(ValueError, match=r"k must be \[B, H, Q, D\]; dim 2 \(Q\) is 6 but Q=5"):
        fn(q, torch.zeros(1, 2, 6, 4), q, c, tau, 0, 0.0)
    with pytest.raises(ValueError, match=r"v must have dtype in \['torch.float32'\], got torch.bfloat16"):
        fn(q, q, q.bfloat16(), c, tau, 0, 0.0)
    with pytest.raises(ValueError, match=r"centres must be \[B, Q, 2\]; dim 2 is 3, expected 2"):
        fn(q, q, q, torch.zeros(1, 5, 3), tau, 0, 0.0)
    with pytest.raises(ValueError, match=r"centres must have dtype in .*got torch.bfloat16"):
        fn(q, q, q, c.bfloat16(), tau, 0, 0.0)
    with pytest.raises(ValueError, match=r"tau must be \[B, H, Q\]; dim 1 \(H\) is 3 but H=2"):
        fn(q, q, q, c, torch.zeros(1, 3, 5), 0, 0.0)
    with pytest.raises(ValueError, match=r"num_old must be an int in \[0, Q=5\], got 6"):
        fn(q, q, q, c, tau, 6, 0.0)
    with pytest.raises(ValueError, match=r"num_old must be an int in \[0, Q=5\], got True"):
        fn(q, q, q, c, tau, True, 0.0)
    with pytest.raises(ValueError, match=r"dropout_p must be a float in \[0, 1\), got 1.0"):
        fn(q, q, q, c, tau, 0, 1.0)
    with pytest.raises(ValueError, match="all tensors must be on one device"):
        fn(q, q, q, c.to("meta"), tau, 0, 0.0)
