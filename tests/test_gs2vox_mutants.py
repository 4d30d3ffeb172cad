"""reference.gs2vox on hand-built float64 scenes against a per-pair sum written out here, with tolerances far below
any lost or double-counted (voxel, Gaussian) pair.

The parity tests compare a float32 implementation with the float64 reference at float32 tolerances, and use the
default cut-off r = 5, where a pair near the edge of a Gaussian's support weighs o·(e^(−d²/2) − e^(−12.5)) ≲ 1e-5:
a bounding box one voxel too small in ``gs2vox_boxed`` (which loses only such pairs) passed them. Here the cut-off is
r = 2, where the pairs at the edge of the support weigh up to a few percent of the peak, the Gaussians are a voxel or
two across, several cross the grid's faces (the clamps of the box), one lies outside the grid, one is absent, and
the two samples differ. Mutation testing (tests/README.md) found these gaps.

The expectation never calls the code under test: each rotation is built as Rz(a)·Rx(b) from its matrices and its
quaternion as the Hamilton product of the two half-angle quaternions, and the sum runs over every voxel centre and
every Gaussian in plain Python.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import pytest
import torch

import reference.gs2vox as ref_gs2vox
from reference.gs2vox import gs2vox, gs2vox_boxed

GRIDS = (((-1.0, -0.8, -0.6), 0.2), ((2.0, 1.0, 3.0), 3.0))
"""(origin, voxel size): the tests' kind of grid, and one with a positive origin and voxels (and Gaussians) larger
than a metre, where a box computed with ``+ corner`` or ``· size`` for ``/ size`` (or an extent with 1/s for s)
comes out smaller instead of larger."""
DIMS = (9, 8, 6)
CUTOFF = 2.0
K = 3
TANGENT = 1e-7
"""The tangent Gaussian's voxel lies at d = r·(1 − TANGENT): inside the support by a weight of about
o·e^(−r²/2)·r²·TANGENT (5e-8), but within TANGENT·extent of its bounding box's face."""

Scene = list[tuple[tuple[float, float, float], tuple[float, float], tuple[float, float, float], float,
                   tuple[float, float, float]]]
"""Gaussians as (mean, (a, b) of the rotation Rz(a)·Rx(b), scales, opacity, features), the mean and the scales in
voxels from the grid's origin (metres = origin + size·mean, size·scales)."""

Impl = Callable[..., tuple[torch.Tensor, torch.Tensor]]
"""``gs2vox`` or ``gs2vox_boxed``."""

SCENES: tuple[Scene, Scene] = (
    [
        ((5.15, 3.65, 3.55), (0.7, 0.4), (0.75, 0.4, 1.1), 0.9, (1.0, -2.0, 0.5)),      # inside, rotated
        ((-0.1, 0.15, 0.1), (0.0, 0.0), (0.6, 0.5, 0.45), 0.8, (0.5, 3.0, -1.0)),       # across the lower corner
        ((8.75, 7.85, 5.85), (-1.1, 0.3), (0.55, 0.65, 0.5), 0.7, (-1.5, 0.25, 2.0)),   # across the upper corner
        ((17.5, 4.0, 3.0), (0.0, 0.0), (0.5, 0.5, 0.5), 0.95, (9.0, 9.0, 9.0)),         # outside (above x)
        ((5.0, -4.0, 3.0), (0.0, 0.0), (0.5, 0.5, 0.5), 0.95, (9.0, 9.0, 9.0)),         # outside (below y)
        ((6.5, 5.0, 2.0), (0.2, 0.1), (1.5, 1.5, 1.5), 0.0, (7.0, 7.0, 7.0)),           # absent (opacity 0)
        ((3.0, 5.75, 4.5), (2.1, -0.9), (1.75, 0.45, 0.85), 0.6, (2.0, 1.0, -0.5)),     # elongated, rotated
    ],
    [
        ((6.55, 5.45, 2.4), (-0.5, 1.2), (0.45, 1.05, 0.65), 0.85, (-1.0, 0.5, 1.5)),
        ((0.25, 7.1, 5.75), (1.3, 0.0), (0.7, 0.35, 0.8), 0.75, (3.0, -0.5, 0.0)),      # across three faces
        ((7.75, -0.05, 1.5), (0.0, 0.8), (0.5, 0.6, 1.0), 0.65, (0.25, 2.0, 1.0)),      # across the y = lo face
        # axis-aligned, its +x tangent point at voxel (4, 3, 2)'s centre less r·s_x·TANGENT
        ((4.5 - CUTOFF * 0.75 * (1 - TANGENT), 3.5, 2.5), (0.0, 0.0), (0.75, 0.6, 0.45), 0.9, (1.0, 1.0, 1.0)),
    ],
)


