"""Occ3D-nuScenes labels: class names, the voxel grid, and reading/validating ``labels.npz`` (docs/model.md §7.2)."""

from __future__ import annotations

import functools
import zipfile
from pathlib import Path

import numpy as np

from pgocc.errors import DataError

OCC3D_CLASSES: tuple[str, ...] = (
    "others", "barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian",
    "traffic_cone", "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain", "manmade",
    "vegetation", "free",
)
"""[18] label names; the label of a voxel is its index."""

FREE = 17
"""Label of empty space."""

GRID_SHAPE: tuple[int, int, int] = (200, 200, 16)
"""(X, Y, Z) voxels, axes (x, y, z) of the keyframe ego frame."""

GRID_MIN: tuple[float, float, float] = (-40.0, -40.0, -1.0)
"""Lower corner of voxel (0, 0, 0) in metres."""

VOXEL_SIZE = 0.4
"""Edge of a voxel in metres."""

GROUND_LAYER = 2
"""Z index of the layer that holds the ground (centre z = 0 m, the ego origin's height: the road surface); the
layers above it hold objects, buildings and vegetation."""


@functools.cache
def voxel_centres() -> np.ndarray:
    """[X, Y, Z, 3] float64 centres ``GRID_MIN + 0.4·(i + ½)`` in the ego frame (read-only, computed once)."""
    axes = [GRID_MIN[d] + VOXEL_SIZE * (np.arange(GRID_SHAPE[d]) + 0.5) for d in range(3)]
    out = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1)
    out.flags.writeable = False
    return out


def voxel_index(points: np.ndarray) -> np.ndarray:
    """[..., 3] int64 voxel indices of ego-frame points [..., 3] (may lie outside the grid)."""
    return np.floor((points - np.asarray(GRID_MIN)) / VOXEL_SIZE).astype(np.int64)


def load_labels(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``semantics`` uint8, ``mask_lidar`` bool, ``mask_camera`` bool, each [200, 200, 16], from ``labels.npz``.

    Raises DataError naming the file for a missing file or array, a wrong shape, a wrong dtype (semantics must be
    uint8; masks uint8 or bool) or labels above 17.
    """
    if not path.is_file():
        raise DataError(f"{path}: Occ3D labels file not found")
    if not zipfile.is_zipfile(path):
        raise DataError(f"{path}: not an .npz archive; expected semantics, mask_lidar, mask_camera arrays")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {name: z[name] for name in ("semantics", "mask_lidar", "mask_camera") if name in z.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable labels.npz ({exc})") from exc
    for name in ("semantics", "mask_lidar", "mask_camera"):
        if name not in arrays:
            raise DataError(f"{path}: missing array {name!r}; expected semantics, mask_lidar, mask_camera")
        a = arrays[name]
        if a.shape != GRID_SHAPE:
            raise DataError(f"{path}: {name} must have shape {GRID_SHAPE}, got {a.shape}")
        allowed = (np.uint8,) if name == "semantics" else (np.uint8, np.bool_)
        if a.dtype not in allowed:
            raise DataError(f"{path}: {name} must be {' or '.join(np.dtype(t).name for t in allowed)}, got {a.dtype}")
    if arrays["semantics"].max() > FREE:
        raise DataError(f"{path}: semantics must be labels 0..{FREE}, got a maximum of {arrays['semantics'].max()}")
    return arrays["semantics"], arrays["mask_lidar"].astype(bool), arrays["mask_camera"].astype(bool)
