"""Rendering of a stage's Gaussians into the current cameras through the ``gs_raster`` op (docs/model.md §4).

    Gaussians (per sample) + W2C = inverse(cam2ego) + render K ─ gs_raster (op) ─ features, expected depth

The op renders one scene into V cameras, so samples are rendered one after another (a Python loop over B, no sync).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from pgocc import ops
from pgocc.config import KernelConfig
from pgocc.model.geometry import rigid_inverse
from pgocc.model.types import Gaussians


class Renderer(nn.Module):
    """Holds the resolved ``gs_raster`` implementation (no parameters)."""

    def __init__(self, kernels: KernelConfig, *, deterministic: bool = False) -> None:
        super().__init__()
        self._raster: Callable[..., tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = ops.resolve(
            "gs_raster", kernels.gs_raster, deterministic=deterministic)

    def _one(self, g: Gaussians, b: int, features: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor,
             size: tuple[int, int], depth_only: bool) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = g.means.dtype
        image, depth, _ = self._raster(g.means[b], g.quats[b], g.scales[b], g.opacities[b], features.to(dtype),
                                       viewmats[b].to(dtype), Ks[b].to(dtype), size[0], size[1], depth_only)
        return image, depth[..., 0]

    def depth(self, g: Gaussians, cam2ego: torch.Tensor, intrinsics: torch.Tensor, size: tuple[int, int]
              ) -> torch.Tensor:
        """Expected depth [B, N, H, W] of every sample's Gaussians in its N current cameras (0 where empty).

        Args:
            g: B samples' Gaussians.
            cam2ego: [B, N, 4, 4]; the render uses its inverse.
            intrinsics: [B, N, 3, 3] render K.
            size: (H, W).
        """
        viewmats = rigid_inverse(cam2ego)
        empty = g.means.new_zeros(g.num, 0)
        return torch.stack([self._one(g, b, empty, viewmats, intrinsics, size, True)[1]
                            for b in range(g.means.shape[0])])

    def features_and_depth(self, g: Gaussians, features: torch.Tensor, cam2ego: torch.Tensor,
                           intrinsics: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """Composited ``features`` [B, Q, k] → ([B, N, H, W, k], expected depth [B, N, H, W]), with gradient."""
        viewmats = rigid_inverse(cam2ego)
        outs = [self._one(g, b, features[b], viewmats, intrinsics, size, False) for b in range(g.means.shape[0])]
        return torch.stack([o[0] for o in outs]), torch.stack([o[1] for o in outs])
