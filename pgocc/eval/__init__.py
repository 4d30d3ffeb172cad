"""Evaluation (docs/model.md §8): occupancy metrics (metrics), RayIoU (rays), depth metrics (depth), retrieval AP
(retrieval), saved predictions and their scores (predictions), the inference loop over a split (infer), the
training-time validation loop (loop), label-only baselines (baselines) and the demo (demo)."""

from pgocc.eval.metrics import EVAL_CLASSES, OccupancyMIoU, OccupancyScores, confusion_matrix

__all__ = ["EVAL_CLASSES", "OccupancyMIoU", "OccupancyScores", "confusion_matrix"]
