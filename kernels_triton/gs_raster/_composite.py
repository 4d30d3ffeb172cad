"""Front-to-back compositing of the binned Gaussians, forward and backward.

One program per (tile, block of BLOCK_P pixels of that tile, block of BLOCK_C channels). It walks the tile's
depth-sorted list BLOCK_G Gaussians at a time and evaluates the whole [BLOCK_P, BLOCK_G] alpha block at once: the
transmittance inside the block is T times a cumulative product of (1 - a) along the Gaussian axis, the stop rule
is "T after <= 1e-4", and the features are composited by one matrix product weights[P, G] @ features[G, C] (all C
channels of the block in one pass; gsplat re-composites every 32 channels). The loop ends when every pixel of the
block has stopped or the list is exhausted. Depth and alpha are written by the channel block 0 only.

Backward walks the list front to back as well, recomputing alpha and T as the forward did (its chunking may differ,
so T agrees to rounding; only pixels within rounding of the stop threshold can decide differently). With g the
output gradient, F the forward output and P_k the running sum of w_j (g . f_j) up to and including Gaussian k,
    dL/da_k = T_k (g . f_k) - (g . F - P_k) / (1 - a_k) + g_alpha' T_final / (1 - a_k),
which needs no back-to-front pass (the suffix is the total minus the prefix). Every term is linear in the channel
sums, so each channel block adds its share. Per-Gaussian gradients are reduced over the pixel block and added with
fp32 atomics (run-to-run order, hence bits, vary).
"""

from __future__ import annotations

import triton
import triton.language as tl

from kernels_triton.gs_raster._project import PROJ_STRIDE, TILE

ALPHA_MIN = tl.constexpr(1.0 / 255.0)
ALPHA_MAX = tl.constexpr(0.999)
T_STOP = tl.constexpr(1e-4)


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
def _alpha_block(proj_ptr, gids_ptr, i, end, v, N, cx, cy, T, done, BLOCK_G: tl.constexpr):
    """Alpha, weights and transmittance of one chunk of the list (identical in forward and backward)."""
    offs = i + tl.arange(0, BLOCK_G)
    gm = offs < end
    gid = tl.load(gids_ptr + offs, mask=gm, other=0)
    rec = proj_ptr + (v * N + gid).to(tl.int64) * PROJ_STRIDE
    mx = tl.load(rec + 0, mask=gm, other=0.0)
    my = tl.load(rec + 1, mask=gm, other=0.0)
    ca = tl.load(rec + 2, mask=gm, other=0.0)
    cb = tl.load(rec + 3, mask=gm, other=0.0)
    cc = tl.load(rec + 4, mask=gm, other=0.0)
    z = tl.load(rec + 5, mask=gm, other=0.0)
    o = tl.load(rec + 6, mask=gm, other=0.0)
    dx = mx[None, :] - cx[:, None]
    dy = my[None, :] - cy[:, None]
    sigma = 0.5 * (ca[None, :] * dx * dx + cc[None, :] * dy * dy) + cb[None, :] * dx * dy
    e = tl.exp(-sigma)
    raw = o[None, :] * e
    alpha = tl.minimum(raw, ALPHA_MAX)
    keep = (alpha >= ALPHA_MIN) & gm[None, :] & (~done)[:, None]
    a = tl.where(keep, alpha, 0.0)
    t_incl = T[:, None] * tl.cumprod(1.0 - a, axis=1)
    contrib = keep & (t_incl > T_STOP)
    stop = keep & (t_incl <= T_STOP)
    one_minus = 1.0 - a
    w = tl.where(contrib, t_incl / one_minus * a, 0.0)
    # T after the chunk: the transmittance after the last Gaussian that contributed (T_incl never increases).
    t_new = tl.minimum(T, tl.min(tl.where(contrib, t_incl, 1.0), axis=1))
    done_new = done | (tl.max(stop.to(tl.int32), axis=1) > 0)
    return gid, gm, z, o, dx, dy, ca, cb, cc, e, raw, t_incl, one_minus, contrib, w, t_new, done_new


