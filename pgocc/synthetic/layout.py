"""The street's layout in its own frame (a along the street, b to the left, z up): road, sidewalks, terrain strips
and crossing streets, and the ground kind at any point of it."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pgocc.synthetic.kinds import K
from pgocc.synthetic.params import StreetParams


@dataclass(slots=True)
class Street:
    """A straight street: a road of half width ``road_half`` around b = 0, sidewalks, terrain strips beyond them, and
    crossing streets; objects are laid out along a ∈ [start, end)."""

    road_half: float
    sidewalk: float
    terrain: tuple[float, float]
    """Terrain strip width on the left (+b) and right (−b) side."""
    terrain_kind: tuple[int, int]
    """Kind id of the left and right terrain strip (grass or terrain)."""
    crossings: np.ndarray
    """[C, 2] (a centre, half width) of crossing streets."""
    start: float
    end: float

    def near_crossing(self, a0: float, a1: float, pad: float) -> bool:
        """Whether the span [a0, a1] comes within ``pad`` of a crossing street."""
        return any(a1 > ac - hw - pad and a0 < ac + hw + pad for ac, hw in self.crossings)

    def ground_kind(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Kind ids of the ground at street coordinates (a, b) (same shape as a)."""
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


def street_to_global(origin: np.ndarray, heading: float, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global (x, y) of street coordinates (a, b) (any shape) for a street frame at ``origin`` [2] with ``heading``."""
    c, s = math.cos(heading), math.sin(heading)
    ox, oy = float(origin[0]), float(origin[1])
    return ox + c * a - s * b, oy + s * a + c * b


def global_to_street(origin: np.ndarray, heading: float, x: np.ndarray, y: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Street coordinates (a, b) of global (x, y) (any shape): the inverse of :func:`street_to_global`."""
    c, s = math.cos(heading), math.sin(heading)
    dx, dy = x - float(origin[0]), y - float(origin[1])
    return c * dx + s * dy, -s * dx + c * dy


def draw_street(rng: np.random.Generator, path_length: float, p: StreetParams) -> Street:
    """The street around an ego path of ``path_length`` metres starting at a = 0."""
    road_half, sidewalk = rng.uniform(*p.road_half_width), rng.uniform(*p.sidewalk_width)
    terrain = (float(rng.uniform(*p.terrain_width)), float(rng.uniform(*p.terrain_width)))
    terrain_kind = (K["grass"] if rng.random() < p.grass_probability else K["terrain"],
                    K["grass"] if rng.random() < p.grass_probability else K["terrain"])
    start, end = -p.margin, path_length + p.margin
    crossings = np.array([(rng.uniform(p.crossing_clearance, end - p.crossing_clearance),
                           rng.uniform(*p.crossing_half_width))
                          for _ in range(rng.integers(*p.crossings))]).reshape(-1, 2)
    return Street(road_half=road_half, sidewalk=sidewalk, terrain=terrain, terrain_kind=terrain_kind,
                  crossings=crossings, start=start, end=end)
