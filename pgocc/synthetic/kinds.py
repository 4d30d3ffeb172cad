"""The kinds of surface and object in the synthetic world: Occ3D label, text prompt, nuScenes category, colour, size."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgocc.data.occ3d import FREE

Color = tuple[float, float, float]
"""RGB in [0, 1]."""


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
    color: Color
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

# Typical sizes (w, l, h) in metres (docs/data.md §5), jittered per instance (SceneParams.size_jitter).
VEHICLE_SIZES: dict[str, tuple[float, float, float]] = {
    "car": (1.9, 4.6, 1.7), "bus": (2.9, 11.0, 3.5), "truck": (2.5, 7.0, 3.0), "trailer": (2.5, 8.0, 3.2),
    "construction_vehicle": (2.8, 6.5, 3.2), "motorcycle": (0.8, 2.1, 1.4), "bicycle": (0.6, 1.7, 1.3),
}
PARKED_MIX: tuple[tuple[str, float], ...] = (
    ("car", 0.68), ("truck", 0.08), ("trailer", 0.05), ("bus", 0.04), ("construction_vehicle", 0.04),
    ("motorcycle", 0.06), ("bicycle", 0.05))
"""(kind, relative frequency) of parked vehicles."""
CAR_PALETTE: tuple[Color, ...] = (
    (0.60, 0.10, 0.12), (0.12, 0.20, 0.55), (0.85, 0.85, 0.85), (0.10, 0.10, 0.11), (0.50, 0.52, 0.55),
    (0.15, 0.40, 0.20), (0.75, 0.70, 0.55))
"""Body colours of cars (and clothes of pedestrians)."""
BUILDING_PALETTE: tuple[Color, ...] = (
    (0.72, 0.66, 0.58), (0.62, 0.36, 0.28), (0.78, 0.78, 0.76), (0.55, 0.56, 0.60), (0.85, 0.80, 0.66))
TRUNK_COLOR: Color = (0.35, 0.25, 0.15)
