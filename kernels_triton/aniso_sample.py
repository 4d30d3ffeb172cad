"""Anisotropy-aware multi-point sampling: one fused Triton kernel pair.

Contract: pgocc.ops.aniso_sample (shapes, conventions). Reference: reference.aniso_sample.

Both kernels run one program per (block of BLOCK_R (query, point) rows, frame t, group g, batch b), with the rows
fastest in launch order: every program in flight works on the same (t, g) slab of the pyramid (N x sum_l H_l W_l x C
values, 23 MB in fp32 at the default size), so the slab stays in L2 and the pyramid is read from DRAM about once.
A program builds its points c + R(q)(s * o) (no points tensor), projects them into the N cameras of frame t (no
[T, N, Q, ..., 4, 4] tensor), keeps the first valid view and gathers the four corners of each level as
[BLOCK_R, C] tiles (one 256-byte row per corner in fp32 at C = 64).

Forward: deterministic; loads the input dtype, accumulates fp32, stores the output once in the features' dtype.
Backward: recomputes the geometry; scatters the feature gradients with fp32 atomics into zeroed fp32 buffers
(run-to-run nondeterministic rounding; bf16 features get them cast once at the end); writes per-(frame, group)
partial gradients of the level weights and of offsets / centres / extents / quaternions, which PyTorch sums over
frames and points (deterministic). Float64 is not supported here: use impl='reference'.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import triton
import triton.language as tl
from torch import Tensor

from kernels_triton._utils import INTERPRET, unit_quat_rotation
from pgocc.ops.aniso_sample import DEPTH_EPS

MAX_LEVELS = 4
_EPS = tl.constexpr(DEPTH_EPS)
_GEO_PARTS = 13  # per-row partial gradients: offsets (3), centres (3), extents (3), quaternion (4)

# Rows per program and warps. Under the interpreter a larger block means fewer (slow) programs. GPU values: the
# fastest of a sweep on an H100 (bench/RESULTS.md, 2026-11-23; default case, fp32, triton 3.6):
#   fwd rows x warps: 16x4 0.492 ms, 32x8 0.508, 16x8 0.513, 32x4 0.671 (151 registers), 64x8 0.924
#   bwd (incl. the 0.234 ms zero fill): 32x16 2.170 ms, 32x8 2.189, 8x4 2.688, 16x8 2.906; 32x4 spills (255
#   registers + a 208-byte stack on sm_90) and was left out. ptxas: fwd 16x4 88 registers, bwd 32x16 128, no spills.
_FWD_BLOCK_R, _FWD_WARPS = (64, 4) if INTERPRET else (16, 4)
_BWD_BLOCK_R, _BWD_WARPS = (64, 4) if INTERPRET else (32, 16)


@triton.jit
def _load3(ptr, base, mask):
    """Three consecutive values (x, y, z) per row, as fp32."""
    a = tl.load(ptr + base, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(ptr + base + 1, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(ptr + base + 2, mask=mask, other=0.0).to(tl.float32)
    return a, b, c


@triton.jit
def _project(m, px, py, pz, h_in, w_in):
    """Normalised image coordinates and validity of the points in the camera whose [4, 4] matrix starts at m."""
    x = tl.load(m + 0).to(tl.float32) * px + tl.load(m + 1).to(tl.float32) * py \
        + tl.load(m + 2).to(tl.float32) * pz + tl.load(m + 3).to(tl.float32)
    y = tl.load(m + 4).to(tl.float32) * px + tl.load(m + 5).to(tl.float32) * py \
        + tl.load(m + 6).to(tl.float32) * pz + tl.load(m + 7).to(tl.float32)
    z = tl.load(m + 8).to(tl.float32) * px + tl.load(m + 9).to(tl.float32) * py \
        + tl.load(m + 10).to(tl.float32) * pz + tl.load(m + 11).to(tl.float32)
    zc = tl.where(z > _EPS, z, _EPS)
    # IEEE division, as in the released CUDA code (Triton's "/" is approximate on NVIDIA): exact coordinates stay
    # exact, so a sample on a texel line takes the same side as in the reference.
    u = tl.div_rn(tl.div_rn(x, zc), w_in)
    v = tl.div_rn(tl.div_rn(y, zc), h_in)
    valid = (z > _EPS) & (u > 0.0) & (u < 1.0) & (v > 0.0) & (v < 1.0)
    return u, v, valid


@triton.jit
def _first_valid_view(px, py, pz, e_ptr, h_in, w_in, N: tl.constexpr):
    """Project into the N cameras whose matrices start at ``e_ptr``; keep the first valid view, else camera 0."""
    u, v, found = _project(e_ptr, px, py, pz, h_in, w_in)
    view = tl.zeros(px.shape, dtype=tl.int32)
    for n in tl.static_range(1, N):
        u_n, v_n, valid = _project(e_ptr + n * 16, px, py, pz, h_in, w_in)
        take = valid & ~found
        u = tl.where(take, u_n, u)
        v = tl.where(take, v_n, v)
        view = tl.where(take, n, view)
        found = found | valid
    return view, u, v


@triton.jit
def _corners(u, v, H, W, rmask):
    """Bilinear set-up of one level: corner row/column indices, fractional parts and per-corner validity."""
    h = v * (H - 1)
    w = u * (W - 1)
    inside = (h > -1.0) & (h < H) & (w > -1.0) & (w < W) & rmask
    h0f = tl.floor(h)
    w0f = tl.floor(w)
    # Inside the level floor(h) is in [-1, H-1]; elsewhere the (possibly huge) values are replaced before the cast.
    h0 = tl.where(inside, h0f, 0.0).to(tl.int32)
    w0 = tl.where(inside, w0f, 0.0).to(tl.int32)
    fh = tl.where(inside, h - h0f, 0.0)
    fw = tl.where(inside, w - w0f, 0.0)
    top = inside & (h0 >= 0)
    bottom = inside & (h0 < H - 1)
    left = w0 >= 0
    right = w0 < W - 1
    return h0, w0, fh, fw, top, bottom, left, right


@triton.jit
def _tile_mask(row_mask, cols, C: tl.constexpr, BLOCK_C: tl.constexpr):
    """[BLOCK_R, BLOCK_C] mask of a row-gathered tile. When C == BLOCK_C it is a broadcast row mask: constant along
    the channels, so Triton keeps 16-byte vector accesses."""
    if C == BLOCK_C:
        return row_mask[:, None]
    else:
        return row_mask[:, None] & (cols < C)[None, :]


@triton.jit
def _level_fwd(feat_ptr, slab, u, v, H, W, rmask, cols, C: tl.constexpr, BLOCK_C: tl.constexpr):
    """[BLOCK_R, BLOCK_C] fp32 bilinear samples of one level (zero outside)."""
    h0, w0, fh, fw, top, bottom, left, right = _corners(u, v, H, W, rmask)
    base = (slab * H + h0) * W + w0  # int64 texel index of the top-left corner
    p00 = feat_ptr + (base * C)[:, None] + cols[None, :]
    v00 = tl.load(p00, mask=_tile_mask(top & left, cols, C, BLOCK_C), other=0.0).to(tl.float32)
    v01 = tl.load(p00 + C, mask=_tile_mask(top & right, cols, C, BLOCK_C), other=0.0).to(tl.float32)
    v10 = tl.load(p00 + W * C, mask=_tile_mask(bottom & left, cols, C, BLOCK_C), other=0.0).to(tl.float32)
    v11 = tl.load(p00 + (W + 1) * C, mask=_tile_mask(bottom & right, cols, C, BLOCK_C), other=0.0).to(tl.float32)
    gh = 1.0 - fh
    gw = 1.0 - fw
    return ((gh * gw)[:, None] * v00 + (gh * fw)[:, None] * v01
            + (fh * gw)[:, None] * v10 + (fh * fw)[:, None] * v11)


@triton.jit
def _points(centres_ptr, quats_ptr, scales_ptr, offsets_ptr, b, q, g, p, rmask, Q, G, P: tl.constexpr):
    """Sample point c + R(q)(s * o) of each row, then the pieces of the chain rule the backward needs: the local
    offset l = s * o, s, o, the rotation entries, the normalised quaternion and 1 / |q|."""
    qi = b * Q + q  # int64
    cx, cy, cz = _load3(centres_ptr, qi * 3, rmask)
    sx, sy, sz = _load3(scales_ptr, qi * 3, rmask)
    ox, oy, oz = _load3(offsets_ptr, ((qi * G + g) * P + p) * 3, rmask)
    qw = tl.load(quats_ptr + qi * 4, mask=rmask, other=1.0).to(tl.float32)
    qx = tl.load(quats_ptr + qi * 4 + 1, mask=rmask, other=0.0).to(tl.float32)
    qy = tl.load(quats_ptr + qi * 4 + 2, mask=rmask, other=0.0).to(tl.float32)
    qz = tl.load(quats_ptr + qi * 4 + 3, mask=rmask, other=0.0).to(tl.float32)
    w, x, y, z, inv_norm, r00, r01, r02, r10, r11, r12, r20, r21, r22 = unit_quat_rotation(qw, qx, qy, qz)
    lx = sx * ox
    ly = sy * oy
    lz = sz * oz
    px = cx + (r00 * lx + r01 * ly + r02 * lz)
    py = cy + (r10 * lx + r11 * ly + r12 * lz)
    pz = cz + (r20 * lx + r21 * ly + r22 * lz)
    return (px, py, pz, lx, ly, lz, sx, sy, sz, ox, oy, oz,
            r00, r01, r02, r10, r11, r12, r20, r21, r22, w, x, y, z, inv_norm)


@triton.jit
def _aniso_sample_fwd_kernel(
    centres_ptr, quats_ptr, scales_ptr, offsets_ptr, ego2img_ptr, weights_ptr,
    feat0_ptr, feat1_ptr, feat2_ptr, feat3_ptr, out_ptr,
    Q, T, G, h_in, w_in, H0, W0, H1, W1, H2, W2, H3, W3,
    N: tl.constexpr, P: tl.constexpr, L: tl.constexpr, C: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_R: tl.constexpr, RELEASED_ORDER: tl.constexpr,
):
    pid_r = tl.program_id(0)
    tg = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    t = tg // G
    g = tg % G
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < Q * P
    q = rows // P
    p = rows % P
    cols = tl.arange(0, BLOCK_C)

    (px, py, pz, lx, ly, lz, sx, sy, sz, ox, oy, oz,
     r00, r01, r02, r10, r11, r12, r20, r21, r22, nw, nx, ny, nz, inv_norm) = _points(
        centres_ptr, quats_ptr, scales_ptr, offsets_ptr, b, q, g, p, rmask, Q, G, P)  # only the point is used
    view, u, v = _first_valid_view(px, py, pz, ego2img_ptr + (b * T + t) * N * 16, h_in, w_in, N)
    slab = ((b * T + t) * G + g) * N + view  # int64 index of the [H_l, W_l, C] map of every level

    if RELEASED_ORDER:
        wg = (t * G + g) // T
    else:
        wg = g
    w_ptr = weights_ptr + (((b * Q + q) * G + wg) * P + p) * L
    acc = tl.load(w_ptr, mask=rmask, other=0.0).to(tl.float32)[:, None] \
        * _level_fwd(feat0_ptr, slab, u, v, H0, W0, rmask, cols, C, BLOCK_C)
    if L > 1:
        acc += tl.load(w_ptr + 1, mask=rmask, other=0.0).to(tl.float32)[:, None] \
            * _level_fwd(feat1_ptr, slab, u, v, H1, W1, rmask, cols, C, BLOCK_C)
    if L > 2:
        acc += tl.load(w_ptr + 2, mask=rmask, other=0.0).to(tl.float32)[:, None] \
            * _level_fwd(feat2_ptr, slab, u, v, H2, W2, rmask, cols, C, BLOCK_C)
    if L > 3:
        acc += tl.load(w_ptr + 3, mask=rmask, other=0.0).to(tl.float32)[:, None] \
            * _level_fwd(feat3_ptr, slab, u, v, H3, W3, rmask, cols, C, BLOCK_C)

    out_row = ((b * Q + q) * G + g) * (T * P) + t * P + p  # [B, Q, G, T*P] row, frame-major points
    tl.store(out_ptr + (out_row * C)[:, None] + cols[None, :], acc.to(out_ptr.dtype.element_ty),
             mask=_tile_mask(rmask, cols, C, BLOCK_C))


@triton.jit
def _level_bwd(du, dv, feat_ptr, dfeat_ptr, w_ptr, dw_ptr, slab, u, v, H, W, rmask, cols, dout, C: tl.constexpr,
               BLOCK_C: tl.constexpr):
    """One level of the backward: scatter dL/dfeature, store dL/dweight at ``dw_ptr`` (the level weight is read at
    ``w_ptr``), and return the running sums ``du``, ``dv`` of dL/du, dL/dv of each row with this level's added."""
    lw = tl.load(w_ptr, mask=rmask, other=0.0).to(tl.float32)
    h0, w0, fh, fw, top, bottom, left, right = _corners(u, v, H, W, rmask)
    base = (slab * H + h0) * W + w0
    offs = (base * C)[:, None] + cols[None, :]
    m00 = _tile_mask(top & left, cols, C, BLOCK_C)
    m01 = _tile_mask(top & right, cols, C, BLOCK_C)
    m10 = _tile_mask(bottom & left, cols, C, BLOCK_C)
    m11 = _tile_mask(bottom & right, cols, C, BLOCK_C)
    v00 = tl.load(feat_ptr + offs, mask=m00, other=0.0).to(tl.float32)
    v01 = tl.load(feat_ptr + offs + C, mask=m01, other=0.0).to(tl.float32)
    v10 = tl.load(feat_ptr + offs + W * C, mask=m10, other=0.0).to(tl.float32)
    v11 = tl.load(feat_ptr + offs + (W + 1) * C, mask=m11, other=0.0).to(tl.float32)
    gh = 1.0 - fh
    gw = 1.0 - fw
    gs = dout * lw[:, None]  # dL/d(bilinear value)
    tl.atomic_add(dfeat_ptr + offs, gs * (gh * gw)[:, None], mask=m00, sem="relaxed")
    tl.atomic_add(dfeat_ptr + offs + C, gs * (gh * fw)[:, None], mask=m01, sem="relaxed")
    tl.atomic_add(dfeat_ptr + offs + W * C, gs * (fh * gw)[:, None], mask=m10, sem="relaxed")
    tl.atomic_add(dfeat_ptr + offs + (W + 1) * C, gs * (fh * fw)[:, None], mask=m11, sem="relaxed")
    bil = (gh * gw)[:, None] * v00 + (gh * fw)[:, None] * v01 + (fh * gw)[:, None] * v10 + (fh * fw)[:, None] * v11
    tl.store(dw_ptr, tl.sum(dout * bil, axis=1), mask=rmask)
    # d bilinear / d fh and / d fw (fh = h - floor(h): the right-hand derivative at texel lines).
    dfh = tl.sum(gs * (gw[:, None] * (v10 - v00) + fw[:, None] * (v11 - v01)), axis=1)
    dfw = tl.sum(gs * (gh[:, None] * (v01 - v00) + fh[:, None] * (v11 - v10)), axis=1)
    return du + dfw * (W - 1), dv + dfh * (H - 1)


