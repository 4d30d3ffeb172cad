"""Occ3D class colours (the palette of the Occ3D / SurroundOcc visualisations, with manmade darkened from its
near-white lavender so that it stands out from free space) and the shared figure helpers."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from pgocc.data.occ3d import OCC3D_CLASSES

OCC3D_COLORS: np.ndarray = np.array([
    (0, 0, 0),          # 0 others
    (255, 120, 50),     # 1 barrier
    (255, 192, 203),    # 2 bicycle
    (255, 255, 0),      # 3 bus
    (0, 150, 245),      # 4 car
    (0, 255, 255),      # 5 construction_vehicle
    (200, 180, 0),      # 6 motorcycle
    (255, 0, 0),        # 7 pedestrian
    (255, 240, 150),    # 8 traffic_cone
    (135, 60, 0),       # 9 trailer
    (160, 32, 240),     # 10 truck
    (255, 0, 255),      # 11 driveable_surface
    (139, 137, 137),    # 12 other_flat
    (75, 0, 75),        # 13 sidewalk
    (150, 240, 80),     # 14 terrain
    (110, 110, 190),    # 15 manmade (the usual (230, 230, 250) is hard to tell from white free space)
    (0, 175, 0),        # 16 vegetation
    (255, 255, 255),    # 17 free
], np.uint8)
"""[18, 3] RGB colour of each Occ3D label."""
OCC3D_COLORS.flags.writeable = False

UNOBSERVED_RGB = (200, 200, 200)
"""Columns that no camera sees (ground-truth panels) and columns without occupied voxels (heat maps)."""


def new_figure(width: float, height: float) -> Figure:
    """A figure on its own Agg canvas (independent of pyplot's global state and backend)."""
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def class_legend(fig: Figure, labels: np.ndarray, *, free: bool = True, unobserved: bool = False) -> None:
    """A legend at the figure's bottom: the classes present in ``labels``, then, with ``free``, what white means (no
    occupied voxel in the column) and, with ``unobserved``, grey (no camera sees the column, so it is not scored)."""
    present = [int(c) for c in np.unique(labels) if c < len(OCC3D_CLASSES) - 1]
    handles = [Patch(facecolor=OCC3D_COLORS[c] / 255, edgecolor="black", linewidth=0.5,
                     label=f"{c} {OCC3D_CLASSES[c]}") for c in present]
    if free:
        handles.append(Patch(facecolor=OCC3D_COLORS[-1] / 255, edgecolor="black", linewidth=0.5,
                             label="free (no occupied voxel)"))
    if unobserved:
        handles.append(Patch(facecolor=np.array(UNOBSERVED_RGB) / 255, edgecolor="black", linewidth=0.5,
                             label="unobserved (not scored)"))
    if not handles:
        return
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=8, frameon=False)


def save_png(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write ``fig`` to ``path`` through a temporary file renamed at the end (no half-written picture)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path
