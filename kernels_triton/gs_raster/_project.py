"""Projection of Gaussians into the cameras (EWA splatting), forward and backward.

Forward, one program per (block of Gaussians, camera): camera-space centre, 2D mean, inverse 2D covariance (conic),
depth and the tile rectangle of gsplat's opacity-aware box. Backward, one program per block of Gaussians looping
over the cameras: the per-camera gradients of (mean2d, conic, depth) are chained back to the world covariance and
the centre, summed over cameras, then to scales and the (normalised) quaternion. No atomics: deterministic.

Per-Gaussian records, float32:
    proj  [V, N, 8]: mean2d x, mean2d y, conic a, conic b, conic c, depth z, opacity, (unused)
    dproj [V, N, 8]: gradients of the first seven (sigma = (a dx^2 + c dy^2) / 2 + b dx dy)

The geometry is a chain of small ``@triton.jit`` steps, each returning a few values that every call site unpacks by
name; both kernels call the same steps in the same order. Triton inlines them, so the compiled code is that of one
function. A wrong count of names fails under the interpreter (the CPU tests) but not always in the compiler, which
silently drops values beyond the names given: keep every unpacking complete.
"""

from __future__ import annotations

import math

import triton
import triton.language as tl

from kernels_triton._utils import load_quat, load_xyz, unit_quat_rotation
from pgocc.ops import gs_raster as contract

NEAR_PLANE = tl.constexpr(contract.NEAR_PLANE)
EPS2D = tl.constexpr(contract.EPS2D)
LOG_255 = tl.constexpr(-math.log(contract.ALPHA_MIN))  # ln(255): o exp(-sigma) >= 1/255  <=>  sigma <= ln(255 o)
CLIP_HALF_MARGIN = tl.constexpr(0.5 * contract.FRUSTUM_MARGIN)  # margin 0.3 tan(fov/2) = 0.15 size/focal
TILE = tl.constexpr(contract.TILE)
PROJ_STRIDE = tl.constexpr(8)


@triton.jit
def _scaled_rotation(r00, r01, r02, r10, r11, r12, r20, r21, r22, sx, sy, sz):
    """M = R diag(s) (row-major, [BLOCK] each) from the rotation R and the extents s of each Gaussian."""
    m00 = r00 * sx
    m01 = r01 * sy
    m02 = r02 * sz
    m10 = r10 * sx
    m11 = r11 * sy
    m12 = r12 * sz
    m20 = r20 * sx
    m21 = r21 * sy
    m22 = r22 * sz
    return m00, m01, m02, m10, m11, m12, m20, m21, m22


@triton.jit
def _world_covariance(m00, m01, m02, m10, m11, m12, m20, m21, m22):
    """Upper triangle (s00, s01, s02, s11, s12, s22) of Sigma = M M^T, [BLOCK] each."""
    s00 = m00 * m00 + m01 * m01 + m02 * m02
    s01 = m00 * m10 + m01 * m11 + m02 * m12
    s02 = m00 * m20 + m01 * m21 + m02 * m22
    s11 = m10 * m10 + m11 * m11 + m12 * m12
    s12 = m10 * m20 + m11 * m21 + m12 * m22
    s22 = m20 * m20 + m21 * m21 + m22 * m22
    return s00, s01, s02, s11, s12, s22


@triton.jit
def _load_rotation(viewmats_ptr, v):
    """World-to-camera rotation W (row-major, scalars) of camera v: the upper-left 3 x 3 of viewmats[v] [4, 4]."""
    vm = viewmats_ptr + v * 16
    w00 = tl.load(vm + 0)
    w01 = tl.load(vm + 1)
    w02 = tl.load(vm + 2)
    w10 = tl.load(vm + 4)
    w11 = tl.load(vm + 5)
    w12 = tl.load(vm + 6)
    w20 = tl.load(vm + 8)
    w21 = tl.load(vm + 9)
    w22 = tl.load(vm + 10)
    return w00, w01, w02, w10, w11, w12, w20, w21, w22


@triton.jit
def _load_translation(viewmats_ptr, v):
    """World-to-camera translation (t0, t1, t2) (scalars) of camera v: the last column of viewmats[v] [4, 4]."""
    vm = viewmats_ptr + v * 16
    t0 = tl.load(vm + 3)
    t1 = tl.load(vm + 7)
    t2 = tl.load(vm + 11)
    return t0, t1, t2


