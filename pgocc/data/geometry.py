"""Rigid transforms, quaternions and the image transform, in float64 numpy (host side).

Quaternions are (w, x, y, z) as in nuScenes; 4×4 matrices map column vectors (``p' = M @ [p; 1]``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pgocc.errors import DataError


def quat_to_matrix(q: np.ndarray | list[float]) -> np.ndarray:
    """[3, 3] rotation of the (w, x, y, z) quaternion ``q`` (normalised first)."""
    w, x, y, z = np.asarray(q, dtype=np.float64) / np.linalg.norm(q)
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
        [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
        [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
    ])


def matrix_to_quat(r: np.ndarray) -> np.ndarray:
    """(w, x, y, z) with w >= 0 of the rotation matrix ``r`` [3, 3] (Shepperd's method: pick the largest pivot)."""
    m = np.asarray(r, dtype=np.float64)
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    pivots = [tr, m[0, 0], m[1, 1], m[2, 2]]
    i = int(np.argmax(pivots))
    if i == 0:
        s = 2.0 * math.sqrt(1.0 + tr)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif i == 1:
        s = 2.0 * math.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif i == 2:
        s = 2.0 * math.sqrt(1.0 - m[0, 0] + m[1, 1] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * math.sqrt(1.0 - m[0, 0] - m[1, 1] + m[2, 2])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    out = np.array(q)
    return out if out[0] >= 0 else -out


def rot_z(yaw: float) -> np.ndarray:
    """[3, 3] rotation by ``yaw`` radians about +z (counter-clockwise seen from above)."""
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rigid(rotation: np.ndarray, translation: np.ndarray | list[float]) -> np.ndarray:
    """[4, 4] from a [3, 3] rotation (or a (w, x, y, z) quaternion) and a [3] translation."""
    rotation = np.asarray(rotation, dtype=np.float64)
    out = np.eye(4)
    out[:3, :3] = quat_to_matrix(rotation) if rotation.shape == (4,) else rotation
    out[:3, 3] = np.asarray(translation, dtype=np.float64)
    return out


def invert_rigid(m: np.ndarray) -> np.ndarray:
    """Inverse [Rᵀ, −Rᵀt] of rigid transforms [..., 4, 4] (transpose the rotation; exact, no general inverse)."""
    rt = np.swapaxes(m[..., :3, :3], -1, -2)
    out = np.zeros_like(m)
    out[..., :3, :3] = rt
    out[..., :3, 3] = -(rt @ m[..., :3, 3:])[..., 0]
    out[..., 3, 3] = 1.0
    return out


def pad_intrinsic(k: np.ndarray) -> np.ndarray:
    """[4, 4] identity with the [3, 3] intrinsic ``k`` in its top-left block."""
    out = np.eye(4)
    out[:3, :3] = k
    return out


@dataclass(frozen=True, slots=True)
class ImageTransform:
    """Resize by ``scale`` then crop ``out_size`` rows/cols from (``crop_top``, 0): docs/model.md §7.4 generalised.

    For a source W × H the scale is ``out_w / W`` (0.44 for 1600 → 704), the resized height ``round(H · scale)``
    and the crop bottom-aligned (``crop_top = resized_h − out_h``; 396 − 256 = 140 for nuScenes). The same code path
    therefore serves any source size with the network's aspect or taller.
    """

    src_size: tuple[int, int]
    """(H, W) of the source image."""
    out_size: tuple[int, int]
    """(H_in, W_in) of the network input."""
    scale: float
    """Resize factor."""
    resized_size: tuple[int, int]
    """(h, w) after resizing, before the crop."""
    crop_top: int
    """First kept row of the resized image."""

    @classmethod
    def fit(cls, src_size: tuple[int, int], out_size: tuple[int, int], *, where: str) -> ImageTransform:
        """The transform for an image of ``src_size`` (H, W); ``where`` names the image in errors."""
        h, w = src_size
        out_h, out_w = out_size
        scale = out_w / w
        resized = (int(round(h * scale)), out_w)
        top = resized[0] - out_h
        if top < 0:
            raise DataError(f"{where}: a {w}×{h} image resized to width {out_w} is {resized[0]} rows high, fewer than "
                            f"the {out_h} rows of the network input; expected an aspect ratio of at most "
                            f"{out_w}:{out_h}")
        return cls(src_size=src_size, out_size=out_size, scale=scale, resized_size=resized, crop_top=top)

    @property
    def matrix(self) -> np.ndarray:
        """[4, 4] IDA acting on (u·z, v·z, z, 1): ``[[s,0,0,0],[0,s,−top,0],[0,0,1,0],[0,0,0,1]]``."""
        m = np.eye(4)
        m[0, 0] = m[1, 1] = self.scale
        m[1, 2] = -self.crop_top
        return m


def render_intrinsics(k: np.ndarray, src_size: tuple[int, int], render_size: tuple[int, int]) -> np.ndarray:
    """[3, 3] intrinsics of a render of ``render_size`` (H_r, W_r) covering the full source field of view
    (row 0 scaled by W_r / W, row 1 by H_r / H; docs/model.md §1.4)."""
    out = np.array(k, dtype=np.float64)
    out[0] *= render_size[1] / src_size[1]
    out[1] *= render_size[0] / src_size[0]
    return out
