"""Flash-style Triton kernels for distance-biased attention (contract: ``pgocc.ops.dist_attention``).

No Q×Q tensor exists: each [BLOCK_M, BLOCK_N] tile of logits is generated in registers from q·kᵀ, the two centre
tiles and τ, and the softmax is computed online. Saved for the backward beyond the inputs: the per-row log-sum-exp
[B, H, Q] and the output before rounding to the input dtype [B, H, Q, D] (float32); the backward adds the per-row
Σ dO·O. All O(Q).

- Mask: query blocks made only of old queries stop at key ``num_old``; key blocks made only of new keys start at the
  first query block that holds a new query. Straddling tiles are masked element-wise.
- Dropout: keep(i, j) = philox_uniform(seed, ((b·H + h)·Q + i)·Q + j) >= p with ``tl.rand``, independent of the tiling,
  so the backward kernels regenerate exactly the forward's mask from the saved seed.
- Backward: one kernel per key block accumulates dK and dV over query blocks; one per query block accumulates dQ and
  dτ over key blocks. Both recompute the probabilities from the saved log-sum-exp in one shared tile function
  (``_bwd_tile``). No atomics: deterministic.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels_triton._utils import INTERPRET, cast_rne, dot_acc


def _configs(shapes: tuple[tuple[int, int, int, int], ...]) -> list[triton.Config]:
    """(BLOCK_M, BLOCK_N, warps, stages) tuples to autotune over; one small fixed tile under the interpreter, which
    cannot benchmark (with a single config the autotuner does not try to)."""
    if INTERPRET:
        return [triton.Config({"BLOCK_M": 16, "BLOCK_N": 16}, num_warps=4)]
    return [triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s) for m, n, w, s in shapes]


# Few candidates and no Q in the autotune key: each candidate is a separate compile, and the best tile hardly
# depends on Q at the model's sizes (4000-6000).
_FWD_CONFIGS = _configs(((128, 64, 4, 3), (64, 64, 4, 2)))
_BWD_CONFIGS = _configs(((64, 64, 4, 2), (128, 64, 8, 2)))


@triton.jit
def _logits(qb, kb, cx_i, cy_i, tau_i, cx_j, cy_j, rows, cols, Q, num_old, sm_scale, EMULATE_BF16: tl.constexpr):
    """Logits of one tile [BLOCK_M, BLOCK_N] (-inf where masked or out of range) and the BEV distances."""
    s = dot_acc(qb, tl.trans(kb), EMULATE_BF16) * sm_scale
    dx = cx_i[:, None] - cx_j[None, :]
    dy = cy_i[:, None] - cy_j[None, :]
    dist = tl.sqrt(dx * dx + dy * dy)
    s = s - tau_i[:, None] * dist
    valid = (cols < Q)[None, :] & ((rows >= num_old)[:, None] | (cols < num_old)[None, :])
    return tl.where(valid, s, float("-inf")), dist


@triton.jit
def _keep(seed, row_off, cols, dropout_p):
    """Dropout keep-mask of a tile; ``row_off`` = ((b·H + h)·Q + i)·Q as int64 (the high word feeds Philox too)."""
    return tl.rand(seed, row_off[:, None] + cols[None, :]) >= dropout_p


@triton.jit
def _bwd_tile(qb, kb, vb, dob, lse, delta, cx_i, cy_i, tau_i, cx_j, cy_j, rows, cols, Q, num_old, sm_scale, seed,
              row_off, dropout_p, DROPOUT: tl.constexpr, EMULATE_BF16: tl.constexpr):
    """The backward's work on one [BLOCK_M, BLOCK_N] tile, shared by the dK/dV and the dQ kernels: P recomputed from
    the saved log-sum-exp, dP = dO·vᵀ, the forward's dropout mask regenerated from ``row_off`` (see ``_keep``), and
    dS = P∘(dP - Σ).

    Returns (p_used, ds, dist): P as the forward applied it to V (dropped and rescaled; for dV), dS (not yet scaled by
    sm_scale) and the BEV distances (for dτ). The dQ kernel ignores p_used and the dK/dV kernel dist; the compiler
    drops what a kernel does not use.
    """
    s, dist = _logits(qb, kb, cx_i, cy_i, tau_i, cx_j, cy_j, rows, cols, Q, num_old, sm_scale, EMULATE_BF16)
    p = tl.where((rows < Q)[:, None], tl.exp(s - lse[:, None]), 0.0)
    dp = dot_acc(dob, tl.trans(vb), EMULATE_BF16)
    if DROPOUT:
        keep = _keep(seed, row_off, cols, dropout_p)
        p_used = tl.where(keep, p / (1.0 - dropout_p), 0.0)
        dp = tl.where(keep, dp / (1.0 - dropout_p), 0.0)
    else:
        p_used = p
    return p_used, p * (dp - delta[:, None]), dist


@triton.jit
def _load_rows(ptr, rows, rd, n, D, s_row, s_d):
    """A [len(rows), BLOCK_D] tile of a [n, D] matrix, zero outside."""
    return tl.load(ptr + rows[:, None] * s_row + rd[None, :] * s_d, mask=(rows < n)[:, None] & (rd < D)[None, :],
                   other=0.0)


@triton.jit
def _load_centres(c_base, idx, Q, sc_q, sc_x, ACC: tl.constexpr):
    """x and y BEV centres [len(idx)] of the queries ``idx`` (zero outside [0, Q)), in the accumulation dtype."""
    ok = idx < Q
    return (tl.load(c_base + idx * sc_q, mask=ok, other=0.0).to(ACC),
            tl.load(c_base + idx * sc_q + sc_x, mask=ok, other=0.0).to(ACC))


@triton.jit
def _load_bwd_rows(do_base, stat_base, lse_ptr, delta_ptr, rows, rd, Q, D, sd_q, sd_d):
    """The backward's inputs per query row: dO [len(rows), BLOCK_D], the log-sum-exp and Σ dO·O [len(rows)]."""
    dob = _load_rows(do_base, rows, rd, Q, D, sd_q, sd_d)
    lse = tl.load(lse_ptr + stat_base + rows, mask=rows < Q, other=0.0)
    delta = tl.load(delta_ptr + stat_base + rows, mask=rows < Q, other=0.0)
    return dob, lse, delta


