"""Farthest point sampling in Triton: every row split over many CTAs, one argmax exchange per selected point.

    fps(points, lengths, num_samples) -> indices         (contract and semantics: pgocc.ops.fps)
      -> pgocc::fps (torch.library.custom_op)
         GPU:         _fps_persistent_kernel   one launch; the CTAs of a row exchange their local argmax through
                                               tagged words in global memory every iteration (a grid-wide
                                               argmax, no separate barrier)
         interpreter: _fps_step_kernel × K     one launch per selected point; each launch picks the previous
                                               winner from the per-CTA candidates (two-stage reduction)

Row b's valid prefix is cut into C chunks of BLOCK points, one per CTA. In the persistent kernel a CTA keeps its
chunk (coordinates and running minimum distance) in registers for all K iterations. Per iteration it updates the
minimum distance to the last selected point, reduces its chunk to one candidate (distance, index, coordinates),
publishes the candidate as 64-bit words ``payload << 32 | tag`` (tag = iteration), and polls the C candidates of its
row until every word carries this iteration's tag; every CTA then reduces the same C candidates to the same winner.
Each 64-bit word is read and written whole, so a word with the right tag holds the right payload: no fences, no
counters. Two slot buffers alternate by iteration parity: a CTA can only write iteration j + 2 after every CTA of
its row published iteration j + 1, i.e. after each of them finished reading iteration j.

The persistent kernel spins on other CTAs, so every CTA of a row must be resident at once: it is launched as a
cooperative grid (the driver refuses a grid that cannot be co-resident instead of hanging) of at most one CTA per
SM. The Triton interpreter runs programs one after another, so spinning there would deadlock; it runs the step
kernel instead, which the GPU tests also exercise.

Exactness: distances are ``dx*dx + dy*dy + dz*dz`` in the input dtype with FMA contraction disabled, which rounds
exactly as the reference's separate torch ops; ties go to the lowest index (local reductions and the exchange both
order by (distance desc, index asc)). Hence the indices are identical to the reference's. Deterministic.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"

INTERPRETER_SMS = 4
"""SM count assumed under the interpreter: enough CTAs per row to exercise the cross-CTA reduction, few programs."""
MAX_BLOCK = 16384
"""Largest chunk per CTA kept in registers (4 values per point); beyond it the kernel would spill heavily."""


@triton.jit
def _fps_argmax_combine(d1, i1, x1, y1, z1, d2, i2, x2, y2, z2):
    # Order: larger distance first, then smaller index (the reference's first maximum).
    take1 = (d1 > d2) | ((d1 == d2) & (i1 < i2))
    return (tl.where(take1, d1, d2), tl.where(take1, i1, i2), tl.where(take1, x1, x2), tl.where(take1, y1, y2),
            tl.where(take1, z1, z2))


@triton.jit
def _fps_poll_combine(r1, d1, i1, x1, y1, z1, r2, d2, i2, x2, y2, z2):
    d, i, x, y, z = _fps_argmax_combine(d1, i1, x1, y1, z1, d2, i2, x2, y2, z2)
    return tl.minimum(r1, r2), d, i, x, y, z


@triton.jit
def _fps_update(mind, valid, x, y, z, px, py, pz):
    # Same operation order as the reference: ((dx*dx + dy*dy) + dz*dz), no FMA (enable_fp_fusion=False).
    dx = x - px
    dy = y - py
    dz = z - pz
    d = dx * dx + dy * dy + dz * dz
    return tl.where(valid, tl.minimum(mind, d), mind)


@triton.jit
def _fps_word(payload, tag):
    # payload: int64 whose low 32 bits are kept; tag: iteration number (< 2^31).
    return (payload << 32) | tag


@triton.jit
def _fps_float_words(v, tag, IS_F64: tl.constexpr):
    """(high word, low word) of a float; for float32 the low word is unused."""
    if IS_F64:
        bits = v.to(tl.int64, bitcast=True)
        return _fps_word(bits >> 32, tag), _fps_word(bits & 0xFFFFFFFF, tag)
    else:
        bits = v.to(tl.int32, bitcast=True).to(tl.int64)
        return _fps_word(bits, tag), _fps_word(bits, tag)


@triton.jit
def _fps_words_float(hi, lo, IS_F64: tl.constexpr):
    if IS_F64:
        return (((hi >> 32) << 32) | ((lo >> 32) & 0xFFFFFFFF)).to(tl.float64, bitcast=True)
    else:
        return (hi >> 32).to(tl.int32).to(tl.float32, bitcast=True)


@triton.jit
def _fps_publish_float(slot_ptr, f: tl.constexpr, C_PAD: tl.constexpr, cta, v, tag, IS_F64: tl.constexpr):
    hi, lo = _fps_float_words(v, tag, IS_F64)
    tl.store(slot_ptr + f * C_PAD + cta, hi)
    if IS_F64:
        tl.store(slot_ptr + (f + 1) * C_PAD + cta, lo)


@triton.jit
def _fps_read_float(slot_ptr, f: tl.constexpr, C_PAD: tl.constexpr, lanes, lane_ok, tag, IS_F64: tl.constexpr):
    """(values, tag matches) of field f of every CTA's slot; volatile, so each poll re-reads L2."""
    hi = tl.load(slot_ptr + f * C_PAD + lanes, mask=lane_ok, other=0, volatile=True)
    ok = (hi & 0xFFFFFFFF) == tag
    lo = hi
    if IS_F64:
        lo = tl.load(slot_ptr + (f + 1) * C_PAD + lanes, mask=lane_ok, other=0, volatile=True)
        ok = ok & ((lo & 0xFFFFFFFF) == tag)
    return _fps_words_float(hi, lo, IS_F64), ok


