"""The objects along the street: yaw-rotated boxes standing on the ground (z = 0), grouped into instances.

Buildings, walls and fences, trees and hedges, poles with signs, a construction zone of cones and barriers, parked
vehicles of every Occ3D vehicle class, pedestrians and oncoming traffic. Each is placed in the street frame
(:mod:`pgocc.synthetic.layout`) by :func:`draw_objects`, then moved into the global frame by
:meth:`ObjectList.placed`. The draws happen in a fixed order (per side: buildings, vegetation, poles, the zone, parked
vehicles, pedestrians; then the oncoming traffic), which the same seed reproduces.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgocc.synthetic.kinds import BUILDING_PALETTE, CAR_PALETTE, KINDS, PARKED_MIX, TRUNK_COLOR, VEHICLE_SIZES, Color, K
from pgocc.synthetic.layout import Street, street_to_global
from pgocc.synthetic.params import SceneParams, Size

Vec3 = tuple[float, float, float]
_CENTRE: Vec3 = (0.0, 0.0, 0.0)

# Vehicle shapes, as fractions of the bounding box (w, l, h): a car is a body with a glass cabin on top, a truck a
# glass cab in front of a cargo box; other vehicles are one box.
CAR_BODY_HEIGHT = 0.55
CAR_CABIN_HEIGHT = 0.45
CAR_CABIN_SHIFT = 0.05
"""The cabin's centre lies this fraction of the length behind the box's centre."""
CAR_CABIN_HALF_LENGTH = 0.28
CAR_CABIN_HALF_WIDTH = 0.45
TRUCK_CAB_LENGTH = 0.25
TRUCK_CAB_DROP = 0.05
"""The cab's centre lies this fraction of the height below the box's centre."""
TRUCK_CAB_HALF_HEIGHT = 0.45
TRUCK_CARGO_CLEARANCE = 0.1
"""Metres: the cargo box is this much shorter at each end than the space behind the cab."""
GLASS_SHADE = 0.35
GLASS_TINT = 0.05
"""Glass is the body colour darkened to GLASS_SHADE plus GLASS_TINT (a dark, slightly bluish-grey pane)."""


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


@dataclass(frozen=True, slots=True)
class Part:
    """One box of an instance."""

    kind: str
    offset: Vec3
    """Centre relative to the instance's bounding-box centre (x along the heading, y left, z up)."""
    half: Vec3
    """Half extents along (x, y, z)."""
    color: Color


@dataclass(frozen=True, slots=True)
class _Placement:
    kind: str
    a: float
    b: float
    size: Size
    yaw: float
    """Heading relative to the street's +a direction."""
    speed: float
    """m/s along the heading."""


def _half(size: Size) -> Vec3:
    """Half extents (x along the heading, y, z) of a bounding box of ``size`` (w, l, h)."""
    width, length, height = size
    return (length / 2, width / 2, height / 2)


class ObjectList:
    """Instances and their boxes, accumulated in the street frame."""

    def __init__(self) -> None:
        self._instances: list[_Placement] = []
        self._parts: list[tuple[int, Part]] = []

    def add(self, kind: str, a: float, b: float, size: Size, yaw: float, speed: float, parts: list[Part]) -> None:
        """One instance at street (a, b) with bounding box ``size`` (w, l, h), relative heading ``yaw``, ``speed``
        along its heading, made of ``parts``."""
        self._parts.extend((len(self._instances), part) for part in parts)
        self._instances.append(_Placement(kind, a, b, size, yaw, speed))

    def placed(self, origin: np.ndarray, heading: float) -> tuple[Instances, Boxes]:
        """The instances and boxes in the global frame of a street whose frame has ``origin`` [2] and ``heading``."""
        rows = self._instances
        size = np.array([r.size for r in rows])
        x, y = street_to_global(origin, heading, np.array([r.a for r in rows]), np.array([r.b for r in rows]))
        centre = np.stack([x, y, size[:, 2] / 2], 1)
        yaw = np.mod(heading + np.array([r.yaw for r in rows]) + np.pi, 2 * np.pi) - np.pi
        speed = np.array([r.speed for r in rows])
        velocity = np.stack([speed * np.cos(yaw), speed * np.sin(yaw), np.zeros_like(yaw)], 1)
        instances = Instances(kind=np.array([K[r.kind] for r in rows], np.int64), centre=centre, size=size, yaw=yaw,
                              velocity=velocity)
        boxes = Boxes(instance=np.array([i for i, _ in self._parts], np.int64),
                      kind=np.array([K[part.kind] for _, part in self._parts], np.int64),
                      offset=np.array([part.offset for _, part in self._parts], np.float64),
                      half=np.array([part.half for _, part in self._parts], np.float64),
                      color=np.array([part.color for _, part in self._parts], np.float64))
        return instances, boxes


