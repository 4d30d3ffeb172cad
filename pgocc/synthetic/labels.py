"""Occ3D labels of a keyframe (docs/model.md §7.2), computed in the keyframe's ego frame from the analytic scene.

A voxel is occupied by a box when its centre lies in the box with every half-extent raised to at least half a voxel
(thin poles and plates still occupy the voxels they pass through), and by the ground in the layer that contains
z = 0. ``mask_camera`` marks voxels that some camera observes: inside its image, on a pixel whose ray reaches a
surface, and not behind that surface (depth test against the rendered depth map with a half-voxel-diagonal margin);
``mask_lidar`` marks voxels a LiDAR ray with a return passes through before or at its first hit. As in Occ3D, rays
into the sky observe nothing.
"""

from __future__ import annotations

import math

import numpy as np

from pgocc.data.geometry import invert_rigid, rot_z
from pgocc.data.occ3d import FREE, GRID_MIN, GRID_SHAPE, VOXEL_SIZE, voxel_centres
from pgocc.synthetic.kinds import LABELS
from pgocc.synthetic.raycast import MAX_DEPTH, NEAR
from pgocc.synthetic.rig import LIDAR_AZIMUTHS, LIDAR_ELEVATIONS
from pgocc.synthetic.scene import Scene

MASK_MARGIN = 0.5 * VOXEL_SIZE * math.sqrt(3.0)
"""Metres a voxel centre may lie behind the first surface and still count as seen (half the voxel diagonal)."""


def occupancy(scene: Scene, ego2global: np.ndarray, t_us: int,
              cameras: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
              lidar: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Occ3D ``semantics`` uint8, ``mask_lidar`` and ``mask_camera`` uint8 [200, 200, 16] in the ego frame
    ``ego2global`` at ``t_us``.

    ``cameras``: per camera (cam2global [4, 4], K [3, 3], depth [H, W] from :meth:`render_camera`);
    ``lidar``: (lidar2global [4, 4], ranges [32, A] from :meth:`lidar_scan`).
    """
    centres_ego = voxel_centres()
    sem = np.full(GRID_SHAPE, FREE, np.uint8)
    kg = int(math.floor((0.0 - GRID_MIN[2]) / VOXEL_SIZE))
    layer = centres_ego[:, :, kg] @ ego2global[:3, :3].T + ego2global[:3, 3]
    sem[:, :, kg] = LABELS[scene.ground_kind(layer[..., 0], layer[..., 1])]

    corners = scene.box_corners(t_us)
    e2w = invert_rigid(ego2global)
    corners_ego = corners @ e2w[:3, :3].T + e2w[:3, 3]
    box_centres, yaws = scene.box_poses(t_us)
    half = np.maximum(scene.boxes.half, 0.5 * VOXEL_SIZE)
    gmin = np.asarray(GRID_MIN)
    for m in range(len(corners)):
        lo = np.floor((corners_ego[m].min(0) - VOXEL_SIZE - gmin) / VOXEL_SIZE).astype(int)
        hi = np.ceil((corners_ego[m].max(0) + VOXEL_SIZE - gmin) / VOXEL_SIZE).astype(int)
        lo, hi = np.maximum(lo, 0), np.minimum(hi, GRID_SHAPE)
        if (lo >= hi).any():
            continue
        # ego point → box frame: R_boxᵀ (R_ego p + t_ego − c_box)
        r_box = rot_z(yaws[m])
        a = r_box.T @ ego2global[:3, :3]
        b = r_box.T @ (ego2global[:3, 3] - box_centres[m])
        local = centres_ego[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]] @ a.T + b
        inside = (np.abs(local) <= half[m]).all(-1)
        sem[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][inside] = LABELS[scene.boxes.kind[m]]

    # Visibility tests run in the ego frame on float32 coordinate planes (small numbers, cheap FMAs).
    xyz = [np.ascontiguousarray(centres_ego[..., i], dtype=np.float32).reshape(-1) for i in range(3)]

    def to_frame(sensor2global: np.ndarray) -> list[np.ndarray]:
        m = invert_rigid(sensor2global) @ ego2global
        return [float(m[r, 0]) * xyz[0] + float(m[r, 1]) * xyz[1] + float(m[r, 2]) * xyz[2] + float(m[r, 3])
                for r in range(3)]

    mask_camera = np.zeros(xyz[0].shape, bool)
    h, w = scene.image_size
    for cam2global, k, depth in cameras:
        x, y, z = to_frame(cam2global)
        idx = np.flatnonzero(z > NEAR)
        z = z[idx]
        u = np.rint(float(k[0, 0]) * x[idx] / z + float(k[0, 2])).astype(np.int64)
        v = np.rint(float(k[1, 1]) * y[idx] / z + float(k[1, 2])).astype(np.int64)
        inside = np.flatnonzero((u >= 0) & (u < w) & (v >= 0) & (v < h))
        idx, u, v, z = idx[inside], u[inside], v[inside], z[inside]
        surface = depth[v, u]
        # As in Occ3D, only rays that reach a surface observe anything (sky rays have no end point).
        mask_camera[idx[(surface < MAX_DEPTH) & (z <= surface + MASK_MARGIN)]] = True

    lidar2global, ranges = lidar
    x, y, z = to_frame(lidar2global)
    r = np.sqrt(x * x + y * y + z * z)
    el = np.arcsin(np.clip(z / np.maximum(r, 1e-6), -1.0, 1.0))
    row = np.clip(np.searchsorted(LIDAR_ELEVATIONS.astype(np.float32), el), 1, len(LIDAR_ELEVATIONS) - 1)
    beams = LIDAR_ELEVATIONS.astype(np.float32)
    row = np.where(np.abs(beams[row - 1] - el) < np.abs(beams[row] - el), row - 1, row)
    col = np.floor((np.arctan2(y, x) + np.pi) * (LIDAR_AZIMUTHS / (2 * np.pi))).astype(np.int64) % LIDAR_AZIMUTHS
    on_beam = np.abs(beams[row] - el) * r <= 0.5 * VOXEL_SIZE
    reach = ranges[row, col]  # inf where the beam has no return: such beams observe nothing
    mask_lidar = (on_beam & np.isfinite(reach) & (r <= reach + MASK_MARGIN)).reshape(GRID_SHAPE)
    mask_camera = mask_camera.reshape(GRID_SHAPE)
    return sem, mask_lidar.astype(np.uint8), mask_camera.astype(np.uint8)
