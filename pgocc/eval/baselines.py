"""Label-only baselines that a trained model must beat (they see no image): what an occupancy score is worth.

- :func:`ground_plane_labels`: the ground layer is driveable surface, every other voxel free. On a world whose
  camera-visible occupied voxels are mostly ground it already scores a high geometric IoU.
- :class:`HeightPrior`: the most common label of each height layer over the camera-visible voxels of a training
  set, everywhere in that layer.

And what the 2-D training targets themselves say about the 3-D scene, as an upper reference for a model taught by
them alone:

- :func:`lift_targets`: every render pixel of the current cameras lifted by its depth target into the voxel grid,
  voting with the prompt similarity of its feature-target cell.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from pgocc.data.occ3d import FREE, GRID_SHAPE, GROUND_LAYER, OCC3D_CLASSES, voxel_index
from pgocc.model.geometry import backproject, transform_points
from pgocc.model.readout import merge_labels

DRIVEABLE_SURFACE = OCC3D_CLASSES.index("driveable_surface")


def ground_plane_labels(grid_shape: tuple[int, int, int]) -> np.ndarray:
    """[X, Y, Z] uint8: driveable surface on layer :data:`GROUND_LAYER`, free elsewhere."""
    labels = np.full(grid_shape, FREE, np.uint8)
    labels[..., GROUND_LAYER] = DRIVEABLE_SURFACE
    return labels


class HeightPrior:
    """The most common camera-visible label of each Z layer, counted over the samples given to :meth:`update`."""

    def __init__(self, num_layers: int) -> None:
        self.counts = np.zeros((num_layers, len(OCC3D_CLASSES)), np.int64)
        """[Z, 18] visible voxels of each label per layer."""

    def update(self, gt: np.ndarray, mask: np.ndarray) -> None:
        """Count one training sample's [X, Y, Z] labels inside its [X, Y, Z] camera mask."""
        if gt.shape != mask.shape or gt.ndim != 3 or gt.shape[2] != self.counts.shape[0]:
            raise ValueError(f"HeightPrior.update: expected labels and mask [X, Y, {self.counts.shape[0]}], got "
                             f"{gt.shape} and {mask.shape}")
        for k in range(gt.shape[2]):
            self.counts[k] += np.bincount(gt[..., k][mask[..., k].astype(bool)], minlength=len(OCC3D_CLASSES))

    def labels(self, grid_shape: tuple[int, int, int]) -> np.ndarray:
        """[X, Y, Z] uint8: each layer's most common label (free for a layer with no visible voxel)."""
        if grid_shape[2] != self.counts.shape[0]:
            raise ValueError(f"HeightPrior.labels: fitted on {self.counts.shape[0]} layers, asked for {grid_shape}")
        best = np.where(self.counts.sum(1) > 0, self.counts.argmax(1), FREE).astype(np.uint8)
        return np.broadcast_to(best, grid_shape).copy()


@dataclass(frozen=True)
class LiftedTargets:
    """The 2-D targets of one sample lifted into the Occ3D grid (:func:`lift_targets`)."""

    labels: np.ndarray
    """[X, Y, Z] uint8: the best prompt group of the summed similarity where at least one pixel lands, else free."""
    hits: np.ndarray
    """[X, Y, Z] int64: how many render pixels land in each voxel."""

    def on_geometry(self, occupied: np.ndarray) -> np.ndarray:
        """[X, Y, Z] uint8 labels on a given geometry ``occupied`` [X, Y, Z] bool (e.g. the ground truth's): the
        lifted label where a pixel landed, ``others`` (0, never predicted) on an occupied voxel that none reached,
        free elsewhere. Scores the targets' semantics alone."""
        out = np.where(self.hits > 0, self.labels, 0).astype(np.uint8)
        return np.where(occupied, out, FREE).astype(np.uint8)


def lift_targets(depth: torch.Tensor, features: torch.Tensor, render_k: torch.Tensor, cam2ego: torch.Tensor,
                 prompts: torch.Tensor, column_labels: Sequence[int]) -> LiftedTargets:
    """Lift one sample's depth and feature targets into the voxel grid of :data:`GRID_SHAPE`.

    Each render pixel (u, v) with depth d > 0 goes to the ego-frame point ``cam2ego · d·K⁻¹[u, v, 1]``; the pixel's
    feature cell is the one of the [h, w] feature map that covers the pixel's centre (both maps span the whole field
    of view). A voxel's label is :func:`merge_labels` of the sum of its pixels' feature-prompt dot products.

    Args:
        depth: [N, H_r, W_r] metres, 0 where there is no depth.
        features: [N, D, h, w] feature targets.
        render_k: [N, 3, 3] intrinsics of the H_r × W_r pixel grid.
        cam2ego: [N, 4, 4] camera → ego.
        prompts: [K, D] prompt embeddings.
        column_labels: K Occ3D labels, one per prompt.
    """
    n, h_r, w_r = depth.shape
    if features.ndim != 4 or features.shape[0] != n or render_k.shape != (n, 3, 3) or cam2ego.shape != (n, 4, 4):
        raise ValueError(f"lift_targets: expected features [{n}, D, h, w], render_k [{n}, 3, 3] and cam2ego "
                         f"[{n}, 4, 4] for depth {tuple(depth.shape)}, got {tuple(features.shape)}, "
                         f"{tuple(render_k.shape)} and {tuple(cam2ego.shape)}")
    depth, render_k, cam2ego = depth.double(), render_k.double(), cam2ego.double()
    points = transform_points(cam2ego, backproject(depth, render_k))                      # [N, H_r, W_r, 3]
    h, w = features.shape[-2:]
    # (i + ½)·h/h_r < h for every i < h_r: no clamp needed.
    rows = ((torch.arange(h_r, dtype=torch.float64) + 0.5) * h / h_r).long()
    cols = ((torch.arange(w_r, dtype=torch.float64) + 0.5) * w / w_r).long()
    sim = torch.einsum("ndhw,kd->nhwk", features.double(), prompts.double())              # [N, h, w, K]
    pixel_sim = sim[:, rows][:, :, cols]                                                 # [N, H_r, W_r, K]
    idx = torch.from_numpy(voxel_index(points.numpy()))                                  # [N, H_r, W_r, 3]
    inside = (depth > 0) & ((idx >= 0) & (idx < torch.tensor(GRID_SHAPE))).all(-1)
    flat = (idx[inside] * torch.tensor([GRID_SHAPE[1] * GRID_SHAPE[2], GRID_SHAPE[2], 1])).sum(-1)
    size = int(np.prod(GRID_SHAPE))
    scores = torch.zeros(size, sim.shape[-1], dtype=torch.float64).index_add_(0, flat, pixel_sim[inside])
    hits = torch.bincount(flat, minlength=size)
    labels = torch.where(hits > 0, merge_labels(scores, column_labels), FREE)
    return LiftedTargets(labels=labels.to(torch.uint8).reshape(GRID_SHAPE).numpy(),
                         hits=hits.reshape(GRID_SHAPE).numpy())