def _jitter(rng: np.random.Generator, size: Size, p: SceneParams) -> Size:
    return tuple(float(s * rng.uniform(*p.size_jitter)) for s in size)  # type: ignore[return-value]


def _tint(rng: np.random.Generator, color: Color, p: SceneParams) -> Color:
    return tuple(float(min(1.0, c * rng.uniform(*p.tint))) for c in color)  # type: ignore[return-value]


def _kind_tint(rng: np.random.Generator, kind: str, p: SceneParams) -> Color:
    """The base colour of ``kind``, tinted."""
    return _tint(rng, KINDS[K[kind]].color, p)


def _vehicle_parts(rng: np.random.Generator, kind: str, size: Size, p: SceneParams) -> list[Part]:
    width, length, height = size
    color = _tint(rng, CAR_PALETTE[rng.integers(len(CAR_PALETTE))] if kind == "car" else KINDS[K[kind]].color, p)
    glass: Color = tuple(GLASS_SHADE * c + GLASS_TINT for c in color)  # type: ignore[assignment]
    if kind == "car":
        body_h, cab_h = CAR_BODY_HEIGHT * height, CAR_CABIN_HEIGHT * height
        return [Part("car", (0.0, 0.0, -height / 2 + body_h / 2), (length / 2, width / 2, body_h / 2), color),
                Part("car", (-CAR_CABIN_SHIFT * length, 0.0, height / 2 - cab_h / 2),
                     (CAR_CABIN_HALF_LENGTH * length, CAR_CABIN_HALF_WIDTH * width, cab_h / 2), glass)]
    if kind == "truck":
        cab_l = TRUCK_CAB_LENGTH * length
        return [Part(kind, (length / 2 - cab_l / 2, 0.0, -TRUCK_CAB_DROP * height),
                     (cab_l / 2, width / 2, TRUCK_CAB_HALF_HEIGHT * height), glass),
                Part(kind, (-cab_l / 2, 0.0, 0.0),
                     ((length - cab_l) / 2 - TRUCK_CARGO_CLEARANCE, width / 2, height / 2), color)]
    return [Part(kind, _CENTRE, _half(size), color)]


def _terrain_width(street: Street, side: float) -> float:
    return street.terrain[0] if side > 0 else street.terrain[1]


def _add_buildings(objs: ObjectList, rng: np.random.Generator, street: Street, side: float, p: SceneParams) -> None:
    """Buildings behind the terrain strip of ``side`` (+1 left, −1 right), walls or fences in some gaps."""
    q = p.buildings
    t_w = _terrain_width(street, side)
    edge = street.road_half + street.sidewalk + t_w
    a = street.start
    while a < street.end:
        length = rng.uniform(*q.length)
        if street.near_crossing(a, a + length, street.sidewalk + q.crossing_pad):
            a += q.crossing_step
            continue
        if rng.random() < q.probability:
            depth, height = rng.uniform(*q.depth), rng.uniform(*q.height)
            b = side * (edge + rng.uniform(*q.setback) + depth / 2)
            color = _tint(rng, BUILDING_PALETTE[rng.integers(len(BUILDING_PALETTE))], p)
            size = (depth, length, height)
            objs.add("building", a + length / 2, b, size, 0.0, 0.0, [Part("building", _CENTRE, _half(size), color)])
        elif t_w > q.min_terrain_for_wall:
            kind = "wall" if rng.random() < q.wall_probability else "fence"
            height = rng.uniform(*q.wall_height)
            size = (q.wall_thickness if kind == "wall" else q.fence_thickness, length, height)
            objs.add(kind, a + length / 2, side * (edge - q.wall_inset), size, 0.0, 0.0,
                     [Part(kind, _CENTRE, _half(size), _kind_tint(rng, kind, p))])
        a += length + rng.uniform(*q.gap)


