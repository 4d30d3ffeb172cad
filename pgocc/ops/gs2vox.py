"""Contract of ``gs2vox``: Gaussian-to-voxel aggregation of density and density-normalised features
(docs/model.md §6.3).

Glossary: B batch, N Gaussians, K feature channels, X × Y × Z voxel grid (V = X·Y·Z), M query points.

    gs2vox(means, quats, scales, opacities, features, points=None, grid_origin=None, voxel_size=None,
           grid_dims=None, cutoff=5.0) -> (density, field)

Args:
    means: [B, N, 3] Gaussian centres (m).
    quats: [B, N, 4] rotations (w, x, y, z), any non-zero norm (normalised inside).
    scales: [B, N, 3] standard deviations along the local axes (m), > 0: Σ = R diag(s)² Rᵀ.
    opacities: [B, N] peak weights o. A Gaussian with o == 0 is absent: it contributes nothing and gets zero
        gradients (the readout filters Gaussians this way; the implementations skip them).
    features: [B, N, K] per-Gaussian features, K >= 1.
    points: [B, M, 3] query points (query mode), or None (grid mode).
    grid_origin: (x, y, z) minimum corner of the grid (m). Grid mode only; None: ``OCC3D_ORIGIN``. The released
        voxelizer's grid, shifted by -0.4 m on every axis, is ``RELEASED_ORIGIN``.
    voxel_size: voxel edge (m) > 0. Grid mode only; None: 0.4.
    grid_dims: (X, Y, Z) voxels. Grid mode only; None: (200, 200, 16).
    cutoff: Mahalanobis radius r > 0 of the support of each Gaussian; ``math.inf`` is the exact sum (every Gaussian
        then visits every point: slow).

Returns:
    density: [B, X, Y, Z] (grid mode) or [B, M] (query mode).
    field: [B, X, Y, Z, K] or [B, M, K], density-normalised features.

Semantics. Evaluation points are the voxel centres ``grid_origin + voxel_size·(i + 0.5)`` for i = (ix, iy, iz)
(axes x, y, z as in Occ3D), or the query points. With d_g(x)² = (x − μ_g)ᵀ Σ_g⁻¹ (x − μ_g) and c = exp(−r²/2):

    w_g(x) = o_g · (exp(−d_g(x)²/2) − c)   where d_g(x)² < r²,   0 elsewhere
    density(x) = Σ_g w_g(x)
    field(x) = Σ_g w_g(x) · f_g / max(density(x), 1e-6)

Subtracting the value at the radius makes w_g continuous at the cut-off, so float32 and float64 evaluations (and the
forward and backward passes) cannot disagree by a jump where d² rounds across r².

Error bound of the cut-off against the exact (untruncated) sum: for every point and Gaussian,
|w_g(x) − o_g·exp(−d²/2)| ≤ o_g·c, hence |density − exact| ≤ c·Σ_g o_g and, where both densities exceed 1e-6,
|field − exact| ≤ 2·c·Σ_g o_g·max_g |f_g| / density (summing over the Gaussians whose support reaches x). The
default r = 5 gives c = exp(−12.5) = 3.73e-6 of a Gaussian's peak: at the readout's free-space threshold (density
0.04) one Gaussian of opacity 1 changes the field by at most 1.9e-4·max|f|.

Implementations: ``reference`` (dense PyTorch, any float dtype, chunked over points), ``boxed`` (PyTorch, each
Gaussian visits only the voxels of its support's bounding box: the fast CPU readout) and ``triton`` (float32:
Gaussians binned to voxel tiles and gathered per tile, float32 accumulation, no atomics; deterministic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pgocc.ops._contract import Case, Impl, check_tensor, same_device

OCC3D_ORIGIN: tuple[float, float, float] = (-40.0, -40.0, -1.0)
"""Minimum corner of the Occ3D-nuScenes grid (m): voxel centres −39.8 + 0.4·i, z −0.8 + 0.4·k."""
RELEASED_ORIGIN: tuple[float, float, float] = (-40.4, -40.4, -1.4)
"""The released voxelizer's corner: every axis shifted by −0.4 m against Occ3D (docs/model.md §6.3, §10.7)."""
OCC3D_VOXEL_SIZE = 0.4
OCC3D_DIMS: tuple[int, int, int] = (200, 200, 16)
DEFAULT_CUTOFF = 5.0
"""Mahalanobis cut-off radius; exp(−25/2) = 3.7e-6 of the peak is dropped (module docstring)."""
DENSITY_EPS = 1e-6
"""Floor of the density in the field's normalisation (as released)."""