@triton.jit
def _load_intrinsics(ks_ptr, v):
    """(fx, fy, cx, cy) (scalars) of camera v from Ks[v] [3, 3]."""
    k = ks_ptr + v * 9
    fx = tl.load(k + 0)
    fy = tl.load(k + 4)
    cx = tl.load(k + 2)
    cy = tl.load(k + 5)
    return fx, fy, cx, cy


@triton.jit
def _to_camera(mx, my, mz, w00, w01, w02, w10, w11, w12, w20, w21, w22, t0, t1, t2):
    """Camera-space centre p = W mean + t, (x, y, z) [BLOCK] each."""
    x = w00 * mx + w01 * my + w02 * mz + t0
    y = w10 * mx + w11 * my + w12 * mz + t1
    z = w20 * mx + w21 * my + w22 * mz + t2
    return x, y, z


@triton.jit
def _camera_covariance(s00, s01, s02, s11, s12, s22, w00, w01, w02, w10, w11, w12, w20, w21, w22):
    """Upper triangle (c00, c01, c02, c11, c12, c22) of Sigma_c = W Sigma W^T, [BLOCK] each."""
    # First P = W Sigma (rows of W times the symmetric Sigma), then P W^T.
    p00 = w00 * s00 + w01 * s01 + w02 * s02
    p01 = w00 * s01 + w01 * s11 + w02 * s12
    p02 = w00 * s02 + w01 * s12 + w02 * s22
    p10 = w10 * s00 + w11 * s01 + w12 * s02
    p11 = w10 * s01 + w11 * s11 + w12 * s12
    p12 = w10 * s02 + w11 * s12 + w12 * s22
    p20 = w20 * s00 + w21 * s01 + w22 * s02
    p21 = w20 * s01 + w21 * s11 + w22 * s12
    p22 = w20 * s02 + w21 * s12 + w22 * s22
    c00 = p00 * w00 + p01 * w01 + p02 * w02
    c01 = p00 * w10 + p01 * w11 + p02 * w12
    c02 = p00 * w20 + p01 * w21 + p02 * w22
    c11 = p10 * w10 + p11 * w11 + p12 * w12
    c12 = p10 * w20 + p11 * w21 + p12 * w22
    c22 = p20 * w20 + p21 * w21 + p22 * w22
    return c00, c01, c02, c11, c12, c22


@triton.jit
def _clamped_tangents(x, y, z, fx, fy, cx, cy, width, height):
    """(rz, u, uy, in_x, in_y) [BLOCK] each: 1/z, the tangents x/z and y/z clamped to the image's range plus the
    frustum margin (gsplat's Jacobian clamp), and whether each was inside that range (not clamped)."""
    # Dropped Gaussians (z < near) are evaluated at z = 1 so that everything stays finite; they are masked later.
    zu = tl.where(z >= NEAR_PLANE, z, 1.0)
    rz = 1.0 / zu
    lim_x = CLIP_HALF_MARGIN * width / fx
    lim_y = CLIP_HALF_MARGIN * height / fy
    hi_x = (width - cx) / fx + lim_x
    lo_x = -(cx / fx + lim_x)
    hi_y = (height - cy) / fy + lim_y
    lo_y = -(cy / fy + lim_y)
    xr = x * rz
    yr = y * rz
    in_x = (xr >= lo_x) & (xr <= hi_x)
    in_y = (yr >= lo_y) & (yr <= hi_y)
    u = tl.minimum(tl.maximum(xr, lo_x), hi_x)
    uy = tl.minimum(tl.maximum(yr, lo_y), hi_y)
    return rz, u, uy, in_x, in_y


@triton.jit
def _jacobian(rz, u, uy, fx, fy):
    """The non-zero entries (j00, j02, j11, j12) [BLOCK] of J = [[j00, 0, j02], [0, j11, j12]]."""
    j00 = fx * rz
    j02 = -fx * u * rz
    j11 = fy * rz
    j12 = -fy * uy * rz
    return j00, j02, j11, j12


@triton.jit
def _jacobian_covariance(j00, j02, j11, j12, c00, c01, c02, c11, c12, c22):
    """J Sigma_c (2 x 3, row-major: q00, q01, q02, q10, q11, q12) [BLOCK] each."""
    q00 = j00 * c00 + j02 * c02
    q01 = j00 * c01 + j02 * c12
    q02 = j00 * c02 + j02 * c22
    q10 = j11 * c01 + j12 * c02
    q11 = j11 * c11 + j12 * c12
    q12 = j11 * c12 + j12 * c22
    return q00, q01, q02, q10, q11, q12


