"""Reference Gaussian-to-voxel aggregation: every Gaussian at every point, in PyTorch (see ``pgocc.ops.gs2vox``).

Dense over (point, Gaussian) pairs, in chunks of points so that the [B, chunk, N, 3] intermediates stay bounded;
with gradients enabled each chunk is checkpointed (recomputed in backward), so memory stays bounded there too.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.utils.checkpoint import checkpoint

from pgocc.ops.gs2vox import DEFAULT_CUTOFF, DENSITY_EPS, grid_spec
from reference._math import quat_to_rotmat

PAIRS_PER_CHUNK = 1 << 23
"""(point, Gaussian) pairs per chunk: 8 M pairs × 3 coordinates × 8 bytes = 200 MB per float64 intermediate."""


def voxel_centres(origin: Sequence[float], voxel_size: float, dims: Sequence[int], *, dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """[X·Y·Z, 3] centres ``origin + voxel_size·(i + 0.5)``, x slowest, z fastest."""
    axes = [torch.arange(n, dtype=dtype, device=device) for n in dims]
    idx = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
    return torch.tensor(origin, dtype=dtype, device=device) + voxel_size * (idx + 0.5)


def mahalanobis_sq(pts: torch.Tensor, means: torch.Tensor, rot: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """[B, P, N] squared Mahalanobis distance of points [B, P, 3] to Gaussians (means [B, N, 3], rotations
    [B, N, 3, 3] from :func:`quat_to_rotmat`, scales [B, N, 3])."""
    delta = pts[:, :, None, :] - means[:, None, :, :]                                  # [B, P, N, 3]
    # Coordinates in the Gaussian's frame, in standard deviations: diag(1/s) Rᵀ (x − μ); d² = |that|².
    local = torch.einsum("bpni,bnij->bpnj", delta, rot) / scales[:, None]
    return local.square().sum(-1)


def _chunk_sums(pts: torch.Tensor, means: torch.Tensor, rot: torch.Tensor, scales: torch.Tensor,
                opacities: torch.Tensor, features: torch.Tensor, r2: float, tail: float
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Density [B, P] and unnormalised feature sum [B, P, K] of all Gaussians at points [B, P, 3]."""
    d2 = mahalanobis_sq(pts, means, rot, scales)                                          # [B, P, N]
    inside = (d2 < r2) & (opacities != 0)[:, None, :]
    w = torch.where(inside, opacities[:, None, :] * (torch.exp(-0.5 * d2) - tail), torch.zeros_like(d2))
    return w.sum(-1), torch.einsum("bpn,bnk->bpk", w, features)


