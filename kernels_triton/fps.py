"""Farthest point sampling in Triton: every row split over many CTAs, one argmax exchange per selected point.

    fps(points, lengths, num_samples, active, prefix) -> indices   (contract and semantics: pgocc.ops.fps)
      -> pgocc::fps (torch.library.custom_op)
         GPU, float32:  _fps_persistent_kernel  one launch; the CTAs of a row exchange one 64-bit key each per
                                                iteration through global memory (a grid-wide argmax, no barrier)
         otherwise:     _fps_step_kernel × K    one launch per selected point (the interpreter, float64)

Row b's valid prefix is cut into C chunks of BLOCK points, one per CTA. In the persistent kernel a CTA keeps its
chunk (coordinates and running minimum distance) in registers for all K iterations. Per iteration it updates the
minimum distance to the last selected point and reduces its chunk to one 64-bit key

    key = distance bits (32) | inverted index (24) | tag (8)

whose integer order is the selection order: float32 distances are >= 0, so their bit patterns order like the
values; a larger inverted index ``2^24 - 1 - i`` is a lower index i, so ties go to the lowest index; the tag is the
iteration number mod 256. The CTA publishes its key and polls the keys of its row's C CTAs until every one carries
this iteration's tag; their maximum is the winner, the same in every CTA, whose coordinates it then loads from
``points``. A 64-bit word is read and written whole, so a word with the right tag holds the right key: no fences,
no counters. Two slot buffers alternate by iteration parity: a CTA can only write iteration j + 2 after every CTA of
its row published iteration j + 1, i.e. after each of them finished reading iteration j (tags mod 256 tell j from
j - 2).

What made the exchange cheap (H100, 345,600 -> 6000; bench/RESULTS.md): all CTAs poll the same words, so the L2
slices holding them are the bottleneck. One 64-bit key instead of five tagged words (distance, x, y, z, index;
15.6 -> 11.6 ms), keys spread one per 32 bytes or more instead of packed (-> 10.3 ms), four replicas of every key
with each CTA polling one replica (-> 10.0 ms), and a poll loop that issues the next load before reducing the
previous one (-> 9.35 ms). Publishing the coordinates beside the key, to save the dependent load of the winner's
coordinates, was slower (more polled words); so were backing off between polls, two polls in flight, 2048 or 8192
points per CTA, 8 warps, and a local reduction over [S, BLOCK / S] tiles.

The persistent kernel spins on other CTAs, so every CTA of a row must be resident at once: it is launched as a
cooperative grid (the driver refuses a grid that cannot be co-resident instead of hanging) of at most one CTA per
SM. The Triton interpreter runs programs one after another, so it can run the persistent kernel only with one CTA
per row (the tests do); the registry's path there is the step kernel.

An inactive row (``active[b]`` False) runs no iteration: its CTAs read the flag and stop, so its indices stay at the
0 the output was filled with. A ``prefix`` of S picks is copied to the output's first S columns; the persistent kernel
then folds the S picks into each chunk's minimum distances (S independent updates per CTA, no exchange) and runs
its exchange loop from iteration S; the step design forces step j's pick to ``prefix[b, j]`` for j < S.

Exactness: distances are ``dx*dx + dy*dy + dz*dz`` in the input dtype with FMA contraction disabled, which rounds
exactly as the reference's separate torch ops; ties go to the lowest index. Hence the indices are identical to the
reference's. Deterministic.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from kernels_triton._utils import INTERPRET

INTERPRETER_SMS = 4
"""SM count assumed under the interpreter: enough CTAs per row to exercise the cross-CTA reduction, few programs."""
MAX_BLOCK = 16384
"""Largest chunk per CTA kept in registers (4 values per point); beyond it the kernel would spill heavily."""
GPU_MIN_BLOCK = 4096
"""Smallest chunk per CTA on the GPU: fewer, fuller CTAs make the exchange cheaper. H100, persistent kernel:
345,600 -> 6000 in 9.35 ms at 4096 points per CTA vs 9.72 at 2048; 100,000 -> 1000 in 1.42 vs 1.52 ms."""
IDX_BITS = 24
"""Index bits of a key: rows of up to 2^24 points."""
TAG_BITS = 8
REPLICAS = 4
"""Copies of each published key; CTA c polls copy c mod REPLICAS, spreading the polls over more L2 slices."""
SECTOR = 8
"""int64 words between published keys: one key per 64 bytes. H100, 345,600 -> 6000, six slot addresses each: 4 words
9.49-9.64 ms, 8 words 9.22-9.47 ms, 16 words 9.50-9.81 ms."""
PREFIX_BLOCK = 1024
"""Points per CTA of the prefix fold (_fps_prefix_kernel): many CTAs, each looping over the S picks."""


@triton.jit
def _fps_update(mind, x, y, z, px, py, pz):
    # Same operation order as the reference: ((dx*dx + dy*dy) + dz*dz), no FMA (enable_fp_fusion=False).
    # Padding lanes hold mind = -1, below every distance, so they stay -1 without a mask.
    dx = x - px
    dy = y - py
    dz = z - pz
    return tl.minimum(mind, dx * dx + dy * dy + dz * dz)


@triton.jit
def _fps_persistent_kernel(points_ptr, lengths_ptr, active_ptr, prefix_ptr, mind_ptr, slots_ptr, out_ptr, K, S,
                           stride_pb, stride_pn, stride_pc, stride_ob, stride_xb, stride_mb, C: tl.constexpr,
                           C_PAD: tl.constexpr, BLOCK: tl.constexpr, IDX_BITS: tl.constexpr,
                           TAG_BITS: tl.constexpr, REPLICAS: tl.constexpr, SECTOR: tl.constexpr,
                           HAS_ACTIVE: tl.constexpr, HAS_PREFIX: tl.constexpr):
    IDX_MASK: tl.constexpr = (1 << IDX_BITS) - 1
    TAG_MASK: tl.constexpr = (1 << TAG_BITS) - 1
    STALE: tl.constexpr = 0x7FFFFFFFFFFFFFFF   # above every key: marks a slot not yet published this iteration
    cta = tl.program_id(0)
    b = tl.program_id(1).to(tl.int64)
    n = tl.load(lengths_ptr + b)
    offs = cta * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    row = points_ptr + b * stride_pb
    x = tl.load(row + offs * stride_pn, mask=valid, other=0.0)
    y = tl.load(row + offs * stride_pn + stride_pc, mask=valid, other=0.0)
    z = tl.load(row + offs * stride_pn + 2 * stride_pc, mask=valid, other=0.0)
    low = (IDX_MASK - offs).to(tl.int64) << TAG_BITS
    # Padding lanes hold -1: their keys are negative, below every valid point's.
    mind = tl.where(valid, float("inf"), -1.0)
    # Every CTA of a row reads the same flag, so an inactive row's CTAs all skip the loop (none waits on another).
    k_row = K
    if HAS_ACTIVE:
        k_row = tl.where(tl.load(active_ptr + b) != 0, K, 0)
    if HAS_PREFIX:
        # The S given picks (the launcher wrote them to the output; _fps_prefix_kernel folded them into mind_ptr):
        # go on from iteration S with the last of them as the latest pick (folding it in again changes no minimum).
        mind = tl.load(mind_ptr + b * stride_mb + offs, mask=valid, other=-1.0)
        last = tl.load(prefix_ptr + b * stride_xb + S - 1)
        first = S
    else:
        last = 0
        first = 1
    px = tl.load(row + last * stride_pn)
    py = tl.load(row + last * stride_pn + stride_pc)
    pz = tl.load(row + last * stride_pn + 2 * stride_pc)
    lanes = tl.arange(0, C_PAD)
    lane_ok = lanes < C
    for j in range(first, k_row):
        tag = j & TAG_MASK
        slot = slots_ptr + (b * 2 + j % 2) * (REPLICAS * C_PAD * SECTOR)
        mind = _fps_update(mind, x, y, z, px, py, pz)
        word = tl.max((mind.to(tl.int32, bitcast=True).to(tl.int64) << 32) | low, 0) | tag
        for r in tl.static_range(REPLICAS):
            tl.store(slot + (r * C_PAD + cta) * SECTOR, word)
        mine = slot + (cta % REPLICAS) * (C_PAD * SECTOR)
        # The next poll is issued before the previous one is reduced: a sample every L2 round trip.
        polled = tl.load(mine + lanes * SECTOR, mask=lane_ok, other=-STALE, volatile=True)
        win = tl.full((), STALE, tl.int64)
        while win == STALE:
            nxt = tl.load(mine + lanes * SECTOR, mask=lane_ok, other=-STALE, volatile=True)
            stale = lane_ok & ((polled & TAG_MASK) != tag)
            win = tl.max(tl.where(stale, STALE, polled), 0)
            polled = nxt
        bi = IDX_MASK - ((win >> TAG_BITS) & IDX_MASK)
        px = tl.load(row + bi * stride_pn)
        py = tl.load(row + bi * stride_pn + stride_pc)
        pz = tl.load(row + bi * stride_pn + 2 * stride_pc)
        if cta == 0:
            tl.store(out_ptr + b * stride_ob + j, bi)


@triton.jit
def _fps_prefix_kernel(points_ptr, lengths_ptr, active_ptr, picked_ptr, mind_ptr, S, stride_pb, stride_pn, stride_pc,
                       stride_kb, stride_mb, BLOCK: tl.constexpr, HAS_ACTIVE: tl.constexpr):
    """Minimum distance of each point to the S picked points (coordinates ``picked_ptr`` [B, S, 3], contiguous):
    independent per point, so spread over many CTAs; invalid lanes hold -1 as in the persistent kernel."""
    b = tl.program_id(1).to(tl.int64)
    n = tl.load(lengths_ptr + b)
    offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    valid = offs < n
    row = points_ptr + b * stride_pb
    x = tl.load(row + offs * stride_pn, mask=valid, other=0.0)
    y = tl.load(row + offs * stride_pn + stride_pc, mask=valid, other=0.0)
    z = tl.load(row + offs * stride_pn + 2 * stride_pc, mask=valid, other=0.0)
    mind = tl.where(valid, float("inf"), -1.0)
    s_row = S
    if HAS_ACTIVE:
        s_row = tl.where(tl.load(active_ptr + b) != 0, S, 0)
    picked = picked_ptr + b * stride_kb
    for i in range(0, s_row):
        mind = _fps_update(mind, x, y, z, tl.load(picked + 3 * i), tl.load(picked + 3 * i + 1),
                           tl.load(picked + 3 * i + 2))
    tl.store(mind_ptr + b * stride_mb + offs, mind, mask=offs < stride_mb)


@triton.jit
def _fps_step_kernel(points_ptr, lengths_ptr, active_ptr, prefix_ptr, mind_ptr, cand_ptr, cand_idx_ptr, out_ptr, j,
                     K, S, stride_pb, stride_pn, stride_pc, stride_ob, stride_xb, B, C: tl.constexpr,
                     C_PAD: tl.constexpr, BLOCK: tl.constexpr, HAS_ACTIVE: tl.constexpr, HAS_PREFIX: tl.constexpr):
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
    if HAS_PREFIX:
        sel = tl.where(j < S, tl.load(prefix_ptr + b * stride_xb + tl.minimum(j, S - 1)), sel)
    # An inactive row keeps the 0 the output was filled with (its distances are updated but never read).
    write = cta == 0
    if HAS_ACTIVE:
        write = write & (tl.load(active_ptr + b) != 0)
    if write:
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
        mind = _fps_update(mind, x, y, z, px, py, pz)
        tl.store(mind_ptr + b * C * BLOCK + offs, mind, mask=valid)
        cur = (j % 2 * B + b) * C_PAD + cta
        tl.store(cand_ptr + cur, tl.max(mind, 0))
        tl.store(cand_idx_ptr + cur, cta * BLOCK + tl.argmax(mind, 0, tie_break_left=True).to(tl.int64))


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def plan(num_points: int, ctas_per_row: int, min_block: int) -> tuple[int, int]:
    """(CTAs per row C, points per CTA BLOCK): at most ``ctas_per_row`` CTAs, BLOCK a power of two >= min_block
    (or the row rounded up, when smaller)."""
    if num_points > 1 << IDX_BITS:
        raise ValueError(f"fps (triton): {num_points} points per row exceed the {1 << IDX_BITS} a key can index")
    block = max(16, min(min_block, triton.next_power_of_2(num_points)),
                triton.next_power_of_2(triton.cdiv(num_points, ctas_per_row)))
    if block > MAX_BLOCK:
        raise ValueError(f"fps (triton): {num_points} points per row over {ctas_per_row} CTA(s) per row needs "
                         f"{block} points per CTA, above the register-resident limit {MAX_BLOCK}; "
                         f"use fewer rows per call or the reference")
    return triton.cdiv(num_points, block), block


def _num_warps(block: int) -> int:
    # <= 32 points per thread. Fewer warps are faster: H100, 345,600 -> 6000 at BLOCK 4096: 4 warps 9.35 ms,
    # 8 warps 9.73 ms (persistent kernel).
    return max(4, block // 1024)


def fps_launch(points: torch.Tensor, lengths: torch.Tensor, num_samples: int, active: torch.Tensor | None = None,
               prefix: torch.Tensor | None = None, *, persistent: bool, ctas_per_row: int | None = None
               ) -> torch.Tensor:
    """Run one of the two kernel designs (see the module docstring).

    Args:
        active: optional [B] bool; inactive rows are skipped and left at index 0.
        prefix: optional [B, S] int64 first picks to continue from.
        persistent: the persistent kernel (float32 only); else one launch per selected point.
        ctas_per_row: cap on the CTAs sharing a row; default one CTA per SM over all rows (under the interpreter
            4 SMs are assumed). The interpreter runs the persistent kernel only with ``ctas_per_row=1``.
    """
    B, N, _ = points.shape
    out = torch.zeros(B, num_samples, dtype=torch.int64, device=points.device)
    # Without a mask or a prefix their pointers are never read (HAS_ACTIVE / HAS_PREFIX False): any tensor serves.
    flags = active if active is not None else lengths
    picks = prefix if prefix is not None else out
    S = prefix.shape[1] if prefix is not None else 0
    torch._assert_async(((lengths >= num_samples) & (lengths <= N)).all(),
                        "fps: every lengths[b] must lie in [num_samples, N]")
    if prefix is not None:
        torch._assert_async(((prefix >= 0) & (prefix < lengths.unsqueeze(1))).all(),
                            "fps: every prefix[b] index must lie in [0, lengths[b])")
        out[:, :S] = prefix if active is None else torch.where(active.unsqueeze(1), prefix, 0)
    on_gpu = points.device.type == "cuda" and not INTERPRET
    if ctas_per_row is None:
        sms = _sm_count(points.device.index if points.device.index is not None else torch.cuda.current_device()) \
            if on_gpu else INTERPRETER_SMS
        ctas_per_row = max(1, sms // B)
    C, block = plan(N, ctas_per_row, GPU_MIN_BLOCK if on_gpu else 16)
    c_pad = max(2, triton.next_power_of_2(C))
    strides = (points.stride(0), points.stride(1), points.stride(2), out.stride(0), picks.stride(0))
    if persistent:
        if points.dtype != torch.float32:
            raise ValueError(f"fps (triton): the persistent design packs float32 distances into its keys; got "
                             f"points of dtype {points.dtype} (the step design takes float64)")
        if INTERPRET and C > 1:
            raise ValueError(f"fps (triton): the interpreter runs CTAs one after another, so the persistent design "
                             f"needs one CTA per row there (ctas_per_row=1); planned {C}")
        # The slots start with the tag of the iteration before the first one run (max(S, 1) - 1), which neither of
        # the first two iterations' tags equals: no stale slot passes for a published key.
        stale_tag = (max(S, 1) - 1) & ((1 << TAG_BITS) - 1)
        slots = torch.full((B, 2, REPLICAS, c_pad, SECTOR), stale_tag, dtype=torch.int64, device=points.device)
        mind = points.new_empty((B, C * block)) if prefix is not None else out
        if prefix is not None:
            picked = torch.gather(points, 1, prefix.unsqueeze(-1).expand(-1, -1, 3)).contiguous()   # [B, S, 3]
            _fps_prefix_kernel[(triton.cdiv(C * block, PREFIX_BLOCK), B)](
                points, lengths, flags, picked, mind, S, *strides[:3], picked.stride(0), mind.stride(0),
                BLOCK=PREFIX_BLOCK, HAS_ACTIVE=active is not None, enable_fp_fusion=False)
        _fps_persistent_kernel[(C, B)](points, lengths, flags, picks, mind, slots, out, num_samples, S, *strides,
                                       mind.stride(0), C=C, C_PAD=c_pad, BLOCK=block, IDX_BITS=IDX_BITS,
                                       TAG_BITS=TAG_BITS, REPLICAS=REPLICAS, SECTOR=SECTOR,
                                       HAS_ACTIVE=active is not None,
                                       HAS_PREFIX=prefix is not None, num_warps=_num_warps(block),
                                       enable_fp_fusion=False, launch_cooperative_grid=not INTERPRET)
        return out
    mind = torch.full((B, C * block), float("inf"), dtype=points.dtype, device=points.device)
    cand = torch.empty(2, B, c_pad, dtype=points.dtype, device=points.device)
    cand_idx = torch.empty(2, B, c_pad, dtype=torch.int64, device=points.device)
    for j in range(num_samples):
        _fps_step_kernel[(C, B)](points, lengths, flags, picks, mind, cand, cand_idx, out, j, num_samples, S,
                                 *strides, B, C=C, C_PAD=c_pad, BLOCK=block, HAS_ACTIVE=active is not None,
                                 HAS_PREFIX=prefix is not None, num_warps=_num_warps(block),
                                 enable_fp_fusion=False)
    return out


@torch.library.custom_op("pgocc::fps", mutates_args=())
def _fps_op(points: torch.Tensor, lengths: torch.Tensor, num_samples: int, active: torch.Tensor | None = None,
            prefix: torch.Tensor | None = None) -> torch.Tensor:
    return fps_launch(points, lengths, num_samples, active, prefix,
                      persistent=not INTERPRET and points.dtype == torch.float32)


@_fps_op.register_fake
def _(points: torch.Tensor, lengths: torch.Tensor, num_samples: int, active: torch.Tensor | None = None,
      prefix: torch.Tensor | None = None) -> torch.Tensor:
    return points.new_empty((points.shape[0], num_samples), dtype=torch.int64)


def fps(points: torch.Tensor, lengths: torch.Tensor, num_samples: int, active: torch.Tensor | None = None,
        prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Farthest point sampling (see ``pgocc.ops.fps``).

    Args:
        points: [B, N, 3] float32/float64.
        lengths: [B] int64 valid points per row, each in [num_samples, N] (checked on device).
        num_samples: K.
        active: optional [B] bool; inactive rows are skipped and left at index 0.
        prefix: optional [B, S] int64 first picks to continue from.

    Returns:
        [B, K] int64 indices, identical to the reference's. Deterministic.
    """
    return _fps_op(points, lengths, num_samples, active, prefix)