@triton.jit
def _conic(j00, j02, j11, j12, q00, q01, q02, q11, q12):
    """(a2, c2, con_a, con_b, con_c) [BLOCK] each: the diagonal of the 2D covariance S2 = J Sigma_c J^T + eps I and
    its inverse, the conic [[con_a, con_b], [con_b, con_c]]."""
    a2 = q00 * j00 + q02 * j02 + EPS2D
    b2 = q01 * j11 + q02 * j12
    c2 = q11 * j11 + q12 * j12 + EPS2D
    inv_det = 1.0 / (a2 * c2 - b2 * b2)
    con_a = c2 * inv_det
    con_b = -b2 * inv_det
    con_c = a2 * inv_det
    return a2, c2, con_a, con_b, con_c


@triton.jit
def _gs_project_fwd_kernel(means_ptr, quats_ptr, scales_ptr, opac_ptr, viewmats_ptr, ks_ptr,
                           proj_ptr, rect_ptr, count_ptr, N, width, height, tiles_x, tiles_y,
                           BLOCK: tl.constexpr):
    v = tl.program_id(1)
    n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = n < N
    # Masked-off lanes get a harmless unit Gaussian at the origin.
    mx, my, mz = load_xyz(means_ptr, n, m, 0.0)
    qw, qx, qy, qz = load_quat(quats_ptr, n, m)
    sx, sy, sz = load_xyz(scales_ptr, n, m, 1.0)
    o = tl.load(opac_ptr + n, mask=m, other=0.0).to(tl.float32)
    _, _, _, _, _, r00, r01, r02, r10, r11, r12, r20, r21, r22 = unit_quat_rotation(qw, qx, qy, qz)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = _scaled_rotation(r00, r01, r02, r10, r11, r12, r20, r21, r22,
                                                                   sx, sy, sz)
    s00, s01, s02, s11, s12, s22 = _world_covariance(m00, m01, m02, m10, m11, m12, m20, m21, m22)
    w00, w01, w02, w10, w11, w12, w20, w21, w22 = _load_rotation(viewmats_ptr, v)
    t0, t1, t2 = _load_translation(viewmats_ptr, v)
    fx, fy, cx, cy = _load_intrinsics(ks_ptr, v)
    x, y, z = _to_camera(mx, my, mz, w00, w01, w02, w10, w11, w12, w20, w21, w22, t0, t1, t2)
    c00, c01, c02, c11, c12, c22 = _camera_covariance(s00, s01, s02, s11, s12, s22,
                                                      w00, w01, w02, w10, w11, w12, w20, w21, w22)
    rz, u, uy, in_x, in_y = _clamped_tangents(x, y, z, fx, fy, cx, cy, width, height)
    j00, j02, j11, j12 = _jacobian(rz, u, uy, fx, fy)
    q00, q01, q02, q10, q11, q12 = _jacobian_covariance(j00, j02, j11, j12, c00, c01, c02, c11, c12, c22)
    a2, c2, con_a, con_b, con_c = _conic(j00, j02, j11, j12, q00, q01, q02, q11, q12)
    # The 2D mean is never clamped.
    m2x = fx * x * rz + cx
    m2y = fy * y * rz + cy
    # A Gaussian with o < 1/255 can never reach alpha >= 1/255; beyond sqrt(2 ln(255 o)) standard deviations along
    # an axis alpha < 1/255 too, so the box below (plus half a pixel against rounding) loses nothing.
    valid = m & (z >= NEAR_PLANE) & (o * 255.0 >= 1.0)
    extend = tl.sqrt(tl.maximum(2.0 * (tl.log(tl.maximum(o, 1e-30)) + LOG_255), 0.0))
    rx = extend * tl.sqrt(a2) + 0.5
    ry = extend * tl.sqrt(c2) + 0.5
    # Pixel u is evaluated at u + 0.5, so pixels u in [m2x - rx - 0.5, m2x + rx - 0.5] can be touched. The floats are
    # clamped before the integer conversion so that far-away or huge Gaussians cannot overflow it.
    fx0 = tl.minimum(tl.maximum(tl.floor((m2x - rx - 0.5) / TILE), -1.0), tiles_x * 1.0)
    fx1 = tl.minimum(tl.maximum(tl.floor((m2x + rx - 0.5) / TILE), -1.0), tiles_x * 1.0)
    fy0 = tl.minimum(tl.maximum(tl.floor((m2y - ry - 0.5) / TILE), -1.0), tiles_y * 1.0)
    fy1 = tl.minimum(tl.maximum(tl.floor((m2y + ry - 0.5) / TILE), -1.0), tiles_y * 1.0)
    tx0 = tl.maximum(fx0.to(tl.int32), 0)
    tx1 = tl.minimum(fx1.to(tl.int32), tiles_x - 1)
    ty0 = tl.maximum(fy0.to(tl.int32), 0)
    ty1 = tl.minimum(fy1.to(tl.int32), tiles_y - 1)
    hit = valid & (tx1 >= tx0) & (ty1 >= ty0)
    count = tl.where(hit, (tx1 - tx0 + 1) * (ty1 - ty0 + 1), 0)
    row = (v * N + n).to(tl.int64)
    base = proj_ptr + row * PROJ_STRIDE
    tl.store(base + 0, m2x, mask=m)
    tl.store(base + 1, m2y, mask=m)
    tl.store(base + 2, con_a, mask=m)
    tl.store(base + 3, con_b, mask=m)
    tl.store(base + 4, con_c, mask=m)
    tl.store(base + 5, z, mask=m)
    tl.store(base + 6, o, mask=m)
    tl.store(base + 7, tl.zeros_like(o), mask=m)
    tl.store(rect_ptr + row * 4 + 0, tx0, mask=m)
    tl.store(rect_ptr + row * 4 + 1, ty0, mask=m)
    tl.store(rect_ptr + row * 4 + 2, tx1, mask=m)
    tl.store(rect_ptr + row * 4 + 3, ty1, mask=m)
    tl.store(count_ptr + row, count, mask=m)


