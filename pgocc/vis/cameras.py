"""The six camera images of a frame beside the depth the Gaussians render into them."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pgocc.data.layout import CAMERAS
from pgocc.vis.palette import new_figure, save_png

LAYOUT: tuple[tuple[str, ...], ...] = (
    ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
    ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"),
)
"""Where each camera goes: front row, then back row, as seen from the driver's seat (left on the left)."""


def camera_picture(path: str | os.PathLike[str], images: np.ndarray, depth: np.ndarray, *,
                   cameras: Sequence[str] = CAMERAS, title: str = "", depth_label: str = "rendered depth (m)"
                   ) -> Path:
    """Each camera's image above its depth map (one shared colour scale; pixels with depth 0 are left dark).

    Args:
        path: PNG to write.
        images: [N, H, W, 3] uint8 RGB, in the order of ``cameras``.
        depth: [N, H', W'] float metres, in the order of ``cameras`` (0 = nothing rendered).
        cameras: the N camera names (must include the six of :data:`LAYOUT`).
        title: figure title (sample name).
        depth_label: colour-bar caption.
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"camera_picture: images must be uint8 [N, H, W, 3] RGB, got {images.dtype} {images.shape}")
    if depth.ndim != 3 or depth.shape[0] != images.shape[0] or len(cameras) != images.shape[0]:
        raise ValueError(f"camera_picture: depth must be [N={images.shape[0]}, H, W] and cameras N names, got "
                         f"depth {depth.shape} and {len(cameras)} names")
    row_of = {name: i for i, name in enumerate(cameras)}
    covered = depth[depth > 0]
    vmax = float(np.percentile(covered, 99)) if covered.size else 1.0
    aspect = images.shape[1] / images.shape[2]
    fig = new_figure(12.0, 4 * 4.0 * aspect + 1.6)
    fig.subplots_adjust(left=0.01, right=0.9, top=0.93, bottom=0.01, wspace=0.03, hspace=0.12)
    image = None
    for r, row in enumerate(LAYOUT):
        for c, name in enumerate(row):
            n = row_of[name]
            ax = fig.add_subplot(4, 3, 2 * r * 3 + c + 1)
            ax.imshow(images[n])
            ax.set_title(name, fontsize=9)
            ax.set_axis_off()
            ax = fig.add_subplot(4, 3, (2 * r + 1) * 3 + c + 1)
            ax.set_facecolor("black")
            image = ax.imshow(np.ma.masked_less_equal(depth[n], 0), cmap="turbo", vmin=0.0, vmax=vmax,
                              interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
    cax = fig.add_axes((0.92, 0.1, 0.02, 0.8))
    fig.colorbar(image, cax=cax, label=depth_label + ("" if covered.size else " — nothing rendered"))
    if title:
        fig.suptitle(title, fontsize=11)
    return save_png(fig, path)
