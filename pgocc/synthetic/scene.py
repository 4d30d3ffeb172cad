"""A scene of the procedural street world: the street, its objects, the ego's path and the sensor rig, and how they
are drawn from a seed (:func:`make_scene`).

A scene is a straight street (:mod:`pgocc.synthetic.layout`) in its own *street frame* (a along the street, b to the
left, z up), placed in the global frame by a random origin and heading. Objects (:mod:`pgocc.synthetic.objects`) are
yaw-rotated boxes standing on the ground (z = 0); some move at a constant velocity. The ego drives along the street
(:mod:`pgocc.synthetic.ego`). Everything is analytic, so the truth can be recomputed at any time: ray casting in
:mod:`pgocc.synthetic.raycast`, images in :mod:`pgocc.synthetic.render`, Occ3D labels in
:mod:`pgocc.synthetic.labels`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pgocc.data.geometry import rigid, rot_z
from pgocc.synthetic.ego import EgoPath, draw_arc_length, draw_wiggle
from pgocc.synthetic.layout import Street, draw_street, global_to_street, street_to_global
from pgocc.synthetic.objects import Boxes, Instances, draw_objects
from pgocc.synthetic.params import SceneParams
from pgocc.synthetic.rig import CAMERA_OFFSETS_US, KEYFRAME_PERIOD_US, draw_calibration
from pgocc.synthetic.texture import value_noise

FIRST_KEYFRAME_US = 1_533_151_603_547_590
"""Timestamp of scene 0's first keyframe in world 0 (a nuScenes-like date, August 2018)."""
SCENE_SPACING_US = 100_000_000
"""Microseconds between the first keyframes of consecutive scenes (longer than any scene)."""
SEED_SPACING_US = 1_000
"""Microseconds between the first keyframes of the same scene in consecutive worlds (timestamps differ per seed)."""
SCENE_STREAM = 0x5CE7E
"""Last word of a scene's seed sequence, so that the scene's random stream differs from the writer's per-keyframe
streams."""

_CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
"""[8, 3] corner signs; corner i = (bit 2, bit 1, bit 0) of i."""


