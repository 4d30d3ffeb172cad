"""Ray casting against the scene's ground plane and boxes: camera rays, LiDAR revolutions, image windows.

A camera pixel (u, v) (pixel centres at integer coordinates, OpenCV convention) casts the ray ``o + t·R·K⁻¹[u, v, 1]``,
whose parameter t *is* the camera-frame depth z. Rays that hit nothing within ``MAX_DEPTH`` see the sky. Each box is
tested only against the rays of its window (the bounding rectangle of its projection), so a box costs only the rays
that may hit it.
"""

from __future__ import annotations

import math

import numpy as np

from pgocc.data.geometry import invert_rigid
from pgocc.synthetic.rig import LIDAR_AZIMUTHS, LIDAR_ELEVATIONS, LIDAR_RANGE
from pgocc.synthetic.scene import Scene

MAX_DEPTH = 100.0
"""Metres: farther surfaces are not drawn; the sky's depth."""
NEAR = 0.05
"""Metres: nearest hit a camera or LiDAR ray reports."""

Window = tuple[int, int, int, int, int]
"""(box, v0, v1, u0, u1): the ray sub-grid [v0:v1, u0:u1] a box may hit."""

_BOX_EDGES = np.array([(i, i ^ bit) for i in range(8) for bit in (1, 2, 4) if i < i ^ bit])
"""[12, 2] corner pairs (in :meth:`Scene.box_corners` order) joined by an edge (they differ in one sign)."""


def trace(scene: Scene, origin: np.ndarray, dirs: np.ndarray, t_us: int, windows: list[Window], far: float
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """First hits of the rays ``origin + t·dirs`` (dirs [H, W, 3] float32 global, not normalised).

    ``windows`` lists (box, v0, v1, u0, u1): the ray sub-grid each box may hit (boxes not listed are not tested).
    Returns t [H, W] float32 (inf: nothing within ``far``), hit [H, W] int64 (box index, −1 ground, −2 nothing)
    and face [H, W] int8 (0..2: box axis of the entered face).
    """
    h, w = dirs.shape[:2]
    t = np.full((h, w), np.inf, np.float32)
    hit = np.full((h, w), -2, np.int64)
    face = np.zeros((h, w), np.int8)
    with np.errstate(divide="ignore", invalid="ignore"):
        tg = np.float32(-origin[2]) / dirs[..., 2]
    ground = (dirs[..., 2] < 0) & (tg > NEAR) & (tg < far)
    t[ground] = tg[ground]
    hit[ground] = -1
    centres, yaws = scene.box_poses(t_us)
    for m, v0, v1, u0, u1 in windows:
        sub = dirs[v0:v1, u0:u1]
        c, s = math.cos(yaws[m]), math.sin(yaws[m])
        rx, ry, rz = (float(x) for x in origin - centres[m])
        # Ray in the box frame (rotation by −yaw), all float32 with Python-float scalars (no upcast).
        o_local = (c * rx + s * ry, -s * rx + c * ry, rz)
        d_local = (c * sub[..., 0] + s * sub[..., 1], -s * sub[..., 0] + c * sub[..., 1], sub[..., 2])
        t_enter = t_exit = axis = None
        with np.errstate(divide="ignore", invalid="ignore"):
            for a in range(3):
                half = float(scene.boxes.half[m, a])
                inv = np.float32(1.0) / d_local[a]
                t1 = (-half - o_local[a]) * inv
                t2 = (half - o_local[a]) * inv
                lo, hi = np.minimum(t1, t2), np.maximum(t1, t2)
                if t_enter is None:
                    t_enter, t_exit, axis = lo, hi, np.zeros(lo.shape, np.int8)
                else:
                    np.copyto(axis, np.int8(a), where=lo > t_enter)
                    np.maximum(t_enter, lo, out=t_enter)
                    np.minimum(t_exit, hi, out=t_exit)
        t_sub = t[v0:v1, u0:u1]
        win = (t_enter <= t_exit) & (t_enter > NEAR) & (t_enter < t_sub) & (t_enter < far)
        np.copyto(t_sub, t_enter, where=win)
        np.copyto(hit[v0:v1, u0:u1], m, where=win)
        np.copyto(face[v0:v1, u0:u1], axis, where=win)
    return t, hit, face


def camera_rays(image_size: tuple[int, int], cam2global: np.ndarray, k: np.ndarray) -> np.ndarray:
    """[H, W, 3] float32 global directions ``R·K⁻¹[u, v, 1]`` (camera z component 1, so t is the depth)."""
    h, w = image_size
    u = (np.arange(w, dtype=np.float64) - k[0, 2]) / k[0, 0]
    v = (np.arange(h, dtype=np.float64) - k[1, 2]) / k[1, 1]
    d = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), -1)
    return (d @ cam2global[:3, :3].T).astype(np.float32)