def _rotation(a: float, b: float) -> tuple[list[list[float]], tuple[float, float, float, float]]:
    """Rz(a)·Rx(b) written out, and its unit quaternion (cos a/2, 0, 0, sin a/2) ⊗ (cos b/2, sin b/2, 0, 0)."""
    ca, sa, cb, sb = math.cos(a), math.sin(a), math.cos(b), math.sin(b)
    rz = [[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]]
    rx = [[1.0, 0.0, 0.0], [0.0, cb, -sb], [0.0, sb, cb]]
    rot = [[sum(rz[i][k] * rx[k][j] for k in range(3)) for j in range(3)] for i in range(3)]
    cz, sz, cx, sx = math.cos(a / 2), math.sin(a / 2), math.cos(b / 2), math.sin(b / 2)
    return rot, (cz * cx, cz * sx, sz * sx, sz * cx)


def _metric(scene: Scene, origin: tuple[float, float, float], size: float) -> Scene:
    """The scene in metres on the grid (origin, size)."""
    return [(tuple(o + size * m for o, m in zip(origin, mean, strict=True)), rot, tuple(size * v for v in scales),
             opacity, feat) for mean, rot, scales, opacity, feat in scene]  # type: ignore[misc]


def _inputs(scenes: list[Scene]) -> dict[str, torch.Tensor]:
    """Batched float64 inputs of the scenes, padded with absent Gaussians to equal counts."""
    n = max(len(s) for s in scenes)
    pad = ((0.0, 0.0, 0.0), (0.0, 0.0), (0.1, 0.1, 0.1), 0.0, (0.0,) * K)
    scenes = [s + [pad] * (n - len(s)) for s in scenes]  # type: ignore[list-item]
    t = torch.float64
    return {"means": torch.tensor([[g[0] for g in s] for s in scenes], dtype=t),
            "quats": torch.tensor([[_rotation(*g[1])[1] for g in s] for s in scenes], dtype=t),
            "scales": torch.tensor([[g[2] for g in s] for s in scenes], dtype=t),
            "opacities": torch.tensor([[g[3] for g in s] for s in scenes], dtype=t),
            "features": torch.tensor([[g[4] for g in s] for s in scenes], dtype=t)}


