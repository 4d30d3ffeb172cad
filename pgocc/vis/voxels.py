"""A 3D view of occupied voxels: the prediction beside the camera-visible ground truth, each occupied voxel a square
marker in its class colour, around the ego vehicle."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pgocc.data.occ3d import FREE, GRID_MIN, VOXEL_SIZE
from pgocc.vis.palette import OCC3D_COLORS, class_legend, new_figure, save_png

MAX_POINTS = 40_000
"""Markers per panel: an evenly strided subset above this (drawing every voxel of a full grid takes minutes)."""


def _points(labels: np.ndarray, keep: np.ndarray, origin: Sequence[float], voxel_size: float, reach: float
            ) -> tuple[np.ndarray, np.ndarray]:
    """([P, 3] centres, [P] labels) of the voxels in ``keep`` within ``reach`` metres of the ego in x and y."""
    idx = np.argwhere(keep)
    centres = np.asarray(origin[:3]) + voxel_size * (idx + 0.5)
    near = (np.abs(centres[:, 0]) <= reach) & (np.abs(centres[:, 1]) <= reach)
    idx, centres = idx[near], centres[near]
    if len(idx) > MAX_POINTS:
        pick = np.linspace(0, len(idx) - 1, MAX_POINTS).astype(np.int64)
        idx, centres = idx[pick], centres[pick]
    return centres, labels[tuple(idx.T)]


def voxel_picture(path: str | os.PathLike[str], pred: np.ndarray, gt: np.ndarray | None = None,
                  gt_mask: np.ndarray | None = None, *, title: str = "", origin: Sequence[float] = GRID_MIN,
                  voxel_size: float = VOXEL_SIZE, reach: float = 25.0) -> Path:
    """Occupied voxels in 3D within ``reach`` metres (x and y) of the ego, viewed from behind and above.

    Args:
        path: PNG to write.
        pred: [X, Y, Z] predicted labels.
        gt: [X, Y, Z] ground-truth labels, or None.
        gt_mask: [X, Y, Z] bool camera-visibility mask: only visible ground-truth voxels are drawn.
        title: figure title.
        origin: (x, y, z) of the grid's lower corner, metres.
        voxel_size: voxel edge, metres.
        reach: half side of the square drawn, metres.
    """
    panels = [("prediction", pred, pred != FREE)]
    if gt is not None:
        keep = gt != FREE if gt_mask is None else (gt != FREE) & gt_mask.astype(bool)
        panels.append(("ground truth" + (" (camera-visible)" if gt_mask is not None else ""), gt, keep))
    fig = new_figure(6.5 * len(panels), 6.5)
    fig.subplots_adjust(left=0.0, right=1.0, top=0.9, bottom=0.14, wspace=0.0)
    shown = []
    for i, (name, labels, keep) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1, projection="3d")
        xyz, cls = _points(labels, keep, origin, voxel_size, reach)
        shown.append(cls)
        if len(cls):
            ax.scatter(xyz[:, 0], xyz[:, 1], xyz[:, 2], c=OCC3D_COLORS[cls] / 255, marker="s", s=4, depthshade=False,
                       linewidths=0)
        ax.set_xlim(-reach, reach)
        ax.set_ylim(-reach, reach)
        ax.set_zlim(origin[2], origin[2] + voxel_size * labels.shape[2])
        ax.set_box_aspect((2 * reach, 2 * reach, 4 * voxel_size * labels.shape[2]))
        ax.view_init(elev=35, azim=-150)
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
        ax.set_zlabel("z (m)")
        ax.set_title(f"{name}: {len(cls)} occupied voxels within {reach:g} m", fontsize=10)
    class_legend(fig, np.concatenate(shown), free=False)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_png(fig, path)