@triton.jit
def _fps_persistent_kernel(points_ptr, lengths_ptr, slots_ptr, out_ptr, K, stride_pb, stride_pn, stride_pc,
                           stride_ob, C: tl.constexpr, C_PAD: tl.constexpr, BLOCK: tl.constexpr,
                           IS_F64: tl.constexpr):
    cta = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    n = tl.load(lengths_ptr + b)
    lane = tl.arange(0, BLOCK)
    offs = cta * BLOCK + lane
    valid = offs < n
    row = points_ptr + b * stride_pb
    x = tl.load(row + offs * stride_pn, mask=valid, other=0.0)
    y = tl.load(row + offs * stride_pn + stride_pc, mask=valid, other=0.0)
    z = tl.load(row + offs * stride_pn + 2 * stride_pc, mask=valid, other=0.0)
    idx = offs.to(tl.int64)
    # Padding lanes hold -1: below every distance, so never a candidate while a valid point exists.
    mind = tl.where(valid, tl.full((BLOCK,), float("inf"), x.dtype), tl.full((BLOCK,), -1.0, x.dtype))
    px = tl.load(row)
    py = tl.load(row + stride_pc)
    pz = tl.load(row + 2 * stride_pc)
    if cta == 0:
        tl.store(out_ptr + b * stride_ob, 0)
    # Fields of a slot: distance, x, y, z (one word each, two for float64), then the index.
    NW: tl.constexpr = 2 if IS_F64 else 1
    F_IDX: tl.constexpr = 4 * NW
    F: tl.constexpr = 4 * NW + 1
    lanes = tl.arange(0, C_PAD)
    lane_ok = lanes < C
    for j in range(1, K):
        tag = j.to(tl.int64)
        slot = slots_ptr + ((b * 2 + j % 2) * F) * C_PAD
        mind = _fps_update(mind, valid, x, y, z, px, py, pz)
        bd, bi, bx, by, bz = tl.reduce((mind, idx, x, y, z), 0, _fps_argmax_combine)
        _fps_publish_float(slot, 0, C_PAD, cta, bd, tag, IS_F64)
        _fps_publish_float(slot, NW, C_PAD, cta, bx, tag, IS_F64)
        _fps_publish_float(slot, 2 * NW, C_PAD, cta, by, tag, IS_F64)
        _fps_publish_float(slot, 3 * NW, C_PAD, cta, bz, tag, IS_F64)
        tl.store(slot + F_IDX * C_PAD + cta, _fps_word(bi, tag))
        ready = cta * 0
        while ready == 0:
            cd, ok_d = _fps_read_float(slot, 0, C_PAD, lanes, lane_ok, tag, IS_F64)
            cx, ok_x = _fps_read_float(slot, NW, C_PAD, lanes, lane_ok, tag, IS_F64)
            cy, ok_y = _fps_read_float(slot, 2 * NW, C_PAD, lanes, lane_ok, tag, IS_F64)
            cz, ok_z = _fps_read_float(slot, 3 * NW, C_PAD, lanes, lane_ok, tag, IS_F64)
            wi = tl.load(slot + F_IDX * C_PAD + lanes, mask=lane_ok, other=0, volatile=True)
            ok = (ok_d & ok_x & ok_y & ok_z & ((wi & 0xFFFFFFFF) == tag)) | (lanes >= C)
            cd = tl.where(lane_ok, cd, -1.0)
            ready, bd, bi, px, py, pz = tl.reduce((ok.to(tl.int32), cd, wi >> 32, cx, cy, cz), 0,
                                                  _fps_poll_combine)
        if cta == 0:
            tl.store(out_ptr + b * stride_ob + j, bi)


