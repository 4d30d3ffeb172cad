"""Evaluation: occupancy metrics (docs/model.md §8)."""

from pgocc.eval.metrics import EVAL_CLASSES, OccupancyMIoU, OccupancyScores, confusion_matrix

__all__ = ["EVAL_CLASSES", "OccupancyMIoU", "OccupancyScores", "confusion_matrix"]
