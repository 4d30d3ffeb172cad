"""Occ3D occupancy metrics (docs/model.md §8.1): a confusion matrix over the 18 labels, accumulated over a split and
restricted to camera-visible voxels, read out as per-class IoU, the 15-class mIoU and the geometric IoU.

    confusion[g, p] = voxels with ground truth g and prediction p (rows: ground truth), inside mask_camera
    IoU_c = TP_c / (TP_c + FP_c + FN_c)                       NaN where the union is empty
    mIoU = mean of IoU_c over EVAL_CLASSES, NaN classes skipped (absent from ground truth and prediction)
    geometric IoU = IoU of "occupied" (label < 17) vs free
    mIoU (present) = mean of IoU_c over the EVAL_CLASSES that the ground truth holds
    geometric IoU above ground = the geometric IoU over the layers above GROUND_LAYER only

Why the last two: on a world whose visible occupied voxels are mostly ground, "the ground layer is road, the rest
free" already scores a high geometric IoU, and an mIoU over classes the ground truth lacks measures hallucinations
rather than recognition.

A class absent from the ground truth but predicted has IoU 0 (its union is not empty), as in the released
evaluation's ``diag / (rows + cols − diag)``; over the nuScenes val split every class is present, so the two readings
of "NaN for classes absent from GT" agree there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgocc.data.occ3d import FREE, GROUND_LAYER, OCC3D_CLASSES

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
    miou_present: float
    """Mean IoU over the :data:`EVAL_CLASSES` that have ground-truth voxels; NaN if none has."""
    geometric_iou_above_ground: float
    """Geometric IoU over the voxels above the ground layer (z index > GROUND_LAYER); NaN if neither ground truth
    nor prediction has an occupied voxel there."""
    voxels: int
    """Voxels counted (inside the camera masks) over all samples."""
    samples: int
    """Samples accumulated."""

    def as_dict(self) -> dict[str, object]:
        """JSON-able: NaN becomes None; per-class IoUs keyed by class name."""

        def num(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        return {"miou": num(self.miou), "geometric_iou": num(self.geometric_iou),
                "miou_present": num(self.miou_present),
                "geometric_iou_above_ground": num(self.geometric_iou_above_ground),
                "per_class_iou": {OCC3D_CLASSES[c]: num(v) for c, v in enumerate(self.per_class_iou)},
                "eval_classes": [OCC3D_CLASSES[c] for c in EVAL_CLASSES], "voxels": self.voxels,
                "samples": self.samples}


def _geometric_iou(c: np.ndarray) -> float:
    """IoU of occupied (label < FREE) vs free from a confusion matrix."""
    return float(_ratio(c[:FREE, :FREE].sum(), c.sum() - c[FREE, FREE]))


class OccupancyMIoU:
    """Accumulates the confusion matrix over samples (docs/model.md §8.1), and a second one over the layers above
    the ground."""

    def __init__(self) -> None:
        self.confusion = np.zeros((NUM_LABELS, NUM_LABELS), np.int64)
        self.confusion_above_ground = np.zeros((NUM_LABELS, NUM_LABELS), np.int64)
        self.samples = 0

    def update(self, pred: np.ndarray, gt: np.ndarray, mask: np.ndarray | None) -> None:
        """Add one sample: ``pred``, ``gt`` [X, Y, Z] labels and its camera mask (see :func:`confusion_matrix`)."""
        if gt.ndim != 3:
            raise ValueError(f"OccupancyMIoU.update: expected [X, Y, Z] labels, got shape {gt.shape}")
        self.confusion += confusion_matrix(pred, gt, mask)
        above = np.s_[..., GROUND_LAYER + 1:]
        self.confusion_above_ground += confusion_matrix(pred[above], gt[above],
                                                        None if mask is None else mask[above])
        self.samples += 1

    def compute(self) -> OccupancyScores:
        c = self.confusion
        tp = np.diag(c)
        per_class = _ratio(tp, c.sum(0) + c.sum(1) - tp)
        chosen = per_class[list(EVAL_CLASSES)]
        miou = float(np.nan if np.isnan(chosen).all() else np.nanmean(chosen))
        present = [k for k in EVAL_CLASSES if c[k].sum() > 0]
        miou_present = float(np.mean(per_class[present])) if present else float("nan")
        return OccupancyScores(per_class_iou=per_class, miou=miou, geometric_iou=_geometric_iou(c),
                               miou_present=miou_present,
                               geometric_iou_above_ground=_geometric_iou(self.confusion_above_ground),
                               voxels=int(c.sum()), samples=self.samples)