@triton.jit
def _fps_step_kernel(points_ptr, lengths_ptr, mind_ptr, cand_ptr, cand_idx_ptr, out_ptr, j, K, stride_pb,
                     stride_pn, stride_pc, stride_ob, B, C: tl.constexpr, C_PAD: tl.constexpr,
                     BLOCK: tl.constexpr):
    """Step j: pick point j (index 0, or the winner of step j - 1's candidates), then produce step j's candidates.

    Uses the built-in argmax (first maximum) rather than the persistent kernel's tuple reduction: the interpreter
    runs custom-combine reductions element by element in Python. Chunks are ordered by CTA, so the first maximum
    over CTAs is the lowest index.
    """
    cta = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    n = tl.load(lengths_ptr + b)
    row = points_ptr + b * stride_pb
    lanes = tl.arange(0, C_PAD)
    # Candidates: distances [2 (parity), B, C_PAD], indices [2, B, C_PAD].
    prev = ((j + 1) % 2 * B + b) * C_PAD + lanes
    cd = tl.load(cand_ptr + prev, mask=(lanes < C) & (j > 0), other=-1.0)
    ci = tl.load(cand_idx_ptr + prev, mask=(lanes < C) & (j > 0), other=0)
    sel = tl.sum(tl.where(lanes == tl.argmax(cd, 0, tie_break_left=True), ci, 0), 0)
    if cta == 0:
        tl.store(out_ptr + b * stride_ob + j, sel)
    if j < K - 1:
        px = tl.load(row + sel * stride_pn)
        py = tl.load(row + sel * stride_pn + stride_pc)
        pz = tl.load(row + sel * stride_pn + 2 * stride_pc)
        offs = cta * BLOCK + tl.arange(0, BLOCK)
        valid = offs < n
        x = tl.load(row + offs * stride_pn, mask=valid, other=0.0)
        y = tl.load(row + offs * stride_pn + stride_pc, mask=valid, other=0.0)
        z = tl.load(row + offs * stride_pn + 2 * stride_pc, mask=valid, other=0.0)
        mind = tl.load(mind_ptr + b * C * BLOCK + offs, mask=valid, other=-1.0)
        mind = _fps_update(mind, valid, x, y, z, px, py, pz)
        tl.store(mind_ptr + b * C * BLOCK + offs, mind, mask=valid)
        cur = (j % 2 * B + b) * C_PAD + cta
        tl.store(cand_ptr + cur, tl.max(mind, 0))
        tl.store(cand_idx_ptr + cur, cta * BLOCK + tl.argmax(mind, 0, tie_break_left=True).to(tl.int64))


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def plan(num_rows: int, num_points: int, device: torch.device) -> tuple[int, int]:
    """(CTAs per row C, points per CTA BLOCK): at most one CTA per SM over all rows, BLOCK a power of two.

    Fewer, fuller CTAs beat more, emptier ones: a CTA costs the same per iteration whatever share of its BLOCK
    lanes is valid, and fewer candidates make the exchange cheaper.
    """
    sms = _sm_count(device.index if device.index is not None else torch.cuda.current_device()) \
        if device.type == "cuda" else INTERPRETER_SMS
    per_row = max(1, sms // num_rows)
    block = max(16, triton.next_power_of_2(triton.cdiv(num_points, per_row)))
    if block > MAX_BLOCK:
        raise ValueError(f"fps (triton): {num_points} points per row over {per_row} CTA(s) per row needs "
                         f"{block} points per CTA, above the register-resident limit {MAX_BLOCK}; "
                         f"use fewer rows per call or the reference")
    return triton.cdiv(num_points, block), block


def _num_warps(block: int) -> int:
    # ≤ 32 points per thread (207 registers at BLOCK 4096, no spill). Fewer warps are faster: H100, 345,600 -> 6000
    # at BLOCK 4096: 4 warps 15.6 ms, 8 warps 16.6, 16 warps 22.8; 100,000 -> 1000 at BLOCK 1024: 2.26 / 2.67 / 3.59.
    return max(4, block // 1024)


def fps_launch(points: torch.Tensor, lengths: torch.Tensor, num_samples: int, *, persistent: bool) -> torch.Tensor:
    """Run one of the two kernel designs (``persistent`` needs a GPU); see the module docstring."""
    B, N, _ = points.shape
    out = torch.empty(B, num_samples, dtype=torch.int64, device=points.device)
    torch._assert_async(((lengths >= num_samples) & (lengths <= N)).all(),
                        "fps: every lengths[b] must lie in [num_samples, N]")
    C, block = plan(B, N, points.device)
    c_pad = max(2, triton.next_power_of_2(C))
    strides = (points.stride(0), points.stride(1), points.stride(2), out.stride(0))
    is_f64 = points.dtype == torch.float64
    if persistent:
        fields = 9 if is_f64 else 5
        slots = torch.zeros(B, 2, fields, c_pad, dtype=torch.int64, device=points.device)
        _fps_persistent_kernel[(C, B)](points, lengths, slots, out, num_samples, *strides, C=C, C_PAD=c_pad,
                                       BLOCK=block, IS_F64=is_f64, num_warps=_num_warps(block),
                                       enable_fp_fusion=False, launch_cooperative_grid=True)
        return out
    mind = torch.full((B, C * block), float("inf"), dtype=points.dtype, device=points.device)
    cand = torch.empty(2, B, c_pad, dtype=points.dtype, device=points.device)
    cand_idx = torch.empty(2, B, c_pad, dtype=torch.int64, device=points.device)
    for j in range(num_samples):
        _fps_step_kernel[(C, B)](points, lengths, mind, cand, cand_idx, out, j, num_samples, *strides, B, C=C,
                                 C_PAD=c_pad, BLOCK=block, num_warps=_num_warps(block), enable_fp_fusion=False)
    return out


@torch.library.custom_op("pgocc::fps", mutates_args=())
def _fps_op(points: torch.Tensor, lengths: torch.Tensor, num_samples: int) -> torch.Tensor:
    return fps_launch(points, lengths, num_samples, persistent=not INTERPRET)


@_fps_op.register_fake
def _(points: torch.Tensor, lengths: torch.Tensor, num_samples: int) -> torch.Tensor:
    return points.new_empty((points.shape[0], num_samples), dtype=torch.int64)


def fps(points: torch.Tensor, lengths: torch.Tensor, num_samples: int) -> torch.Tensor:
    """Farthest point sampling (see ``pgocc.ops.fps``).

    Args:
        points: [B, N, 3] float32/float64.
        lengths: [B] int64 valid points per row, each in [num_samples, N] (checked on device).
        num_samples: K.

    Returns:
        [B, K] int64 indices, identical to the reference's. Deterministic.
    """
    return _fps_op(points, lengths, num_samples)
