"""Bird's-eye views of an Occ3D voxel grid: the top-most occupied class per column, and per-query heat maps.

Grid arrays are [X, Y, Z] in the keyframe ego frame (x forward, y left, z up; docs/model.md §7.2). Pictures show x up
and y to the left, as seen from above with the car driving up the page; the ego sits at the origin.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

from pgocc.data.occ3d import FREE, GRID_MIN, VOXEL_SIZE
from pgocc.vis.palette import OCC3D_COLORS, UNOBSERVED_RGB, class_legend, new_figure, save_png


def top_labels(labels: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """[X, Y] label of the highest occupied (label ≠ free) voxel of each column; free where there is none.

    Args:
        labels: [X, Y, Z] Occ3D labels.
        mask: [X, Y, Z] bool voxels to consider (e.g. ``mask_camera``); None: all.
    """
    occupied = labels != FREE
    if mask is not None:
        occupied &= mask.astype(bool)
    Z = labels.shape[-1]
    top = Z - 1 - np.argmax(occupied[..., ::-1], axis=-1)                        # highest occupied z (if any)
    picked = np.take_along_axis(labels, top[..., None], axis=-1)[..., 0]
    return np.where(occupied.any(-1), picked, FREE).astype(np.uint8)


def _extent(shape: Sequence[int], origin: Sequence[float], voxel_size: float) -> tuple[float, float, float, float]:
    """imshow extent (left, right, bottom, top) of a view made by :func:`_view`: y from +y_max to y_min, x up."""
    x0, y0 = origin[0], origin[1]
    return (y0 + shape[1] * voxel_size, y0, x0, x0 + shape[0] * voxel_size)


def _view(a: np.ndarray) -> np.ndarray:
    """[X, Y, ...] → rows of decreasing x (forward at the top), columns of decreasing y (left on the left)."""
    return a[::-1, ::-1]


def _decorate(ax: Axes, title: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("y (m, left +)")
    ax.set_ylabel("x (m, forward +)")
    # The ego: a 4.5 m × 1.9 m car outline at the origin.
    ax.add_patch(Rectangle((0.95, -2.25), -1.9, 4.5, fill=False, edgecolor="black", linewidth=1.0))


def bev_picture(path: str | os.PathLike[str], pred: np.ndarray, gt: np.ndarray | None = None,
                gt_mask: np.ndarray | None = None, *, title: str = "", origin: Sequence[float] = GRID_MIN,
                voxel_size: float = VOXEL_SIZE) -> Path:
    """The predicted occupancy from above, beside the ground truth when given.

    Args:
        path: PNG to write.
        pred: [X, Y, Z] predicted labels.
        gt: [X, Y, Z] ground-truth labels, or None.
        gt_mask: [X, Y, Z] bool camera-visibility mask of ``gt``: only visible voxels are drawn, columns with no
            visible voxel are grey (what the mIoU evaluates).
        title: figure title (sample name).
        origin: (x, y) of the grid's lower corner, metres.
        voxel_size: voxel edge, metres.
    """
    panels = [("prediction", top_labels(pred), None)]
    if gt is not None:
        unseen = None if gt_mask is None else ~gt_mask.astype(bool).any(-1)
        panels.append(("ground truth" + (" (camera-visible voxels)" if gt_mask is not None else ""),
                       top_labels(gt, gt_mask), unseen))
    fig = new_figure(5.6 * len(panels), 6.6)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.88, bottom=0.16, wspace=0.25)
    extent = _extent(pred.shape, origin, voxel_size)
    for i, (name, top, unseen) in enumerate(panels):
        rgb = OCC3D_COLORS[top].copy()
        if unseen is not None:
            rgb[unseen] = UNOBSERVED_RGB
        ax = fig.add_subplot(1, len(panels), i + 1)
        ax.imshow(_view(rgb), extent=extent, interpolation="nearest")
        occupied = int((top != FREE).sum())
        _decorate(ax, f"{name}\n{occupied} occupied columns" if occupied else f"{name}\nno occupied voxel")
    class_legend(fig, np.concatenate([p[1].ravel() for p in panels]), unobserved=gt_mask is not None)
    if title:
        fig.suptitle(title, fontsize=11)
    return save_png(fig, path)


def query_picture(path: str | os.PathLike[str], query: str, similarity: np.ndarray, occupied: np.ndarray, *,
                  title: str = "", origin: Sequence[float] = GRID_MIN, voxel_size: float = VOXEL_SIZE) -> Path:
    """Heat map of a text query from above: per column, the largest similarity over its occupied voxels.

    Args:
        path: PNG to write.
        query: the text.
        similarity: [X, Y, Z] density-normalised similarity of each voxel to the query.
        occupied: [X, Y, Z] bool occupied voxels (label ≠ free); columns without any are grey.
        title: figure title (sample name).
        origin: (x, y) of the grid's lower corner, metres.
        voxel_size: voxel edge, metres.
    """
    occupied = occupied.astype(bool)
    column = np.where(occupied, similarity.astype(np.float32), -np.inf).max(-1)
    any_occupied = occupied.any(-1)
    fig = new_figure(7.2, 6.0)
    fig.subplots_adjust(left=0.1, right=0.86, top=0.86, bottom=0.1)
    ax = fig.add_subplot(1, 1, 1)
    ax.set_facecolor(np.array(UNOBSERVED_RGB) / 255)
    heat = np.ma.masked_array(column, ~any_occupied)
    if any_occupied.any():
        image = ax.imshow(_view(heat), extent=_extent(similarity.shape, origin, voxel_size),
                          interpolation="nearest", cmap="viridis")
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="similarity")
        subtitle = "max similarity over the occupied voxels of each column"
    else:
        left, right, bottom, top = _extent(similarity.shape, origin, voxel_size)
        ax.set_xlim(left, right)
        ax.set_ylim(bottom, top)
        subtitle = "no occupied voxel"
    _decorate(ax, f"query {query!r}\n{subtitle}")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_png(fig, path)
