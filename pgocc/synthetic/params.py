"""The numbers behind a scene's random draws: :class:`SceneParams` and its groups, one per part of the street.

Lengths are metres, speeds m/s, times seconds. A ``Range`` is the (low, high) of a uniform draw; a ``Count`` is the
(low, high) of an integer draw with ``high`` excluded (``numpy.random.Generator.integers``). The defaults are the
world every test and the shipped checkpoint use: changing one changes every scene (``tests/test_synthetic_checksum.py``
notices), and the random draws happen in a fixed order, so a new draw goes at the end of the scene's draws or it moves
everything after it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

Range = tuple[float, float]
"""(low, high) of a uniform draw."""
Count = tuple[int, int]
"""(low, high) of an integer draw, high excluded."""
Size = tuple[float, float, float]
"""(w, l, h) of a bounding box (nuScenes order)."""


@dataclass(frozen=True, slots=True)
class EgoParams:
    """The ego's drive: a cruise speed, sometimes one stop, and a lateral wiggle around its lane."""

    cruise_speed: Range = (3.0, 8.0)
    stop_probability: float = 0.35
    min_duration_to_stop: float = 3.0
    """Scenes at most this long never stop (a stop needs room for its ramps)."""
    stop_after: float = 0.5
    """Earliest stop time after the first keyframe."""
    stop_before_end: float = 1.5
    """Latest stop time before the end of the tabulated path."""
    stop_hold: Range = (0.5, 2.0)
    deceleration: float = 2.0
    """m/s² of the linear ramps into and out of a stop."""
    path_step: float = 0.01
    """Seconds between the tabulated arc lengths (the path is integrated with the trapezoid rule)."""
    path_tail: float = 1.0
    """Seconds tabulated past the last keyframe: its cameras fire up to 45 ms later."""
    lane: float = -1.75
    """Lateral position of the ego's lane centre (right of the centre line, right-hand traffic)."""
    wiggle_amplitude: Range = (0.0, 0.6)
    wiggle_wavelength: Range = (25.0, 60.0)


@dataclass(frozen=True, slots=True)
class StreetParams:
    """The street's cross-section, its crossings and its place in the global frame."""

    road_half_width: Range = (6.0, 8.0)
    sidewalk_width: Range = (2.0, 4.0)
    terrain_width: Range = (0.0, 5.0)
    grass_probability: float = 0.5
    """Chance that a terrain strip is grass rather than bare terrain (each side drawn separately)."""
    margin: float = 70.0
    """Street length laid out before the ego's start and after its end: more than the 60 m annotation range and the
    50 m half-width of the Occ3D grid."""
    crossings: Count = (0, 3)
    crossing_clearance: float = 15.0
    """Crossing centres keep this distance from the laid-out street's ends."""
    crossing_half_width: Range = (4.0, 6.0)
    origin: Range = (300.0, 1800.0)
    """Range of each global coordinate of the street frame's origin (positive, map-like coordinates)."""


@dataclass(frozen=True, slots=True)
class BuildingParams:
    """A row of buildings behind the terrain strip on each side, with walls or fences in some gaps."""

    length: Range = (8.0, 28.0)
    crossing_pad: float = 1.0
    """Buildings keep the sidewalk width plus this from a crossing."""
    crossing_step: float = 6.0
    """Advance along the street after a spot blocked by a crossing."""
    probability: float = 0.8
    """Chance of a building at a free spot; otherwise a wall or fence where the terrain strip allows one."""
    depth: Range = (8.0, 16.0)
    height: Range = (5.0, 22.0)
    setback: Range = (0.5, 3.0)
    """Distance from the terrain strip's outer edge to the facade."""
    gap: Range = (0.5, 6.0)
    min_terrain_for_wall: float = 0.8
    """Walls and fences stand only on terrain strips wider than this."""
    wall_probability: float = 0.5
    """Chance that a boundary is a wall rather than a fence."""
    wall_height: Range = (1.0, 2.2)
    wall_thickness: float = 0.3
    fence_thickness: float = 0.08
    wall_inset: float = 0.3
    """Walls and fences stand this far inside the terrain strip's outer edge."""


@dataclass(frozen=True, slots=True)
class VegetationParams:
    """Trees and hedges along the middle of the terrain strip."""

    min_terrain: float = 1.5
    """Terrain strips narrower than this carry no vegetation."""
    first: Range = (0.0, 8.0)
    """Position of the first plant after the street's start."""
    crossing_half_span: float = 3.0
    tree_probability: float = 0.75
    crown_width: Range = (2.0, 4.0)
    crown_overhang: float = 1.5
    """A crown is at most this much wider than the terrain strip (the upper end of ``crown_width`` shrinks)."""
    trunk_height: Range = (1.5, 2.5)
    crown_height: Range = (2.0, 4.0)
    trunk_half_width: float = 0.15
    hedge_length: Range = (3.0, 8.0)
    hedge_height: Range = (0.6, 1.2)
    hedge_max_width: float = 1.0
    hedge_width_fraction: float = 0.6
    """A hedge is this fraction of the terrain strip wide (at most ``hedge_max_width``)."""
    spacing: Range = (7.0, 15.0)


