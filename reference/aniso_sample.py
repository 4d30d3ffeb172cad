"""Reference anisotropy-aware multi-point sampling (see ``pgocc.ops.aniso_sample`` for shapes and semantics).

Written for clarity: every sample point is projected into every camera (a [B, T, N, Q, G, P] tensor), the first
valid camera is found with an explicit loop, and each level's four bilinear corners are gathered with
``index_select``. Backward is PyTorch autograd. Runs on CPU and GPU in any floating dtype (tests use float64).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from pgocc.ops.aniso_sample import DEPTH_EPS
from reference._math import quat_to_rotmat


def sample_points(centres: Tensor, quats: Tensor, scales: Tensor, offsets: Tensor) -> Tensor:
    """Sample points ``c + R(q) (s * o)``: [B, Q, 3], [B, Q, 4], [B, Q, 3], [B, Q, G, P, 3] -> [B, Q, G, P, 3]."""
    local = scales[:, :, None, None, :] * offsets
    return centres[:, :, None, None, :] + torch.einsum("bqij,bqgpj->bqgpi", quat_to_rotmat(quats), local)


def project(points: Tensor, ego2img: Tensor,
            image_size: Sequence[int]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Project into every camera of every frame and pick the first valid view.

    Args:
        points: [B, Q, G, P, 3].
        ego2img: [B, T, N, 4, 4].
        image_size: (H_in, W_in).

    Returns:
        u, v: [B, T, N, Q, G, P] normalised image coordinates in every camera.
        depth: [B, T, N, Q, G, P] z' (before the clamp).
        valid: [B, T, N, Q, G, P] in front (z' > DEPTH_EPS) and strictly inside the image.
        view: [B, T, Q, G, P] int64, the first valid camera, 0 where none is valid.
    """
    H_in, W_in = image_size
    cam = torch.einsum("btnij,bqgpj->btnqgpi", ego2img[..., :3, :3], points) + ego2img[..., :3, 3][:, :, :, None,
                                                                                                    None, None, :]
    x, y, z = cam.unbind(-1)
    z_clamped = torch.where(z > DEPTH_EPS, z, torch.full_like(z, DEPTH_EPS))
    u = x / z_clamped / W_in
    v = y / z_clamped / H_in
    valid = (z > DEPTH_EPS) & (u > 0) & (u < 1) & (v > 0) & (v < 1)
    N = ego2img.shape[2]
    view = torch.zeros_like(valid[:, :, 0], dtype=torch.int64)
    for n in reversed(range(N)):  # the last assignment wins, so the lowest valid camera index is kept
        view = torch.where(valid[:, :, n], n, view)
    return u, v, z, valid, view


def bilinear(feature: Tensor, batch: Tensor, view: Tensor, u: Tensor, v: Tensor) -> Tensor:
    """Sample one level with the MSMV kernel's convention (h = v (H-1), w = u (W-1), zero padding).

    Args:
        feature: [B', N, H, W, C].
        batch, view: int64 index tensors of one shape S (b' and camera of each sample).
        u, v: normalised coordinates of shape S.

    Returns:
        [*S, C] in u's dtype.
    """
    _, N, H, W, C = feature.shape
    flat = feature.reshape(-1, C)
    h = v * (H - 1)
    w = u * (W - 1)
    inside = (h > -1) & (h < H) & (w > -1) & (w < W)
    h0 = torch.floor(h)
    w0 = torch.floor(w)
    fh = h - h0
    fw = w - w0
    out = torch.zeros(*u.shape, C, dtype=u.dtype, device=u.device)
    for dy in (0, 1):
        for dx in (0, 1):
            hi = h0 + dy
            wi = w0 + dx
            ok = inside & (hi >= 0) & (hi <= H - 1) & (wi >= 0) & (wi <= W - 1)
            weight = (fh if dy else 1 - fh) * (fw if dx else 1 - fw) * ok
            row = ((batch * N + view) * H + hi.clamp(0, H - 1).long()) * W + wi.clamp(0, W - 1).long()
            values = flat.index_select(0, row.flatten()).view(*row.shape, C).to(u.dtype)
            out = out + weight[..., None] * values
    return out


def aniso_sample(centres: Tensor, quats: Tensor, scales: Tensor, offsets: Tensor, ego2img: Tensor,
                 features: Sequence[Tensor], level_weights: Tensor, image_size: Sequence[int],
                 released_weight_order: bool) -> Tensor:
    """Reference of ``pgocc.ops.aniso_sample``.

    Args:
        centres: [B, Q, 3]; quats: [B, Q, 4] (w, x, y, z); scales: [B, Q, 3]; offsets: [B, Q, G, P, 3].
        ego2img: [B, T, N, 4, 4].
        features: L x [B*T*G, N, H_l, W_l, C].
        level_weights: [B, Q, G, P, L].
        image_size: (H_in, W_in).
        released_weight_order: frame t, group g uses the level weights of group (t*G + g) // T instead of g.

    Returns:
        [B, Q, G, T*P, C] in the features' dtype, computed in the geometry's dtype.
    """
    B, Q, G, P, _ = offsets.shape
    T = ego2img.shape[1]
    C = features[0].shape[-1]
    points = sample_points(centres, quats, scales, offsets)
    u_all, v_all, _, _, view = project(points, ego2img, image_size)
    u = u_all.gather(2, view[:, :, None]).squeeze(2)  # [B, T, Q, G, P]
    v = v_all.gather(2, view[:, :, None]).squeeze(2)

    t_idx = torch.arange(T, device=offsets.device)[:, None]
    g_idx = torch.arange(G, device=offsets.device)[None, :]
    weight_group = (t_idx * G + g_idx) // T if released_weight_order else g_idx.expand(T, G)
    weights = level_weights[:, :, weight_group].to(u.dtype)  # [B, Q, T, G, P, L]

    # Sample index order [B, T, Q, G, P]; the feature batch index is b' = (b*T + t)*G + g.
    b_idx = torch.arange(B, device=offsets.device)[:, None, None, None, None]
    batch = (b_idx * T + t_idx[None, :, :, None, None]) * G + torch.arange(G, device=offsets.device)[:, None]
    batch = batch.expand(B, T, Q, G, P)
    out = torch.zeros(B, T, Q, G, P, C, dtype=u.dtype, device=u.device)
    for level, feature in enumerate(features):
        w_l = weights[..., level].permute(0, 2, 1, 3, 4)  # [B, T, Q, G, P]
        out = out + w_l[..., None] * bilinear(feature, batch, view, u, v)
    return out.permute(0, 2, 3, 1, 4, 5).reshape(B, Q, G, T * P, C).to(features[0].dtype)
