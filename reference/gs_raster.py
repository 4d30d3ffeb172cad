"""Reference Gaussian splatting (see ``pgocc.ops.gs_raster``): every pixel against every Gaussian, no tiles.

Per camera: project all Gaussians, sort them by depth, evaluate alpha of every (pixel, Gaussian) pair, take the
exclusive cumulative product of (1 - alpha) along the depth order and sum T * alpha * value. Backward is autograd;
the skip/stop/cull decisions are computed without gradient, as constants. Any floating dtype, CPU or GPU.
"""

from __future__ import annotations

import math

import torch

from pgocc.ops.gs_raster import ALPHA_MAX, ALPHA_MIN, EPS2D, FRUSTUM_MARGIN, NEAR_PLANE, T_STOP
from reference._math import quat_to_rotmat

PIXEL_CHUNK = 4096
"""Pixels evaluated at once (bounds the [pixels, N] temporaries; the result does not depend on it)."""


def project(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, viewmats: torch.Tensor,
            Ks: torch.Tensor, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """EWA projection of every Gaussian into every camera.

    Returns:
        mean2d [V, N, 2] pixels, conic [V, N, 2, 2] inverse 2D covariance (eps2d included), depth [V, N] camera z.
    """
    rot = quat_to_rotmat(quats)
    m = rot * scales[:, None, :]
    cov = m @ m.transpose(-1, -2)  # [N, 3, 3]
    w2c_r, w2c_t = viewmats[:, :3, :3], viewmats[:, :3, 3]
    p = torch.einsum("vij,nj->vni", w2c_r, means) + w2c_t[:, None, :]  # [V, N, 3]
    cov_c = w2c_r[:, None] @ cov[None] @ w2c_r[:, None].transpose(-1, -2)  # [V, N, 3, 3]
    x, y, z = p.unbind(-1)
    # Dropped Gaussians (z < near) are projected as if at z = 1: their values are never used, and this keeps them
    # finite so that their zero gradients stay zero instead of 0 * inf.
    z_used = torch.where(z >= NEAR_PLANE, z, torch.ones_like(z))
    fx, fy, cx, cy = (Ks[:, 0, 0, None], Ks[:, 1, 1, None], Ks[:, 0, 2, None], Ks[:, 1, 2, None])
    # gsplat clamps the ray direction used by the Jacobian to the frustum plus a margin (never the mean itself).
    lim_x = FRUSTUM_MARGIN * 0.5 * width / fx
    lim_y = FRUSTUM_MARGIN * 0.5 * height / fy
    u = torch.minimum(torch.maximum(x / z_used, -(cx / fx + lim_x)), (width - cx) / fx + lim_x)
    v = torch.minimum(torch.maximum(y / z_used, -(cy / fy + lim_y)), (height - cy) / fy + lim_y)
    zero = torch.zeros_like(z)
    jac = torch.stack([fx / z_used, zero, -fx * u / z_used, zero, fy / z_used, -fy * v / z_used],
                      -1).reshape(*z.shape, 2, 3)
    cov2d = jac @ cov_c @ jac.transpose(-1, -2) + EPS2D * torch.eye(2, dtype=means.dtype, device=means.device)
    mean2d = torch.stack([fx * x / z_used + cx, fy * y / z_used + cy], -1)
    return mean2d, torch.linalg.inv(cov2d), z


def _pixel_centres(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """[H*W, 2] (u + 0.5, v + 0.5), row-major."""
    vv, uu = torch.meshgrid(torch.arange(height, dtype=like.dtype, device=like.device),
                            torch.arange(width, dtype=like.dtype, device=like.device), indexing="ij")
    return torch.stack([uu.reshape(-1), vv.reshape(-1)], -1) + 0.5


def _sigma(mean2d: torch.Tensor, conic: torch.Tensor, pix: torch.Tensor) -> torch.Tensor:
    """[P, N] Mahalanobis half-distance d^T Q d / 2 of each pixel centre to each (depth-sorted) Gaussian."""
    d = mean2d[None, :, :] - pix[:, None, :]
    return 0.5 * torch.einsum("pni,nij,pnj->pn", d, conic, d)


def gs_raster(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
              features: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, height: int, width: int,
              depth_only: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Dense reference rasterizer.

    Args and returns as in ``pgocc.ops.gs_raster``: means [N, 3], quats [N, 4], scales [N, 3], opacities [N],
    features [N, C], viewmats [V, 4, 4], Ks [V, 3, 3] -> features image [V, H, W, C] ([V, H, W, 0] when
    ``depth_only``), depth [V, H, W, 1], alpha [V, H, W, 1]. Deterministic.
    """
    V = viewmats.shape[0]
    mean2d, conic, depth = project(means, quats, scales, viewmats, Ks, height, width)
    pix = _pixel_centres(height, width, means)
    feats_out, depth_out, alpha_out = [], [], []
    for v in range(V):
        order = torch.sort(depth[v].detach(), stable=True).indices
        m2, q, z = mean2d[v, order], conic[v, order], depth[v, order]
        o = opacities[order]
        f = features[order] if not depth_only else features[order, :0]
        in_front = z.detach() >= NEAR_PLANE
        rows_f, rows_num, rows_a = [], [], []
        for p0 in range(0, pix.shape[0], PIXEL_CHUNK):
            alpha = torch.clamp(o * torch.exp(-_sigma(m2, q, pix[p0:p0 + PIXEL_CHUNK])), max=ALPHA_MAX)
            with torch.no_grad():
                keep = in_front & (alpha >= ALPHA_MIN)
                t_incl = torch.cumprod(1 - torch.where(keep, alpha, 0), dim=1)
                contrib = keep & (t_incl > T_STOP)
            a = torch.where(keep, alpha, 0)
            t_incl = torch.cumprod(1 - a, dim=1)
            t_excl = torch.cat([torch.ones_like(t_incl[:, :1]), t_incl[:, :-1]], dim=1)
            weight = torch.where(contrib, t_excl * a, 0)  # [P, N]
            rows_f.append(weight @ f)
            rows_num.append(weight @ z)
            rows_a.append(weight.sum(1))
        acc = torch.cat(rows_a)
        feats_out.append(torch.cat(rows_f))
        depth_out.append(torch.cat(rows_num) / acc.clamp_min(1e-10))
        alpha_out.append(acc)
    C = 0 if depth_only else features.shape[1]
    return (torch.stack(feats_out).reshape(V, height, width, C),
            torch.stack(depth_out).reshape(V, height, width, 1),
            torch.stack(alpha_out).reshape(V, height, width, 1))


@torch.no_grad()
def decision_margin(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
                    viewmats: torch.Tensor, Ks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """[V, H, W] distance of each pixel's discrete decisions to their thresholds, in log units.

    For every Gaussian in front of the near plane: |ln(o e^-sigma) - ln(1/255)| (alpha skip) and
    |ln(o e^-sigma) - ln 0.999| (alpha clamp); for every Gaussian still processed before the pixel stops:
    |ln T_after - ln 1e-4| (transmittance stop). The minimum over Gaussians; +inf where none is in front. A float32
    implementation can take the other branch of a decision only where this is ~1e-5 or less, so tests compare pixels
    whose margin is clear of that and give the others a zero cotangent.
    """
    mean2d, conic, depth = project(means, quats, scales, viewmats, Ks, height, width)
    pix = _pixel_centres(height, width, means)
    out = []
    for v in range(viewmats.shape[0]):
        order = torch.sort(depth[v], stable=True).indices
        m2, q, z, o = mean2d[v, order], conic[v, order], depth[v, order], opacities[order]
        in_front = z >= NEAR_PLANE
        rows = []
        for p0 in range(0, pix.shape[0], PIXEL_CHUNK):
            log_raw = torch.log(o) - _sigma(m2, q, pix[p0:p0 + PIXEL_CHUNK])
            margin = torch.minimum((log_raw - math.log(ALPHA_MIN)).abs(), (log_raw - math.log(ALPHA_MAX)).abs())
            margin = torch.where(in_front, margin, math.inf)
            alpha = torch.clamp(torch.exp(log_raw), max=ALPHA_MAX)
            keep = in_front & (alpha >= ALPHA_MIN)
            t_incl = torch.cumprod(1 - torch.where(keep, alpha, 0), dim=1)
            t_excl = torch.cat([torch.ones_like(t_incl[:, :1]), t_incl[:, :-1]], dim=1)
            processed = keep & (t_excl > T_STOP)
            stop = torch.where(processed, (torch.log(t_incl) - math.log(T_STOP)).abs(), math.inf)
            rows.append(torch.minimum(margin, stop).amin(1) if margin.shape[1] else margin.new_full(
                (margin.shape[0],), math.inf))
        out.append(torch.cat(rows))
    return torch.stack(out).reshape(-1, height, width)
