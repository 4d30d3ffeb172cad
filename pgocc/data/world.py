"""The procedural street world behind ``pgocc make-synthetic``: scene layout, ego motion, ray casting, Occ3D labels.

A scene is a straight street (road, sidewalks, terrain strips, optional crossing streets) in its own *street frame*
(a along the street, b to the left, z up), placed in the global frame by a random origin and heading. Objects are
yaw-rotated boxes standing on the ground (z = 0): buildings, walls, fences, poles with signs, trees and hedges,
parked and moving vehicles of every Occ3D vehicle class, pedestrians, cones and barriers. The ego drives along the
street with a varying speed (sometimes stopping) and a lane wiggle (so it turns a little), which gives the temporal
frames real parallax.

Everything is analytic, so the truth can be recomputed anywhere: a camera pixel (u, v) (pixel centres at integer
coordinates, OpenCV convention) casts the ray ``o + t·R·K⁻¹[u, v, 1]``, whose parameter t *is* the camera-frame
depth z. Rays that hit nothing within ``MAX_DEPTH`` see the sky, whose depth is reported as ``MAX_DEPTH``.

Occ3D labels (docs/model.md §7.2) are computed in the keyframe's ego frame: a voxel is occupied by a box when its
centre lies in the box with every half-extent raised to at least half a voxel (thin poles and plates still occupy
the voxels they pass through), and by the ground in the layer that contains z = 0. ``mask_camera`` marks voxels that
some camera observes: inside its image, on a pixel whose ray reaches a surface, and not behind that surface (depth
test against the rendered depth map with a half-voxel-diagonal margin); ``mask_lidar`` marks voxels a 32-beam LiDAR
ray with a return passes through before or at its first hit. As in Occ3D, rays into the sky observe nothing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pgocc.data.geometry import invert_rigid, rigid, rot_z
from pgocc.data.occ3d import FREE, GRID_MIN, GRID_SHAPE, VOXEL_SIZE, voxel_centres

MAX_DEPTH = 100.0
"""Metres: farther surfaces are not drawn; the sky's depth."""
NEAR = 0.05
"""Metres: nearest hit a camera or LiDAR ray reports."""
LIDAR_RANGE = 70.0
"""Metres: the LiDAR's maximum range."""
LIDAR_ELEVATIONS = np.deg2rad(np.linspace(-30.67, 10.67, 32))
"""[32] beam elevations of an HDL-32E-like LiDAR (radians, lowest first)."""
LIDAR_AZIMUTHS = 1080
"""Azimuth steps per LiDAR revolution (0.33°)."""
KEYFRAME_PERIOD_US = 500_000
"""Microseconds between keyframes (2 Hz)."""
MASK_MARGIN = 0.5 * VOXEL_SIZE * math.sqrt(3.0)
"""Metres a voxel centre may lie behind the first surface and still count as seen (half the voxel diagonal)."""

# (position in ego frame, yaw in degrees, focal length in pixels at 1600×900), in CAMERAS order (docs/data.md §5).
RIG: tuple[tuple[tuple[float, float, float], float, float], ...] = (
    ((1.70, 0.02, 1.51), 0.0, 1266.0),
    ((1.55, -0.49, 1.50), -55.0, 1260.0),
    ((1.52, 0.49, 1.51), 55.0, 1257.0),
    ((0.03, 0.01, 1.57), 180.0, 809.0),
    ((1.04, 0.48, 1.57), 110.0, 1256.0),
    ((1.04, -0.48, 1.56), -110.0, 1259.0),
)
LIDAR_POSITION = (0.94, 0.0, 1.84)
LIDAR_YAW = -90.0
"""Degrees: the LiDAR frame is the ego frame turned by −90° about z, as in nuScenes."""
CAMERA_OFFSETS_US: tuple[int, ...] = (12_000, 20_000, 4_000, 37_000, 45_000, 29_000)
"""Capture time of each camera after the LiDAR keyframe time: distinct per camera, as in nuScenes where each camera
fires when the LiDAR sweeps past it."""

_CORNER_SIGNS = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], np.float64)
"""[8, 3] corner signs; corner i = (bit 2, bit 1, bit 0) of i."""
_BOX_EDGES = np.array([(i, i ^ bit) for i in range(8) for bit in (1, 2, 4) if i < i ^ bit])
"""[12, 2] corner pairs joined by an edge (they differ in one sign)."""

# Camera axes (x right, y down, z forward) expressed in a forward-looking ego frame (x forward, y left, z up).
_CAM_BASE = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


@dataclass(frozen=True, slots=True)
class Kind:
    """A kind of surface or object in the world."""

    name: str
    label: int
    """Occ3D label."""
    prompt: str
    """Text prompt whose embedding is this kind's vision-language feature (one of docs/model.md §6.1's prompts)."""
    category: str | None
    """nuScenes category of annotated objects; None for stuff that nuScenes does not annotate."""
    color: tuple[float, float, float]
    """Base RGB in [0, 1]."""