@triton.jit
def _gs_project_bwd_kernel(means_ptr, quats_ptr, scales_ptr, viewmats_ptr, ks_ptr, dproj_ptr,
                           dmeans_ptr, dquats_ptr, dscales_ptr, dopac_ptr, N, V, width, height,
                           BLOCK: tl.constexpr):
    n = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = n < N
    mx, my, mz = load_xyz(means_ptr, n, m, 0.0)
    qw, qx, qy, qz = load_quat(quats_ptr, n, m)
    sx, sy, sz = load_xyz(scales_ptr, n, m, 1.0)
    qnw, qnx, qny, qnz, inv_norm, r00, r01, r02, r10, r11, r12, r20, r21, r22 = unit_quat_rotation(qw, qx, qy, qz)
    m00, m01, m02, m10, m11, m12, m20, m21, m22 = _scaled_rotation(r00, r01, r02, r10, r11, r12, r20, r21, r22,
                                                                   sx, sy, sz)
    s00, s01, s02, s11, s12, s22 = _world_covariance(m00, m01, m02, m10, m11, m12, m20, m21, m22)
    zero = tl.zeros([BLOCK], dtype=tl.float32)
    g_mx = zero
    g_my = zero
    g_mz = zero
    # Gradient of the world covariance, accumulated over cameras (symmetric; upper triangle).
    gs00 = zero
    gs01 = zero
    gs02 = zero
    gs11 = zero
    gs12 = zero
    gs22 = zero
    g_o = zero
    for v in range(V):
        w00, w01, w02, w10, w11, w12, w20, w21, w22 = _load_rotation(viewmats_ptr, v)
        t0, t1, t2 = _load_translation(viewmats_ptr, v)
        fx, fy, cx, cy = _load_intrinsics(ks_ptr, v)
        x, y, z = _to_camera(mx, my, mz, w00, w01, w02, w10, w11, w12, w20, w21, w22, t0, t1, t2)
        c00, c01, c02, c11, c12, c22 = _camera_covariance(s00, s01, s02, s11, s12, s22,
                                                          w00, w01, w02, w10, w11, w12, w20, w21, w22)
        rz, u, uy, in_x, in_y = _clamped_tangents(x, y, z, fx, fy, cx, cy, width, height)
        j00, j02, j11, j12 = _jacobian(rz, u, uy, fx, fy)
        q00, q01, q02, q10, q11, q12 = _jacobian_covariance(j00, j02, j11, j12, c00, c01, c02, c11, c12, c22)
        _, _, ca, cb, cc = _conic(j00, j02, j11, j12, q00, q01, q02, q11, q12)
        valid = m & (z >= NEAR_PLANE)
        row = (v * N + n).to(tl.int64) * PROJ_STRIDE
        d_m2x = tl.load(dproj_ptr + row + 0, mask=valid, other=0.0)
        d_m2y = tl.load(dproj_ptr + row + 1, mask=valid, other=0.0)
        d_ca = tl.load(dproj_ptr + row + 2, mask=valid, other=0.0)
        d_cb = tl.load(dproj_ptr + row + 3, mask=valid, other=0.0)
        d_cc = tl.load(dproj_ptr + row + 4, mask=valid, other=0.0)
        d_z = tl.load(dproj_ptr + row + 5, mask=valid, other=0.0)
        g_o += tl.load(dproj_ptr + row + 6, mask=valid, other=0.0)
        # Conic Q = S2^-1 with dL/dQ = [[d_ca, d_cb/2], [d_cb/2, d_cc]]  ->  dL/dS2 = -Q (dL/dQ) Q, K = Q (dL/dQ).
        k00 = ca * d_ca + cb * 0.5 * d_cb
        k01 = ca * 0.5 * d_cb + cb * d_cc
        k10 = cb * d_ca + cc * 0.5 * d_cb
        k11 = cb * 0.5 * d_cb + cc * d_cc
        g2_00 = -(k00 * ca + k01 * cb)
        g2_01 = -0.5 * (k00 * cb + k01 * cc + k10 * ca + k11 * cb)
        g2_11 = -(k10 * cb + k11 * cc)
        # S2 = J Sigma_c J^T + eps I:  dL/dSigma_c = J^T G2 J,  dL/dJ = 2 G2 (J Sigma_c).
        h00 = g2_00 * j00
        h01 = g2_01 * j11
        h02 = g2_00 * j02 + g2_01 * j12
        h11 = g2_11 * j11
        h12 = g2_01 * j02 + g2_11 * j12
        gc00 = j00 * h00
        gc01 = j00 * h01
        gc02 = j00 * h02
        gc11 = j11 * h11
        gc12 = j11 * h12
        gc22 = j02 * h02 + j12 * h12
        gj00 = 2.0 * (g2_00 * q00 + g2_01 * q10)
        gj02 = 2.0 * (g2_00 * q02 + g2_01 * q12)
        gj11 = 2.0 * (g2_01 * q01 + g2_11 * q11)
        gj12 = 2.0 * (g2_01 * q02 + g2_11 * q12)
        # J = [[fx/z, 0, -fx u/z], [0, fy/z, -fy u_y/z]] with u = clamp(x/z), u_y = clamp(y/z): the clamp passes the
        # gradient of u to x and z only inside its range; the 2D mean is never clamped.
        rz2 = rz * rz
        rz3 = rz2 * rz
        fin_x = tl.where(in_x, 1.0, 0.0)
        fin_y = tl.where(in_y, 1.0, 0.0)
        g_x = d_m2x * fx * rz - fin_x * gj02 * fx * rz2
        g_y = d_m2y * fy * rz - fin_y * gj12 * fy * rz2
        g_z = (d_z - (d_m2x * fx * x + d_m2y * fy * y) * rz2 - (gj00 * fx + gj11 * fy) * rz2
               + (gj02 * fx * u + gj12 * fy * uy) * rz2 + (fin_x * gj02 * fx * x + fin_y * gj12 * fy * y) * rz3)
        g_x = tl.where(valid, g_x, 0.0)
        g_y = tl.where(valid, g_y, 0.0)
        g_z = tl.where(valid, g_z, 0.0)
        # Camera-space centre p = W mean + t  ->  dL/dmean = W^T dL/dp.
        g_mx += w00 * g_x + w10 * g_y + w20 * g_z
        g_my += w01 * g_x + w11 * g_y + w21 * g_z
        g_mz += w02 * g_x + w12 * g_y + w22 * g_z
        # Sigma_c = W Sigma W^T  ->  dL/dSigma = W^T Gc W, first A = Gc W (Gc symmetric).
        gc00 = tl.where(valid, gc00, 0.0)
        gc01 = tl.where(valid, gc01, 0.0)
        gc02 = tl.where(valid, gc02, 0.0)
        gc11 = tl.where(valid, gc11, 0.0)
        gc12 = tl.where(valid, gc12, 0.0)
        gc22 = tl.where(valid, gc22, 0.0)
        a00 = gc00 * w00 + gc01 * w10 + gc02 * w20
        a01 = gc00 * w01 + gc01 * w11 + gc02 * w21
        a02 = gc00 * w02 + gc01 * w12 + gc02 * w22
        a10 = gc01 * w00 + gc11 * w10 + gc12 * w20
        a11 = gc01 * w01 + gc11 * w11 + gc12 * w21
        a12 = gc01 * w02 + gc11 * w12 + gc12 * w22
        a20 = gc02 * w00 + gc12 * w10 + gc22 * w20
        a21 = gc02 * w01 + gc12 * w11 + gc22 * w21
        a22 = gc02 * w02 + gc12 * w12 + gc22 * w22
        gs00 += w00 * a00 + w10 * a10 + w20 * a20
        gs01 += w00 * a01 + w10 * a11 + w20 * a21
        gs02 += w00 * a02 + w10 * a12 + w20 * a22
        gs11 += w01 * a01 + w11 * a11 + w21 * a21
        gs12 += w01 * a02 + w11 * a12 + w21 * a22
        gs22 += w02 * a02 + w12 * a12 + w22 * a22
    # Sigma = M M^T  ->  dL/dM = 2 G M (G symmetric); M = R diag(s)  ->  dL/dR_ij = dL/dM_ij s_j, dL/ds_j = sum_i ..
    gm00 = 2.0 * (gs00 * m00 + gs01 * m10 + gs02 * m20)
    gm01 = 2.0 * (gs00 * m01 + gs01 * m11 + gs02 * m21)
    gm02 = 2.0 * (gs00 * m02 + gs01 * m12 + gs02 * m22)
    gm10 = 2.0 * (gs01 * m00 + gs11 * m10 + gs12 * m20)
    gm11 = 2.0 * (gs01 * m01 + gs11 * m11 + gs12 * m21)
    gm12 = 2.0 * (gs01 * m02 + gs11 * m12 + gs12 * m22)
    gm20 = 2.0 * (gs02 * m00 + gs12 * m10 + gs22 * m20)
    gm21 = 2.0 * (gs02 * m01 + gs12 * m11 + gs22 * m21)
    gm22 = 2.0 * (gs02 * m02 + gs12 * m12 + gs22 * m22)
    g_sx = gm00 * r00 + gm10 * r10 + gm20 * r20
    g_sy = gm01 * r01 + gm11 * r11 + gm21 * r21
    g_sz = gm02 * r02 + gm12 * r12 + gm22 * r22
    gr00 = gm00 * sx
    gr01 = gm01 * sy
    gr02 = gm02 * sz
    gr10 = gm10 * sx
    gr11 = gm11 * sy
    gr12 = gm12 * sz
    gr20 = gm20 * sx
    gr21 = gm21 * sy
    gr22 = gm22 * sz
    # R(w, x, y, z) of the unit quaternion, differentiated entry by entry.
    gw = 2.0 * (-qnz * gr01 + qny * gr02 + qnz * gr10 - qnx * gr12 - qny * gr20 + qnx * gr21)
    gx = 2.0 * (qny * gr01 + qnz * gr02 + qny * gr10 - 2.0 * qnx * gr11 - qnw * gr12 + qnz * gr20 + qnw * gr21
                - 2.0 * qnx * gr22)
    gy = 2.0 * (-2.0 * qny * gr00 + qnx * gr01 + qnw * gr02 + qnx * gr10 + qnz * gr12 - qnw * gr20 + qnz * gr21
                - 2.0 * qny * gr22)
    gz = 2.0 * (-2.0 * qnz * gr00 - qnw * gr01 + qnx * gr02 + qnw * gr10 - 2.0 * qnz * gr11 + qny * gr12 + qnx * gr20
                + qny * gr21)
    # q_n = q / |q|  ->  dL/dq = (g - q_n (q_n . g)) / |q|.
    dot = qnw * gw + qnx * gx + qny * gy + qnz * gz
    tl.store(dquats_ptr + n * 4 + 0, (gw - qnw * dot) * inv_norm, mask=m)
    tl.store(dquats_ptr + n * 4 + 1, (gx - qnx * dot) * inv_norm, mask=m)
    tl.store(dquats_ptr + n * 4 + 2, (gy - qny * dot) * inv_norm, mask=m)
    tl.store(dquats_ptr + n * 4 + 3, (gz - qnz * dot) * inv_norm, mask=m)
    tl.store(dscales_ptr + n * 3 + 0, g_sx, mask=m)
    tl.store(dscales_ptr + n * 3 + 1, g_sy, mask=m)
    tl.store(dscales_ptr + n * 3 + 2, g_sz, mask=m)
    tl.store(dmeans_ptr + n * 3 + 0, g_mx, mask=m)
    tl.store(dmeans_ptr + n * 3 + 1, g_my, mask=m)
    tl.store(dmeans_ptr + n * 3 + 2, g_mz, mask=m)
    tl.store(dopac_ptr + n, g_o, mask=m)