@dataclass(frozen=True, slots=True)
class PoleParams:
    """Poles near the curb, some carrying a sign."""

    first: Range = (0.0, 10.0)
    crossing_half_span: float = 1.0
    height: Range = (4.0, 8.0)
    half_width: float = 0.12
    sign_probability: float = 0.35
    sign_height: Range = (2.2, 3.0)
    """Height of the sign's centre above the ground."""
    sign_offset: float = 0.1
    """The sign's centre lies this far in front of the pole's axis."""
    sign_half_extents: Size = (0.04, 0.4, 0.3)
    """Half extents of the sign plate along the pole's frame (thickness, width, height)."""
    curb_offset: float = 0.4
    """Poles stand this far from the road's edge, on the sidewalk."""
    spacing: Range = (15.0, 30.0)


@dataclass(frozen=True, slots=True)
class ZoneParams:
    """A construction zone in the outer lane: a row of cones and barriers."""

    probability: float = 0.5
    room: float = 20.0
    """A zone starts at least this far before the street's end."""
    length: Range = (8.0, 20.0)
    spacing: float = 2.6
    crossing_half_span: float = 1.0
    cone_probability: float = 0.6
    """Chance of a cone (else a barrier) at each spot of the zone."""
    cone_size: Size = (0.4, 0.4, 0.8)
    cone_inset: float = 1.5
    """Distance from the road's edge to the cones' centres."""
    barrier_size: Size = (0.5, 2.5, 1.0)
    barrier_inset: float = 0.8


@dataclass(frozen=True, slots=True)
class ParkingParams:
    """Vehicles parked along the curb, facing either way."""

    first: Range = (0.0, 5.0)
    probability: float = 0.6
    """Chance that a free spot along the curb is taken."""
    crossing_pad: float = 1.0
    flip_probability: float = 0.5
    """Chance that a vehicle faces along the street (else against it)."""
    yaw_jitter: float = 0.05
    """Radians: the heading varies within ± this."""
    curb_gap: float = 0.3
    gap: Range = (1.0, 4.0)
    """Space after a parked vehicle."""
    skip: Range = (3.0, 10.0)
    """Advance after a spot left empty."""


@dataclass(frozen=True, slots=True)
class PedestrianParams:
    """People on the sidewalk, some walking along it."""

    count: Count = (3, 10)
    walking_probability: float = 0.5
    walking_speed: Range = (0.8, 1.6)
    flip_probability: float = 0.5
    size: Size = (0.7, 0.7, 1.75)
    """Bounding box before the size jitter."""
    body_half_width: float = 0.3
    """Half width and length of the body box inside the bounding box."""
    curb_offset: float = 0.8
    wall_clearance: float = 0.4
    """Pedestrians keep ``curb_offset`` from the road and this from the sidewalk's outer edge."""


@dataclass(frozen=True, slots=True)
class TrafficParams:
    """Oncoming traffic in the opposite lane: a platoon at one speed, so its members never collide."""

    speed: Range = (4.0, 10.0)
    lead: Range = (0.0, 20.0)
    """The platoon's head starts this far past the street's end."""
    count: Count = (0, 4)
    car_probability: float = 0.8
    other_kinds: tuple[str, ...] = ("bus", "truck", "motorcycle")
    """Kinds drawn uniformly for a member that is not a car."""
    lane: float = 1.75
    """Lateral position of the opposite lane's centre."""
    gap: Range = (12.0, 30.0)


@dataclass(frozen=True, slots=True)
class SceneParams:
    """Every number a scene's random draws use (see the module docstring for units and conventions)."""

    ego: EgoParams = dataclasses.field(default_factory=EgoParams)
    street: StreetParams = dataclasses.field(default_factory=StreetParams)
    buildings: BuildingParams = dataclasses.field(default_factory=BuildingParams)
    vegetation: VegetationParams = dataclasses.field(default_factory=VegetationParams)
    poles: PoleParams = dataclasses.field(default_factory=PoleParams)
    zone: ZoneParams = dataclasses.field(default_factory=ZoneParams)
    parking: ParkingParams = dataclasses.field(default_factory=ParkingParams)
    pedestrians: PedestrianParams = dataclasses.field(default_factory=PedestrianParams)
    traffic: TrafficParams = dataclasses.field(default_factory=TrafficParams)
    size_jitter: Range = (0.9, 1.1)
    """Factor on each dimension of a vehicle's or pedestrian's typical size."""
    tint: Range = (0.85, 1.15)
    """Factor on each channel of an object's base colour (clipped at 1)."""
    calibration_jitter_deg: float = 0.3
    """Degrees: each camera's yaw and pitch vary within ± this around the rig's."""
    principal_point_jitter: float = 0.01
    """Fraction of the image size: the principal point varies within ± this around the image centre."""
    sun_elevation: Range = (0.5, 1.2)
    """Radians above the horizon."""
