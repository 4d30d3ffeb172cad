"""``gs_raster`` as PyTorch ops: ``pgocc::gs_raster_fwd`` and ``pgocc::gs_raster_bwd`` (torch.library.custom_op).

    gs_raster -> pgocc::gs_raster_fwd: _gs_project_fwd_kernel -> bin_gaussians (torch.sort of the depths,
                                       _gs_bin_tile_kernel count, cumsum, _gs_bin_tile_kernel write)
                                       -> _gs_composite_fwd_kernel
    backward  -> pgocc::gs_raster_bwd: _gs_composite_bwd_kernel (atomics into dproj, dfeatures)
                                       -> _gs_project_bwd_kernel (loops over cameras, no atomics)

The forward op also returns the projection records, the tile offsets, the sorted Gaussian ids (in a buffer of the
static worst-case size, so no size is read back to the host) and per pixel the final transmittance and the list
position after the last contributor, which autograd saves for the backward op. No host sync in either op.
"""

from __future__ import annotations

import torch
import triton
from torch import Tensor

from kernels_triton._utils import INTERPRET
from kernels_triton.gs_raster._bin import bin_gaussians
from kernels_triton.gs_raster._composite import _gs_composite_bwd_kernel, _gs_composite_fwd_kernel
from kernels_triton.gs_raster._project import PROJ_STRIDE, TILE, _gs_project_bwd_kernel, _gs_project_fwd_kernel

# Block configurations, from the ptxas resource report of the AOT-compiled kernels (sm_90, triton 3.6) and an H100
# sweep (bench/test_gs_raster.py, 2026-11-23). The forward holds acc [BLOCK_P, BLOCK_C] in registers (255, no
# spill); the backward holds g [BLOCK_P, BLOCK_C] (its tf32x3 hi/lo parts in 147 KB of shared memory; 64 bytes of
# spill). All dots are tf32x3, fp32-level accuracy. Measured fwd+bwd at 20000 Gaussians: 5.9 ms as configured;
# two 64-channel programs per pixel block 8.9 ms; DOT_PRECISION "tf32" 5.2 ms and with BLOCK_P 128 3.7 ms, at
# ~3e-4 relative error on g . f_k and dfeatures (not parity-checked on a GPU, hence not the default). Under the CPU
# interpreter a program costs ~0.1 s whatever its size and dots are exact, so one program takes a whole tile and
# every channel; chunks of 16 make the tests' tile lists (up to 40 Gaussians) span three chunks, so the pipelined
# loads are exercised.
PROJECT_BLOCK = 128
if INTERPRET:
    FWD_CONFIG = {"BLOCK_P": 256, "BLOCK_G": 16, "MAX_BLOCK_C": 256, "num_warps": 4}
    BWD_CONFIG = {"BLOCK_P": 256, "BLOCK_G": 16, "MAX_BLOCK_C": 256, "num_warps": 4, "DOT_PRECISION": "tf32x3"}
else:
    FWD_CONFIG = {"BLOCK_P": 128, "BLOCK_G": 32, "MAX_BLOCK_C": 128, "num_warps": 8}
    BWD_CONFIG = {"BLOCK_P": 64, "BLOCK_G": 16, "MAX_BLOCK_C": 128, "num_warps": 8, "DOT_PRECISION": "tf32x3"}


def _channel_blocks(C: int, max_block: int) -> tuple[int, int]:
    """(number of channel blocks, BLOCK_C) for C channels; tl.dot needs BLOCK_C >= 16."""
    if C == 0:
        return 1, 16
    n = triton.cdiv(C, max_block)
    return n, max(16, triton.next_power_of_2(triton.cdiv(C, n)))


def _tiles(height: int, width: int) -> tuple[int, int]:
    return triton.cdiv(width, TILE), triton.cdiv(height, TILE)


