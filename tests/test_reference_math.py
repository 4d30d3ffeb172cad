"""reference._math.quat_to_rotmat against the Hamilton product, written out here by hand.

The three references that rotate (aniso_sample, gs2vox, gs_raster) share it; their own tests exercise it only through
their outputs. Here each rotated vector is q v q* / |q|² with the quaternion product spelled out, for quaternions of
any length and sign.
"""

from __future__ import annotations

import torch

from reference._math import quat_to_rotmat


def hamilton(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Quaternion product of (w, x, y, z) quaternions [..., 4]."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack([aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw], -1)


def test_quat_to_rotmat_is_the_hamilton_rotation(seed: int) -> None:
    # Two leading dims ([2, 8, 4], as [B, N, 4] in the references): dim=1 and dim=-1 differ there.
    q = torch.randn(2, 8, 4, dtype=torch.float64) * torch.rand(2, 8, 1, dtype=torch.float64).add(0.1) * 10
    conj = q * torch.tensor([1.0, -1, -1, -1], dtype=torch.float64)
    norm2 = q.square().sum(-1, keepdim=True)
    R = quat_to_rotmat(q)
    assert R.shape == (2, 8, 3, 3)
    for i in range(3):
        e = torch.zeros(2, 8, 4, dtype=torch.float64)
        e[..., 1 + i] = 1                                  # the basis vector e_i as a pure quaternion
        col = hamilton(hamilton(q, e), conj)[..., 1:] / norm2
        torch.testing.assert_close(R[..., i], col, rtol=0, atol=1e-12)


def test_quat_to_rotmat_quarter_turns() -> None:
    """Unnormalised (2, 2, 0, 0) is +90° about x: y → z, z → −y; (0, 0, 0, −3) is 180° about z."""
    R = quat_to_rotmat(torch.tensor([[2.0, 2, 0, 0], [0, 0, 0, -3]], dtype=torch.float64))
    expected = torch.tensor([[[1.0, 0, 0], [0, 0, -1], [0, 1, 0]],
                             [[-1, 0, 0], [0, -1, 0], [0, 0, 1]]], dtype=torch.float64)
    torch.testing.assert_close(R, expected, rtol=0, atol=1e-15)