KINDS: tuple[Kind, ...] = (
    Kind("road", 11, "road", None, (0.34, 0.34, 0.36)),
    Kind("sidewalk", 13, "sidewalk", None, (0.64, 0.61, 0.57)),
    Kind("terrain", 14, "terrain", None, (0.47, 0.39, 0.26)),
    Kind("grass", 14, "grass", None, (0.31, 0.52, 0.20)),
    Kind("building", 15, "building", None, (0.72, 0.66, 0.58)),
    Kind("wall", 15, "wall", None, (0.58, 0.52, 0.47)),
    Kind("fence", 15, "fence", None, (0.45, 0.33, 0.22)),
    Kind("pole", 15, "pole", None, (0.52, 0.53, 0.57)),
    Kind("sign", 15, "sign", None, (0.10, 0.30, 0.80)),
    Kind("vegetation", 16, "vegetation", None, (0.16, 0.43, 0.13)),
    Kind("car", 4, "car", "vehicle.car", (0.60, 0.10, 0.12)),
    Kind("bus", 3, "bus", "vehicle.bus.rigid", (0.86, 0.74, 0.12)),
    Kind("truck", 10, "truck", "vehicle.truck", (0.82, 0.82, 0.84)),
    Kind("trailer", 9, "trailer", "vehicle.trailer", (0.60, 0.22, 0.16)),
    Kind("construction_vehicle", 5, "construction vehicle", "vehicle.construction", (0.95, 0.60, 0.05)),
    Kind("motorcycle", 6, "motorcycle", "vehicle.motorcycle", (0.16, 0.16, 0.19)),
    Kind("bicycle", 2, "bicycle", "vehicle.bicycle", (0.20, 0.50, 0.80)),
    Kind("pedestrian", 7, "person", "human.pedestrian.adult", (0.30, 0.25, 0.45)),
    Kind("traffic_cone", 8, "cone", "movable_object.trafficcone", (1.00, 0.45, 0.02)),
    Kind("barrier", 1, "barrier", "movable_object.barrier", (0.90, 0.90, 0.86)),
    Kind("sky", FREE, "sky", None, (0.55, 0.70, 0.90)),
)
"""Every kind; a kind's id is its index."""
K = {k.name: i for i, k in enumerate(KINDS)}
"""Kind name → id."""
SKY = K["sky"]
LABELS = np.array([k.label for k in KINDS], np.uint8)
"""[kinds] Occ3D label of each kind."""

_KIND_COLORS = np.array([k.color for k in KINDS], np.float32)
_TEXTURE_STRENGTH = np.array([0.35 if k.name == "road" else 0.3 if k.name == "sidewalk" else 0.8 for k in KINDS],
                             np.float32)
_SKY_HORIZON = np.array([0.80, 0.85, 0.90], np.float32)
_SKY_ZENITH = np.array([0.35, 0.55, 0.86], np.float32)
_WINDOW_COLOR = np.array([0.22, 0.28, 0.36], np.float32)
_BARRIER_STRIPE = np.array([0.85, 0.12, 0.10], np.float32)

# Typical sizes (w, l, h) in metres (docs/data.md §5), jittered ±10 % per instance.
_VEHICLE_SIZES = {
    "car": (1.9, 4.6, 1.7), "bus": (2.9, 11.0, 3.5), "truck": (2.5, 7.0, 3.0), "trailer": (2.5, 8.0, 3.2),
    "construction_vehicle": (2.8, 6.5, 3.2), "motorcycle": (0.8, 2.1, 1.4), "bicycle": (0.6, 1.7, 1.3),
}
_PARKED_MIX = (("car", 0.68), ("truck", 0.08), ("trailer", 0.05), ("bus", 0.04), ("construction_vehicle", 0.04),
               ("motorcycle", 0.06), ("bicycle", 0.05))
_CAR_PALETTE = ((0.60, 0.10, 0.12), (0.12, 0.20, 0.55), (0.85, 0.85, 0.85), (0.10, 0.10, 0.11), (0.50, 0.52, 0.55),
                (0.15, 0.40, 0.20), (0.75, 0.70, 0.55))
_BUILDING_PALETTE = ((0.72, 0.66, 0.58), (0.62, 0.36, 0.28), (0.78, 0.78, 0.76), (0.55, 0.56, 0.60),
                     (0.85, 0.80, 0.66))


@dataclass(slots=True)
class Boxes:
    """Yaw-rotated boxes; row m belongs to instance ``instance[m]`` (M rows)."""

    instance: np.ndarray
    """[M] int64 owning instance."""
    kind: np.ndarray
    """[M] int64 kind id."""
    offset: np.ndarray
    """[M, 3] box centre in the instance frame (x along the heading, y left, z up; origin at the instance centre)."""
    half: np.ndarray
    """[M, 3] half extents along the instance frame's axes."""
    color: np.ndarray
    """[M, 3] base RGB."""