def _add_vegetation(objs: ObjectList, rng: np.random.Generator, street: Street, side: float, p: SceneParams) -> None:
    """Trees and hedges along the middle of the terrain strip of ``side``, if it is wide enough."""
    q = p.vegetation
    t_w = _terrain_width(street, side)
    if t_w < q.min_terrain:
        return
    a = street.start + rng.uniform(*q.first)
    while a < street.end:
        b = side * (street.road_half + street.sidewalk + t_w / 2)
        if not street.near_crossing(a - q.crossing_half_span, a + q.crossing_half_span, street.sidewalk):
            if rng.random() < q.tree_probability:
                crown = rng.uniform(q.crown_width[0], min(q.crown_width[1], t_w + q.crown_overhang))
                trunk_h, crown_h = rng.uniform(*q.trunk_height), rng.uniform(*q.crown_height)
                h = trunk_h + crown_h
                green = _kind_tint(rng, "vegetation", p)
                objs.add("vegetation", a, b, (crown, crown, h), rng.uniform(-np.pi, np.pi), 0.0, [
                    Part("vegetation", (0.0, 0.0, -h / 2 + trunk_h / 2),
                         (q.trunk_half_width, q.trunk_half_width, trunk_h / 2), TRUNK_COLOR),
                    Part("vegetation", (0.0, 0.0, h / 2 - crown_h / 2), (crown / 2, crown / 2, crown_h / 2), green)])
            else:
                length, height = rng.uniform(*q.hedge_length), rng.uniform(*q.hedge_height)
                size = (min(q.hedge_max_width, q.hedge_width_fraction * t_w), length, height)
                objs.add("vegetation", a, b, size, 0.0, 0.0,
                         [Part("vegetation", _CENTRE, _half(size), _kind_tint(rng, "vegetation", p))])
        a += rng.uniform(*q.spacing)


def _add_poles(objs: ObjectList, rng: np.random.Generator, street: Street, side: float, p: SceneParams) -> None:
    """Poles near the curb of ``side``, some carrying a sign."""
    q = p.poles
    a = street.start + rng.uniform(*q.first)
    while a < street.end:
        if not street.near_crossing(a - q.crossing_half_span, a + q.crossing_half_span, 0.0):
            h = rng.uniform(*q.height)
            parts = [Part("pole", _CENTRE, (q.half_width, q.half_width, h / 2), _kind_tint(rng, "pole", p))]
            if rng.random() < q.sign_probability:
                zc = rng.uniform(*q.sign_height) - h / 2
                parts.append(Part("sign", (q.sign_offset, 0.0, zc), q.sign_half_extents, _kind_tint(rng, "sign", p)))
            objs.add("pole", a, side * (street.road_half + q.curb_offset), (2 * q.half_width, 2 * q.half_width, h),
                     0.0, 0.0, parts)
        a += rng.uniform(*q.spacing)


def _add_zone(objs: ObjectList, rng: np.random.Generator, street: Street, side: float, p: SceneParams
              ) -> tuple[float, float]:
    """Maybe a construction zone (cones and barriers) in the outer lane of ``side``; returns its span along the
    street ((inf, inf) when there is none)."""
    q = p.zone
    if rng.random() >= q.probability:
        return (np.inf, np.inf)
    start = rng.uniform(street.start, street.end - q.room)
    zone = (start, start + rng.uniform(*q.length))
    a = zone[0]
    while a < zone[1]:
        if not street.near_crossing(a - q.crossing_half_span, a + q.crossing_half_span, 0.0):
            if rng.random() < q.cone_probability:
                objs.add("traffic_cone", a, side * (street.road_half - q.cone_inset), q.cone_size, 0.0, 0.0,
                         [Part("traffic_cone", _CENTRE, _half(q.cone_size), _kind_tint(rng, "traffic_cone", p))])
            else:
                objs.add("barrier", a, side * (street.road_half - q.barrier_inset), q.barrier_size, 0.0, 0.0,
                         [Part("barrier", _CENTRE, _half(q.barrier_size), KINDS[K["barrier"]].color)])
        a += q.spacing
    return zone


