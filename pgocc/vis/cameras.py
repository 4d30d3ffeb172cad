"""Per camera: the image, the foundation depth the model was given, the depth its Gaussians render, and the first
three principal components of the features they render (as RGB)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pgocc.data.layout import CAMERAS
from pgocc.vis.palette import new_figure, save_png

ORDER: tuple[str, ...] = ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_LEFT", "CAM_BACK",
                          "CAM_BACK_RIGHT")
"""Column order: the front cameras, then the back ones, each left to right as seen from the driver's seat."""

DEPTH_SCALE_MAX = 80.0
"""Metres: depths at or beyond this (a synthetic world's sky is 100 m) do not set the colour scale."""


def feature_pca(features: np.ndarray) -> np.ndarray:
    """[N, H, W, D] rendered features → [N, H, W, 3] RGB in [0, 1]: the projection of every non-zero pixel on the
    three principal components of all of them (shared by the cameras, so one colour means one feature), each
    stretched between its 1st and 99th percentile; zero pixels (nothing rendered) black."""
    n, h, w, d = features.shape
    flat = features.reshape(-1, d).astype(np.float64)
    covered = np.abs(flat).sum(1) > 0
    out = np.zeros((flat.shape[0], 3))
    if covered.sum() >= 3:
        x = flat[covered] - flat[covered].mean(0)
        # Principal axes: eigenvectors of the [D, D] scatter matrix, largest eigenvalue first.
        _, vectors = np.linalg.eigh(x.T @ x)
        k = min(3, d)
        proj = x @ vectors[:, ::-1][:, :k]
        lo, hi = np.percentile(proj, 1, axis=0), np.percentile(proj, 99, axis=0)
        out[covered, :k] = np.clip((proj - lo) / np.maximum(hi - lo, 1e-12), 0, 1)
    return out.reshape(n, h, w, 3)


def camera_picture(path: str | os.PathLike[str], images: np.ndarray, *, rendered: np.ndarray,
                   foundation: np.ndarray | None = None, features: np.ndarray | None = None,
                   cameras: Sequence[str] = CAMERAS, title: str = "") -> Path:
    """One column per camera; rows: image, foundation depth, rendered depth (one colour scale for both depths;
    pixels with depth 0 are black), rendered-feature PCA.

    Args:
        path: PNG to write.
        images: [N, H, W, 3] uint8 RGB, in the order of ``cameras``.
        rendered: [N, H', W'] depth rendered from the Gaussians, metres (0 = nothing rendered).
        foundation: [N, H', W'] the model's input depth, metres; None: row left out.
        features: [N, H', W', D] rendered features; None: row left out.
        cameras: the N camera names (must include the six of :data:`ORDER`).
        title: figure title (sample name).
    """
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"camera_picture: images must be uint8 [N, H, W, 3] RGB, got {images.dtype} {images.shape}")
    n = images.shape[0]
    for name, a, dims in (("rendered depth", rendered, "H, W"), ("foundation depth", foundation, "H, W"),
                          ("features", features, "H, W, D")):
        if a is not None and (a.ndim != dims.count(",") + 2 or a.shape[0] != n):
            raise ValueError(f"camera_picture: {name} must be [N={n}, {dims}], got {a.shape}")
    if len(cameras) != n:
        raise ValueError(f"camera_picture: {len(cameras)} camera names for {n} images")
    row_of = {name: i for i, name in enumerate(cameras)}
    # One scale for both depths, from the foundation depth below DEPTH_SCALE_MAX (the sky, stored as 100 m, would
    # squeeze everything else into the bottom colours); farther pixels saturate.
    reference = foundation if foundation is not None else rendered
    covered = reference[(reference > 0) & (reference < DEPTH_SCALE_MAX)]
    vmax = float(np.percentile(covered, 99)) if covered.size else 1.0
    rows: list[tuple[str, np.ndarray, bool]] = [("image", images, False)]
    if foundation is not None:
        rows.append(("foundation depth (input)", foundation, True))
    rows.append(("rendered depth" + ("" if (rendered > 0).any() else " — nothing rendered"), rendered, True))
    if features is not None:
        rows.append(("rendered features (PCA)", feature_pca(features), False))
    aspect = images.shape[1] / images.shape[2]
    width = 16.0
    fig = new_figure(width, len(rows) * (width / 6) * aspect + 1.4)
    fig.subplots_adjust(left=0.04, right=0.92, top=0.9, bottom=0.02, wspace=0.03, hspace=0.18)
    depth_image = None
    for r, (label, data, is_depth) in enumerate(rows):
        for c, name in enumerate(ORDER):
            ax = fig.add_subplot(len(rows), len(ORDER), r * len(ORDER) + c + 1)
            if is_depth:
                ax.set_facecolor("black")
                depth_image = ax.imshow(np.ma.masked_less_equal(data[row_of[name]], 0), cmap="turbo", vmin=0.0,
                                        vmax=vmax, interpolation="nearest")
            else:
                ax.imshow(data[row_of[name]], interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name.removeprefix("CAM_"), fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
    if depth_image is not None:
        cax = fig.add_axes((0.935, 0.15, 0.012, 0.6))
        fig.colorbar(depth_image, cax=cax, label="depth (m)", extend="max")
    if title:
        fig.suptitle(title, fontsize=11)
    return save_png(fig, path)