IMPLS: dict[str, Impl] = {
    "reference": Impl("reference.gs2vox:gs2vox", deterministic=True),
    "boxed": Impl("reference.gs2vox:gs2vox_boxed", deterministic=True),
    "triton": Impl("kernels_triton.gs2vox:gs2vox", deterministic=True),
}

CASES: dict[str, list[Case]] = {
    "cpu": [
        Case("grid_k21_mixed", {"B": 1, "N": 20, "K": 21, "grid": (10, 9, 6), "voxel": 0.4,
                                "origin": (-2.0, -1.8, -1.2)}, note="border, outside, flat, large, absent Gaussians",
             extra={"hard": True}),
        Case("grid_b2_k1_released", {"B": 2, "N": 10, "K": 1, "grid": (9, 8, 5), "voxel": 0.4,
                                     "origin": (-2.2, -2.0, -1.4)}, note="K = 1, two rows", extra={"hard": True}),
        Case("points_k21", {"B": 1, "N": 14, "K": 21, "M": 150, "region": ((-2.0, -2.0, -1.0), (2.0, 2.0, 1.4))},
             note="query-point mode", extra={"hard": True}),
        Case("grid_k3_exact", {"B": 1, "N": 5, "K": 3, "grid": (6, 5, 4), "voxel": 0.5, "origin": (-1.5, -1.2, -1.0)},
             note="no cut-off (r = inf)", extra={"cutoff": math.inf}),
    ],
    "gpu": [
        Case("grid_n1500_k21", {"B": 1, "N": 1500, "K": 21, "grid": (80, 72, 16), "voxel": 0.4,
                                "origin": (-16.0, -14.4, -1.0)}, extra={"hard": True}),
        Case("grid_b2_k1_released", {"B": 2, "N": 600, "K": 1, "grid": (48, 40, 16), "voxel": 0.4,
                                     "origin": (-10.0, -8.4, -1.4)}, extra={"hard": True}),
        Case("points_m20000_k21", {"B": 1, "N": 800, "K": 21, "M": 20000,
                                   "region": ((-10.0, -10.0, -1.0), (10.0, 10.0, 5.4))}, extra={"hard": True}),
        Case("grid_k80", {"B": 1, "N": 300, "K": 80, "grid": (40, 40, 16), "voxel": 0.4,
                          "origin": (-8.0, -8.0, -1.0)}, note="K above one channel chunk"),
    ],
    "bench": [
        Case("occ3d_6000_k21", {"B": 1, "N": 6000, "K": 21, "grid": OCC3D_DIMS, "voxel": OCC3D_VOXEL_SIZE,
                                "origin": OCC3D_ORIGIN},
             note="readout at default size: scales log-uniform in [0.1, 1.6] m, means over the grid"),
    ],
}

_FLOATS = (torch.float32, torch.float64)


def grid_spec(points: torch.Tensor | None, grid_origin: Sequence[float] | None, voxel_size: float | None,
              grid_dims: Sequence[int] | None) -> tuple[tuple[float, float, float], float, tuple[int, int, int]] | None:
    """(origin, voxel size, dims) with the Occ3D defaults filled in, or None in query mode."""
    if points is not None:
        return None
    origin = OCC3D_ORIGIN if grid_origin is None else tuple(float(v) for v in grid_origin)
    size = OCC3D_VOXEL_SIZE if voxel_size is None else float(voxel_size)
    dims = OCC3D_DIMS if grid_dims is None else tuple(int(v) for v in grid_dims)
    return origin, size, dims  # type: ignore[return-value]


