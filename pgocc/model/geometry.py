"""Small geometric helpers of the model: decoder, losses, readout, renderer (docs/model.md §0, §1.4, §1.5, §5.1).

None reads the device on the host or copies host data per call (docs/performance.md §2): ranges become tensors
through :func:`~pgocc.model.constants.device_constant`, and K is inverted without ``torch.linalg.inv``'s error check.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pgocc.model.checks import Checks
from pgocc.model.constants import device_constant


def quat_to_rotmat(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of unit quaternions (w, x, y, z): [..., 4] → [..., 3, 3]."""
    w, x, y, z = q.unbind(-1)
    rows = (
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    )
    return torch.stack(rows, -1).unflatten(-1, (3, 3))


def pixel_grid(height: int, width: int, *, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Homogeneous integer pixel coordinates [H, W, 3] = (u, v, 1), u the column (no +0.5, as the released code)."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack([u, v, torch.ones_like(u)], -1)


def backproject(depth: torch.Tensor, intrinsics: torch.Tensor, checks: Checks | None = None) -> torch.Tensor:
    """Camera-frame points ``depth · K⁻¹ [u, v, 1]ᵀ`` at integer pixels.

    Args:
        depth: [..., H, W] metres.
        intrinsics: [..., 3, 3] pinhole K of the same pixel grid.
        checks: where to record that every K is invertible (a singular K gives non-finite points, not an error).

    Returns:
        [..., H, W, 3] camera-frame points (x right, y down, z forward).
    """
    H, W = depth.shape[-2:]
    rays = pixel_grid(H, W, device=depth.device, dtype=depth.dtype)
    # inv_ex: the same LU inverse as torch.linalg.inv, whose singularity check reads the status on the host (a sync).
    k_inv, status = torch.linalg.inv_ex(intrinsics.to(depth.dtype))
    if checks is not None:
        checks.expect(status == 0, "singular intrinsics K in backproject (a zero focal length?)")
    dirs = torch.einsum("...ij,hwj->...hwi", k_inv, rays)
    return dirs * depth.unsqueeze(-1)


def transform_points(matrix: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply rigid/affine 4×4 ``matrix`` [..., 4, 4] to ``points`` [..., M..., 3] (matrix broadcast over the M dims).

    ``matrix`` has the leading dims of ``points`` minus its point dims; the point dims are flattened internally.
    """
    lead = matrix.shape[:-2]
    pts = points.reshape(*lead, -1, 3)
    out = pts @ matrix[..., :3, :3].transpose(-1, -2) + matrix[..., None, :3, 3]
    return out.reshape(points.shape)


def rigid_inverse(matrix: torch.Tensor) -> torch.Tensor:
    """Inverse [Rᵀ, −Rᵀt] of rigid 4×4 transforms [..., 4, 4] (transpose the rotation; exact, no general inverse)."""
    rot_t = matrix[..., :3, :3].transpose(-1, -2)
    out = torch.zeros_like(matrix)
    out[..., :3, :3] = rot_t
    out[..., :3, 3] = -(rot_t @ matrix[..., :3, 3:]).squeeze(-1)
    out[..., 3, 3] = 1
    return out


def normalize_coords(points: torch.Tensor, pc_range: Sequence[float]) -> torch.Tensor:
    """Map metric points [..., 3] to [0, 1] per axis over ``pc_range`` (outside points fall outside [0, 1])."""
    lo = device_constant(pc_range[:3], points)
    hi = device_constant(pc_range[3:], points)
    return (points - lo) / (hi - lo)


def inside_range(points: torch.Tensor, lo: Sequence[float], hi: Sequence[float], *, strict: bool) -> torch.Tensor:
    """[...] bool: ``points`` [..., 3] inside the box [lo, hi] (open box when ``strict``)."""
    lo_t, hi_t = device_constant(lo, points), device_constant(hi, points)
    if strict:
        return ((points > lo_t) & (points < hi_t)).all(-1)
    return ((points >= lo_t) & (points <= hi_t)).all(-1)

