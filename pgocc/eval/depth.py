"""Depth metrics of a rendered depth map against a ground-truth depth map (docs/model.md §8.3).

Per image: the prediction is resized bilinearly to the ground truth's size; pixels with 0.1 < gt < 80 m count; the
prediction is clamped to [0.1, 80] m. Then, over the n counted pixels (p predicted, g true):

    abs_rel  = mean |p − g| / g             sq_rel   = mean (p − g)² / g
    rmse     = sqrt(mean (p − g)²)          rmse_log = sqrt(mean (ln p − ln g)²)
    δ_k      = fraction with max(p/g, g/p) < 1.25^k, k = 1, 2, 3

Over a split: per camera, the mean over the images that have counted pixels; then the mean over cameras.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

DEPTH_RANGE: tuple[float, float] = (0.1, 80.0)
"""Metres: ground-truth pixels strictly inside count; predictions are clamped to it."""

DEPTH_METRICS: tuple[str, ...] = ("abs_rel", "sq_rel", "rmse", "rmse_log", "delta_1.25", "delta_1.25^2",
                                  "delta_1.25^3")
"""Names of the seven numbers, in the order of :func:`depth_errors`."""


def depth_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """[7] the metrics of :data:`DEPTH_METRICS` of one image; NaN where no ground-truth pixel is in range.

    Args:
        pred: [H, W] predicted depth, metres, already at the ground truth's size.
        gt: [H, W] true depth, metres (0 or out of range: not counted).
    """
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f"depth_errors: pred {pred.shape} and gt {gt.shape} must be one [H, W] shape")
    lo, hi = DEPTH_RANGE
    valid = (gt > lo) & (gt < hi)
    if not valid.any():
        return np.full(len(DEPTH_METRICS), np.nan)
    g = gt[valid].astype(np.float64)
    p = np.clip(pred[valid].astype(np.float64), lo, hi)
    ratio = np.maximum(p / g, g / p)
    return np.array([np.mean(np.abs(p - g) / g), np.mean((p - g) ** 2 / g), np.sqrt(np.mean((p - g) ** 2)),
                     np.sqrt(np.mean((np.log(p) - np.log(g)) ** 2)), np.mean(ratio < 1.25),
                     np.mean(ratio < 1.25 ** 2), np.mean(ratio < 1.25 ** 3)])


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """[H, W] → ``size`` bilinear (half-pixel centres, as cv2.resize)."""
    if depth.shape == size:
        return depth
    t = torch.from_numpy(np.ascontiguousarray(depth, dtype=np.float32))[None, None]
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


@dataclass(frozen=True, slots=True)
class DepthScores:
    """What :meth:`DepthMetric.compute` reports."""

    values: dict[str, float]
    """Each metric of :data:`DEPTH_METRICS`: mean over cameras of the per-camera mean over images (NaN if none)."""
    images: int
    """Images with counted pixels."""

    def as_dict(self) -> dict[str, object]:
        out: dict[str, object] = {k: (None if np.isnan(v) else float(v)) for k, v in self.values.items()}
        out["images"] = self.images
        return out


class DepthMetric:
    """Accumulates per-camera sums of the per-image metrics (sums: all-reduce combines processes)."""

    def __init__(self, num_cams: int) -> None:
        self.sums = np.zeros((num_cams, len(DEPTH_METRICS)), np.float64)
        """[N, 7] sum over images of each camera's metrics."""
        self.counts = np.zeros(num_cams, np.int64)
        """[N] images of each camera with counted pixels."""

    def update(self, pred: np.ndarray, gt: list[np.ndarray]) -> None:
        """Add one sample: ``pred`` [N, h, w] rendered depth of its N cameras, ``gt`` N true maps of any size."""
        if len(gt) != self.counts.shape[0] or pred.shape[0] != len(gt):
            raise ValueError(f"DepthMetric.update: expected {self.counts.shape[0]} cameras, got {pred.shape[0]} "
                             f"predictions and {len(gt)} ground-truth maps")
        for n, g in enumerate(gt):
            e = depth_errors(resize_depth(pred[n], g.shape), g)
            if not np.isnan(e).any():
                self.sums[n] += e
                self.counts[n] += 1

    def compute(self) -> DepthScores:
        seen = self.counts > 0
        per_cam = self.sums[seen] / self.counts[seen, None]
        values = per_cam.mean(0) if seen.any() else np.full(len(DEPTH_METRICS), np.nan)
        return DepthScores(values=dict(zip(DEPTH_METRICS, values.tolist(), strict=True)),
                           images=int(self.counts.sum()))
