"""Saved occupancy predictions and their scores: what ``pgocc eval`` reads and ``pgocc infer`` writes.

    <predictions>/<sample token>.npz     key ``pred``: uint8 [200, 200, 16] Occ3D labels (17 = free), axes (x, y, z)
                                         of the keyframe ego frame (the convention other occupancy projects write)
    <labels root>/<scene>/<token>/labels.npz    the Occ3D labels (docs/data.md §2)

:func:`score_predictions` pairs every prediction with its labels and returns the Occ3D scores (pgocc.eval.metrics)
and, given the scenes' keyframe poses, RayIoU (pgocc.eval.rays). Any file that is not what it should be raises
DataError naming it.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pgocc.data.occ3d import FREE, GRID_SHAPE, OCC3D_CLASSES, load_labels
from pgocc.errors import DataError
from pgocc.eval.metrics import EVAL_CLASSES, OccupancyMIoU, OccupancyScores
from pgocc.eval.rays import THRESHOLDS, RayIoU, RayScores, keyframe_origins

PRED_KEY = "pred"
"""The array of a prediction file."""


def write_npz(path: Path, **arrays: np.ndarray) -> Path:
    """Compressed ``.npz`` written under a temporary name and renamed (no half-written file)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: object) -> Path:
    """JSON written under a temporary name and renamed."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)
    return path


def write_prediction(folder: Path, token: str, labels: np.ndarray) -> Path:
    """``folder/<token>.npz`` holding ``labels`` (uint8 [X, Y, Z]; [200, 200, 16] for Occ3D) as ``pred``."""
    if labels.ndim != 3 or labels.dtype != np.uint8:
        raise ValueError(f"write_prediction: expected uint8 [X, Y, Z], got {labels.dtype} {labels.shape}")
    return write_npz(folder / f"{token}.npz", **{PRED_KEY: labels})


def load_prediction(path: Path) -> np.ndarray:
    """The ``pred`` array of a prediction file; DataError naming the file if it is unreadable, lacks ``pred``, or
    is not uint8 [200, 200, 16] labels in 0..17."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if PRED_KEY not in z.files:
                raise DataError(f"{path}: no array {PRED_KEY!r} (has {z.files}); expected {PRED_KEY} uint8 "
                                f"{list(GRID_SHAPE)}")
            pred = z[PRED_KEY]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz prediction ({exc})") from exc
    if pred.shape != GRID_SHAPE or pred.dtype != np.uint8:
        raise DataError(f"{path}: {PRED_KEY} must be uint8 {list(GRID_SHAPE)}, got {pred.dtype} {list(pred.shape)}")
    if pred.max() > FREE:
        raise DataError(f"{path}: {PRED_KEY} holds label {int(pred.max())}; expected Occ3D labels 0..{FREE}")
    return pred


def prediction_files(folder: Path) -> list[Path]:
    """The ``*.npz`` files of ``folder``, sorted; DataError if the folder is missing or holds none."""
    if not folder.is_dir():
        raise DataError(f"{folder}: predictions folder not found (--predictions)")
    files = sorted(p for p in folder.glob("*.npz") if not p.name.startswith("."))
    if not files:
        raise DataError(f"{folder}: no <sample token>.npz prediction files (--predictions)")
    return files


def label_files(root: Path) -> dict[str, Path]:
    """Sample token → ``root/<scene>/<token>/labels.npz``; DataError if the root is missing or holds none."""
    if not root.is_dir():
        raise DataError(f"{root}: Occ3D labels root not found (--labels); expected <root>/<scene>/<token>/labels.npz")
    files = {p.parent.name: p for p in root.glob("*/*/labels.npz")}
    if not files:
        raise DataError(f"{root}: no <scene>/<token>/labels.npz files (--labels)")
    return files


def scene_origins(scene_names: np.ndarray, ego2global: np.ndarray, lidar2ego: np.ndarray,
                  tokens: np.ndarray) -> dict[str, np.ndarray]:
    """Sample token → its RayIoU origins [T, 3] (:func:`pgocc.eval.rays.keyframe_origins`), from per-keyframe arrays
    in scene order then time (a :class:`~pgocc.data.index.DatasetIndex`'s ``scene_name``, ``ego2global``,
    ``lidar2ego`` and ``sample_token``)."""
    out: dict[str, np.ndarray] = {}
    for scene in dict.fromkeys(scene_names.tolist()):
        rows = np.nonzero(scene_names == scene)[0]
        for k, row in enumerate(rows):
            out[str(tokens[row])] = keyframe_origins(ego2global[rows], lidar2ego[rows], k)
    return out


