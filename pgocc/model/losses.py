"""Training losses (docs/model.md §5): photometric depth warping, PCA-projected feature MSE + cosine, depth SILog + L1.

The functions here are pure (rendered maps in, scalar out) so each term can be checked by hand;
:class:`~pgocc.model.pgocc.PGOccLoss` renders every stage's Gaussians and sums the weighted terms.

Glossary: B batch, N cameras, H × W render size, k PCA dims, D feature width, h × w feature-map size.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from pgocc.model.geometry import backproject, transform_points

SSIM_C1 = 0.01**2
SSIM_C2 = 0.03**2
SSIM_WEIGHT = 0.85
"""Photometric error = 0.85 · SSIM term + 0.15 · L1 (Monodepth2)."""
IDENTITY_NOISE = 1e-5
"""Std of the noise added to the identity (unwarped) error so that exact ties do not favour it (Monodepth2)."""
PROJ_EPS = 1e-7
"""Added to the projected depth before the perspective division (no positivity check, as released)."""
RENDER_DEPTH_RANGE = (0.1, 80.0)
"""Rendered depth is clamped to this range (m) before every loss."""
DEPTH_TARGET_RANGE = (0.1, 51.2)
"""The depth losses use target pixels strictly inside this range (m) of the unclamped foundation depth."""
SILOG_VARIANCE_FOCUS = 0.85
SILOG_SCALE = 10.0


def ssim_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``clamp((1 − SSIM(a, b)) / 2, 0, 1)`` per pixel and channel: 3×3 mean pooling after 1-px reflection padding.

    Args:
        a, b: [M, C, H, W] images in [0, 1].

    Returns:
        [M, C, H, W].
    """
    a, b = F.pad(a, (1, 1, 1, 1), mode="reflect"), F.pad(b, (1, 1, 1, 1), mode="reflect")
    mu_a, mu_b = F.avg_pool2d(a, 3, 1), F.avg_pool2d(b, 3, 1)
    var_a = F.avg_pool2d(a * a, 3, 1) - mu_a * mu_a
    var_b = F.avg_pool2d(b * b, 3, 1) - mu_b * mu_b
    cov = F.avg_pool2d(a * b, 3, 1) - mu_a * mu_b
    num = (2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)
    den = (mu_a * mu_a + mu_b * mu_b + SSIM_C1) * (var_a + var_b + SSIM_C2)
    return ((1 - num / den) / 2).clamp(0, 1)