@triton.jit
def _aniso_sample_bwd_kernel(
    dout_ptr, centres_ptr, quats_ptr, scales_ptr, offsets_ptr, ego2img_ptr, weights_ptr,
    feat0_ptr, feat1_ptr, feat2_ptr, feat3_ptr, dfeat0_ptr, dfeat1_ptr, dfeat2_ptr, dfeat3_ptr,
    dweights_ptr, dgeo_ptr,
    Q, T, G, h_in, w_in, H0, W0, H1, W1, H2, W2, H3, W3,
    N: tl.constexpr, P: tl.constexpr, L: tl.constexpr, C: tl.constexpr, BLOCK_C: tl.constexpr,
    BLOCK_R: tl.constexpr, RELEASED_ORDER: tl.constexpr, GEO_PARTS: tl.constexpr,
):
    pid_r = tl.program_id(0)
    tg = tl.program_id(1)
    b = tl.program_id(2).to(tl.int64)
    t = tg // G
    g = tg % G
    rows = pid_r * BLOCK_R + tl.arange(0, BLOCK_R)
    rmask = rows < Q * P
    q = rows // P
    p = rows % P
    cols = tl.arange(0, BLOCK_C)

    (px, py, pz, lx, ly, lz, sx, sy, sz, ox, oy, oz,
     r00, r01, r02, r10, r11, r12, r20, r21, r22, nw, nx, ny, nz, inv_norm) = _points(
        centres_ptr, quats_ptr, scales_ptr, offsets_ptr, b, q, g, p, rmask, Q, G, P)
    e_ptr = ego2img_ptr + (b * T + t) * N * 16
    view, u, v = _first_valid_view(px, py, pz, e_ptr, h_in, w_in, N)
    slab = ((b * T + t) * G + g) * N + view

    if RELEASED_ORDER:
        wg = (t * G + g) // T
    else:
        wg = g
    w_ptr = weights_ptr + (((b * Q + q) * G + wg) * P + p) * L
    out_row = ((b * Q + q) * G + g) * (T * P) + t * P + p
    dout = tl.load(dout_ptr + (out_row * C)[:, None] + cols[None, :], mask=_tile_mask(rmask, cols, C, BLOCK_C),
                   other=0.0).to(tl.float32)
    # Partial level-weight gradients of this (t, g): [B, Q, T, G, P, L], summed over frames by the caller.
    dw_ptr = dweights_ptr + ((((b * Q + q) * T + t) * G + g) * P + p) * L

    # -0.0 + x == x for every x: the sums start exactly at the first level's terms.
    du = tl.full((BLOCK_R,), -0.0, tl.float32)
    dv = tl.full((BLOCK_R,), -0.0, tl.float32)
    du, dv = _level_bwd(du, dv, feat0_ptr, dfeat0_ptr, w_ptr, dw_ptr, slab, u, v, H0, W0, rmask, cols, dout, C,
                        BLOCK_C)
    if L > 1:
        du, dv = _level_bwd(du, dv, feat1_ptr, dfeat1_ptr, w_ptr + 1, dw_ptr + 1, slab, u, v, H1, W1, rmask, cols,
                            dout, C, BLOCK_C)
    if L > 2:
        du, dv = _level_bwd(du, dv, feat2_ptr, dfeat2_ptr, w_ptr + 2, dw_ptr + 2, slab, u, v, H2, W2, rmask, cols,
                            dout, C, BLOCK_C)
    if L > 3:
        du, dv = _level_bwd(du, dv, feat3_ptr, dfeat3_ptr, w_ptr + 3, dw_ptr + 3, slab, u, v, H3, W3, rmask, cols,
                            dout, C, BLOCK_C)

    # (u, v) -> point: u = x / z~ / W_in with z~ = max(z, eps) (no gradient through the clamp below eps).
    m = e_ptr + view * 16
    e00 = tl.load(m + 0).to(tl.float32)
    e01 = tl.load(m + 1).to(tl.float32)
    e02 = tl.load(m + 2).to(tl.float32)
    e10 = tl.load(m + 4).to(tl.float32)
    e11 = tl.load(m + 5).to(tl.float32)
    e12 = tl.load(m + 6).to(tl.float32)
    e20 = tl.load(m + 8).to(tl.float32)
    e21 = tl.load(m + 9).to(tl.float32)
    e22 = tl.load(m + 10).to(tl.float32)
    z = e20 * px + e21 * py + e22 * pz + tl.load(m + 11).to(tl.float32)
    zc = tl.where(z > _EPS, z, _EPS)
    gx = du / (zc * w_in)  # dL/dx'
    gy = dv / (zc * h_in)  # dL/dy'
    # dL/dz' = -(u W_in) gx - (v H_in) gy where z > eps, and x'/z~ = u W_in.
    gz = tl.where(z > _EPS, -(u * w_in) * gx - (v * h_in) * gy, 0.0)
    dpx = e00 * gx + e10 * gy + e20 * gz
    dpy = e01 * gx + e11 * gy + e21 * gz
    dpz = e02 * gx + e12 * gy + e22 * gz

    # point = c + R l with l = s * o.
    dlx = r00 * dpx + r10 * dpy + r20 * dpz
    dly = r01 * dpx + r11 * dpy + r21 * dpz
    dlz = r02 * dpx + r12 * dpy + r22 * dpz
    # dL/dR_ij = dp_i l_j, then through R(q^) and q^ = q / |q|.
    d00 = dpx * lx
    d01 = dpx * ly
    d02 = dpx * lz
    d10 = dpy * lx
    d11 = dpy * ly
    d12 = dpy * lz
    d20 = dpz * lx
    d21 = dpz * ly
    d22 = dpz * lz
    gqw = 2.0 * (nx * (d21 - d12) + ny * (d02 - d20) + nz * (d10 - d01))
    gqx = 2.0 * (ny * (d01 + d10) + nz * (d02 + d20) + nw * (d21 - d12)) - 4.0 * nx * (d11 + d22)
    gqy = 2.0 * (nx * (d01 + d10) + nz * (d12 + d21) + nw * (d02 - d20)) - 4.0 * ny * (d00 + d22)
    gqz = 2.0 * (nx * (d02 + d20) + ny * (d12 + d21) + nw * (d10 - d01)) - 4.0 * nz * (d00 + d11)
    radial = nw * gqw + nx * gqx + ny * gqy + nz * gqz

    # Partial geometry gradients of this (t, g): [B, T, Q, G, P, GEO_PARTS].
    gp = dgeo_ptr + ((((b * T + t) * Q + q) * G + g) * P + p) * GEO_PARTS
    tl.store(gp + 0, sx * dlx, mask=rmask)
    tl.store(gp + 1, sy * dly, mask=rmask)
    tl.store(gp + 2, sz * dlz, mask=rmask)
    tl.store(gp + 3, dpx, mask=rmask)
    tl.store(gp + 4, dpy, mask=rmask)
    tl.store(gp + 5, dpz, mask=rmask)
    tl.store(gp + 6, ox * dlx, mask=rmask)
    tl.store(gp + 7, oy * dly, mask=rmask)
    tl.store(gp + 8, oz * dlz, mask=rmask)
    tl.store(gp + 9, (gqw - nw * radial) * inv_norm, mask=rmask)
    tl.store(gp + 10, (gqx - nx * radial) * inv_norm, mask=rmask)
    tl.store(gp + 11, (gqy - ny * radial) * inv_norm, mask=rmask)
    tl.store(gp + 12, (gqz - nz * radial) * inv_norm, mask=rmask)


