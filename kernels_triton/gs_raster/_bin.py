"""Tile binning: one (tile, depth) key per Gaussian-tile intersection, sorted with torch.sort.

Key = (camera * tiles_y * tiles_x + tile) << 32 | float32 bits of the depth. Depths of binned Gaussians are
>= the near plane, hence positive, and positive floats order like their bit patterns; so one sort of the int64
keys groups the intersections by tile and orders each tile's list front to back. The intersections are written
in (camera, Gaussian) order and the sort is stable, so equal depths keep the lower Gaussian index first, as in
the reference.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels_triton.gs_raster._project import PROJ_STRIDE, TILE

EMIT_BLOCK = 128


@triton.jit
def _gs_bin_emit_kernel(proj_ptr, rect_ptr, count_ptr, end_ptr, keys_ptr, gids_ptr, N, total_rows, tiles_x, tiles_y,
                        BLOCK: tl.constexpr):
    row = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = row < total_rows
    row64 = row.to(tl.int64)
    count = tl.load(count_ptr + row64, mask=m, other=0)
    end = tl.load(end_ptr + row64, mask=m, other=0)
    tx0 = tl.load(rect_ptr + row64 * 4 + 0, mask=m, other=0)
    ty0 = tl.load(rect_ptr + row64 * 4 + 1, mask=m, other=0)
    width = tl.maximum(tl.load(rect_ptr + row64 * 4 + 2, mask=m, other=0) - tx0 + 1, 1)
    depth = tl.load(proj_ptr + row64 * PROJ_STRIDE + 5, mask=m, other=1.0)
    start = end - count
    cam = row // N
    gid = row - cam * N
    zbits = depth.to(tl.int32, bitcast=True).to(tl.int64)
    # Each lane walks its own rectangle row by row; the loop runs to the block's largest count.
    for i in range(0, tl.max(count)):
        ok = i < count
        tile = (cam * tiles_y + ty0 + i // width) * tiles_x + tx0 + i % width
        key = (tile.to(tl.int64) << 32) | zbits
        tl.store(keys_ptr + start + i, key, mask=ok)
        tl.store(gids_ptr + start + i, gid, mask=ok)


def bin_gaussians(proj: torch.Tensor, rect: torch.Tensor, counts: torch.Tensor, tiles_x: int, tiles_y: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sorted per-tile Gaussian lists.

    Args:
        proj: [V, N, 8] projection records (depth in column 5).
        rect: [V, N, 4] int32 tile rectangle (x0, y0, x1, y1), inclusive.
        counts: [V * N] int32 tiles per (camera, Gaussian); 0 for dropped ones.
        tiles_x, tiles_y: tiles per image row / column.

    Returns:
        tile_start [V * tiles_y * tiles_x + 1] int32 (tile t's list is gids[tile_start[t]:tile_start[t + 1]]) and
        gids [I] int32 Gaussian indices, I the number of intersections.

    Reads the intersection count back to the host once (it sizes the key buffer): the op's one sync point.
    """
    V, N = proj.shape[0], proj.shape[1]
    n_tiles = V * tiles_y * tiles_x
    device = proj.device
    ends = torch.cumsum(counts, 0)
    total = int(ends[-1]) if ends.numel() else 0
    keys = torch.empty(total, dtype=torch.int64, device=device)
    ids = torch.empty(total, dtype=torch.int32, device=device)
    if total:
        grid = (triton.cdiv(V * N, EMIT_BLOCK),)
        _gs_bin_emit_kernel[grid](proj, rect, counts, ends, keys, ids, N, V * N, tiles_x, tiles_y, BLOCK=EMIT_BLOCK)
    sorted_keys, order = torch.sort(keys, stable=True)
    gids = ids[order]
    bounds = torch.arange(0, (n_tiles + 1) << 32, 1 << 32, dtype=torch.int64, device=device)
    tile_start = torch.searchsorted(sorted_keys, bounds, out_int32=True)
    return tile_start, gids


__all__ = ["TILE", "bin_gaussians"]