@triton.autotune(configs=_FWD_CONFIGS, key=["BLOCK_D", "DROPOUT"])
@triton.jit
def _dist_attn_fwd_kernel(q_ptr, k_ptr, v_ptr, c_ptr, tau_ptr, seed_ptr, out_ptr, out_acc_ptr, lse_ptr, H, Q, D,
                          num_old, dropout_p, sq_b, sq_h, sq_q, sq_d, sk_b, sk_h, sk_q, sk_d, sv_b, sv_h, sv_q, sv_d,
                          sc_b, sc_q, sc_x, st_b, st_h, st_q, so_b, so_h, so_q, so_d,
                          BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                          DROPOUT: tl.constexpr, EMULATE_BF16: tl.constexpr, ACC: tl.constexpr):
    """One program per (query block, b·H + h): out (input dtype), out_acc (the same before rounding, contiguous) and
    the natural-log log-sum-exp of its rows."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rd = tl.arange(0, BLOCK_D)
    row_ok = rows < Q
    sm_scale = 1.0 / tl.sqrt(tl.zeros([], ACC) + D)
    qb = _load_rows(q_ptr + b * sq_b + h * sq_h, rows, rd, Q, D, sq_q, sq_d)
    k_base = k_ptr + b * sk_b + h * sk_h
    v_base = v_ptr + b * sv_b + h * sv_h
    c_base = c_ptr + b * sc_b
    cx_i, cy_i = _load_centres(c_base, rows, Q, sc_q, sc_x, ACC)
    tau_i = tl.load(tau_ptr + b * st_b + h * st_h + rows * st_q, mask=row_ok, other=0.0).to(ACC)
    seed = tl.load(seed_ptr)
    row_off = (bh.to(tl.int64) * Q + rows) * Q
    # A block of old queries only: every new key is masked for it.
    hi = tl.where((pid_m + 1) * BLOCK_M <= num_old, num_old, Q)
    m_i = tl.full([BLOCK_M], float("-inf"), ACC)
    l_i = tl.zeros([BLOCK_M], ACC)
    acc = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        kb = _load_rows(k_base, cols, rd, Q, D, sk_q, sk_d)
        vb = _load_rows(v_base, cols, rd, Q, D, sv_q, sv_d)
        cx_j, cy_j = _load_centres(c_base, cols, Q, sc_q, sc_x, ACC)
        s, _ = _logits(qb, kb, cx_i, cy_i, tau_i, cx_j, cy_j, rows, cols, Q, num_old, sm_scale, EMULATE_BF16)
        # Every row has a visible key in the first tile (key 0), so m_new is finite from the first step on.
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if DROPOUT:
            p = tl.where(_keep(seed, row_off, cols, dropout_p), p, 0.0)
        pv = dot_acc(cast_rne(p, v_ptr.dtype.element_ty, EMULATE_BF16), vb, EMULATE_BF16)
        acc = acc * alpha[:, None] + pv
        m_i = m_new
    inv_l = 1.0 / l_i
    if DROPOUT:
        inv_l = inv_l / (1.0 - dropout_p)
    out = acc * inv_l[:, None]
    out_mask = row_ok[:, None] & (rd < D)[None, :]
    tl.store(out_ptr + b * so_b + h * so_h + rows[:, None] * so_q + rd[None, :] * so_d,
             cast_rne(out, out_ptr.dtype.element_ty, EMULATE_BF16), mask=out_mask)
    tl.store(out_acc_ptr + (bh.to(tl.int64) * Q + rows[:, None]) * D + rd[None, :], out, mask=out_mask)
    tl.store(lse_ptr + bh.to(tl.int64) * Q + rows, m_i + tl.log(l_i), mask=row_ok)


@triton.autotune(configs=_BWD_CONFIGS, key=["BLOCK_D", "DROPOUT"])
@triton.jit
def _dist_attn_bwd_dkdv_kernel(q_ptr, k_ptr, v_ptr, c_ptr, tau_ptr, seed_ptr, dout_ptr, lse_ptr, delta_ptr,
                               dk_ptr, dv_ptr, H, Q, D, num_old, dropout_p,
                               sq_b, sq_h, sq_q, sq_d, sk_b, sk_h, sk_q, sk_d, sv_b, sv_h, sv_q, sv_d,
                               sc_b, sc_q, sc_x, st_b, st_h, st_q, sd_b, sd_h, sd_q, sd_d,
                               BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                               DROPOUT: tl.constexpr, EMULATE_BF16: tl.constexpr, ACC: tl.constexpr):
    """One program per (key block, b·H + h): dK and dV of its keys (contiguous [B, H, Q, D] outputs)."""
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    cols = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rd = tl.arange(0, BLOCK_D)
    col_ok = cols < Q
    sm_scale = 1.0 / tl.sqrt(tl.zeros([], ACC) + D)
    kb = _load_rows(k_ptr + b * sk_b + h * sk_h, cols, rd, Q, D, sk_q, sk_d)
    vb = _load_rows(v_ptr + b * sv_b + h * sv_h, cols, rd, Q, D, sv_q, sv_d)
    q_base = q_ptr + b * sq_b + h * sq_h
    do_base = dout_ptr + b * sd_b + h * sd_h
    c_base = c_ptr + b * sc_b
    t_base = tau_ptr + b * st_b + h * st_h
    stat_base = bh.to(tl.int64) * Q
    cx_j, cy_j = _load_centres(c_base, cols, Q, sc_q, sc_x, ACC)
    seed = tl.load(seed_ptr)
    # A block of new keys only: old queries never see it, so start at the query block holding query num_old.
    lo = tl.where(pid_n * BLOCK_N >= num_old, (num_old // BLOCK_M) * BLOCK_M, 0)
    dk = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    dv = tl.zeros([BLOCK_N, BLOCK_D], ACC)
    for start_m in range(lo, Q, BLOCK_M):
        rows = start_m + tl.arange(0, BLOCK_M)
        qb = _load_rows(q_base, rows, rd, Q, D, sq_q, sq_d)
        dob, lse, delta = _load_bwd_rows(do_base, stat_base, lse_ptr, delta_ptr, rows, rd, Q, D, sd_q, sd_d)
        cx_i, cy_i = _load_centres(c_base, rows, Q, sc_q, sc_x, ACC)
        tau_i = tl.load(t_base + rows * st_q, mask=rows < Q, other=0.0).to(ACC)
        p_used, ds, _ = _bwd_tile(qb, kb, vb, dob, lse, delta, cx_i, cy_i, tau_i, cx_j, cy_j, rows, cols, Q, num_old,
                                  sm_scale, seed, (bh.to(tl.int64) * Q + rows) * Q, dropout_p, DROPOUT, EMULATE_BF16)
        dv += dot_acc(tl.trans(cast_rne(p_used, v_ptr.dtype.element_ty, EMULATE_BF16)), dob, EMULATE_BF16)
        dk += dot_acc(tl.trans(cast_rne(ds, q_ptr.dtype.element_ty, EMULATE_BF16)), qb, EMULATE_BF16)
    out_off = stat_base * D + cols[:, None] * D + rd[None, :]
    out_mask = col_ok[:, None] & (rd < D)[None, :]
    tl.store(dk_ptr + out_off, cast_rne(dk * sm_scale, dk_ptr.dtype.element_ty, EMULATE_BF16), mask=out_mask)
    tl.store(dv_ptr + out_off, cast_rne(dv, dv_ptr.dtype.element_ty, EMULATE_BF16), mask=out_mask)


@triton.autotune(configs=_BWD_CONFIGS, key=["BLOCK_D", "DROPOUT"])
@triton.jit
def _dist_attn_bwd_dq_kernel(q_ptr, k_ptr, v_ptr, c_ptr, tau_ptr, seed_ptr, dout_ptr, lse_ptr, delta_ptr,
                             dq_ptr, dtau_ptr, H, Q, D, num_old, dropout_p,
                             sq_b, sq_h, sq_q, sq_d, sk_b, sk_h, sk_q, sk_d, sv_b, sv_h, sv_q, sv_d,
                             sc_b, sc_q, sc_x, st_b, st_h, st_q, sd_b, sd_h, sd_q, sd_d,
                             BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
                             DROPOUT: tl.constexpr, EMULATE_BF16: tl.constexpr, ACC: tl.constexpr):
    """One program per (query block, b·H + h): dQ and dτ of its rows (contiguous outputs)."""
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = (bh // H).to(tl.int64)
    h = bh % H
    rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rd = tl.arange(0, BLOCK_D)
    row_ok = rows < Q
    sm_scale = 1.0 / tl.sqrt(tl.zeros([], ACC) + D)
    stat_base = bh.to(tl.int64) * Q
    qb = _load_rows(q_ptr + b * sq_b + h * sq_h, rows, rd, Q, D, sq_q, sq_d)
    dob, lse, delta = _load_bwd_rows(dout_ptr + b * sd_b + h * sd_h, stat_base, lse_ptr, delta_ptr, rows, rd, Q, D,
                                     sd_q, sd_d)
    k_base = k_ptr + b * sk_b + h * sk_h
    v_base = v_ptr + b * sv_b + h * sv_h
    c_base = c_ptr + b * sc_b
    cx_i, cy_i = _load_centres(c_base, rows, Q, sc_q, sc_x, ACC)
    tau_i = tl.load(tau_ptr + b * st_b + h * st_h + rows * st_q, mask=row_ok, other=0.0).to(ACC)
    seed = tl.load(seed_ptr)
    row_off = (bh.to(tl.int64) * Q + rows) * Q
    hi = tl.where((pid_m + 1) * BLOCK_M <= num_old, num_old, Q)
    dq = tl.zeros([BLOCK_M, BLOCK_D], ACC)
    dtau = tl.zeros([BLOCK_M], ACC)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + tl.arange(0, BLOCK_N)
        kb = _load_rows(k_base, cols, rd, Q, D, sk_q, sk_d)
        vb = _load_rows(v_base, cols, rd, Q, D, sv_q, sv_d)
        cx_j, cy_j = _load_centres(c_base, cols, Q, sc_q, sc_x, ACC)
        _, ds, dist = _bwd_tile(qb, kb, vb, dob, lse, delta, cx_i, cy_i, tau_i, cx_j, cy_j, rows, cols, Q, num_old,
                                sm_scale, seed, row_off, dropout_p, DROPOUT, EMULATE_BF16)
        dq += dot_acc(cast_rne(ds, q_ptr.dtype.element_ty, EMULATE_BF16), kb, EMULATE_BF16)
        dtau -= tl.sum(ds * dist, axis=1)
    tl.store(dq_ptr + stat_base * D + rows[:, None] * D + rd[None, :],
             cast_rne(dq * sm_scale, dq_ptr.dtype.element_ty, EMULATE_BF16),
             mask=row_ok[:, None] & (rd < D)[None, :])
    tl.store(dtau_ptr + stat_base + rows, dtau.to(dtau_ptr.dtype.element_ty), mask=row_ok)


def _acc_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


# Under the interpreter, tl.dot multiplies the raw bits of bf16 operands (docs/kernels.md §1) and float32 -> bf16 casts
# truncate (triton 3.6 _convert_float), so bf16 runs there keep float32 tiles and round by hand (EMULATE_BF16).
def _meta(q: torch.Tensor, dropout_p: float) -> dict:
    return {"BLOCK_D": max(16, triton.next_power_of_2(q.shape[-1])), "DROPOUT": dropout_p > 0,
            "EMULATE_BF16": INTERPRET and q.dtype == torch.bfloat16,
            "ACC": tl.float64 if q.dtype == torch.float64 else tl.float32}


@torch.library.custom_op("pgocc::dist_attention_fwd", mutates_args=())
def _dist_attention_fwd(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centres: torch.Tensor, tau: torch.Tensor,
                        seed: torch.Tensor, num_old: int,
                        dropout_p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """out [B, H, Q, D] in q's dtype, out_acc (out before rounding, float32/float64) and lse [B, H, Q]."""
    B, H, Q, D = q.shape
    out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    out_acc = torch.empty(q.shape, dtype=_acc_dtype(q.dtype), device=q.device)
    lse = torch.empty(B, H, Q, dtype=_acc_dtype(q.dtype), device=q.device)
    _dist_attn_fwd_kernel[lambda meta: (triton.cdiv(Q, meta["BLOCK_M"]), B * H)](
        q, k, v, centres, tau, seed, out, out_acc, lse, H, Q, D, num_old, dropout_p,
        *q.stride(), *k.stride(), *v.stride(), *centres.stride(), *tau.stride(), *out.stride(),
        **_meta(q, dropout_p))
    return out, out_acc, lse