def validate(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
             features: torch.Tensor, points: torch.Tensor | None = None, grid_origin: Sequence[float] | None = None,
             voxel_size: float | None = None, grid_dims: Sequence[int] | None = None,
             cutoff: float = DEFAULT_CUTOFF) -> None:
    """Check metadata and the grid arguments; raises ValueError naming the argument."""
    dims: dict[str, int] = {}
    check_tensor("gs2vox", "means", means, ("B", "N", 3), dtypes=_FLOATS, dims=dims)
    device = same_device("gs2vox", means=means, quats=quats, scales=scales, opacities=opacities, features=features,
                         **({} if points is None else {"points": points}))
    for name, t, shape in (("quats", quats, ("B", "N", 4)), ("scales", scales, ("B", "N", 3)),
                           ("opacities", opacities, ("B", "N")), ("features", features, ("B", "N", "K"))):
        check_tensor("gs2vox", name, t, shape, dtypes=(means.dtype,), device=device, dims=dims)
    if features.shape[2] == 0:
        raise ValueError("gs2vox: features must have K >= 1 channels, got shape "
                         f"{tuple(features.shape)}")
    if points is not None:
        check_tensor("gs2vox", "points", points, ("B", "M", 3), dtypes=(means.dtype,), device=device, dims=dims)
        given = [n for n, v in (("grid_origin", grid_origin), ("voxel_size", voxel_size), ("grid_dims", grid_dims))
                 if v is not None]
        if given:
            raise ValueError(f"gs2vox: {', '.join(given)} only apply in grid mode (points=None), but points were "
                             f"given")
    else:
        if grid_origin is not None and (len(grid_origin) != 3 or not all(math.isfinite(float(v))
                                                                         for v in grid_origin)):
            raise ValueError(f"gs2vox: grid_origin must be 3 finite numbers (x, y, z), got {grid_origin!r}")
        if voxel_size is not None and not (isinstance(voxel_size, (int, float)) and 0 < voxel_size < math.inf):
            raise ValueError(f"gs2vox: voxel_size must be a finite number > 0, got {voxel_size!r}")
        if grid_dims is not None and (len(grid_dims) != 3 or not all(isinstance(v, int) and not isinstance(v, bool)
                                                                     and v > 0 for v in grid_dims)):
            raise ValueError(f"gs2vox: grid_dims must be 3 ints > 0 (X, Y, Z), got {grid_dims!r}")
    if not isinstance(cutoff, (int, float)) or isinstance(cutoff, bool) or not cutoff > 0:
        raise ValueError(f"gs2vox: cutoff must be a number > 0 (math.inf for no cut-off), got {cutoff!r}")


def make_inputs(case: Case, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                seed: int = 0) -> dict:
    """Random Gaussians over the case's region (drawn in float64, then cast, so every dtype sees the same values).

    Means spread 10 % beyond the region on each side (some Gaussians outside, reaching in); scales log-uniform in
    [0.5, 4] voxels (bench: [0.1, 1.6] m); unnormalised random quaternions; opacities in (0.05, 1); features
    standard normal. ``extra["hard"]`` replaces the first Gaussians by a mean exactly on the grid's corner, one
    outside it, a very flat one (scale 0.005 m), a very large one (scale half the region) and an absent one
    (opacity 0).
    """
    g = torch.Generator().manual_seed(seed)
    d = case.dims
    B, N, K = d["B"], d["N"], d["K"]
    f64 = torch.float64
    if "grid" in d:
        lo = torch.tensor(d["origin"], dtype=f64)
        hi = lo + d["voxel"] * torch.tensor(d["grid"], dtype=f64)
        smin, smax = (0.1, 1.6) if case.id.startswith("occ3d") else (0.5 * d["voxel"], 4 * d["voxel"])
    else:
        lo, hi = (torch.tensor(v, dtype=f64) for v in d["region"])
        smin, smax = 0.2, 1.6
    span = hi - lo

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=g, dtype=f64)

    means = lo - 0.1 * span + 1.2 * span * uniform(B, N, 3)
    scales = smin * (smax / smin) ** uniform(B, N, 3)
    quats = torch.randn(B, N, 4, generator=g, dtype=f64)
    opacities = 0.05 + 0.95 * uniform(B, N)
    features = torch.randn(B, N, K, generator=g, dtype=f64)
    if case.extra.get("hard") and N >= 5:
        means[:, 0] = lo
        means[:, 1] = hi + 0.5 * smax
        scales[:, 2] = torch.tensor([1.0, 0.7, 0.005], dtype=f64)
        scales[:, 3] = 0.5 * span.min()
        opacities[:, 4] = 0.0
    out = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "features": features}
    out = {k: v.to(device=device, dtype=dtype) for k, v in out.items()}
    if "grid" in d:
        out.update(points=None, grid_origin=tuple(d["origin"]), voxel_size=d["voxel"], grid_dims=tuple(d["grid"]))
    else:
        out["points"] = (lo + span * uniform(B, d["M"], 3)).to(device=device, dtype=dtype)
    out["cutoff"] = case.extra.get("cutoff", DEFAULT_CUTOFF)
    return out


def bytes_moved(case: Case, dtype: torch.dtype) -> int:
    """Minimal DRAM traffic of the forward: read the Gaussians once, write density and field once."""
    d = case.dims
    points = math.prod(d["grid"]) if "grid" in d else d["M"]
    item = torch.finfo(dtype).bits // 8
    return d["B"] * item * (d["N"] * (3 + 4 + 3 + 1 + d["K"]) + points * (1 + d["K"]) + (0 if "grid" in d
                                                                                         else 3 * points))
