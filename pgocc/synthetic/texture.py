"""A tiling value-noise texture: drawn once per scene, looked up bilinearly by the renderer."""

from __future__ import annotations

import numpy as np

TEXTURE_SIZE = 256
"""Texels per side (a power of two, so texel coordinates wrap with a mask)."""
_OCTAVES = ((8, 1.0), (16, 0.6), (32, 0.4), (64, 0.25), (128, 0.15))
"""(grid cells per side, weight) of the noise octaves: coarse blotches with finer detail on top."""


def value_noise(rng: np.random.Generator, n: int = TEXTURE_SIZE) -> np.ndarray:
    """[n, n] float32 in [0, 1]: octaves of bilinearly upsampled random grids, tiling."""
    out = np.zeros((n, n), np.float64)
    total = 0.0
    for cells, weight in _OCTAVES:
        grid = rng.random((cells, cells))
        x = np.arange(n) * cells / n
        i0 = np.floor(x).astype(int)
        f = x - i0
        i1 = (i0 + 1) % cells
        rows = grid[i0] * (1 - f)[:, None] + grid[i1] * f[:, None]
        out += weight * (rows[:, i0] * (1 - f)[None] + rows[:, i1] * f[None])
        total += weight
    out /= total
    return ((out - out.min()) / (out.max() - out.min())).astype(np.float32)


def sample_texture(texture: np.ndarray, p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Bilinear lookup of the tiling ``texture`` [n, n] at texel coordinates (p, q) (float32, same shape as p)."""
    n = texture.shape[0]
    p0, q0 = np.floor(p), np.floor(q)
    fp, fq = (p - p0).astype(np.float32), (q - q0).astype(np.float32)
    i0, j0 = p0.astype(np.int64) & (n - 1), q0.astype(np.int64) & (n - 1)
    i1, j1 = (i0 + 1) & (n - 1), (j0 + 1) & (n - 1)
    tx = texture.reshape(-1)
    top = tx[i0 * n + j0] * (1 - fq) + tx[i0 * n + j1] * fq
    bot = tx[i1 * n + j0] * (1 - fq) + tx[i1 * n + j1] * fq
    return top * (1 - fp) + bot * fp