def photometric_error(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``0.85 · mean_c SSIM-error + 0.15 · mean_c |a − b|``: [M, C, H, W] × 2 → [M, H, W]."""
    return SSIM_WEIGHT * ssim_error(a, b).mean(1) + (1 - SSIM_WEIGHT) * (a - b).abs().mean(1)


def warp_image(source: torch.Tensor, depth: torch.Tensor, intrinsics: torch.Tensor,
               target_to_source: torch.Tensor) -> torch.Tensor:
    """Resample ``source`` into the target view through the target's depth.

    Back-projects every integer target pixel with ``depth`` and K, moves it with ``target_to_source``, projects it
    with the same K, and samples ``source`` bilinearly (align_corners=True convention, border padding).

    Args:
        source: [M, C, H, W] source images.
        depth: [M, H, W] target-view depth (m).
        intrinsics: [M, 3, 3] K of both views.
        target_to_source: [M, 4, 4] rigid transform from the target camera to the source camera.

    Returns:
        [M, C, H, W] the source seen from the target view.
    """
    H, W = depth.shape[-2:]
    # No check of K here: PGOcc.forward records that the same batch.render_k is invertible, and the prediction's
    # checks come first in the loss output's.
    pts = transform_points(target_to_source, backproject(depth, intrinsics))              # [M, H, W, 3]
    proj = torch.einsum("mij,mhwj->mhwi", intrinsics.to(pts.dtype), pts)
    pix = proj[..., :2] / (proj[..., 2:3] + PROJ_EPS)
    grid = torch.stack([2 * pix[..., 0] / (W - 1) - 1, 2 * pix[..., 1] / (H - 1) - 1], -1)
    return F.grid_sample(source, grid.to(source.dtype), mode="bilinear", padding_mode="border", align_corners=True)


def warping_loss(depth: torch.Tensor, images: torch.Tensor, intrinsics: torch.Tensor, cur_to_src: torch.Tensor, *,
                 per_source: bool, source_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Temporal photometric loss with auto-masking (§5.1), for one depth map per camera or for several at once.

    A source that does not exist (a scene's first or last keyframe, where the loader puts the current image and the
    identity in its place) is left out: its identity error would be 0 and the auto-mask's minimum would zero the
    pixel's loss — with the joint minimum, every pixel of the sample, whatever the other source says. The released
    code keeps such a duplicate; the difference is confined to the scene ends.

    Leading dims of ``depth`` (the criterion passes the stages' depths stacked) give one loss each, computed in one
    pass: the two sources are warped in one call, and the identity errors (source against target, which do not
    depend on the depth) and their tie-breaking noise are computed once and shared.

    Args:
        depth: [..., B, N, H, W] rendered depth of the current cameras (already clamped).
        images: [B, 3·N, H, W, 3] uint8: current images, the previous sweep's, the next sweep's.
        intrinsics: [B, N, 3, 3] render K.
        cur_to_src: [B, 2·N, 4, 4] current camera → previous (rows 0..N-1) / next (rows N..2N-1) sweep camera.
        per_source: released auto-mask: for each source, min(warped error, identity error), then the mean over the
            sources; otherwise (Monodepth2) the per-pixel minimum over the sources' warped and identity errors.
        source_valid: [B, 2·N] bool, whether each source exists (``Batch.source_valid``); None: all exist.

    Returns:
        [...] loss per leading index (a scalar for [B, N, H, W]): the mean over the pixels of (batch, camera) pairs
        with at least one source (and over the existing sources when ``per_source``); 0 where no camera of the batch
        has a source.
    """
    *lead, B, N, H, W = depth.shape
    L = math.prod(lead)
    imgs = images.permute(0, 1, 4, 2, 3).to(depth.dtype) / 255.0                          # [B, 3N, 3, H, W]
    target = imgs[:, :N].flatten(0, 1)                                                      # [B·N, 3, H, W]
    # both sources: [2·B·N, 3, H, W], rows j·B·N + b·N + n
    sources = imgs[:, N:].unflatten(1, (2, N)).transpose(0, 1).flatten(0, 2)
    valid = (torch.ones(B, 2 * N, dtype=torch.bool, device=depth.device) if source_valid is None
             else source_valid.to(device=depth.device, dtype=torch.bool))
    src_valid = valid.unflatten(1, (2, N)).transpose(0, 1).reshape(2, 1, B * N, 1, 1)      # [2, 1, B·N, 1, 1]
    to_src = cur_to_src.unflatten(1, (2, N)).transpose(0, 1).reshape(2, 1, B * N, 4, 4)
    K = intrinsics.reshape(1, 1, B * N, 3, 3)
    # every (source, leading index, camera) warp in one call: [2·L·B·N, ...]
    warped = warp_image(sources.view(2, 1, B * N, 3, H, W).expand(2, L, B * N, 3, H, W).flatten(0, 2),
                        depth.reshape(1, L * B * N, H, W).expand(2, -1, -1, -1).flatten(0, 1),
                        K.expand(2, L, -1, -1, -1).flatten(0, 2), to_src.expand(2, L, -1, -1, -1).flatten(0, 2))
    warped_err = photometric_error(warped, target.repeat(2 * L, 1, 1, 1)).view(2, L, B * N, H, W)
    ident = photometric_error(sources, target.repeat(2, 1, 1, 1)).view(2, 1, B * N, H, W)
    ident_err = ident + IDENTITY_NOISE * torch.randn_like(ident)
    if per_source:
        per = torch.where(src_valid, torch.minimum(warped_err, ident_err), 0.0).sum(0)   # [L, B·N, H, W]
        count = src_valid.sum() * H * W
    else:
        errors = torch.where(src_valid.repeat(2, 1, 1, 1, 1),                          # (w0, w1, i0, i1)
                             torch.cat([warped_err, ident_err.expand(2, L, -1, -1, -1)]), torch.inf)
        has_source = src_valid[0] | src_valid[1]                                        # [1, B·N, 1, 1]
        per = torch.where(has_source, errors.amin(0), 0.0)                              # [L, B·N, H, W]
        count = has_source.sum() * H * W
    return (per.flatten(1).sum(1) / count.clamp_min(1)).view(lead)


def pca_basis(features: torch.Tensor, dims: int, *, randomized: bool) -> torch.Tensor:
    """Top-``dims`` principal directions of each sample's target feature vectors, in float64 (§5.2).

    Args:
        features: [B, N, D, h, w] vision-language maps.
        dims: k.
        randomized: ``torch.pca_lowrank(q=k, niter=4)`` (released; non-deterministic) instead of the exact
            principal directions (eigenvectors of the centred vectors' D × D scatter matrix).

    Returns:
        [B, D, k] float64 orthonormal columns (no gradient).
    """
    with torch.no_grad():
        x = features.detach().to(torch.float64).movedim(2, -1).flatten(1, -2)             # [B, N·h·w, D]
        if randomized:
            return torch.stack([torch.pca_lowrank(xb, q=dims, niter=4)[2] for xb in x])
        # The principal directions are the eigenvectors of the scatter matrix xcᵀxc [D, D] (eigh: ascending order,
        # hence the flip). With M = N·h·w ≫ D (86,400 × 512 at the default size) forming it is one GEMM and the
        # eigendecomposition is D³: 1.0 s against 4.9 s for the thin SVD of xc on a CPU at that size, same subspace.
        # Squaring the condition number is harmless in float64 for the leading directions.
        xc = x - x.mean(1, keepdim=True)
        _, vectors = torch.linalg.eigh(xc.transpose(1, 2) @ xc)
        return vectors.flip(-1)[:, :, :dims]


def project_targets(features: torch.Tensor, basis: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Project the maps onto the basis (uncentred) and upsample bilinearly (align_corners=False) to ``size``.

    Args:
        features: [B, N, D, h, w].
        basis: [B, D, k] float64.
        size: (H, W) render size.

    Returns:
        [B, N, H, W, k] in the dtype of ``features``.
    """
    proj = torch.einsum("bndhw,bdk->bnkhw", features.to(torch.float64), basis).to(features.dtype)
    B, N, k, h, w = proj.shape
    up = F.interpolate(proj.reshape(B * N, k, h, w), size=size, mode="bilinear", align_corners=False)
    return up.reshape(B, N, k, *size).permute(0, 1, 3, 4, 2)


def feature_losses(pred: torch.Tensor, target: torch.Tensor, *, keep: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """MSE over every element and ``1 − mean cosine`` over pixels where both vectors are non-zero (§5.2).

    Pixels with an exactly-zero rendered (or target) vector have no defined cosine and are skipped, as the
    released ``nanmean`` does; if every pixel is skipped the cosine term is 1.

    Args:
        pred: [..., k] rendered features (uncovered pixels are 0 and count in the MSE).
        target: [..., k] projected targets, broadcast against ``pred``.
        keep: leading dims of ``pred`` that are not reduced (the criterion's stacked stages): one pair each.

    Returns:
        (mse, cos), each of shape ``pred.shape[:keep]`` (scalars for ``keep`` = 0).
    """
    mse = (pred - target).square().flatten(keep).mean(-1)
    pn, tn = pred.norm(dim=-1), target.norm(dim=-1)
    valid = (pn > 0) & (tn > 0)
    denom = torch.where(valid, pn * tn, torch.ones_like(pn))
    cos = torch.where(valid, (pred * target).sum(-1) / denom, torch.zeros_like(pn))
    return mse, 1 - cos.flatten(keep).sum(-1) / valid.flatten(keep).sum(-1).clamp_min(1)


def depth_losses(pred: torch.Tensor, target: torch.Tensor, *, keep: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """SILog and L1 of ``pred`` against the foundation depth over its valid pixels, per sample then averaged (§5.3).

    ``SILog = 10 · sqrt(mean(d²) − 0.85 · mean(d)²)``, ``d = log pred − log target``; ``L1 = mean |pred − target|``;
    the mask is ``0.1 < target < 51.2`` on the unclamped target.

    Args:
        pred: [*lead, B, ...] rendered depth (already clamped to [0.1, 80]), ``keep`` leading dims.
        target: [B, ...] foundation depth (m).
        keep: leading dims of ``pred`` that are not reduced (the criterion's stacked stages): one pair each.

    Returns:
        (silog, l1), each of shape ``pred.shape[:keep]`` (scalars for ``keep`` = 0).
    """
    lo, hi = DEPTH_TARGET_RANGE
    mask = (target > lo) & (target < hi)
    m = mask.flatten(1).to(pred.dtype)                                                      # [B, P]
    count = m.sum(1).clamp_min(1)
    safe_target = torch.where(mask, target, torch.ones_like(target))
    d = (torch.log(pred) - torch.log(safe_target)).flatten(keep + 1) * m                   # [*lead, B, P]
    mean_d = d.sum(-1) / count
    mean_d2 = d.square().sum(-1) / count
    silog = SILOG_SCALE * torch.sqrt(mean_d2 - SILOG_VARIANCE_FOCUS * mean_d.square())
    l1 = ((pred - target).abs().flatten(keep + 1) * m).sum(-1) / count
    return silog.mean(-1), l1.mean(-1)