def _level_args(features: Sequence[Tensor]) -> tuple[list[Tensor], list[int]]:
    """The four level pointers (unused ones repeat level 0, never read) and their (H_l, W_l)."""
    ptrs = list(features) + [features[0]] * (MAX_LEVELS - len(features))
    sizes: list[int] = []
    for lvl in range(MAX_LEVELS):
        sizes += [features[lvl].shape[2], features[lvl].shape[3]] if lvl < len(features) else [1, 1]
    return ptrs, sizes


def _grid(Q: int, P: int, T: int, G: int, B: int, block_r: int) -> tuple[int, int, int]:
    return (triton.cdiv(Q * P, block_r), T * G, B)


@torch.library.custom_op("pgocc::aniso_sample_fwd", mutates_args=())
def _aniso_sample_fwd(centres: Tensor, quats: Tensor, scales: Tensor, offsets: Tensor, ego2img: Tensor,
                      features: list[Tensor], level_weights: Tensor, h_in: int, w_in: int,
                      released_weight_order: bool) -> Tensor:
    B, Q, G, P, _ = offsets.shape
    T, N = ego2img.shape[1], ego2img.shape[2]
    C = features[0].shape[-1]
    features = [f.contiguous() for f in features]
    out = torch.empty(B, Q, G, T * P, C, dtype=features[0].dtype, device=offsets.device)
    ptrs, sizes = _level_args(features)
    _aniso_sample_fwd_kernel[_grid(Q, P, T, G, B, _FWD_BLOCK_R)](
        centres.contiguous(), quats.contiguous(), scales.contiguous(), offsets.contiguous(), ego2img.contiguous(),
        level_weights.contiguous(), *ptrs, out,
        Q, T, G, float(h_in), float(w_in), *sizes,
        N=N, P=P, L=len(features), C=C, BLOCK_C=triton.next_power_of_2(C), BLOCK_R=_FWD_BLOCK_R,
        RELEASED_ORDER=released_weight_order, num_warps=_FWD_WARPS,
    )
    return out