@dataclass(slots=True)
class Instances:
    """Objects (I rows): pose at the scene's reference time ``t0`` and constant velocity."""

    kind: np.ndarray
    """[I] int64 kind id of the main part."""
    centre: np.ndarray
    """[I, 3] global centre of the bounding box at t0 (z = half height)."""
    size: np.ndarray
    """[I, 3] (w, l, h) of the bounding box (nuScenes order)."""
    yaw: np.ndarray
    """[I] heading in the global frame (radians)."""
    velocity: np.ndarray
    """[I, 3] global velocity in m/s (z = 0)."""


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
    road_half: float
    sidewalk: float
    terrain: tuple[float, float]
    """Terrain strip width on the left (+b) and right (−b) side."""
    terrain_kind: tuple[int, int]
    crossings: np.ndarray
    """[C, 2] (a centre, half width) of crossing streets."""
    path_times: np.ndarray
    """[P] seconds after t0 at which the ego's arc length is tabulated."""
    path_s: np.ndarray
    """[P] ego arc length along the street (metres)."""
    lane: float
    wiggle: tuple[float, float, float]
    """(amplitude m, wavelength m, phase rad) of the ego's lateral motion."""
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
        c, s = math.cos(self.heading), math.sin(self.heading)
        ox, oy = float(self.origin[0]), float(self.origin[1])
        return ox + c * a - s * b, oy + s * a + c * b

    def global_to_street(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c, s = math.cos(self.heading), math.sin(self.heading)
        dx, dy = x - float(self.origin[0]), y - float(self.origin[1])
        return c * dx + s * dy, -s * dx + c * dy

    def ego2global(self, t_us: int) -> np.ndarray:
        """[4, 4] ego pose at ``t_us`` (ground-level origin, z = 0)."""
        s = float(np.interp((t_us - self.t0) * 1e-6, self.path_times, self.path_s))
        amp, wavelength, phase = self.wiggle
        w = 2.0 * math.pi / wavelength
        b = self.lane + amp * math.sin(w * s + phase)
        slope = amp * w * math.cos(w * s + phase)
        x, y = self.street_to_global(np.float64(s), np.float64(b))
        return rigid(rot_z(self.heading + math.atan(slope)), [float(x), float(y), 0.0])

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

    def instance_poses(self, t_us: int) -> np.ndarray:
        """[I, 3] global centres of the instances' bounding boxes at ``t_us``."""
        return self.instances.centre + (t_us - self.t0) * 1e-6 * self.instances.velocity

    # ---- the ground ---------------------------------------------------------------------------------------------

    def ground_kind(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Kind ids of the ground at global (x, y) (same shape as x)."""
        a, b = self.global_to_street(x, y)
        ab = np.abs(b)
        cross_road = np.zeros(a.shape, bool)
        cross_walk = np.zeros(a.shape, bool)
        for ac, hw in self.crossings:
            da = np.abs(a - ac)
            cross_road |= da < hw
            cross_walk |= da < hw + self.sidewalk
        road = (ab < self.road_half) | cross_road
        walk = ~road & ((ab < self.road_half + self.sidewalk) | cross_walk)
        out = np.where(b >= 0, self.terrain_kind[0], self.terrain_kind[1]).astype(np.int64)
        out[walk] = K["sidewalk"]
        out[road] = K["road"]
        return out

    # ---- ray casting --------------------------------------------------------------------------------------------

    def trace(self, origin: np.ndarray, dirs: np.ndarray, t_us: int, windows: list[tuple[int, int, int, int, int]],
              far: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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
        centres, yaws = self.box_poses(t_us)
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
                    half = float(self.boxes.half[m, a])
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

    def _box_corners(self, t_us: int) -> np.ndarray:
        """[M, 8, 3] global corners of every box at ``t_us``."""
        centres, yaws = self.box_poses(t_us)
        local = _CORNER_SIGNS[None] * self.boxes.half[:, None]
        c, s = np.cos(yaws)[:, None], np.sin(yaws)[:, None]
        return centres[:, None] + np.stack([c * local[..., 0] - s * local[..., 1],
                                            s * local[..., 0] + c * local[..., 1], local[..., 2]], -1)

    def camera_rays(self, cam2global: np.ndarray, k: np.ndarray) -> np.ndarray:
        """[H, W, 3] float32 global directions ``R·K⁻¹[u, v, 1]`` (camera z component 1, so t is the depth)."""
        h, w = self.image_size
        u = (np.arange(w, dtype=np.float64) - k[0, 2]) / k[0, 0]
        v = (np.arange(h, dtype=np.float64) - k[1, 2]) / k[1, 1]
        d = np.stack(np.broadcast_arrays(u[None, :], v[:, None], np.ones((1, 1))), -1)
        return (d @ cam2global[:3, :3].T).astype(np.float32)

    def camera_windows(self, cam2global: np.ndarray, k: np.ndarray, t_us: int) -> list[tuple[int, int, int, int, int]]:
        """Image windows (box, v0, v1, u0, u1) of the boxes in front of the camera.

        A box crossing the camera plane is clipped at z = NEAR first (its edges' crossing points join the corners),
        so the window bounds the projection of the visible part only.
        """
        h, w = self.image_size
        corners = self._box_corners(t_us)
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

    # ---- sensors ------------------------------------------------------------------------------------------------

    def render_camera(self, cam2global: np.ndarray, k: np.ndarray, t_us: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """RGB uint8 [H, W, 3], depth float32 [H, W] (camera z, sky = MAX_DEPTH), kind [H, W] int64 and
        box index [H, W] int64 (−1 ground, −2 sky) of the camera ``cam2global`` [4, 4] with intrinsics ``k``."""
        h, w = self.image_size
        dirs = self.camera_rays(cam2global, k)
        origin = [float(x) for x in cam2global[:3, 3]]
        t, hit, face = self.trace(cam2global[:3, 3], dirs, t_us, self.camera_windows(cam2global, k, t_us), MAX_DEPTH)
        depth = np.where(hit == -2, np.float32(MAX_DEPTH), t)
        # Work on flat per-channel arrays of each pixel group (sky, ground, boxes): cheap 1-D gathers only.
        flat_hit, flat_t = hit.reshape(-1), t.reshape(-1)
        d_all = [np.ascontiguousarray(dirs[..., i]).reshape(-1) for i in range(3)]
        rgb = np.empty((3, h * w), np.float32)
        kind = np.full(h * w, SKY, np.int64)

        idx = np.flatnonzero(flat_hit == -2)
        dx, dy, dz = (d[idx] for d in d_all)
        mix = np.clip(3.0 * dz / np.sqrt(dx * dx + dy * dy + dz * dz), 0.0, 1.0)
        for ch in range(3):
            rgb[ch, idx] = (1 - mix) * _SKY_HORIZON[ch] + mix * _SKY_ZENITH[ch]

        idx = np.flatnonzero(flat_hit == -1)
        if len(idx):
            tt = flat_t[idx]
            px, py = origin[0] + tt * d_all[0][idx], origin[1] + tt * d_all[1][idx]
            gk = self.ground_kind(px, py)
            kind[idx] = gk
            a, b = self.global_to_street(px, py)
            strength = _TEXTURE_STRENGTH[gk]
            light = np.float32(0.6 + 0.4 * self.sun[2])
            gain = (1.0 - 0.5 * strength + strength * self._noise(a * 2.0, b * 2.0)) * light
            in_cross = np.zeros(a.shape, bool)
            for ac, hw in self.crossings:
                in_cross |= np.abs(a - float(ac)) < hw
            marking = (np.abs(b) < 0.08) & (np.mod(a, 9.0) < 4.0)
            marking |= np.abs(np.abs(b) - (self.road_half - 0.35)) < 0.07
            marking &= (gk == K["road"]) & ~in_cross
            joints = (gk == K["sidewalk"]) & ((np.mod(a, 1.5) < 0.05) | (np.mod(b, 1.5) < 0.05))
            gain = np.where(joints, 0.78 * gain, gain)
            for ch in range(3):
                rgb[ch, idx] = np.where(marking, np.float32(0.88 * (0.6 + 0.4 * self.sun[2])),
                                        _KIND_COLORS[gk, ch] * gain)

        idx = np.flatnonzero(flat_hit >= 0)
        if len(idx):
            m = flat_hit[idx]
            bk = self.boxes.kind[m]
            kind[idx] = bk
            f = face.reshape(-1)[idx]
            tt = flat_t[idx]
            dx, dy, dz = (d[idx] for d in d_all)
            px, py, pz = origin[0] + tt * dx, origin[1] + tt * dy, origin[2] + tt * dz
            centres, yaws = self.box_poses(t_us)
            c, s = np.cos(yaws).astype(np.float32)[m], np.sin(yaws).astype(np.float32)[m]
            rx, ry = px - centres[:, 0].astype(np.float32)[m], py - centres[:, 1].astype(np.float32)[m]
            lx, ly = c * rx + s * ry, -s * rx + c * ry
            # Texture coordinates on the entered face: (along the face, up) for side faces, (x, y) on top.
            p = np.where(f == 0, ly, lx)
            q = np.where(f == 2, ly, pz)
            tex = self._noise(p * 3.0 + m.astype(np.float32) * 37.0, q * 3.0)
            gain = 0.7 + 0.6 * tex
            vertical = f != 2
            pw, zw = np.mod(p + 50.0, 3.2), np.mod(pz, 3.4)
            windows = (bk == K["building"]) & vertical & (pw > 1.1) & (pw < 2.5) & (zw > 1.2) & (zw < 2.6)
            band = (bk == K["traffic_cone"]) & (np.abs(pz - 0.45) < 0.08)
            stripes = (bk == K["barrier"]) & vertical & (np.mod(p + 10.0, 1.0) < 0.5)
            # Lambert shading with the world-frame normal of the entered face (it points against the ray).
            sun = [float(x) for x in self.sun]
            d_face = np.where(f == 0, c * dx + s * dy, np.where(f == 1, -s * dx + c * dy, dz))
            lam = np.where(f == 0, c * sun[0] + s * sun[1], np.where(f == 1, -s * sun[0] + c * sun[1], sun[2]))
            shade = 0.55 + 0.45 * np.maximum(-np.sign(d_face) * lam, 0.0)
            colors = self.boxes.color.astype(np.float32)
            for ch in range(3):
                col = colors[m, ch] * gain
                col = np.where(windows, _WINDOW_COLOR[ch] + 0.15 * tex, col)
                col = np.where(band, np.float32(0.95), col)
                col = np.where(stripes, _BARRIER_STRIPE[ch], col)
                rgb[ch, idx] = col * shade

        out = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8).T.reshape(h, w, 3)
        return out, depth, kind.reshape(h, w), hit

    def lidar_scan(self, lidar2global: np.ndarray, t_us: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Ranges [32, A] float32 (inf: no return), unit directions [32, A, 3] in the LiDAR frame, and the hit box
        index [32, A] (−1 ground, −2 nothing) of one revolution at ``t_us``."""
        az = -np.pi + (np.arange(LIDAR_AZIMUTHS) + 0.5) * (2 * np.pi / LIDAR_AZIMUTHS)
        el = LIDAR_ELEVATIONS
        d_lidar = np.stack(np.broadcast_arrays(np.cos(el)[:, None] * np.cos(az)[None], np.cos(el)[:, None]
                                               * np.sin(az)[None], np.sin(el)[:, None]), -1).astype(np.float32)
        dirs = (d_lidar @ lidar2global[:3, :3].T.astype(np.float32)).astype(np.float32)
        origin = lidar2global[:3, 3]
        corners = self._box_corners(t_us)
        l2w = invert_rigid(lidar2global)
        local = corners @ l2w[:3, :3].T + l2w[:3, 3]
        centre = local.mean(1)
        rows = len(el)
        windows: list[tuple[int, int, int, int, int]] = []
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
        t, hit, _ = self.trace(origin, dirs, t_us, windows, LIDAR_RANGE)
        return t, d_lidar, hit

    # ---- Occ3D labels -------------------------------------------------------------------------------------------

    def occupancy(self, ego2global: np.ndarray, t_us: int,
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
        sem[:, :, kg] = LABELS[self.ground_kind(layer[..., 0], layer[..., 1])]

        corners = self._box_corners(t_us)
        e2w = invert_rigid(ego2global)
        corners_ego = corners @ e2w[:3, :3].T + e2w[:3, 3]
        box_centres, yaws = self.box_poses(t_us)
        half = np.maximum(self.boxes.half, 0.5 * VOXEL_SIZE)
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
            sem[lo[0]:hi[0], lo[1]:hi[1], lo[2]:hi[2]][inside] = LABELS[self.boxes.kind[m]]

        # Visibility tests run in the ego frame on float32 coordinate planes (small numbers, cheap FMAs).
        xyz = [np.ascontiguousarray(centres_ego[..., i], dtype=np.float32).reshape(-1) for i in range(3)]

        def to_frame(sensor2global: np.ndarray) -> list[np.ndarray]:
            m = invert_rigid(sensor2global) @ ego2global
            return [float(m[r, 0]) * xyz[0] + float(m[r, 1]) * xyz[1] + float(m[r, 2]) * xyz[2] + float(m[r, 3])
                    for r in range(3)]

        mask_camera = np.zeros(xyz[0].shape, bool)
        h, w = self.image_size
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

    # ---- texture ------------------------------------------------------------------------------------------------

    def _noise(self, p: np.ndarray, q: np.ndarray) -> np.ndarray:
        """Bilinear lookup of the tiling value-noise texture at texel coordinates (p, q) (float32)."""
        n = self.texture.shape[0]
        p0, q0 = np.floor(p), np.floor(q)
        fp, fq = (p - p0).astype(np.float32), (q - q0).astype(np.float32)
        i0, j0 = p0.astype(np.int64) & (n - 1), q0.astype(np.int64) & (n - 1)
        i1, j1 = (i0 + 1) & (n - 1), (j0 + 1) & (n - 1)
        tx = self.texture.reshape(-1)
        top = tx[i0 * n + j0] * (1 - fq) + tx[i0 * n + j1] * fq
        bot = tx[i1 * n + j0] * (1 - fq) + tx[i1 * n + j1] * fq
        return top * (1 - fp) + bot * fp


# ---------------------------------------------------------------------------------------------------------------
# Scene generation


def _value_noise(rng: np.random.Generator, n: int = 256) -> np.ndarray:
    """[n, n] float32 in [0, 1]: octaves of bilinearly upsampled random grids, tiling."""
    out = np.zeros((n, n), np.float64)
    total = 0.0
    for cells, weight in ((8, 1.0), (16, 0.6), (32, 0.4), (64, 0.25), (128, 0.15)):
        grid = rng.random((cells, cells))
        x = np.arange(n) * cells / n
        i0 = np.floor(x).astype(int)
        f = x - i0
        i1 = (i0 + 1) % cells
        rows = grid[i0] * (1 - f)[:, None] + grid[i1] * f[:, None]
        out += weight * (rows[:, i0] * (1 - f)[None] + rows[:, i1] * f[None])
        total += weight
    out /= total
    return ((out - out.min()) / (out.max() - out.min())).astype(np.float32)


def _rig(rng: np.random.Generator, image_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Calibrations of one scene: cam2ego [N, 4, 4], intrinsics [N, 3, 3], lidar2ego [4, 4] (±0.3° jitter)."""
    h, w = image_size
    cam2ego, ks = [], []
    for (pos, yaw, focal) in RIG:
        yaw_r = math.radians(yaw + rng.uniform(-0.3, 0.3))
        pitch = math.radians(rng.uniform(-0.3, 0.3))
        cp, sp = math.cos(pitch), math.sin(pitch)
        r_pitch = np.array([[cp, 0.0, sp], [0.0, 1.0, 0.0], [-sp, 0.0, cp]])
        cam2ego.append(rigid(rot_z(yaw_r) @ r_pitch @ _CAM_BASE, pos))
        f = focal * w / 1600.0
        ks.append(np.array([[f, 0.0, w / 2.0 + rng.uniform(-0.01, 0.01) * w],
                            [0.0, f, h / 2.0 + rng.uniform(-0.01, 0.01) * h], [0.0, 0.0, 1.0]]))
    return np.stack(cam2ego), np.stack(ks), rigid(rot_z(math.radians(LIDAR_YAW)), LIDAR_POSITION)


class _Builder:
    """Accumulates instances and their boxes in the street frame."""

    def __init__(self) -> None:
        self.inst: list[tuple[int, float, float, tuple[float, float, float], float, float]] = []
        self.boxes: list[tuple[int, int, tuple[float, float, float], tuple[float, float, float],
                               tuple[float, float, float]]] = []

    def add(self, kind: str, a: float, b: float, size: tuple[float, float, float], yaw: float, speed: float,
            parts: list[tuple[str, tuple[float, float, float], tuple[float, float, float],
                              tuple[float, float, float]]]) -> None:
        """One instance at street (a, b) with bounding-box ``size`` (w, l, h), relative heading ``yaw``, speed
        along its heading, and parts (kind, offset from the bbox centre, half extents, colour)."""
        i = len(self.inst)
        self.inst.append((K[kind], a, b, size, yaw, speed))
        for part_kind, offset, half, color in parts:
            self.boxes.append((i, K[part_kind], offset, half, color))


def _jitter(rng: np.random.Generator, size: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(float(s * rng.uniform(0.9, 1.1)) for s in size)  # type: ignore[return-value]


def _tint(rng: np.random.Generator, color: tuple[float, float, float]) -> tuple[float, float, float]:
    return tuple(float(min(1.0, c * rng.uniform(0.85, 1.15))) for c in color)  # type: ignore[return-value]


def _vehicle_parts(rng: np.random.Generator, kind: str, size: tuple[float, float, float]
                   ) -> list[tuple[str, tuple[float, float, float], tuple[float, float, float],
                                   tuple[float, float, float]]]:
    width, length, height = size
    color = _tint(rng, _CAR_PALETTE[rng.integers(len(_CAR_PALETTE))] if kind == "car" else KINDS[K[kind]].color)
    glass = tuple(0.35 * c + 0.05 for c in color)
    if kind == "car":
        body_h, cab_h = 0.55 * height, 0.45 * height
        return [("car", (0.0, 0.0, -height / 2 + body_h / 2), (length / 2, width / 2, body_h / 2), color),
                ("car", (-0.05 * length, 0.0, height / 2 - cab_h / 2), (0.28 * length, 0.45 * width, cab_h / 2), glass)]
    if kind == "truck":
        cab_l = 0.25 * length
        return [(kind, (length / 2 - cab_l / 2, 0.0, -0.05 * height), (cab_l / 2, width / 2, 0.45 * height), glass),
                (kind, (-cab_l / 2, 0.0, 0.0), ((length - cab_l) / 2 - 0.1, width / 2, height / 2), color)]
    return [(kind, (0.0, 0.0, 0.0), (length / 2, width / 2, height / 2), color)]


def make_scene(seed: int, index: int, *, num_keyframes: int, sweeps: int, image_size: tuple[int, int]) -> Scene:
    """Scene ``index`` of the world ``seed`` (deterministic in its arguments)."""
    rng = np.random.default_rng([seed, index, 0x5CE7E])
    duration = (num_keyframes - 1) * KEYFRAME_PERIOD_US * 1e-6 + 1.0

    # Ego speed: cruise, sometimes a stop with 2 m/s² ramps.
    times = np.arange(0.0, duration + 1e-9, 0.01)
    cruise = rng.uniform(3.0, 8.0)
    speed = np.full_like(times, cruise)
    if rng.random() < 0.35 and duration > 3.0:
        t_stop, hold = rng.uniform(0.5, duration - 1.5), rng.uniform(0.5, 2.0)
        ramp = cruise / 2.0
        speed = np.minimum(speed, np.clip(np.maximum(t_stop - times, times - t_stop - hold) / ramp, 0, 1) * cruise)
    path_s = np.concatenate([[0.0], np.cumsum(0.5 * (speed[1:] + speed[:-1]) * np.diff(times))])
    length = float(path_s[-1])

    road_half, sidewalk = rng.uniform(6.0, 8.0), rng.uniform(2.0, 4.0)
    terrain = (float(rng.uniform(0.0, 5.0)), float(rng.uniform(0.0, 5.0)))
    terrain_kind = (K["grass"] if rng.random() < 0.5 else K["terrain"],
                    K["grass"] if rng.random() < 0.5 else K["terrain"])
    a_min, a_max = -70.0, length + 70.0
    crossings = np.array([(rng.uniform(15.0, a_max - 15.0), rng.uniform(4.0, 6.0))
                          for _ in range(rng.integers(0, 3))]).reshape(-1, 2)

    def near_crossing(a0: float, a1: float, pad: float) -> bool:
        return any(a1 > ac - hw - pad and a0 < ac + hw + pad for ac, hw in crossings)

    bld = _Builder()
    for side in (1.0, -1.0):
        t_w = terrain[0] if side > 0 else terrain[1]
        edge = road_half + sidewalk + t_w
        # Buildings, with walls or fences in some gaps.
        a = a_min
        while a < a_max:
            length_b = rng.uniform(8.0, 28.0)
            if near_crossing(a, a + length_b, sidewalk + 1.0):
                a += 6.0
                continue
            if rng.random() < 0.8:
                depth, height = rng.uniform(8.0, 16.0), rng.uniform(5.0, 22.0)
                b = side * (edge + rng.uniform(0.5, 3.0) + depth / 2)
                color = _tint(rng, _BUILDING_PALETTE[rng.integers(len(_BUILDING_PALETTE))])
                bld.add("building", a + length_b / 2, b, (depth, length_b, height), 0.0, 0.0,
                        [("building", (0.0, 0.0, 0.0), (length_b / 2, depth / 2, height / 2), color)])
            elif t_w > 0.8:
                kind = "wall" if rng.random() < 0.5 else "fence"
                height = rng.uniform(1.0, 2.2)
                thick = 0.3 if kind == "wall" else 0.08
                bld.add(kind, a + length_b / 2, side * (edge - 0.3), (thick, length_b, height), 0.0, 0.0,
                        [(kind, (0.0, 0.0, 0.0), (length_b / 2, thick / 2, height / 2),
                          _tint(rng, KINDS[K[kind]].color))])
            a += length_b + rng.uniform(0.5, 6.0)
        # Trees and hedges on the terrain strip.
        if t_w >= 1.5:
            a = a_min + rng.uniform(0.0, 8.0)
            while a < a_max:
                b = side * (road_half + sidewalk + t_w / 2)
                if not near_crossing(a - 3, a + 3, sidewalk):
                    if rng.random() < 0.75:
                        crown, trunk_h, crown_h = rng.uniform(2.0, min(4.0, t_w + 1.5)), rng.uniform(1.5, 2.5), \
                            rng.uniform(2.0, 4.0)
                        h = trunk_h + crown_h
                        green = _tint(rng, KINDS[K["vegetation"]].color)
                        bld.add("vegetation", a, b, (crown, crown, h), rng.uniform(-np.pi, np.pi), 0.0, [
                            ("vegetation", (0.0, 0.0, -h / 2 + trunk_h / 2), (0.15, 0.15, trunk_h / 2),
                             (0.35, 0.25, 0.15)),
                            ("vegetation", (0.0, 0.0, h / 2 - crown_h / 2), (crown / 2, crown / 2, crown_h / 2),
                             green)])
                    else:
                        hl, hh, hw = rng.uniform(3.0, 8.0), rng.uniform(0.6, 1.2), min(1.0, 0.6 * t_w)
                        bld.add("vegetation", a, b, (hw, hl, hh), 0.0, 0.0,
                                [("vegetation", (0.0, 0.0, 0.0), (hl / 2, hw / 2, hh / 2),
                                  _tint(rng, KINDS[K["vegetation"]].color))])
                a += rng.uniform(7.0, 15.0)
        # Poles near the curb, some carrying a sign.
        a = a_min + rng.uniform(0.0, 10.0)
        while a < a_max:
            if not near_crossing(a - 1, a + 1, 0.0):
                h = rng.uniform(4.0, 8.0)
                parts = [("pole", (0.0, 0.0, 0.0), (0.12, 0.12, h / 2), _tint(rng, KINDS[K["pole"]].color))]
                if rng.random() < 0.35:
                    zc = rng.uniform(2.2, 3.0) - h / 2
                    parts.append(("sign", (0.1, 0.0, zc), (0.04, 0.4, 0.3), _tint(rng, KINDS[K["sign"]].color)))
                bld.add("pole", a, side * (road_half + 0.4), (0.24, 0.24, h), 0.0, 0.0, parts)
            a += rng.uniform(15.0, 30.0)
        # A construction zone (cones and barriers) on some sides; parked vehicles elsewhere along the curb.
        zone = (np.inf, np.inf)
        if rng.random() < 0.5:
            start = rng.uniform(a_min, a_max - 20.0)
            zone = (start, start + rng.uniform(8.0, 20.0))
            a = zone[0]
            while a < zone[1]:
                if not near_crossing(a - 1, a + 1, 0.0):
                    if rng.random() < 0.6:
                        bld.add("traffic_cone", a, side * (road_half - 1.5), (0.4, 0.4, 0.8), 0.0, 0.0,
                                [("traffic_cone", (0.0, 0.0, 0.0), (0.2, 0.2, 0.4),
                                  _tint(rng, KINDS[K["traffic_cone"]].color))])
                    else:
                        bld.add("barrier", a, side * (road_half - 0.8), (0.5, 2.5, 1.0), 0.0, 0.0,
                                [("barrier", (0.0, 0.0, 0.0), (1.25, 0.25, 0.5), KINDS[K["barrier"]].color)])
                a += 2.6
        a = a_min + rng.uniform(0.0, 5.0)
        names, probs = zip(*_PARKED_MIX, strict=True)
        while a < a_max:
            kind = str(rng.choice(names, p=np.array(probs) / sum(probs)))
            size = _jitter(rng, _VEHICLE_SIZES[kind])
            width, length, _ = size
            if rng.random() < 0.6 and not near_crossing(a, a + length, 1.0) and not (a + length > zone[0]
                                                                                    and a < zone[1]):
                yaw = (0.0 if rng.random() < 0.5 else np.pi) + rng.uniform(-0.05, 0.05)
                bld.add(kind, a + length / 2, side * (road_half - width / 2 - 0.3), size, yaw, 0.0,
                        _vehicle_parts(rng, kind, size))
                a += length + rng.uniform(1.0, 4.0)
            else:
                a += rng.uniform(3.0, 10.0)
        # Pedestrians on the sidewalk, some walking.
        for _ in range(rng.integers(3, 10)):
            a = rng.uniform(a_min, a_max)
            speed_p = rng.uniform(0.8, 1.6) if rng.random() < 0.5 else 0.0
            yaw = 0.0 if rng.random() < 0.5 else np.pi
            size = _jitter(rng, (0.7, 0.7, 1.75))
            bld.add("pedestrian", a, side * (road_half + rng.uniform(0.8, sidewalk - 0.4)), size, yaw, speed_p,
                    [("pedestrian", (0.0, 0.0, 0.0), (0.3, 0.3, size[2] / 2),
                      _tint(rng, _CAR_PALETTE[rng.integers(len(_CAR_PALETTE))]))])
    # Oncoming traffic in the opposite lane: a platoon at one speed, so its members never collide.
    platoon_speed = rng.uniform(4.0, 10.0)
    a = a_max + rng.uniform(0.0, 20.0)
    for _ in range(rng.integers(0, 4)):
        kind = "car" if rng.random() < 0.8 else str(rng.choice(["bus", "truck", "motorcycle"]))
        size = _jitter(rng, _VEHICLE_SIZES[kind])
        bld.add(kind, a, 1.75, size, np.pi, platoon_speed, _vehicle_parts(rng, kind, size))
        a -= size[1] + rng.uniform(12.0, 30.0)

    # Street frame → global frame.
    origin = rng.uniform(300.0, 1800.0, 2)
    heading = float(rng.uniform(-np.pi, np.pi))
    ch, sh = math.cos(heading), math.sin(heading)
    rows = bld.inst
    inst_a = np.array([r[1] for r in rows])
    inst_b = np.array([r[2] for r in rows])
    size = np.array([r[3] for r in rows])
    rel_yaw = np.array([r[4] for r in rows])
    speed_i = np.array([r[5] for r in rows])
    centre = np.stack([origin[0] + ch * inst_a - sh * inst_b, origin[1] + sh * inst_a + ch * inst_b, size[:, 2] / 2], 1)
    yaw = np.mod(heading + rel_yaw + np.pi, 2 * np.pi) - np.pi
    velocity = np.stack([speed_i * np.cos(yaw), speed_i * np.sin(yaw), np.zeros_like(yaw)], 1)
    instances = Instances(kind=np.array([r[0] for r in rows], np.int64), centre=centre, size=size, yaw=yaw,
                          velocity=velocity)
    boxes = Boxes(instance=np.array([b[0] for b in bld.boxes], np.int64),
                  kind=np.array([b[1] for b in bld.boxes], np.int64),
                  offset=np.array([b[2] for b in bld.boxes], np.float64),
                  half=np.array([b[3] for b in bld.boxes], np.float64),
                  color=np.array([b[4] for b in bld.boxes], np.float64))
    cam2ego, intrinsics, lidar2ego = _rig(rng, image_size)
    sun_az, sun_el = rng.uniform(-np.pi, np.pi), rng.uniform(0.5, 1.2)
    sun = np.array([math.cos(sun_el) * math.cos(sun_az), math.cos(sun_el) * math.sin(sun_az), math.sin(sun_el)])
    return Scene(
        index=index, name=f"scene-{index + 1:04d}", t0=1_533_151_603_547_590 + index * 100_000_000 + seed * 1_000,
        num_keyframes=num_keyframes, sweeps=sweeps, origin=origin, heading=heading, road_half=road_half,
        sidewalk=sidewalk, terrain=terrain, terrain_kind=terrain_kind, crossings=crossings, path_times=times,
        path_s=path_s, lane=-1.75, wiggle=(rng.uniform(0.0, 0.6), rng.uniform(25.0, 60.0), rng.uniform(0, 2 * np.pi)),
        cam2ego=cam2ego, intrinsics=intrinsics, lidar2ego=lidar2ego, image_size=image_size, instances=instances,
        boxes=boxes, texture=_value_noise(rng), sun=sun,
    )

