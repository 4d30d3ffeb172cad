"""Front-to-back compositing of the binned Gaussians, forward and backward.

One program per (tile, block of BLOCK_P pixels of that tile, block of BLOCK_C channels). It walks the tile's
depth-sorted list BLOCK_G Gaussians at a time and evaluates the whole [BLOCK_P, BLOCK_G] alpha block at once: the
transmittance inside the block is T times a cumulative product of (1 - a) along the Gaussian axis, the stop rule
is "T after <= 1e-4", and the features are composited by one matrix product weights[P, G] @ features[G, C] (all C
channels of the block in one pass; gsplat re-composites every 32 channels). The loop ends when every pixel of the
block has stopped or the list is exhausted. Channel block 0 also writes depth, alpha and, for the backward pass,
each pixel's final transmittance and the list position after its last contributing Gaussian.

Backward walks the list back to front from the block's largest last position (as gsplat does): a Gaussian
contributed to a pixel iff it precedes the pixel's last position and its alpha is >= 1/255, so the forward's
decisions are reproduced exactly; the transmittance in front of Gaussian k is T_final / prod_{j >= k} (1 - a_j);
and with S_k = sum_{j > k} w_j (g . f_j) accumulated on the way,
    dL/da_k = T_k (g . f_k) - S_k / (1 - a_k) + g_alpha' T_final / (1 - a_k).
Per-Gaussian gradients are reduced over the pixel block and added with fp32 atomics (run-to-run order, hence bits,
vary).
"""

from __future__ import annotations

import triton
import triton.language as tl

from kernels_triton.gs_raster._project import PROJ_STRIDE, TILE
from pgocc.ops import gs_raster as contract

ALPHA_MIN = tl.constexpr(contract.ALPHA_MIN)
ALPHA_MAX = tl.constexpr(contract.ALPHA_MAX)
T_STOP = tl.constexpr(contract.T_STOP)