def _add_parked(objs: ObjectList, rng: np.random.Generator, street: Street, side: float, zone: tuple[float, float],
                p: SceneParams) -> None:
    """Vehicles parked along the curb of ``side``, outside crossings and the construction ``zone``."""
    q = p.parking
    a = street.start + rng.uniform(*q.first)
    names, weights = zip(*PARKED_MIX, strict=True)
    while a < street.end:
        kind = str(rng.choice(names, p=np.array(weights) / sum(weights)))
        size = _jitter(rng, VEHICLE_SIZES[kind], p)
        width, length, _ = size
        if (rng.random() < q.probability and not street.near_crossing(a, a + length, q.crossing_pad)
                and not (a + length > zone[0] and a < zone[1])):
            yaw = (0.0 if rng.random() < q.flip_probability else np.pi) + rng.uniform(-q.yaw_jitter, q.yaw_jitter)
            objs.add(kind, a + length / 2, side * (street.road_half - width / 2 - q.curb_gap), size, yaw, 0.0,
                     _vehicle_parts(rng, kind, size, p))
            a += length + rng.uniform(*q.gap)
        else:
            a += rng.uniform(*q.skip)


def _add_pedestrians(objs: ObjectList, rng: np.random.Generator, street: Street, side: float,
                     p: SceneParams) -> None:
    """People on the sidewalk of ``side``, some walking along it."""
    q = p.pedestrians
    for _ in range(rng.integers(*q.count)):
        a = rng.uniform(street.start, street.end)
        speed = rng.uniform(*q.walking_speed) if rng.random() < q.walking_probability else 0.0
        yaw = 0.0 if rng.random() < q.flip_probability else np.pi
        size = _jitter(rng, q.size, p)
        b = side * (street.road_half + rng.uniform(q.curb_offset, street.sidewalk - q.wall_clearance))
        clothes = _tint(rng, CAR_PALETTE[rng.integers(len(CAR_PALETTE))], p)
        objs.add("pedestrian", a, b, size, yaw, speed,
                 [Part("pedestrian", _CENTRE, (q.body_half_width, q.body_half_width, size[2] / 2), clothes)])


def _add_oncoming(objs: ObjectList, rng: np.random.Generator, street: Street, p: SceneParams) -> None:
    """A platoon of vehicles in the opposite lane, at one speed so that its members never collide."""
    q = p.traffic
    speed = rng.uniform(*q.speed)
    a = street.end + rng.uniform(*q.lead)
    for _ in range(rng.integers(*q.count)):
        kind = "car" if rng.random() < q.car_probability else str(rng.choice(q.other_kinds))
        size = _jitter(rng, VEHICLE_SIZES[kind], p)
        objs.add(kind, a, q.lane, size, np.pi, speed, _vehicle_parts(rng, kind, size, p))
        a -= size[1] + rng.uniform(*q.gap)


def draw_objects(rng: np.random.Generator, street: Street, p: SceneParams) -> ObjectList:
    """Every object along ``street``, in the street frame."""
    objs = ObjectList()
    for side in (1.0, -1.0):
        _add_buildings(objs, rng, street, side, p)
        _add_vegetation(objs, rng, street, side, p)
        _add_poles(objs, rng, street, side, p)
        zone = _add_zone(objs, rng, street, side, p)
        _add_parked(objs, rng, street, side, zone, p)
        _add_pedestrians(objs, rng, street, side, p)
    _add_oncoming(objs, rng, street, p)
    return objs