def _by_hand(scene: Scene, origin: tuple[float, float, float], size: float, cutoff: float
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Density [X, Y, Z] and unnormalised feature sum [X, Y, Z, K] of a metric scene: Σ_g o_g (e^(−d²/2) − e^(−r²/2))
    over d² < r², d² = Σ_j ((x − μ)·R[:, j] / s_j)², at every voxel centre x = origin + size·(i + ½)."""
    density = torch.zeros(*DIMS, dtype=torch.float64)
    sums = torch.zeros(*DIMS, K, dtype=torch.float64)
    tail = math.exp(-0.5 * cutoff * cutoff)
    rots = [_rotation(*g[1])[0] for g in scene]
    for idx in itertools.product(*(range(n) for n in DIMS)):
        x = [origin[a] + size * (idx[a] + 0.5) for a in range(3)]
        for (mean, _, scales, o, feat), rot in zip(scene, rots, strict=True):
            delta = [x[a] - mean[a] for a in range(3)]
            d2 = sum((sum(delta[a] * rot[a][c] for a in range(3)) / scales[c]) ** 2 for c in range(3))
            if o != 0 and d2 < cutoff * cutoff:
                w = o * (math.exp(-0.5 * d2) - tail)
                density[idx] += w
                sums[idx] += torch.tensor(feat, dtype=torch.float64) * w
    return density, sums


def _check(fn: Impl, cutoff: float, scenes_in_voxels: tuple[Scene, ...] = SCENES) -> None:
    """``fn`` on both grids against the per-pair sum: density to 1e-12 relative (1e-14 absolute), field too."""
    for origin, size in GRIDS:
        scenes = [_metric(s, origin, size) for s in scenes_in_voxels]
        density, field = fn(**_inputs(scenes), grid_origin=origin, voxel_size=size, grid_dims=DIMS, cutoff=cutoff)
        parts = [_by_hand(s, origin, size, cutoff) for s in scenes]
        want_density = torch.stack([p[0] for p in parts])
        want_field = torch.stack([p[1] for p in parts]) / want_density.clamp_min(1e-6)[..., None]
        # The scenes reach the faces they were built to reach (else the test would not see a clamp).
        if scenes_in_voxels is SCENES:
            assert float(want_density[0, 0, 0, 0]) > 1e-2 and float(want_density[0, -1, -1, -1]) > 1e-2
            assert float(want_density[1, :, 0].max()) > 1e-2 and float(want_density[1, 0, :, -1].max()) > 1e-2
        torch.testing.assert_close(density, want_density, rtol=1e-12, atol=1e-14, msg=f"density, grid {size}")
        torch.testing.assert_close(field, want_field, rtol=1e-10, atol=1e-12, msg=f"field, grid {size}")


@pytest.mark.parametrize("impl", [gs2vox_boxed, gs2vox], ids=["boxed", "dense"])
def test_pair_sum_by_hand_with_a_small_cutoff(impl: Impl) -> None:
    """Every (voxel, Gaussian) pair inside the r = 2 support counts once, outside none. Catches a bounding box of
    ``gs2vox_boxed`` short on any side (``lo``, ``hi``, their ±½, ``+ corner``, ``· size``, an extent from 1/s or
    shrunk by its 1e-6 margin, the clamps to the grid), a box visited at the wrong voxel (its flat index or its
    x/y/z decomposition), and the wrong sample's Gaussians."""
    _check(impl, CUTOFF)


@pytest.mark.parametrize(("impl", "pairs"), [(gs2vox_boxed, 40 * (3 + K)), (gs2vox, 2 * 2 * 7)],
                         ids=["boxed", "dense"])
def test_pair_sum_by_hand_in_many_chunks(impl: Impl, pairs: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same with ``PAIRS_PER_CHUNK`` so small that the dense reference splits the 432 points into chunks of 2
    (B·N = 14 Gaussians) and ``gs2vox_boxed`` splits each sample's Gaussians into groups of at most 40 pairs (a
    larger one alone). The released chunk (8 M pairs) never splits the tests' scenes, so a Gaussian skipped or
    counted twice at a group boundary, a chunk split along the coordinate axis or the chunks concatenated along the
    wrong one went unseen. K = 3 channels: ``3 − K`` for ``3 + K`` in the group size divides by zero."""
    monkeypatch.setattr(ref_gs2vox, "PAIRS_PER_CHUNK", pairs)
    _check(impl, CUTOFF)


@pytest.mark.parametrize("impl", [gs2vox_boxed, gs2vox], ids=["boxed", "dense"])
def test_more_samples_than_gaussians(impl: Impl) -> None:
    """B = 2 samples of one Gaussian each: the dense reference's chunk of points is PAIRS_PER_CHUNK // (B·N), which
    a ``B / N`` slip turns into a float that ``split`` refuses (only when B > N; the other tests have N ≥ B)."""
    _check(impl, CUTOFF, ([SCENES[0][0]], [SCENES[1][0]]))


def test_boxed_with_the_default_cutoff() -> None:
    """At the default r = 5 (the readout's): the boxed sum equals the per-pair sum to float64 rounding, where the
    float32 parity tolerance could not see the pairs near the cut-off (weights of order 1e-5)."""
    origin, size = GRIDS[0]
    scenes = [_metric(s, origin, size) for s in SCENES]
    density, _ = gs2vox_boxed(**_inputs(scenes), grid_origin=origin, voxel_size=size, grid_dims=DIMS)
    want = torch.stack([_by_hand(s, origin, size, 5.0)[0] for s in scenes])
    torch.testing.assert_close(density, want, rtol=1e-12, atol=1e-14)