@dataclass(slots=True)
class Scene:
    """One procedural scene: a street, its objects, the ego path and the sensor rig's calibration."""

    index: int
    name: str
    t0: int
    """Microseconds: timestamp of the first keyframe."""
    num_keyframes: int
    sweeps: int
    """Camera sweeps between two keyframes (camera period = 500 ms / (sweeps + 1))."""
    origin: np.ndarray
    """[2] global position of the street frame's origin."""
    heading: float
    """Global yaw of the street's +a direction."""
    street: Street
    ego: EgoPath
    cam2ego: np.ndarray
    """[N, 4, 4] calibration of the cameras (CAMERAS order)."""
    intrinsics: np.ndarray
    """[N, 3, 3] at the world's image size."""
    lidar2ego: np.ndarray
    """[4, 4]."""
    image_size: tuple[int, int]
    """(H, W) of every camera image."""
    instances: Instances
    boxes: Boxes
    texture: np.ndarray
    """[256, 256] float32 value noise in [0, 1] (tiles every 256 texels)."""
    sun: np.ndarray
    """[3] unit direction towards the sun (global)."""

    # ---- time and poses ---------------------------------------------------------------------------------------

    def keyframe_time(self, k: int) -> int:
        """Microseconds of keyframe ``k`` (the LiDAR timestamp)."""
        return self.t0 + k * KEYFRAME_PERIOD_US

    def camera_time(self, k: int, sweep: int, cam: int) -> int:
        """Microseconds of camera ``cam``'s frame ``sweep`` (0 = the keyframe image) after keyframe ``k``."""
        period = KEYFRAME_PERIOD_US // (self.sweeps + 1)
        return self.keyframe_time(k) + CAMERA_OFFSETS_US[cam] + sweep * period

    def street_to_global(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return street_to_global(self.origin, self.heading, a, b)

    def global_to_street(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return global_to_street(self.origin, self.heading, x, y)

    def ego2global(self, t_us: int) -> np.ndarray:
        """[4, 4] ego pose at ``t_us`` (ground-level origin, z = 0)."""
        s, b, relative_yaw = self.ego.street_pose((t_us - self.t0) * 1e-6)
        x, y = self.street_to_global(np.float64(s), np.float64(b))
        return rigid(rot_z(self.heading + relative_yaw), [float(x), float(y), 0.0])

    def box_poses(self, t_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Global box centres [M, 3] and yaws [M] at ``t_us``."""
        inst = self.boxes.instance
        dt = (t_us - self.t0) * 1e-6
        yaw = self.instances.yaw[inst]
        c, s = np.cos(yaw), np.sin(yaw)
        off = self.boxes.offset
        centre = self.instances.centre[inst] + dt * self.instances.velocity[inst]
        centre = centre + np.stack([c * off[:, 0] - s * off[:, 1], s * off[:, 0] + c * off[:, 1], off[:, 2]], 1)
        return centre, yaw

    def box_corners(self, t_us: int) -> np.ndarray:
        """[M, 8, 3] global corners of every box at ``t_us`` (corner i: signs (bit 2, bit 1, bit 0) of i)."""
        centres, yaws = self.box_poses(t_us)
        local = _CORNER_SIGNS[None] * self.boxes.half[:, None]
        c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
        return centres[:, None] + np.stack([c * local[..., 0] - s * local[..., 1],
                                            s * local[..., 0] + c * local[..., 1], local[..., 2]], -1)

    def instance_poses(self, t_us: int) -> np.ndarray:
        """[I, 3] global centres of the instances' bounding boxes at ``t_us``."""
        return self.instances.centre + (t_us - self.t0) * 1e-6 * self.instances.velocity

    def ground_kind(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Kind ids of the ground at global (x, y) (same shape as x)."""
        return self.street.ground_kind(*self.global_to_street(x, y))


def _draw_sun(rng: np.random.Generator, p: SceneParams) -> np.ndarray:
    """[3] unit direction towards the sun: any azimuth, an elevation in ``p.sun_elevation``."""
    azimuth, elevation = rng.uniform(-np.pi, np.pi), rng.uniform(*p.sun_elevation)
    return np.array([math.cos(elevation) * math.cos(azimuth), math.cos(elevation) * math.sin(azimuth),
                     math.sin(elevation)])


def make_scene(seed: int, index: int, *, num_keyframes: int, sweeps: int, image_size: tuple[int, int],
               params: SceneParams | None = None) -> Scene:
    """Scene ``index`` of the world ``seed`` (deterministic in its arguments; ``params`` default: SceneParams())."""
    p = params or SceneParams()
    rng = np.random.default_rng([seed, index, SCENE_STREAM])
    # The draws' order is part of the world: street after the ego's speed (its length depends on the path), the
    # placement in the global frame after the objects, the wiggle and texture last.
    duration = (num_keyframes - 1) * KEYFRAME_PERIOD_US * 1e-6 + p.ego.path_tail
    times, arc_length = draw_arc_length(rng, duration, p.ego)
    street = draw_street(rng, float(arc_length[-1]), p.street)
    objects = draw_objects(rng, street, p)
    origin = rng.uniform(*p.street.origin, 2)
    heading = float(rng.uniform(-np.pi, np.pi))
    instances, boxes = objects.placed(origin, heading)
    cam2ego, intrinsics, lidar2ego = draw_calibration(rng, image_size, p)
    sun = _draw_sun(rng, p)
    ego = EgoPath(times=times, arc_length=arc_length, lane=p.ego.lane, wiggle=draw_wiggle(rng, p.ego))
    return Scene(
        index=index, name=f"scene-{index + 1:04d}", t0=FIRST_KEYFRAME_US + index * SCENE_SPACING_US
        + seed * SEED_SPACING_US, num_keyframes=num_keyframes, sweeps=sweeps, origin=origin, heading=heading,
        street=street, ego=ego, cam2ego=cam2ego, intrinsics=intrinsics, lidar2ego=lidar2ego, image_size=image_size,
        instances=instances, boxes=boxes, texture=value_noise(rng), sun=sun,
    )