@triton.jit
def _gs_composite_fwd_kernel(proj_ptr, gids_ptr, tile_start_ptr, feat_ptr, out_feat_ptr, out_depth_ptr,
                             out_alpha_ptr, N, C, H, W, tiles_x, tiles_per_image,
                             BLOCK_P: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr,
                             HAS_FEAT: tl.constexpr):
    tile, v, pix, cx, cy, inside = _pixel_block(H, W, tiles_x, tiles_per_image, BLOCK_P)
    start = tl.load(tile_start_ptr + tile)
    end = tl.load(tile_start_ptr + tile + 1)
    cofs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    cm = cofs < C
    T = tl.full([BLOCK_P], 1.0, tl.float32)
    done = ~inside
    acc = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    num = tl.zeros([BLOCK_P], dtype=tl.float32)
    i = start
    live = tl.sum((~done).to(tl.int32))
    while (i < end) & (live > 0):
        gid, gm, z, o, dx, dy, ca, cb, cc, e, raw, t_incl, one_minus, contrib, w, T, done = _alpha_block(
            proj_ptr, gids_ptr, i, end, v, N, cx, cy, T, done, BLOCK_G)
        num += tl.sum(w * z[None, :], axis=1)
        if HAS_FEAT:
            f = tl.load(feat_ptr + gid.to(tl.int64)[:, None] * C + cofs[None, :], mask=gm[:, None] & cm[None, :],
                        other=0.0).to(tl.float32)
            # tf32x3: fp32-level accuracy (~1e-6 relative) from the tensor cores.
            acc = tl.dot(w, f, acc, input_precision="tf32x3")
        i += BLOCK_G
        live = tl.sum((~done).to(tl.int32))
    if HAS_FEAT:
        tl.store(out_feat_ptr + pix[:, None] * C + cofs[None, :], acc.to(out_feat_ptr.dtype.element_ty),
                 mask=inside[:, None] & cm[None, :])
    first = tl.program_id(2) == 0
    acc_alpha = 1.0 - T
    tl.store(out_depth_ptr + pix, num / tl.maximum(acc_alpha, 1e-10), mask=inside & first)
    tl.store(out_alpha_ptr + pix, acc_alpha, mask=inside & first)


