"""Occ3D occupancy metrics (docs/model.md §8.1), as pure functions of a confusion matrix plus an accumulator.

    confusion[g, p] = voxels with ground truth g and prediction p (rows: ground truth), inside mask_camera
    IoU_c = TP_c / (TP_c + FP_c + FN_c), NaN where class c has no ground-truth voxel
    mIoU (15) = mean of IoU_c over EVAL_CLASSES (others, other_flat and free dropped), NaN classes skipped
    mIoU (17) = mean of IoU_c over the 17 occupied labels 0..16, NaN classes skipped
    geometric IoU = IoU of "occupied" (label < 17) vs free, NaN where the ground truth has no occupied voxel
    geometric IoU above ground = the geometric IoU over the layers above GROUND_LAYER only

The absent-class rule is the original evaluation's (``per_class_iu`` of its ``Metric_mIoU``): a class without a
ground-truth voxel in the whole split gets NaN, even where it is predicted, and the means skip it; a class that is in
the ground truth but never predicted gets 0. Over the nuScenes val split every class is present, so the rule only
matters on small worlds, where an mIoU that counted hallucinated absent classes as 0 would measure false alarms of
classes the scene lacks. The geometric IoU follows the original's 2-class reading (occupied vs free) with the same
rule. Why the last one: on a world whose visible occupied voxels are mostly ground, "the ground layer is road, the
rest free" already scores a high geometric IoU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pgocc.data.occ3d import FREE, GROUND_LAYER, OCC3D_CLASSES

NUM_LABELS = len(OCC3D_CLASSES)
"""18 Occ3D labels (0 others … 16 vegetation, 17 free)."""

EVAL_CLASSES: tuple[int, ...] = tuple(c for c in range(NUM_LABELS) if OCC3D_CLASSES[c] not in
                                      ("others", "other_flat", "free"))
"""The 15 labels of the open-vocabulary mIoU (others, other_flat and free are dropped: no prompt names them)."""

OCCUPIED_CLASSES: tuple[int, ...] = tuple(range(FREE))
"""The 17 labels of the closed-set mIoU (every label but free)."""


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


def per_class_iou(confusion: np.ndarray) -> np.ndarray:
    """[C] IoU of each label of a [C, C] confusion matrix (rows ground truth); NaN where the label has no
    ground-truth count (the original's absent-class rule)."""
    tp = np.diag(confusion)
    iou = _ratio(tp, confusion.sum(0) + confusion.sum(1) - tp)
    iou[confusion.sum(1) == 0] = np.nan
    return iou


def mean_iou(iou: np.ndarray, classes: tuple[int, ...]) -> float:
    """Mean of ``iou[classes]`` skipping NaN; NaN if every one is NaN."""
    chosen = iou[list(classes)]
    return float("nan") if np.isnan(chosen).all() else float(np.nanmean(chosen))


def geometric_iou(confusion: np.ndarray) -> float:
    """IoU of occupied (label < free) vs free of an [18, 18] confusion matrix; NaN if the ground truth has no
    occupied voxel."""
    if confusion[:FREE].sum() == 0:
        return float("nan")
    both = confusion[:FREE, :FREE].sum()
    return float(both / (confusion.sum() - confusion[FREE, FREE]))


@dataclass(frozen=True, slots=True)
class OccupancyScores:
    """What :meth:`OccupancyMIoU.compute` reports; IoUs are fractions in [0, 1] (papers print × 100). Every number
    follows the original's absent-class rule (module docstring)."""

    per_class_iou: np.ndarray
    """[18] IoU of each label (NaN where the ground truth has no voxel of it)."""
    miou: float
    """Mean IoU over the 15 :data:`EVAL_CLASSES` (the open-vocabulary mIoU), NaN classes skipped; NaN if all are."""
    miou_17: float
    """Mean IoU over the 17 :data:`OCCUPIED_CLASSES` (the closed-set mIoU), NaN classes skipped."""
    geometric_iou: float
    """IoU of occupied (label < 17) vs free; NaN if the ground truth has no occupied voxel."""
    geometric_iou_above_ground: float
    """Geometric IoU over the voxels above the ground layer (z index > GROUND_LAYER); NaN if the ground truth has no
    occupied voxel there."""
    voxels: int
    """Voxels counted (inside the camera masks) over all samples."""
    samples: int
    """Samples accumulated."""

    def as_dict(self) -> dict[str, object]:
        """JSON-able: NaN becomes None; per-class IoUs keyed by class name."""
        return {"miou": _num(self.miou), "miou_17": _num(self.miou_17), "geometric_iou": _num(self.geometric_iou),
                "geometric_iou_above_ground": _num(self.geometric_iou_above_ground),
                "per_class_iou": {OCC3D_CLASSES[c]: _num(v) for c, v in enumerate(self.per_class_iou)},
                "eval_classes": [OCC3D_CLASSES[c] for c in EVAL_CLASSES], "voxels": self.voxels,
                "samples": self.samples}


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


class OccupancyMIoU:
    """Accumulates the confusion matrix over samples (docs/model.md §8.1), and a second one over the layers above
    the ground. Its arrays and ``samples`` are sums, so processes combine them by all-reduce (pgocc.eval.loop)."""

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
        iou = per_class_iou(c)
        return OccupancyScores(per_class_iou=iou, miou=mean_iou(iou, EVAL_CLASSES),
                               miou_17=mean_iou(iou, OCCUPIED_CLASSES), geometric_iou=geometric_iou(c),
                               geometric_iou_above_ground=geometric_iou(self.confusion_above_ground),
                               voxels=int(c.sum()), samples=self.samples)