@triton.jit
def _pixel_block(H, W, tiles_x, tiles_per_image, BLOCK_P: tl.constexpr):
    """Camera, pixel indices and centres of this program's pixel block; pixels outside the image start done."""
    tile = tl.program_id(0)
    v = tile // tiles_per_image
    t = tile - v * tiles_per_image
    ty = t // tiles_x
    tx = t - ty * tiles_x
    p = tl.arange(0, BLOCK_P)
    px = tx * TILE + p % TILE
    py = ty * TILE + tl.program_id(1) * (BLOCK_P // TILE) + p // TILE
    inside = (px < W) & (py < H)
    pix = ((v * H + py) * W + px).to(tl.int64)
    return tile, v, pix, px.to(tl.float32) + 0.5, py.to(tl.float32) + 0.5, inside


@triton.jit
def _records(proj_ptr, gid, gm, v, N):
    """mean2d x, y, conic a, b, c, depth and opacity of Gaussians ``gid`` in camera v (0 where masked)."""
    rec = proj_ptr + (v * N + gid).to(tl.int64) * PROJ_STRIDE
    return (tl.load(rec + 0, mask=gm, other=0.0), tl.load(rec + 1, mask=gm, other=0.0),
            tl.load(rec + 2, mask=gm, other=0.0), tl.load(rec + 3, mask=gm, other=0.0),
            tl.load(rec + 4, mask=gm, other=0.0), tl.load(rec + 5, mask=gm, other=0.0),
            tl.load(rec + 6, mask=gm, other=0.0))


@triton.jit
def _gs_composite_fwd_kernel(proj_ptr, gids_ptr, tile_start_ptr, feat_ptr, out_feat_ptr, out_depth_ptr,
                             out_alpha_ptr, out_tfinal_ptr, out_last_ptr, N, C, H, W, tiles_x, tiles_per_image,
                             BLOCK_P: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr,
                             HAS_FEAT: tl.constexpr):
    tile, v, pix, cx, cy, inside = _pixel_block(H, W, tiles_x, tiles_per_image, BLOCK_P)
    start = tl.load(tile_start_ptr + tile)
    end = tl.load(tile_start_ptr + tile + 1)
    cofs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    cm = cofs < C
    T = tl.full([BLOCK_P], 1.0, tl.float32)
    done = ~inside
    last = tl.zeros([BLOCK_P], dtype=tl.int32)
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    num = tl.zeros([BLOCK_P], dtype=tl.float32)
    # Software pipelining by hand (a while loop is not pipelined): while chunk i is composited, the records of chunk
    # i + 1 and the ids of chunk i + 2 are in flight.
    i = start
    ar = tl.arange(0, BLOCK_G)
    gid = tl.load(gids_ptr + i + ar, mask=i + ar < end, other=0)
    mx, my, ca, cb, cc, z, o = _records(proj_ptr, gid, i + ar < end, v, N)
    n_gid = tl.load(gids_ptr + i + BLOCK_G + ar, mask=i + BLOCK_G + ar < end, other=0)
    live = tl.sum((~done).to(tl.int32))
    while (i < end) & (live > 0):
        offs = i + ar
        gm = offs < end
        if HAS_FEAT:
            f = tl.load(feat_ptr + gid.to(tl.int64)[:, None] * C + cofs[None, :], mask=gm[:, None] & cm[None, :],
                        other=0.0).to(tl.float32)
        n_mx, n_my, n_ca, n_cb, n_cc, n_z, n_o = _records(proj_ptr, n_gid, offs + BLOCK_G < end, v, N)
        nn_gid = tl.load(gids_ptr + offs + 2 * BLOCK_G, mask=offs + 2 * BLOCK_G < end, other=0)
        dx = mx[None, :] - cx[:, None]
        dy = my[None, :] - cy[:, None]
        raw = o[None, :] * tl.exp(-(0.5 * (ca[None, :] * dx * dx + cc[None, :] * dy * dy) + cb[None, :] * dx * dy))
        alpha = tl.minimum(raw, ALPHA_MAX)
        keep = (alpha >= ALPHA_MIN) & gm[None, :] & (~done)[:, None]
        a = tl.where(keep, alpha, 0.0)
        t_incl = T[:, None] * tl.cumprod(1.0 - a, axis=1)
        contrib = keep & (t_incl > T_STOP)
        w = tl.where(contrib, t_incl / (1.0 - a) * a, 0.0)
        num += tl.sum(w * z[None, :], axis=1)
        if HAS_FEAT:
            # tf32x3: fp32-level accuracy (~1e-6 relative) from the tensor cores.
            acc = tl.dot(w, f, acc, input_precision="tf32x3")
        # T after the chunk is T_incl at the last contributor (T_incl never increases); the pixel is done once a
        # Gaussian that was not skipped would have left T <= 1e-4.
        T = tl.minimum(T, tl.min(tl.where(contrib, t_incl, 1.0), axis=1))
        last = tl.maximum(last, tl.max(tl.where(contrib, offs[None, :] + 1, 0), axis=1))
        done = done | (tl.max((keep & (t_incl <= T_STOP)).to(tl.int32), axis=1) > 0)
        gid, mx, my, ca, cb, cc, z, o = n_gid, n_mx, n_my, n_ca, n_cb, n_cc, n_z, n_o
        n_gid = nn_gid
        i += BLOCK_G
        live = tl.sum((~done).to(tl.int32))
    if HAS_FEAT:
        tl.store(out_feat_ptr + pix[:, None] * C + cofs[None, :], acc.to(out_feat_ptr.dtype.element_ty),
                 mask=inside[:, None] & cm[None, :])
    first = inside & (tl.program_id(2) == 0)
    acc_alpha = 1.0 - T
    tl.store(out_depth_ptr + pix, num / tl.maximum(acc_alpha, 1e-10), mask=first)
    tl.store(out_alpha_ptr + pix, acc_alpha, mask=first)
    tl.store(out_tfinal_ptr + pix, T, mask=first)
    tl.store(out_last_ptr + pix, last, mask=first)


@triton.jit
def _gs_composite_bwd_kernel(proj_ptr, gids_ptr, tile_start_ptr, feat_ptr, out_depth_ptr, tfinal_ptr, last_ptr,
                             g_feat_ptr, g_depth_ptr, g_alpha_ptr, dproj_ptr, dfeat_ptr,
                             N, C, H, W, tiles_x, tiles_per_image,
                             BLOCK_P: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr,
                             HAS_FEAT: tl.constexpr, DOT_PRECISION: tl.constexpr):
    tile, v, pix, cx, cy, inside = _pixel_block(H, W, tiles_x, tiles_per_image, BLOCK_P)
    start = tl.load(tile_start_ptr + tile)
    cofs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    cm = cofs < C
    first = inside & (tl.program_id(2) == 0)
    last = tl.load(last_ptr + pix, mask=inside, other=0)
    t_final = tl.load(tfinal_ptr + pix, mask=inside, other=1.0)
    ed = tl.load(out_depth_ptr + pix, mask=inside, other=0.0)
    g_d = tl.load(g_depth_ptr + pix, mask=first, other=0.0)
    g_a = tl.load(g_alpha_ptr + pix, mask=first, other=0.0)
    # depth = num / max(alpha, 1e-10): the numerator is one more channel (value z) with gradient g_d / alpha, and
    # alpha = 1 - T_final gets -g_d depth / alpha on top of its own gradient. Channel block 0 carries both.
    safe_alpha = tl.maximum(1.0 - t_final, 1e-10)
    g_z = g_d / safe_alpha
    g_alpha_t = (g_a - g_d * ed / safe_alpha) * t_final
    if HAS_FEAT:
        g = tl.load(g_feat_ptr + pix[:, None] * C + cofs[None, :], mask=inside[:, None] & cm[None, :],
                    other=0.0).to(tl.float32)
    T = t_final
    suffix = tl.zeros([BLOCK_P], dtype=tl.float32)
    end = tl.max(last)
    n_chunks = tl.cdiv(tl.maximum(end - start, 0), BLOCK_G)
    # Back to front, pipelined by hand as in the forward: records of the chunk in front and ids of the one in front of
    # that are loaded while this chunk is processed.
    ar = tl.arange(0, BLOCK_G)
    i = start + (n_chunks - 1) * BLOCK_G
    gid = tl.load(gids_ptr + i + ar, mask=(i + ar < end) & (i >= start), other=0)
    mx, my, ca, cb, cc, z, o = _records(proj_ptr, gid, (i + ar < end) & (i >= start), v, N)
    n_gid = tl.load(gids_ptr + i - BLOCK_G + ar, mask=i - BLOCK_G >= start, other=0)
    for _ in range(n_chunks):
        offs = i + ar
        gm = offs < end
        if HAS_FEAT:
            f = tl.load(feat_ptr + gid.to(tl.int64)[:, None] * C + cofs[None, :], mask=gm[:, None] & cm[None, :],
                        other=0.0).to(tl.float32)
        n_mx, n_my, n_ca, n_cb, n_cc, n_z, n_o = _records(proj_ptr, n_gid, (ar >= 0) & (i - BLOCK_G >= start), v, N)
        nn_gid = tl.load(gids_ptr + i - 2 * BLOCK_G + ar, mask=i - 2 * BLOCK_G >= start, other=0)
        dx = mx[None, :] - cx[:, None]
        dy = my[None, :] - cy[:, None]
        e = tl.exp(-(0.5 * (ca[None, :] * dx * dx + cc[None, :] * dy * dy) + cb[None, :] * dx * dy))
        raw = o[None, :] * e
        alpha = tl.minimum(raw, ALPHA_MAX)
        contrib = (alpha >= ALPHA_MIN) & (offs[None, :] < last[:, None])
        a = tl.where(contrib, alpha, 0.0)
        one_minus = 1.0 - a
        t_excl = T[:, None] / tl.cumprod(one_minus, axis=1, reverse=True)
        w = t_excl * a
        gf = g_z[:, None] * z[None, :]
        if HAS_FEAT:
            gf += tl.dot(g, tl.trans(f), input_precision=DOT_PRECISION)
        wg = w * gf
        inv = 1.0 / one_minus
        s_k = suffix[:, None] + tl.cumsum(wg, axis=1, reverse=True) - wg
        d_alpha = t_excl * gf - s_k * inv + g_alpha_t[:, None] * inv
        # alpha = min(0.999, o e^-sigma): no gradient through the clamp.
        d_alpha = tl.where(contrib & (raw <= ALPHA_MAX), d_alpha, 0.0)
        d_sigma = -d_alpha * raw
        used = gm & (tl.max(contrib.to(tl.int32), axis=0) > 0)
        if HAS_FEAT:
            dfeat = tl.dot(tl.trans(w), g, input_precision=DOT_PRECISION)
            tl.atomic_add(dfeat_ptr + gid.to(tl.int64)[:, None] * C + cofs[None, :], dfeat,
                          mask=used[:, None] & cm[None, :])
        rec = dproj_ptr + (v * N + gid).to(tl.int64) * PROJ_STRIDE
        tl.atomic_add(rec + 0, tl.sum(d_sigma * (ca[None, :] * dx + cb[None, :] * dy), axis=0), mask=used)
        tl.atomic_add(rec + 1, tl.sum(d_sigma * (cc[None, :] * dy + cb[None, :] * dx), axis=0), mask=used)
        tl.atomic_add(rec + 2, tl.sum(0.5 * d_sigma * dx * dx, axis=0), mask=used)
        tl.atomic_add(rec + 3, tl.sum(d_sigma * dx * dy, axis=0), mask=used)
        tl.atomic_add(rec + 4, tl.sum(0.5 * d_sigma * dy * dy, axis=0), mask=used)
        tl.atomic_add(rec + 5, tl.sum(w * g_z[:, None], axis=0), mask=used)
        tl.atomic_add(rec + 6, tl.sum(d_alpha * e, axis=0), mask=used)
        suffix += tl.sum(wg, axis=1)
        # The transmittance in front of the chunk is the largest T_excl (that of its first entry).
        T = tl.max(t_excl, axis=1)
        gid, mx, my, ca, cb, cc, z, o = n_gid, n_mx, n_my, n_ca, n_cb, n_cc, n_z, n_o
        n_gid = nn_gid
        i -= BLOCK_G