@triton.jit
def _gs_composite_bwd_kernel(proj_ptr, gids_ptr, tile_start_ptr, feat_ptr, out_feat_ptr, out_depth_ptr,
                             out_alpha_ptr, g_feat_ptr, g_depth_ptr, g_alpha_ptr, dproj_ptr, dfeat_ptr,
                             N, C, H, W, tiles_x, tiles_per_image,
                             BLOCK_P: tl.constexpr, BLOCK_G: tl.constexpr, BLOCK_C: tl.constexpr,
                             HAS_FEAT: tl.constexpr, DFEAT_PRECISION: tl.constexpr):
    tile, v, pix, cx, cy, inside = _pixel_block(H, W, tiles_x, tiles_per_image, BLOCK_P)
    start = tl.load(tile_start_ptr + tile)
    end = tl.load(tile_start_ptr + tile + 1)
    cofs = tl.program_id(2) * BLOCK_C + tl.arange(0, BLOCK_C)
    cm = cofs < C
    first = tl.program_id(2) == 0
    ed = tl.load(out_depth_ptr + pix, mask=inside, other=0.0)
    acc_alpha = tl.load(out_alpha_ptr + pix, mask=inside, other=0.0)
    g_d = tl.load(g_depth_ptr + pix, mask=inside & first, other=0.0)
    g_a = tl.load(g_alpha_ptr + pix, mask=inside & first, other=0.0)
    # depth = num / max(alpha, 1e-10): the numerator is one more channel (value z) with gradient g_d / alpha, and
    # alpha gets -g_d depth / alpha on top of its own gradient. alpha = 1 - T_final.
    safe_alpha = tl.maximum(acc_alpha, 1e-10)
    g_z = g_d / safe_alpha
    g_alpha_total = g_a - g_d * ed / safe_alpha
    t_final = 1.0 - acc_alpha
    total = g_z * ed * safe_alpha
    if HAS_FEAT:
        cmask = inside[:, None] & cm[None, :]
        g = tl.load(g_feat_ptr + pix[:, None] * C + cofs[None, :], mask=cmask, other=0.0).to(tl.float32)
        fout = tl.load(out_feat_ptr + pix[:, None] * C + cofs[None, :], mask=cmask, other=0.0).to(tl.float32)
        total += tl.sum(g * fout, axis=1)
    T = tl.full([BLOCK_P], 1.0, tl.float32)
    done = ~inside
    prefix = tl.zeros([BLOCK_P], dtype=tl.float32)
    i = start
    live = tl.sum((~done).to(tl.int32))
    while (i < end) & (live > 0):
        gid, gm, z, o, dx, dy, ca, cb, cc, e, raw, t_incl, one_minus, contrib, w, T, done = _alpha_block(
            proj_ptr, gids_ptr, i, end, v, N, cx, cy, T, done, BLOCK_G)
        used = gm & (tl.max(contrib.to(tl.int32), axis=0) > 0)
        gf = g_z[:, None] * z[None, :]
        if HAS_FEAT:
            f = tl.load(feat_ptr + gid.to(tl.int64)[:, None] * C + cofs[None, :], mask=gm[:, None] & cm[None, :],
                        other=0.0).to(tl.float32)
            # g . f_k must be as accurate as `total` (from the forward output): their difference is divided by
            # 1 - a, up to 1000 where a = 0.999, so a tf32 error of 5e-4 there would swamp the gradient.
            gf += tl.dot(g, tl.trans(f), input_precision="tf32x3")
            dfeat = tl.dot(tl.trans(w), g, input_precision=DFEAT_PRECISION)
            tl.atomic_add(dfeat_ptr + gid.to(tl.int64)[:, None] * C + cofs[None, :], dfeat,
                          mask=used[:, None] & cm[None, :])
        wg = w * gf
        inv = 1.0 / one_minus
        suffix = total[:, None] - (prefix[:, None] + tl.cumsum(wg, axis=1))
        d_alpha = t_incl * inv * gf - suffix * inv + (g_alpha_total * t_final)[:, None] * inv
        # alpha = min(0.999, o e^-sigma): no gradient through the clamp.
        d_alpha = tl.where(contrib & (raw <= ALPHA_MAX), d_alpha, 0.0)
        d_sigma = -d_alpha * raw
        rec = dproj_ptr + (v * N + gid).to(tl.int64) * PROJ_STRIDE
        tl.atomic_add(rec + 0, tl.sum(d_sigma * (ca[None, :] * dx + cb[None, :] * dy), axis=0), mask=used)
        tl.atomic_add(rec + 1, tl.sum(d_sigma * (cc[None, :] * dy + cb[None, :] * dx), axis=0), mask=used)
        tl.atomic_add(rec + 2, tl.sum(0.5 * d_sigma * dx * dx, axis=0), mask=used)
        tl.atomic_add(rec + 3, tl.sum(d_sigma * dx * dy, axis=0), mask=used)
        tl.atomic_add(rec + 4, tl.sum(0.5 * d_sigma * dy * dy, axis=0), mask=used)
        tl.atomic_add(rec + 5, tl.sum(w * g_z[:, None], axis=0), mask=used)
        tl.atomic_add(rec + 6, tl.sum(d_alpha * e, axis=0), mask=used)
        prefix += tl.sum(wg, axis=1)
        i += BLOCK_G
        live = tl.sum((~done).to(tl.int32))
