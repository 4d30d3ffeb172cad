"""pgocc.model.geometry's helpers against values written out here: the Hamilton rotation q v q* for the model's own
``quat_to_rotmat`` (tests/test_reference_math.py checks only reference._math's copy), the pinhole back-projection
with a non-square, off-centre K, rigid transforms and their inverse with leading dimensions, and the box tests at
their faces. Mutation testing (tests/README.md) found these gaps.
"""

from __future__ import annotations

import math

import torch

from pgocc.model.checks import Checks
from pgocc.model.geometry import (
    backproject,
    inside_range,
    normalize_coords,
    pixel_grid,
    quat_to_rotmat,
    rigid_inverse,
    transform_points,
)

F64 = torch.float64


def _hamilton(p: list[float], q: list[float]) -> list[float]:
    """The quaternion product p q, (w, x, y, z) written out."""
    pw, px, py, pz = p
    qw, qx, qy, qz = q
    return [pw * qw - px * qx - py * qy - pz * qz, pw * qx + px * qw + py * qz - pz * qy,
            pw * qy - px * qz + py * qw + pz * qx, pw * qz + px * qy - py * qx + pz * qw]


def _rotate(q: list[float], v: list[float]) -> list[float]:
    """q v q* for a unit quaternion q."""
    conj = [q[0], -q[1], -q[2], -q[3]]
    return _hamilton(_hamilton(q, [0.0, *v]), conj)[1:]


def _rigid(a: float, b: float, t: tuple[float, float, float]) -> torch.Tensor:
    """The 4×4 [Rz(a)·Ry(b), t; 0, 1] written out."""
    ca, sa, cb, sb = math.cos(a), math.sin(a), math.cos(b), math.sin(b)
    rz = torch.tensor([[ca, -sa, 0.0], [sa, ca, 0.0], [0.0, 0.0, 1.0]], dtype=F64)
    ry = torch.tensor([[cb, 0.0, sb], [0.0, 1.0, 0.0], [-sb, 0.0, cb]], dtype=F64)
    m = torch.eye(4, dtype=F64)
    m[:3, :3] = rz @ ry
    m[:3, 3] = torch.tensor(t, dtype=F64)
    return m


def test_quat_to_rotmat_is_the_hamilton_rotation() -> None:
    """Each column j of R(q) is q e_j q*, for unit quaternions with every component non-zero and different, in a
    [2, 3, 4] batch (so that the last axis, not another, holds (w, x, y, z)). Catches any sign, product or index slip
    among the nine entries."""
    raw = [[0.9, 0.2, -0.3, 0.25], [0.1, -0.7, 0.4, 0.5], [-0.35, 0.6, 0.15, -0.65],
           [0.5, 0.5, -0.45, 0.55], [0.3, -0.2, -0.8, 0.45], [0.7, 0.35, 0.25, -0.55]]
    units = [[c / math.sqrt(sum(v * v for v in q)) for c in q] for q in raw]
    got = quat_to_rotmat(torch.tensor(units, dtype=F64).reshape(2, 3, 4)).reshape(6, 3, 3)
    for q, rot in zip(units, got, strict=True):
        want = torch.tensor([_rotate(q, e) for e in ([1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0])], dtype=F64).T
        torch.testing.assert_close(rot, want, rtol=0, atol=1e-14)


def test_pixel_grid_is_column_row_one() -> None:
    """(u, v, 1) at integer pixels, u the column, on a non-square 2 × 3 grid."""
    grid = pixel_grid(2, 3, device=torch.device("cpu"), dtype=F64)
    want = [[[0, 0, 1], [1, 0, 1], [2, 0, 1]], [[0, 1, 1], [1, 1, 1], [2, 1, 1]]]
    assert grid.dtype == F64 and grid.tolist() == want


