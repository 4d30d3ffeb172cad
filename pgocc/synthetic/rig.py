"""The sensor rig: six cameras and a 32-beam LiDAR placed as on the nuScenes car, their timing, and each scene's
slightly jittered calibration."""

from __future__ import annotations

import math

import numpy as np

from pgocc.data.geometry import rigid, rot_z
from pgocc.synthetic.params import SceneParams

KEYFRAME_PERIOD_US = 500_000
"""Microseconds between keyframes (2 Hz)."""

# (position in ego frame, yaw in degrees, focal length in pixels at 1600×900), in CAMERAS order (docs/data.md §5).
RIG: tuple[tuple[tuple[float, float, float], float, float], ...] = (
    ((1.70, 0.02, 1.51), 0.0, 1266.0),
    ((1.55, -0.49, 1.50), -55.0, 1260.0),
    ((1.52, 0.49, 1.51), 55.0, 1257.0),
    ((0.03, 0.01, 1.57), 180.0, 809.0),
    ((1.04, 0.48, 1.57), 110.0, 1256.0),
    ((1.04, -0.48, 1.56), -110.0, 1259.0),
)
RIG_WIDTH = 1600.0
"""Pixels: the image width the focal lengths in RIG are given at."""
CAMERA_OFFSETS_US: tuple[int, ...] = (12_000, 20_000, 4_000, 37_000, 45_000, 29_000)
"""Capture time of each camera after the LiDAR keyframe time: distinct per camera, as in nuScenes where each camera
fires when the LiDAR sweeps past it."""

LIDAR_POSITION = (0.94, 0.0, 1.84)
LIDAR_YAW = -90.0
"""Degrees: the LiDAR frame is the ego frame turned by −90° about z, as in nuScenes."""
LIDAR_RANGE = 70.0
"""Metres: the LiDAR's maximum range."""
LIDAR_ELEVATIONS = np.deg2rad(np.linspace(-30.67, 10.67, 32))
"""[32] beam elevations of an HDL-32E-like LiDAR (radians, lowest first)."""
LIDAR_AZIMUTHS = 1080
"""Azimuth steps per LiDAR revolution (0.33°)."""

# Camera axes (x right, y down, z forward) expressed in a forward-looking ego frame (x forward, y left, z up).
_CAM_BASE = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def draw_calibration(rng: np.random.Generator, image_size: tuple[int, int], p: SceneParams
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibrations of one scene: cam2ego [N, 4, 4], intrinsics [N, 3, 3] at ``image_size`` (H, W), lidar2ego [4, 4];
    each camera's yaw, pitch and principal point vary a little (``p.calibration_jitter_deg``,
    ``p.principal_point_jitter``)."""
    h, w = image_size
    angle, centre = p.calibration_jitter_deg, p.principal_point_jitter
    cam2ego, ks = [], []
    for (pos, yaw, focal) in RIG:
        yaw_r = math.radians(yaw + rng.uniform(-angle, angle))
        pitch = math.radians(rng.uniform(-angle, angle))
        cp, sp = math.cos(pitch), math.sin(pitch)
        r_pitch = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        cam2ego.append(rigid(rot_z(yaw_r) @ r_pitch @ _CAM_BASE, pos))
        f = focal * w / RIG_WIDTH
        ks.append(np.array([[f, 0.0, w / 2.0 + rng.uniform(-centre, centre) * w],
                            [0.0, f, h / 2.0 + rng.uniform(-centre, centre) * h], [0.0, 0.0, 1.0]]))
    return np.stack(cam2ego), np.stack(ks), rigid(rot_z(math.radians(LIDAR_YAW)), LIDAR_POSITION)
