"""Occ3D occupancy metrics (ALGORITHM.md §8.1): a confusion matrix over the 18 labels, accumulated over a split and
restricted to camera-visible voxels, read out as per-class IoU, the 15-class mIoU and the geometric IoU.

    confusion[g, p] = voxels with ground truth g and prediction p (rows: ground truth), inside mask_camera
    IoU_c = TP_c / (TP_c + FP_c + FN_c)                       NaN where the union is empty
    mIoU = mean of IoU_c over EVAL_CLASSES, NaN classes skipped (absent from ground truth and prediction)
    geometric IoU = IoU of "occupied" (label < 17) vs free

A class absent from the ground truth but predicted has IoU 0 (its union is not empty), as in the released
evaluation's ``diag / (rows + cols − diag)``; over the nuScenes val split every class is present, so the two readings
of "NaN for classes absent from GT" agree there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgocc.data.occ3d import FREE, OCC3D_CLASSES

NUM_LABELS = len(OCC3D_CLASSES)
"""18 Occ3D labels (0 others … 16 vegetation, 17 free)."""

EVAL_CLASSES: tuple[int, ...] = tuple(c for c in range(NUM_LABELS) if OCC3D_CLASSES[c] not in
                                      ("others", "other_flat", "free"))
"""The 15 labels averaged by the reported mIoU (others, other_flat and free are dropped)."""


def confusion_matrix(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """[18, 18] int64 voxel counts, rows ground truth, columns prediction, over the voxels where ``mask`` is true.

    Args:
        pred: [...] predicted labels in 0..17 (any integer dtype).
        gt: [...] ground-truth labels in 0..17, the shape of ``pred``.
        mask: [...] bool voxels to count (Occ3D ``mask_camera``); None counts every voxel.
    """
    if pred.shape != gt.shape or (mask is not None and mask.shape != gt.shape):
        raise ValueError(f"confusion_matrix: pred {pred.shape}, gt {gt.shape} and mask "
                         f"{None if mask is None else mask.shape} must have one shape")
    p = pred.astype(np.int64, copy=False)
    g = gt.astype(np.int64, copy=False)
    if mask is not None:
        p, g = p[mask.astype(bool, copy=False)], g[mask.astype(bool, copy=False)]
    for name, a in (("pred", p), ("gt", g)):
        if a.size and (a.min() < 0 or a.max() >= NUM_LABELS):
            raise ValueError(f"confusion_matrix: {name} labels must be in 0..{NUM_LABELS - 1}, "
                             f"got {a.min()}..{a.max()}")
    return np.bincount((g * NUM_LABELS + p).ravel(), minlength=NUM_LABELS ** 2).reshape(NUM_LABELS, NUM_LABELS)


def _ratio(num: np.ndarray | float, den: np.ndarray | float) -> np.ndarray:
    """num / den with NaN where den is 0 (no warning)."""
    num, den = np.asarray(num, np.float64), np.asarray(den, np.float64)
    return np.divide(num, den, out=np.full(np.broadcast(num, den).shape, np.nan), where=den > 0)


@dataclass(frozen=True, slots=True)
class OccupancyScores:
    """What :meth:`OccupancyMIoU.compute` reports; IoUs are fractions in [0, 1] (papers print × 100)."""

    per_class_iou: np.ndarray
    """[18] IoU of each label (NaN where neither ground truth nor prediction has it)."""
    miou: float
    """Mean IoU over :data:`EVAL_CLASSES`, NaN classes skipped; NaN if all are."""
    geometric_iou: float
    """IoU of occupied (label < 17) vs free; NaN if neither has an occupied voxel."""
    voxels: int
    """Voxels counted (inside the camera masks) over all samples."""
    samples: int
    """Samples accumulated."""

    def as_dict(self) -> dict[str, object]:
        """JSON-able: NaN becomes None; per-class IoUs keyed by class name."""

        def num(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return {"miou": num(self.miou), "geometric_iou": num(self.geometric_iou),
                "per_class_iou": {OCC3D_CLASSES[c]: num(v) for c, v in enumerate(self.per_class_iou)},
                "eval_classes": [OCC3D_CLASSES[c] for c in EVAL_CLASSES], "voxels": self.voxels,
                "samples": self.samples}


class OccupancyMIoU:
    """Accumulates the confusion matrix over samples (ALGORITHM.md §8.1)."""

    def __init__(self) -> None:
        self.confusion = np.zeros((NUM_LABELS, NUM_LABELS), np.int64)
        self.samples = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> None:
        """Add one sample: ``pred``, ``gt`` [X, Y, Z] labels and its camera mask (see :func:`confusion_matrix`)."""
        self.confusion += confusion_matrix(pred, gt, mask)
        self.samples += 1

    def compute(self) -> OccupancyScores:
        c = self.confusion
        tp = np.diag(c)
        per_class = _ratio(tp, c.sum(0) + c.sum(1) - tp)
        chosen = per_class[list(EVAL_CLASSES)]
        miou = float(np.nan if np.isnan(chosen).all() else np.nanmean(chosen))
        occupied_tp = c[:FREE, :FREE].sum()
        geometric = float(_ratio(occupied_tp, c.sum() - c[FREE, FREE]))
        return OccupancyScores(per_class_iou=per_class, miou=miou, geometric_iou=geometric, voxels=int(c.sum()),
                               samples=self.samples)