def test_backproject_by_hand() -> None:
    """depth · K⁻¹ (u, v, 1) with fx ≠ fy and an off-centre principal point, written out as
    (depth·(u − cx)/fx, depth·(v − cy)/fy, depth), on a 2 × 3 image per camera of a [2] batch (different K)."""
    ks = torch.tensor([[[200.0, 0, 1.5], [0, 100.0, 0.25], [0, 0, 1]],
                       [[50.0, 0, -2.0], [0, 80.0, 3.0], [0, 0, 1]]], dtype=F64)
    depth = torch.tensor([[[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], [[0.5, 1.5, 2.5], [3.5, 4.5, 5.5]]], dtype=F64)
    checks = Checks()
    pts = backproject(depth, ks, checks)
    assert pts.shape == (2, 2, 3, 3)
    for n in range(2):
        fx, fy, cx, cy = (float(ks[n, 0, 0]), float(ks[n, 1, 1]), float(ks[n, 0, 2]), float(ks[n, 1, 2]))
        for v in range(2):
            for u in range(3):
                d = float(depth[n, v, u])
                want = torch.tensor([d * (u - cx) / fx, d * (v - cy) / fy, d], dtype=F64)
                torch.testing.assert_close(pts[n, v, u], want, rtol=1e-14, atol=1e-14)


def test_transform_points_with_leading_and_point_dims() -> None:
    """R p + t for 4×4 transforms [2, 3] applied to points [2, 3, 2, 5, 3] (two point dims), each sample and camera
    its own transform, against a per-point loop."""
    mats = torch.stack([torch.stack([_rigid(0.3 * i + 0.1 * j, 0.2 * j - 0.4 * i, (i + 0.5, -j, 2.0 * i - j))
                                     for j in range(3)]) for i in range(2)])
    mats[1, 2, :3, :3] *= 1.5                       # an affine (scaled) one: the formula, not only rotations
    pts = torch.linspace(-3.0, 4.0, 2 * 3 * 2 * 5 * 3, dtype=F64).reshape(2, 3, 2, 5, 3)
    got = transform_points(mats, pts)
    assert got.shape == pts.shape
    for i in range(2):
        for j in range(3):
            for a in range(2):
                for b in range(5):
                    p = pts[i, j, a, b]
                    want = [sum(float(mats[i, j, r, c]) * float(p[c]) for c in range(3)) + float(mats[i, j, r, 3])
                            for r in range(3)]
                    torch.testing.assert_close(got[i, j, a, b], torch.tensor(want, dtype=F64), rtol=1e-14,
                                               atol=1e-14)


def test_rigid_inverse_is_rt_minus_rt_t() -> None:
    """[Rᵀ, −Rᵀt; 0 0 0 1] for a [2, 2] batch of rigid transforms: the product with the original is the identity
    both ways, and the bottom row is exactly (0, 0, 0, 1); the same for a [2] batch and a single matrix."""
    mats = torch.stack([torch.stack([_rigid(0.7 * i - 0.2 * j, 0.5 * j + 0.1, (1.0 + i, -2.0 * j, 0.5))
                                     for j in range(2)]) for i in range(2)])
    inv = rigid_inverse(mats)
    eye = torch.eye(4, dtype=F64).expand(2, 2, 4, 4)
    torch.testing.assert_close(inv @ mats, eye, rtol=0, atol=1e-14)
    torch.testing.assert_close(mats @ inv, eye, rtol=0, atol=1e-14)
    assert inv[..., 3, :].tolist() == [[[0.0, 0.0, 0.0, 1.0]] * 2] * 2
    for i in range(2):
        for j in range(2):
            r, t = mats[i, j, :3, :3], mats[i, j, :3, 3]
            torch.testing.assert_close(inv[i, j, :3, 3], -(r.T @ t), rtol=0, atol=1e-14)
    # "[..., 4, 4]": one leading dim and none as well (``transpose(-1, +2)`` is the same axes only on 4-D input)
    for m in (mats[0], mats[1, 1]):
        torch.testing.assert_close(rigid_inverse(m) @ m, torch.eye(4, dtype=F64).expand_as(m), rtol=0, atol=1e-14)


def test_normalize_coords_non_cubic_range() -> None:
    """(p − lo) / (hi − lo) per axis on a range with three different extents and a non-zero lower corner."""
    pc = (-2.0, 1.0, -0.5, 6.0, 3.0, 0.5)
    pts = torch.tensor([[[-2.0, 1.0, -0.5], [6.0, 3.0, 0.5], [0.0, 2.5, 0.0], [10.0, 0.0, 1.5]]], dtype=F64)
    want = [[[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.25, 0.75, 0.5], [1.5, -0.5, 2.0]]]
    torch.testing.assert_close(normalize_coords(pts, pc), torch.tensor(want, dtype=F64), rtol=0, atol=1e-15)


def test_inside_range_at_the_faces() -> None:
    """The closed box holds its faces and corners, the open box does not; a point outside along one axis only is
    outside both (every axis counts)."""
    lo, hi = (-1.0, 0.0, 2.0), (1.0, 4.0, 3.0)
    pts = torch.tensor([[0.0, 2.0, 2.5],            # inside
                        [-1.0, 2.0, 2.5],           # on the lower x face
                        [0.0, 4.0, 2.5],            # on the upper y face
                        [1.0, 4.0, 3.0],            # upper corner
                        [-1.0, 0.0, 2.0],           # lower corner
                        [0.0, 2.0, 3.5],            # outside along z only
                        [-1.5, 2.0, 2.5],           # outside along x only
                        [0.0, -0.1, 2.5]])          # outside along y only
    assert inside_range(pts, lo, hi, strict=False).tolist() == [True, True, True, True, True, False, False, False]
    assert inside_range(pts, lo, hi, strict=True).tolist() == [True] + [False] * 7
