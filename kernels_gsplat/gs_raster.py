"""``gs_raster`` through gsplat (the peer backend, CUDA only): a thin adapter over ``gsplat.rasterization``.

The call is the one docs/model.md §4 describes (``packed=False``, classic mode, the contract's near plane, eps2d and
tile edge, no background, ``channel_chunk`` 32), with ``render_mode="RGB+ED"`` (or ``"ED"`` when ``depth_only``).
gsplat is imported on first call, so the registry can list this implementation where gsplat is absent; on its first
CUDA call gsplat JIT-compiles its extension (about a minute). Its backward pass uses atomics: not deterministic.
"""

from __future__ import annotations

import torch

from pgocc.ops.gs_raster import EPS2D, NEAR_PLANE, TILE


def gs_raster(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
              features: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, height: int, width: int,
              depth_only: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Contract ``pgocc.ops.gs_raster`` (float32, CUDA): features [V, H, W, C] ([V, H, W, 0] when ``depth_only``),
    depth [V, H, W, 1], alpha [V, H, W, 1].

    Raises:
        RuntimeError: the tensors are not on a CUDA device (gsplat has no CPU rasterizer), or gsplat is missing.
        NotImplementedError: a dtype other than float32.
    """
    if means.device.type != "cuda":
        raise RuntimeError(f"gs_raster/gsplat: gsplat rasterizes on CUDA only, but the inputs are on {means.device}; "
                           "use impl='triton' or impl='reference' there")
    if means.dtype != torch.float32:
        raise NotImplementedError(f"gs_raster/gsplat: float32 only, got {means.dtype}; use impl='reference'")
    try:
        from gsplat import rasterization
    except ImportError as err:
        raise RuntimeError("gs_raster/gsplat: the gsplat package is not installed (pip install 'pgocc[gsplat]', "
                           "gsplat==1.5.3)") from err
    V, C = viewmats.shape[0], features.shape[1]
    render, alpha, _ = rasterization(
        means, quats, scales, opacities, features, viewmats, Ks, width, height,
        near_plane=NEAR_PLANE, eps2d=EPS2D, packed=False, tile_size=TILE, rasterize_mode="classic", channel_chunk=32,
        render_mode="ED" if depth_only else "RGB+ED")
    if depth_only:
        return render.new_zeros(V, height, width, 0), render, alpha
    return render[..., :C], render[..., C:], alpha