@dataclass(frozen=True, slots=True)
class EvalScores:
    """Scores of a set of predictions."""

    occupancy: OccupancyScores
    rays: RayScores | None
    """None when no keyframe poses were given."""

    def as_dict(self) -> dict[str, object]:
        return {"occupancy": self.occupancy.as_dict(), "rays": None if self.rays is None else self.rays.as_dict(),
                "rules": RULES}


RULES = {
    "miou": "mean IoU over the 15 open-vocabulary classes (others, other_flat, free dropped), camera-visible voxels; "
            "a class without ground-truth voxels is NaN and skipped (the original's rule)",
    "miou_17": "mean IoU over the 17 non-free classes, same voxels and rule",
    "geometric_iou": "occupied vs free, camera-visible voxels; NaN without ground-truth occupied voxels",
    "rayiou": "SparseOcc's RayIoU: 14,040 LiDAR-like rays from up to 8 keyframe origins, first-hit class and depth "
              "within 1/2/4 m, 17 non-free classes; a class with no ray in ground truth or prediction is skipped, "
              "one only predicted scores 0",
}
"""Which rule each number follows (written beside the numbers)."""


def score_predictions(files: Iterable[Path], labels: dict[str, Path],
                      origins: dict[str, np.ndarray] | None = None,
                      progress: Callable[[Iterable[Path]], Iterable[Path]] = lambda x: x,
                      device: torch.device | str = "cpu") -> EvalScores:
    """Score prediction files (named ``<token>.npz``) against the labels of the same tokens.

    Args:
        files: prediction files.
        labels: token → labels.npz (:func:`label_files`).
        origins: token → RayIoU origins (:func:`scene_origins`); None: no RayIoU.
        progress: wraps the file iterable (e.g. a progress bar).
        device: where RayIoU casts its rays.
    """
    occupancy = OccupancyMIoU()
    rays = RayIoU(device=device) if origins is not None else None
    for path in progress(files):
        token = path.stem
        if token not in labels:
            raise DataError(f"{path}: no labels for sample token {token!r} under the labels root (expected "
                            "<labels root>/<scene>/<token>/labels.npz)")
        pred = load_prediction(path)
        gt, _, mask_camera = load_labels(labels[token])
        occupancy.update(pred, gt, mask_camera)
        if rays is not None:
            if token not in origins:
                raise DataError(f"{path}: sample token {token!r} is not a keyframe of the dataset given for RayIoU")
            rays.update(pred, gt, origins[token])
    return EvalScores(occupancy.compute(), None if rays is None else rays.compute())


def format_table(scores: EvalScores) -> str:
    """The per-class table (IoU over camera-visible voxels, RayIoU@1/2/4) and the summary lines, in percent."""

    def pct(x: float) -> str:
        return "  —  " if math.isnan(x) else f"{100 * x:5.1f}"

    occ, rays = scores.occupancy, scores.rays
    head = f"{'class':<24} {'IoU':>5}" + ("".join(f" {'Ray@' + format(t, 'g'):>6}" for t in THRESHOLDS)
                                         if rays else "")
    lines = [head, "-" * len(head)]
    for c in range(FREE):
        row = f"{c:>2} {OCC3D_CLASSES[c]:<21} {pct(occ.per_class_iou[c])}"
        if rays:
            row += "".join(f" {pct(rays.per_class_iou[j, c]):>6}" for j in range(len(THRESHOLDS)))
        lines.append(row + ("" if c in EVAL_CLASSES else "   (not in the 15-class mean)"))
    lines.append("-" * len(head))
    lines.append(f"mIoU (15 classes) {pct(occ.miou)} %   mIoU (17 classes) {pct(occ.miou_17)} %   geometric IoU "
                 f"{pct(occ.geometric_iou)} %   ({occ.samples} samples, {occ.voxels} camera-visible voxels)")
    if rays:
        at = ", ".join(f"@{t:g} m {pct(v)}" for t, v in zip(THRESHOLDS, rays.rayiou_at, strict=True))
        lines.append(f"RayIoU {pct(rays.rayiou)} %   ({at}; {rays.rays} rays)")
    lines.append("— : class absent from the ground truth (mIoU: skipped, the original's rule) or, for RayIoU, on "
                 "no ray")
    return "\n".join(lines)