def gs2vox(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
           features: torch.Tensor, points: torch.Tensor | None = None, grid_origin: Sequence[float] | None = None,
           voxel_size: float | None = None, grid_dims: Sequence[int] | None = None,
           cutoff: float = DEFAULT_CUTOFF) -> tuple[torch.Tensor, torch.Tensor]:
    """Density and density-normalised features on a voxel grid or at query points.

    Args:
        means: [B, N, 3]. quats: [B, N, 4] (w, x, y, z). scales: [B, N, 3] standard deviations.
        opacities: [B, N]. features: [B, N, K].
        points: [B, M, 3] query points, or None for the grid given by grid_origin, voxel_size, grid_dims.
        cutoff: Mahalanobis radius (``math.inf``: exact sum).

    Returns:
        density [B, X, Y, Z] / [B, M] and field [B, X, Y, Z, K] / [B, M, K], in the input dtype.
    """
    B, N, K = features.shape
    grid = grid_spec(points, grid_origin, voxel_size, grid_dims)
    if grid is not None:
        origin, size, dims = grid
        pts = voxel_centres(origin, size, dims, dtype=means.dtype, device=means.device).expand(B, -1, 3)
    else:
        pts = points
    r2, tail = cutoff * cutoff, math.exp(-0.5 * cutoff * cutoff)
    rot = quat_to_rotmat(quats)
    step = max(1, PAIRS_PER_CHUNK // max(1, B * N))
    recompute = torch.is_grad_enabled() and any(t.requires_grad for t in (means, quats, scales, opacities, features))
    dens, sums = [], []
    for chunk in pts.split(step, dim=1):
        args = (chunk, means, rot, scales, opacities, features, r2, tail)
        d, s = checkpoint(_chunk_sums, *args, use_reentrant=False) if recompute else _chunk_sums(*args)
        dens.append(d)
        sums.append(s)
    density = torch.cat(dens, 1) if dens else pts.new_zeros(B, 0)
    field = (torch.cat(sums, 1) if sums else pts.new_zeros(B, 0, K)) / density.clamp_min(DENSITY_EPS)[..., None]
    if grid is not None:
        density = density.reshape(B, *grid[2])
        field = field.reshape(B, *grid[2], K)
    return density, field


def gs2vox_boxed(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
                 features: torch.Tensor, points: torch.Tensor | None = None,
                 grid_origin: Sequence[float] | None = None, voxel_size: float | None = None,
                 grid_dims: Sequence[int] | None = None, cutoff: float = DEFAULT_CUTOFF
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`gs2vox` on a grid visiting, per Gaussian, only the voxels of its support's bounding box (the CPU
    readout: a few hundred thousand pairs instead of every voxel × every Gaussian). Absent Gaussians (opacity 0)
    visit none. Query mode and an infinite cut-off fall back to the dense :func:`gs2vox`.

    The support d² < r² of a Gaussian is an ellipsoid whose half extent along axis i is r·sqrt(Σ_ii), with
    Σ = R diag(s)² Rᵀ; every voxel whose centre lies outside that box has d² ≥ r², so its weight is 0 in both.
    """
    grid = grid_spec(points, grid_origin, voxel_size, grid_dims)
    if grid is None or math.isinf(cutoff):
        return gs2vox(means, quats, scales, opacities, features, points, grid_origin, voxel_size, grid_dims, cutoff)
    origin, size, dims = grid
    B, N, K = features.shape
    device, dtype = means.device, means.dtype
    r2, tail = cutoff * cutoff, math.exp(-0.5 * cutoff * cutoff)
    rot = quat_to_rotmat(quats)                                                          # [B, N, 3, 3]
    corner = torch.tensor(origin, dtype=dtype, device=device)
    shape = torch.tensor(dims, device=device)
    with torch.no_grad():
        extent = cutoff * (rot.square() * scales[:, :, None, :].square()).sum(-1).sqrt() * (1 + 1e-6)
        # Voxel i's centre corner + size·(i + ½) lies in [μ − extent, μ + extent] for i in [lo, hi].
        lo = torch.ceil((means - extent - corner) / size - 0.5).long().clamp(min=0)
        hi = torch.minimum(torch.floor((means + extent - corner) / size - 0.5).long(), shape - 1)
        box = (hi - lo + 1).clamp(min=0)                                                   # [B, N, 3]
        count = box.prod(-1) * (opacities != 0)                                            # [B, N] voxels visited
    num_voxels = int(shape.prod())
    densities, field_sums = [], []
    for b in range(B):
        d_b, s_b = means.new_zeros(num_voxels), means.new_zeros(num_voxels, K)
        visiting = count[b].nonzero()[:, 0]
        # Gaussians in groups whose pairs stay within a chunk (a Gaussian larger than a chunk is a group alone).
        per_pair = max(1, PAIRS_PER_CHUNK // (3 + K))
        groups, start, acc = [], 0, 0
        for i, c in enumerate(count[b, visiting].tolist()):
            if acc and acc + c > per_pair:
                groups.append(visiting[start:i])
                start, acc = i, 0
            acc += c
        if start < len(visiting):
            groups.append(visiting[start:])
        for g in groups:
            c = count[b, g]
            gid = torch.repeat_interleave(g, c)                                            # [P] Gaussian of pair
            first = torch.repeat_interleave(torch.cumsum(c, 0) - c, c)
            k = torch.arange(int(c.sum()), device=device) - first                         # [P] index in the box
            ny, nz = box[b, gid, 1], box[b, gid, 2]
            idx = lo[b, gid] + torch.stack([k // (ny * nz), (k // nz) % ny, k % nz], -1)   # [P, 3] voxel
            pts = corner + size * (idx.to(dtype) + 0.5)
            local = torch.einsum("pi,pij->pj", pts - means[b, gid], rot[b, gid]) / scales[b, gid]
            d2 = local.square().sum(-1)
            w = torch.where(d2 < r2, opacities[b, gid] * (torch.exp(-0.5 * d2) - tail), torch.zeros_like(d2))
            flat = (idx[:, 0] * dims[1] + idx[:, 1]) * dims[2] + idx[:, 2]
            d_b = d_b.index_add(0, flat, w)
            s_b = s_b.index_add(0, flat, w[:, None] * features[b, gid])
        densities.append(d_b)
        field_sums.append(s_b)
    density, sums = torch.stack(densities), torch.stack(field_sums)
    field = sums / density.clamp_min(DENSITY_EPS)[..., None]
    return density.reshape(B, *dims), field.reshape(B, *dims, K)