@_aniso_sample_fwd.register_fake
def _(centres, quats, scales, offsets, ego2img, features, level_weights, h_in, w_in, released_weight_order):
    B, Q, G, P, _ = offsets.shape
    T = ego2img.shape[1]
    return offsets.new_empty(B, Q, G, T * P, features[0].shape[-1], dtype=features[0].dtype)


@torch.library.custom_op("pgocc::aniso_sample_bwd", mutates_args=())
def _aniso_sample_bwd(dout: Tensor, centres: Tensor, quats: Tensor, scales: Tensor, offsets: Tensor,
                      ego2img: Tensor, features: list[Tensor], level_weights: Tensor, h_in: int, w_in: int,
                      released_weight_order: bool) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, list[Tensor]]:
    B, Q, G, P, _ = offsets.shape
    T, N = ego2img.shape[1], ego2img.shape[2]
    L = len(features)
    C = features[0].shape[-1]
    features = [f.contiguous() for f in features]
    dfeatures = [torch.zeros(f.shape, dtype=torch.float32, device=f.device) for f in features]
    dweights = torch.empty(B, Q, T, G, P, L, dtype=torch.float32, device=offsets.device)
    dgeo = torch.empty(B, T, Q, G, P, _GEO_PARTS, dtype=torch.float32, device=offsets.device)
    ptrs, sizes = _level_args(features)
    dptrs, _ = _level_args(dfeatures)
    _aniso_sample_bwd_kernel[_grid(Q, P, T, G, B, _BWD_BLOCK_R)](
        dout.contiguous(), centres.contiguous(), quats.contiguous(), scales.contiguous(), offsets.contiguous(),
        ego2img.contiguous(), level_weights.contiguous(), *ptrs, *dptrs, dweights, dgeo,
        Q, T, G, float(h_in), float(w_in), *sizes,
        N=N, P=P, L=L, C=C, BLOCK_C=triton.next_power_of_2(C), BLOCK_R=_BWD_BLOCK_R,
        RELEASED_ORDER=released_weight_order, GEO_PARTS=_GEO_PARTS, num_warps=_BWD_WARPS,
    )
    per_point = dgeo.sum(1)  # [B, Q, G, P, 13]: over frames
    per_query = per_point[..., 3:].sum((2, 3))  # [B, Q, 10]: over groups and points
    if released_weight_order:
        # Frame t, group g used weight group (t*G + g) // T: consecutive runs of T entries of the flat (t, g) axis.
        dlevel = dweights.reshape(B, Q, G, T, P, L).sum(3)
    else:
        dlevel = dweights.sum(2)
    def part(t: Tensor) -> Tensor:  # custom ops may not return views of one another
        return t.to(offsets.dtype, memory_format=torch.contiguous_format, copy=True)

    return (part(per_query[..., 0:3]), part(per_query[..., 6:10]), part(per_query[..., 3:6]),
            part(per_point[..., 0:3]), dlevel.to(level_weights.dtype),
            [d.to(f.dtype) for d, f in zip(dfeatures, features, strict=True)])