@_dist_attention_fwd.register_fake
def _dist_attention_fwd_fake(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centres: torch.Tensor,
                             tau: torch.Tensor, seed: torch.Tensor, num_old: int,
                             dropout_p: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.empty(q.shape, dtype=q.dtype, device=q.device),
            torch.empty(q.shape, dtype=_acc_dtype(q.dtype), device=q.device),
            torch.empty(q.shape[:3], dtype=_acc_dtype(q.dtype), device=q.device))


@torch.library.custom_op("pgocc::dist_attention_bwd", mutates_args=())
def _dist_attention_bwd(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centres: torch.Tensor,
                        tau: torch.Tensor, seed: torch.Tensor, out_acc: torch.Tensor, lse: torch.Tensor,
                        num_old: int, dropout_p: float
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    B, H, Q, D = q.shape
    # Σ_d dO·O per row equals Σ_j P∘dP, with or without dropout (O is the dropped output). O before its rounding to
    # bf16: the rounded one would put a relative error of 2^-9 into every row's Σ, which dτ (a sum of P∘(dP - Σ)·dist
    # over the row) amplifies to about 4x the error of torch's own bf16 autograd.
    delta = (out_acc * dout.to(out_acc.dtype)).sum(-1)
    dq = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dk = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dv = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    dtau = torch.empty(tau.shape, dtype=tau.dtype, device=tau.device)
    args = (H, Q, D, num_old, dropout_p, *q.stride(), *k.stride(), *v.stride(), *centres.stride(), *tau.stride(),
            *dout.stride())
    meta = _meta(q, dropout_p)
    _dist_attn_bwd_dkdv_kernel[lambda m: (triton.cdiv(Q, m["BLOCK_N"]), B * H)](
        q, k, v, centres, tau, seed, dout, lse, delta, dk, dv, *args, **meta)
    _dist_attn_bwd_dq_kernel[lambda m: (triton.cdiv(Q, m["BLOCK_M"]), B * H)](
        q, k, v, centres, tau, seed, dout, lse, delta, dq, dtau, *args, **meta)
    return dq, dk, dv, dtau


@_dist_attention_bwd.register_fake
def _dist_attention_bwd_fake(dout: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                             centres: torch.Tensor, tau: torch.Tensor, seed: torch.Tensor, out_acc: torch.Tensor,
                             lse: torch.Tensor, num_old: int, dropout_p: float
                             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    grads = tuple(torch.empty(q.shape, dtype=q.dtype, device=q.device) for _ in range(3))
    return (*grads, torch.empty(tau.shape, dtype=tau.dtype, device=tau.device))


def _setup_context(ctx: torch.autograd.function.FunctionCtx, inputs: tuple, output: tuple) -> None:
    q, k, v, centres, tau, seed, num_old, dropout_p = inputs
    _, out_acc, lse = output
    ctx.save_for_backward(q, k, v, centres, tau, seed, out_acc, lse)
    ctx.num_old = num_old
    ctx.dropout_p = dropout_p


def _backward(ctx: torch.autograd.function.FunctionCtx, dout: torch.Tensor, dout_acc: torch.Tensor | None,
              dlse: torch.Tensor | None) -> tuple:
    # out_acc and lse are internal; the public function returns neither, so their gradients carry nothing.
    q, k, v, centres, tau, seed, out_acc, lse = ctx.saved_tensors
    dq, dk, dv, dtau = _dist_attention_bwd(dout, q, k, v, centres, tau, seed, out_acc, lse, ctx.num_old,
                                           ctx.dropout_p)
    return dq, dk, dv, None, dtau, None, None, None


_dist_attention_fwd.register_autograd(_backward, setup_context=_setup_context)


def dist_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centres: torch.Tensor, tau: torch.Tensor,
                   num_old: int, dropout_p: float) -> torch.Tensor:
    """Fused distance-biased attention; see ``pgocc.ops.dist_attention`` for shapes and semantics.

    Args:
        q, k, v: [B, H, Q, D] bfloat16/float32/float64, any strides.
        centres: [B, Q, 2] float32/float64 BEV centres in metres (no gradient).
        tau: [B, H, Q] any floating dtype.
        num_old: K_old in [0, Q].
        dropout_p: dropout on the probabilities; the Philox seed is drawn from torch's generator of q's device.

    Returns:
        [B, H, Q, D] contiguous, dtype of q.
    """
    if dropout_p > 0:
        seed = torch.randint(0, 2**31 - 1, (1,), dtype=torch.int64, device=q.device)
    else:
        seed = torch.zeros(1, dtype=torch.int64, device=q.device)
    out, _, _ = _dist_attention_fwd(q, k, v, centres, tau, seed, int(num_old), float(dropout_p))
    return out