def camera_windows(scene: Scene, cam2global: np.ndarray, k: np.ndarray, t_us: int) -> list[Window]:
    """Image windows (box, v0, v1, u0, u1) of the boxes in front of the camera.

    A box crossing the camera plane is clipped at z = NEAR first (its edges' crossing points join the corners),
    so the window bounds the projection of the visible part only.
    """
    h, w = scene.image_size
    corners = scene.box_corners(t_us)
    w2c = invert_rigid(cam2global)
    cam = corners @ w2c[:3, :3].T + w2c[:3, 3]
    out = []
    for m in range(len(cam)):
        pts = cam[m]
        z = pts[:, 2]
        if (z <= NEAR).all() or z.min() > MAX_DEPTH:
            continue
        if (z <= NEAR).any():
            i, j = _BOX_EDGES[:, 0], _BOX_EDGES[:, 1]
            cross = (z[i] > NEAR) != (z[j] > NEAR)
            f = (NEAR - z[i[cross]]) / (z[j[cross]] - z[i[cross]])
            clip = pts[i[cross]] + f[:, None] * (pts[j[cross]] - pts[i[cross]])
            pts = np.concatenate([pts[z > NEAR], clip])
        u = k[0, 0] * pts[:, 0] / pts[:, 2] + k[0, 2]
        v = k[1, 1] * pts[:, 1] / pts[:, 2] + k[1, 2]
        u0, u1 = max(int(np.floor(u.min())), 0), min(int(np.ceil(u.max())) + 1, w)
        v0, v1 = max(int(np.floor(v.min())), 0), min(int(np.ceil(v.max())) + 1, h)
        if u0 < u1 and v0 < v1:
            out.append((m, v0, v1, u0, u1))
    return out


def lidar_scan(scene: Scene, lidar2global: np.ndarray, t_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ranges [32, A] float32 (inf: no return), unit directions [32, A, 3] in the LiDAR frame, and the hit box
    index [32, A] (−1 ground, −2 nothing) of one revolution at ``t_us``."""
    az = -np.pi + (np.arange(LIDAR_AZIMUTHS) + 0.5) * (2 * np.pi / LIDAR_AZIMUTHS)
    el = LIDAR_ELEVATIONS
    d_lidar = np.stack(np.broadcast_arrays(np.cos(el)[:, None] * np.cos(az)[None], np.cos(el)[:, None]
                                           * np.sin(az)[None], np.sin(el)[:, None]), -1).astype(np.float32)
    dirs = (d_lidar @ lidar2global[:3, :3].T.astype(np.float32)).astype(np.float32)
    origin = lidar2global[:3, 3]
    corners = scene.box_corners(t_us)
    l2w = invert_rigid(lidar2global)
    local = corners @ l2w[:3, :3].T + l2w[:3, 3]
    centre = local.mean(1)
    rows = len(el)
    windows: list[Window] = []
    for m in range(len(local)):
        radius = np.linalg.norm(local[m, :, :2] - centre[m, :2], axis=1).max()
        dist = np.linalg.norm(centre[m, :2])
        if dist - radius > LIDAR_RANGE:
            continue
        if dist <= radius:
            windows.append((m, 0, rows, 0, LIDAR_AZIMUTHS))
            continue
        ac = math.atan2(centre[m, 1], centre[m, 0])
        rel = np.mod(np.arctan2(local[m, :, 1], local[m, :, 0]) - ac + np.pi, 2 * np.pi) - np.pi
        step = 2 * np.pi / LIDAR_AZIMUTHS
        c0 = int(np.floor((ac + rel.min() + np.pi) / step))
        c1 = int(np.ceil((ac + rel.max() + np.pi) / step)) + 1
        for lo, hi in ((c0, c1), (c0 - LIDAR_AZIMUTHS, c1 - LIDAR_AZIMUTHS), (c0 + LIDAR_AZIMUTHS,
                                                                                c1 + LIDAR_AZIMUTHS)):
            lo, hi = max(lo, 0), min(hi, LIDAR_AZIMUTHS)
            if lo < hi:
                windows.append((m, 0, rows, lo, hi))
    t, hit, _ = trace(scene, origin, dirs, t_us, windows, LIDAR_RANGE)
    return t, d_lidar, hit