@torch.library.custom_op("pgocc::gs_raster_fwd", mutates_args=())
def gs_raster_fwd(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, features: Tensor,
                  viewmats: Tensor, Ks: Tensor, height: int, width: int, depth_only: bool
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Forward pass; returns (features [V,H,W,C'], depth [V,H,W,1], alpha [V,H,W,1], proj [V,N,8],
    tile_start [V*tiles+1] int32, gids [V*tiles*N] int32, T_final [V,H,W] fp32, last [V,H,W] int32), C' = 0 when
    ``depth_only``; the last five are saved for the backward pass."""
    N, V = means.shape[0], viewmats.shape[0]
    C = 0 if depth_only else features.shape[1]
    tiles_x, tiles_y = _tiles(height, width)
    dev = means.device
    proj = torch.empty(V, N, PROJ_STRIDE, dtype=torch.float32, device=dev)
    rect = torch.empty(V, N, 4, dtype=torch.int32, device=dev)
    counts = torch.empty(V * N, dtype=torch.int32, device=dev)
    if N:
        _gs_project_fwd_kernel[(triton.cdiv(N, PROJECT_BLOCK), V)](
            means, quats, scales, opacities, viewmats, Ks, proj, rect, counts, N, width, height, tiles_x, tiles_y,
            BLOCK=PROJECT_BLOCK)
    tile_start, gids = bin_gaussians(proj, rect, counts, tiles_x, tiles_y)
    out_feat = torch.empty(V, height, width, C, dtype=means.dtype, device=dev)
    out_depth = torch.empty(V, height, width, 1, dtype=means.dtype, device=dev)
    out_alpha = torch.empty(V, height, width, 1, dtype=means.dtype, device=dev)
    t_final = torch.empty(V, height, width, dtype=torch.float32, device=dev)
    last = torch.empty(V, height, width, dtype=torch.int32, device=dev)
    cfg = FWD_CONFIG
    n_cblocks, block_c = _channel_blocks(C, cfg["MAX_BLOCK_C"])
    grid = (V * tiles_x * tiles_y, TILE * TILE // cfg["BLOCK_P"], n_cblocks)
    _gs_composite_fwd_kernel[grid](
        proj, gids, tile_start, features, out_feat, out_depth, out_alpha, t_final, last, N, C, height, width,
        tiles_x, tiles_x * tiles_y, BLOCK_P=cfg["BLOCK_P"], BLOCK_G=cfg["BLOCK_G"], BLOCK_C=block_c, HAS_FEAT=C > 0,
        num_warps=cfg["num_warps"])
    return out_feat, out_depth, out_alpha, proj, tile_start, gids, t_final, last


@gs_raster_fwd.register_fake
def _(means, quats, scales, opacities, features, viewmats, Ks, height, width, depth_only):
    N, V = means.shape[0], viewmats.shape[0]
    C = 0 if depth_only else features.shape[1]
    tiles_x, tiles_y = _tiles(height, width)
    return (means.new_empty(V, height, width, C), means.new_empty(V, height, width, 1),
            means.new_empty(V, height, width, 1), means.new_empty(V, N, PROJ_STRIDE, dtype=torch.float32),
            means.new_empty(V * tiles_x * tiles_y + 1, dtype=torch.int32),
            means.new_empty(V * tiles_x * tiles_y * N, dtype=torch.int32),
            means.new_empty(V, height, width, dtype=torch.float32),
            means.new_empty(V, height, width, dtype=torch.int32))


@torch.library.custom_op("pgocc::gs_raster_bwd", mutates_args=())
def gs_raster_bwd(g_feat: Tensor, g_depth: Tensor, g_alpha: Tensor, means: Tensor, quats: Tensor, scales: Tensor,
                  features: Tensor, viewmats: Tensor, Ks: Tensor, out_depth: Tensor, proj: Tensor, tile_start: Tensor,
                  gids: Tensor, t_final: Tensor, last: Tensor, height: int, width: int, depth_only: bool
                  ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Backward pass; returns the gradients of (means, quats, scales, opacities, features)."""
    N, V = means.shape[0], viewmats.shape[0]
    C = 0 if depth_only else features.shape[1]
    tiles_x, tiles_y = _tiles(height, width)
    dev = means.device
    dproj = torch.zeros(V, N, PROJ_STRIDE, dtype=torch.float32, device=dev)
    dfeat = torch.zeros(N, C, dtype=torch.float32, device=dev)
    cfg = BWD_CONFIG
    n_cblocks, block_c = _channel_blocks(C, cfg["MAX_BLOCK_C"])
    grid = (V * tiles_x * tiles_y, TILE * TILE // cfg["BLOCK_P"], n_cblocks)
    _gs_composite_bwd_kernel[grid](
        proj, gids, tile_start, features, out_depth, t_final, last, g_feat, g_depth, g_alpha, dproj, dfeat,
        N, C, height, width, tiles_x, tiles_x * tiles_y, BLOCK_P=cfg["BLOCK_P"], BLOCK_G=cfg["BLOCK_G"],
        BLOCK_C=block_c, HAS_FEAT=C > 0, DOT_PRECISION=cfg["DOT_PRECISION"], num_warps=cfg["num_warps"])
    dmeans = torch.empty_like(means)
    dquats = torch.empty_like(quats)
    dscales = torch.empty_like(scales)
    dopac = torch.empty(N, dtype=means.dtype, device=dev)
    if N:
        _gs_project_bwd_kernel[(triton.cdiv(N, PROJECT_BLOCK),)](
            means, quats, scales, viewmats, Ks, dproj, dmeans, dquats, dscales, dopac, N, V, width, height,
            BLOCK=PROJECT_BLOCK)
    dfeatures = dfeat.to(features.dtype) if C else torch.zeros_like(features)
    return dmeans, dquats, dscales, dopac, dfeatures


@gs_raster_bwd.register_fake
def _(g_feat, g_depth, g_alpha, means, quats, scales, features, viewmats, Ks, out_depth, proj, tile_start, gids,
      t_final, last, height, width, depth_only):
    return (torch.empty_like(means), torch.empty_like(quats), torch.empty_like(scales),
            means.new_empty(means.shape[0]), torch.empty_like(features))


def _setup_context(ctx, inputs, output) -> None:
    means, quats, scales, opacities, features, viewmats, Ks, height, width, depth_only = inputs
    out_feat, out_depth, out_alpha, proj, tile_start, gids, t_final, last = output
    ctx.save_for_backward(means, quats, scales, features, viewmats, Ks, out_depth, proj, tile_start, gids, t_final,
                          last)
    ctx.feat_shape = out_feat.shape
    ctx.height, ctx.width, ctx.depth_only = height, width, depth_only


def _backward(ctx, g_feat, g_depth, g_alpha, *_unused):
    means, quats, scales, features, viewmats, Ks, out_depth, proj, tile_start, gids, t_final, last = ctx.saved_tensors
    # An output that did not reach the loss has no gradient; it contributes zero.
    g_feat = out_depth.new_zeros(ctx.feat_shape) if g_feat is None else g_feat.contiguous()
    g_depth = torch.zeros_like(out_depth) if g_depth is None else g_depth.contiguous()
    g_alpha = torch.zeros_like(out_depth) if g_alpha is None else g_alpha.contiguous()
    dmeans, dquats, dscales, dopac, dfeat = gs_raster_bwd(
        g_feat, g_depth, g_alpha, means, quats, scales, features, viewmats, Ks, out_depth, proj, tile_start, gids,
        t_final, last, ctx.height, ctx.width, ctx.depth_only)
    return dmeans, dquats, dscales, dopac, dfeat, None, None, None, None, None


gs_raster_fwd.register_autograd(_backward, setup_context=_setup_context)


def gs_raster(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, features: Tensor, viewmats: Tensor,
              Ks: Tensor, height: int, width: int, depth_only: bool) -> tuple[Tensor, Tensor, Tensor]:
    """Triton Gaussian rasterizer (contract: ``pgocc.ops.gs_raster``); float32 only.

    Returns features [V, H, W, C] ([V, H, W, 0] when ``depth_only``), depth [V, H, W, 1], alpha [V, H, W, 1].
    The forward pass is deterministic; the backward pass accumulates with fp32 atomics (not bitwise reproducible).
    No host sync (the tile lists live in a buffer of static size).
    """
    if means.dtype != torch.float32:
        raise NotImplementedError(f"gs_raster/triton: float32 only, got {means.dtype}; use impl='reference'")
    out_feat, out_depth, out_alpha, *_saved = gs_raster_fwd(
        means.contiguous(), quats.contiguous(), scales.contiguous(), opacities.contiguous(), features.contiguous(),
        viewmats.contiguous(), Ks.contiguous(), height, width, depth_only)
    return out_feat, out_depth, out_alpha
