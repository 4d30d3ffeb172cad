"""Label-only baselines that a trained model must beat (they see no image): what an occupancy score is worth.

- :func:`ground_plane_labels`: the ground layer is driveable surface, every other voxel free. On a world whose
  camera-visible occupied voxels are mostly ground it already scores a high geometric IoU.
- :class:`HeightPrior`: the most common label of each height layer over the camera-visible voxels of a training
  set, everywhere in that layer.
"""

from __future__ import annotations

import numpy as np

from pgocc.data.occ3d import FREE, GROUND_LAYER, OCC3D_CLASSES

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