@_aniso_sample_bwd.register_fake
def _(dout, centres, quats, scales, offsets, ego2img, features, level_weights, h_in, w_in, released_weight_order):
    return (torch.empty_like(centres), torch.empty_like(quats), torch.empty_like(scales), torch.empty_like(offsets),
            torch.empty_like(level_weights), [torch.empty_like(f) for f in features])


def _setup_context(ctx, inputs, output) -> None:
    centres, quats, scales, offsets, ego2img, features, level_weights, h_in, w_in, released = inputs
    ctx.save_for_backward(centres, quats, scales, offsets, ego2img, level_weights, *features)
    ctx.static = (h_in, w_in, released)


def _backward(ctx, dout: Tensor):
    centres, quats, scales, offsets, ego2img, level_weights, *features = ctx.saved_tensors
    dcentres, dquats, dscales, doffsets, dweights, dfeatures = _aniso_sample_bwd(
        dout, centres, quats, scales, offsets, ego2img, list(features), level_weights, *ctx.static)
    return dcentres, dquats, dscales, doffsets, None, dfeatures, dweights, None, None, None


_aniso_sample_fwd.register_autograd(_backward, setup_context=_setup_context)


def aniso_sample(centres: Tensor, quats: Tensor, scales: Tensor, offsets: Tensor, ego2img: Tensor,
                 features: Sequence[Tensor], level_weights: Tensor, image_size: Sequence[int],
                 released_weight_order: bool) -> Tensor:
    """Triton implementation of ``pgocc.ops.aniso_sample`` (same arguments and result as the reference).

    Args:
        centres: [B, Q, 3]; quats: [B, Q, 4]; scales: [B, Q, 3]; offsets: [B, Q, G, P, 3] (float32).
        ego2img: [B, T, N, 4, 4] (float32).
        features: L <= 4 tensors [B*T*G, N, H_l, W_l, C] (float32 or bfloat16).
        level_weights: [B, Q, G, P, L] (the features' dtype).
        image_size: (H_in, W_in).
        released_weight_order: see the contract.

    Returns:
        [B, Q, G, T*P, C] in the features' dtype. Forward deterministic; backward not (fp32 atomics).

    Raises:
        NotImplementedError: float64 inputs or more than 4 levels (use impl='reference').
    """
    if offsets.dtype == torch.float64 or features[0].dtype == torch.float64:
        raise NotImplementedError("aniso_sample/triton: float64 is not supported; use impl='reference'")
    if len(features) > MAX_LEVELS:
        raise NotImplementedError(f"aniso_sample/triton: at most {MAX_LEVELS} levels, got {len(features)}; "
                                  f"use impl='reference'")
    return _aniso_sample_fwd(centres, quats, scales, offsets, ego2img, list(features), level_weights,
                             int(image_size[0]), int(image_size[1]), bool(released_weight_order))
