"""Triton AdaptiveMixing core (contract: ``pgocc.ops.st_fusion``).

One program per (batch, query, group) slab. The forward keeps X·M, the first LayerNorm/ReLU and S·Y in registers
and stores only the final relu(LayerNorm(Z)). The backward saves nothing but the inputs: it recomputes its slab's
forward and writes dX, dM and dS directly (each slab owns its gradients, so there are no atomics and the result is
deterministic).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels_triton._utils import INTERPRET, cast_rne, dot_acc


def _configs(warps: tuple[int, ...]) -> list[triton.Config]:
    # The interpreter cannot benchmark; with a single config the autotuner does not try to.
    return [triton.Config({}, num_warps=w) for w in ((4,) if INTERPRET else warps)]


@triton.jit
def _slab_ptrs(ptr, pid, Q, G, s_b, s_q, s_g, r0, s_0, r1, s_1):
    """Pointers [len(r0), len(r1)] to the entries (r0, r1) of slab ``pid`` = (b·Q + q)·G + g of a [B, Q, G, n0, n1]
    tensor with strides s_b, s_q, s_g, s_0, s_1."""
    g = pid % G
    bq = pid // G
    return ptr + ((bq // Q) * s_b + (bq % Q) * s_q + g * s_g) + r0[:, None] * s_0 + r1[None, :] * s_1


@triton.jit
def _layer_norm(v, mask, n, eps):
    """(v - mean) * rstd over the valid entries of a 2-D tile (padding is 0 in v and in the result) and rstd."""
    mean = tl.sum(tl.sum(v, axis=1), axis=0) / n
    d = tl.where(mask, v - mean, 0.0)
    var = tl.sum(tl.sum(d * d, axis=1), axis=0) / n
    rstd = 1.0 / tl.sqrt(var + eps)
    return d * rstd, rstd


@triton.jit
def _layer_norm_bwd(dvn, vn, rstd, mask, n):
    """Gradient through (v - mean) * rstd given the normalised tile vn: rstd·(dvn - mean(dvn) - vn·mean(dvn·vn))."""
    mean_d = tl.sum(tl.sum(dvn, axis=1), axis=0) / n
    mean_dv = tl.sum(tl.sum(dvn * vn, axis=1), axis=0) / n
    return tl.where(mask, rstd * (dvn - mean_d - vn * mean_dv), 0.0)


@triton.jit
def _forward_slab(x_ptr, m_ptr, s_ptr, pid, Q, G, TP, C, P, eps,
                  sx_b, sx_q, sx_g, sx_t, sx_c, sm_b, sm_q, sm_g, sm_i, sm_o, ss_b, ss_q, ss_g, ss_p, ss_t,
                  BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr, EMULATE_BF16: tl.constexpr):
    """Load one slab and run the forward up to the second LayerNorm; returns every tile the backward needs."""
    rt = tl.arange(0, BLOCK_T)
    rc = tl.arange(0, BLOCK_C)
    rp = tl.arange(0, BLOCK_P)
    mask_tc = (rt < TP)[:, None] & (rc < C)[None, :]
    mask_cc = (rc < C)[:, None] & (rc < C)[None, :]
    mask_pt = (rp < P)[:, None] & (rt < TP)[None, :]
    mask_pc = (rp < P)[:, None] & (rc < C)[None, :]
    x = tl.load(_slab_ptrs(x_ptr, pid, Q, G, sx_b, sx_q, sx_g, rt, sx_t, rc, sx_c), mask=mask_tc, other=0.0)
    m = tl.load(_slab_ptrs(m_ptr, pid, Q, G, sm_b, sm_q, sm_g, rc, sm_i, rc, sm_o), mask=mask_cc, other=0.0)
    s = tl.load(_slab_ptrs(s_ptr, pid, Q, G, ss_b, ss_q, ss_g, rp, ss_p, rt, ss_t), mask=mask_pt, other=0.0)
    yn, rstd_y = _layer_norm(dot_acc(x, m, EMULATE_BF16), mask_tc, TP * C, eps)
    # The point mix consumes Y rounded to the input dtype, as the tensor cores (and torch in that dtype) would.
    a = cast_rne(tl.maximum(yn, 0.0), x_ptr.dtype.element_ty, EMULATE_BF16)
    zn, rstd_z = _layer_norm(dot_acc(s, a, EMULATE_BF16), mask_pc, P * C, eps)
    return x, m, s, yn, rstd_y, a, zn, rstd_z, mask_tc, mask_pc


@triton.autotune(configs=_configs((4, 8)), key=["BLOCK_T", "BLOCK_C", "BLOCK_P"])
@triton.jit
def _st_fusion_fwd_kernel(x_ptr, m_ptr, s_ptr, out_ptr, Q, G, TP, C, P, eps,
                          sx_b, sx_q, sx_g, sx_t, sx_c, sm_b, sm_q, sm_g, sm_i, sm_o, ss_b, ss_q, ss_g, ss_p, ss_t,
                          so_b, so_q, so_g, so_p, so_c,
                          BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
                          EMULATE_BF16: tl.constexpr):
    pid = tl.program_id(0).to(tl.int64)
    _, _, _, _, _, _, zn, _, _, mask_pc = _forward_slab(
        x_ptr, m_ptr, s_ptr, pid, Q, G, TP, C, P, eps, sx_b, sx_q, sx_g, sx_t, sx_c,
        sm_b, sm_q, sm_g, sm_i, sm_o, ss_b, ss_q, ss_g, ss_p, ss_t, BLOCK_T, BLOCK_C, BLOCK_P, EMULATE_BF16)
    rc = tl.arange(0, BLOCK_C)
    rp = tl.arange(0, BLOCK_P)
    out = tl.maximum(zn, 0.0)
    tl.store(_slab_ptrs(out_ptr, pid, Q, G, so_b, so_q, so_g, rp, so_p, rc, so_c),
             cast_rne(out, out_ptr.dtype.element_ty, EMULATE_BF16), mask=mask_pc)


# Not 4 warps: three live [128, 64] float32 tiles (Z, dZ, dOut) would need ~190 registers per thread and spill.
@triton.autotune(configs=_configs((8, 16)), key=["BLOCK_T", "BLOCK_C", "BLOCK_P"])
@triton.jit
def _st_fusion_bwd_kernel(dout_ptr, x_ptr, m_ptr, s_ptr, dx_ptr, dm_ptr, ds_ptr, Q, G, TP, C, P, eps,
                          sd_b, sd_q, sd_g, sd_p, sd_c,
                          sx_b, sx_q, sx_g, sx_t, sx_c, sm_b, sm_q, sm_g, sm_i, sm_o, ss_b, ss_q, ss_g, ss_p, ss_t,
                          BLOCK_T: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_P: tl.constexpr,
                          EMULATE_BF16: tl.constexpr):
    """dX, dM, dS of one slab; dx/dm/ds are contiguous tensors shaped like x/M/S."""
    pid = tl.program_id(0).to(tl.int64)
    x, m, s, yn, rstd_y, a, zn, rstd_z, mask_tc, mask_pc = _forward_slab(
        x_ptr, m_ptr, s_ptr, pid, Q, G, TP, C, P, eps, sx_b, sx_q, sx_g, sx_t, sx_c,
        sm_b, sm_q, sm_g, sm_i, sm_o, ss_b, ss_q, ss_g, ss_p, ss_t, BLOCK_T, BLOCK_C, BLOCK_P, EMULATE_BF16)
    rt = tl.arange(0, BLOCK_T)
    rc = tl.arange(0, BLOCK_C)
    rp = tl.arange(0, BLOCK_P)
    dout = tl.load(_slab_ptrs(dout_ptr, pid, Q, G, sd_b, sd_q, sd_g, rp, sd_p, rc, sd_c), mask=mask_pc,
                   other=0.0).to(zn.dtype)
    dz = _layer_norm_bwd(tl.where(zn > 0, dout, 0.0), zn, rstd_z, mask_pc, P * C)
    dz = cast_rne(dz, x_ptr.dtype.element_ty, EMULATE_BF16)
    ds = dot_acc(dz, tl.trans(a), EMULATE_BF16)            # [P, TP]
    da = dot_acc(tl.trans(s), dz, EMULATE_BF16)            # [TP, C]
    dy = _layer_norm_bwd(tl.where(yn > 0, da, 0.0), yn, rstd_y, mask_tc, TP * C)
    dy = cast_rne(dy, x_ptr.dtype.element_ty, EMULATE_BF16)
    dm = dot_acc(tl.trans(x), dy, EMULATE_BF16)            # [C, C]
    dx = dot_acc(dy, tl.trans(m), EMULATE_BF16)            # [TP, C]
    tl.store(dx_ptr + pid * TP * C + rt[:, None] * C + rc[None, :], cast_rne(dx, dx_ptr.dtype.element_ty, EMULATE_BF16),
             mask=mask_tc)
    tl.store(dm_ptr + pid * C * C + rc[:, None] * C + rc[None, :], cast_rne(dm, dm_ptr.dtype.element_ty, EMULATE_BF16),
             mask=(rc < C)[:, None] & (rc < C)[None, :])
    tl.store(ds_ptr + pid * P * TP + rp[:, None] * TP + rt[None, :],
             cast_rne(ds, ds_ptr.dtype.element_ty, EMULATE_BF16), mask=(rp < P)[:, None] & (rt < TP)[None, :])


def _block(n: int) -> int:
    # tl.dot needs every tile dimension >= 16; tl.arange needs powers of two.
    return max(16, triton.next_power_of_2(n))


# Under the interpreter, tl.dot multiplies the raw bits of bf16 operands (docs/kernels.md §1) and float32 -> bf16 casts
# truncate (triton 3.6 _convert_float), so bf16 runs there keep float32 tiles and round by hand (EMULATE_BF16).
def _meta(x: torch.Tensor, point_mix: torch.Tensor) -> dict:
    return {"BLOCK_T": _block(x.shape[3]), "BLOCK_C": _block(x.shape[4]), "BLOCK_P": _block(point_mix.shape[3]),
            "EMULATE_BF16": INTERPRET and x.dtype == torch.bfloat16}


@torch.library.custom_op("pgocc::st_fusion_fwd", mutates_args=())
def _st_fusion_fwd(x: torch.Tensor, channel_mix: torch.Tensor, point_mix: torch.Tensor, eps: float) -> torch.Tensor:
    B, Q, G, TP, C = x.shape
    P = point_mix.shape[3]
    out = x.new_empty(B, Q, G, P, C)
    if out.numel():
        _st_fusion_fwd_kernel[(B * Q * G,)](
            x, channel_mix, point_mix, out, Q, G, TP, C, P, eps,
            *x.stride(), *channel_mix.stride(), *point_mix.stride(), *out.stride(), **_meta(x, point_mix))
    return out


@_st_fusion_fwd.register_fake
def _st_fusion_fwd_fake(x: torch.Tensor, channel_mix: torch.Tensor, point_mix: torch.Tensor,
                        eps: float) -> torch.Tensor:
    B, Q, G, _, C = x.shape
    return x.new_empty(B, Q, G, point_mix.shape[3], C)


@torch.library.custom_op("pgocc::st_fusion_bwd", mutates_args=())
def _st_fusion_bwd(dout: torch.Tensor, x: torch.Tensor, channel_mix: torch.Tensor, point_mix: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    B, Q, G, TP, C = x.shape
    P = point_mix.shape[3]
    dx = torch.empty(x.shape, dtype=x.dtype, device=x.device)
    dm = torch.empty(channel_mix.shape, dtype=x.dtype, device=x.device)
    ds = torch.empty(point_mix.shape, dtype=x.dtype, device=x.device)
    if dx.numel():
        _st_fusion_bwd_kernel[(B * Q * G,)](
            dout, x, channel_mix, point_mix, dx, dm, ds, Q, G, TP, C, P, eps,
            *dout.stride(), *x.stride(), *channel_mix.stride(), *point_mix.stride(), **_meta(x, point_mix))
    return dx, dm, ds


@_st_fusion_bwd.register_fake
def _st_fusion_bwd_fake(dout: torch.Tensor, x: torch.Tensor, channel_mix: torch.Tensor, point_mix: torch.Tensor,
                        eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.empty(x.shape, dtype=x.dtype, device=x.device),
            torch.empty(channel_mix.shape, dtype=x.dtype, device=x.device),
            torch.empty(point_mix.shape, dtype=x.dtype, device=x.device))


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: torch.Tensor) -> None:
    x, channel_mix, point_mix, eps = inputs
    ctx.save_for_backward(x, channel_mix, point_mix)
    ctx.eps = eps


def _backward(ctx: torch.autograd.function.FunctionCtx, dout: torch.Tensor) -> tuple:
    x, channel_mix, point_mix = ctx.saved_tensors
    dx, dm, ds = _st_fusion_bwd(dout, x, channel_mix, point_mix, ctx.eps)
    return dx, dm, ds, None


_st_fusion_fwd.register_autograd(_backward, setup_context=_setup_context)


def st_fusion(x: torch.Tensor, channel_mix: torch.Tensor, point_mix: torch.Tensor, eps: float) -> torch.Tensor:
    """Fused AdaptiveMixing core; see ``pgocc.ops.st_fusion`` for shapes and semantics.

    Args:
        x: [B, Q, G, TP, C] bfloat16/float32/float64, any strides.
        channel_mix: [B, Q, G, C, C], same dtype, any strides (e.g. a view into the generated parameters).
        point_mix: [B, Q, G, P_out, TP], same dtype, any strides.
        eps: LayerNorm epsilon.

    Returns:
        [B, Q, G, P_out, C], contiguous.
    """
    return _st_fusion_fwd(x, channel_mix, point_mix, float(eps))
