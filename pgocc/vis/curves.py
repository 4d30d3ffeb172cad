"""Training curves of runs from their ``metrics.jsonl`` (``pgocc train``): losses, Gaussian statistics, validation.

Panels: total loss; the final stage's terms (depth L1, SILog, feature cosine, warp); the final stage's mean opacity
and the fraction above the readout threshold; median scale; held-out mIoU and geometric IoU (all and above the ground
layer) at each validation. Training curves are smoothed with a running mean over :data:`SMOOTH` logged points.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from pgocc.errors import DataError
from pgocc.vis.palette import new_figure, save_png

SMOOTH = 10
"""Logged points in the running mean of the training curves."""


def read_metrics(path: Path) -> tuple[list[dict], list[dict]]:
    """(training records, validation records) of a run directory or a metrics.jsonl; DataError naming the file if
    it is missing, not JSON lines, or holds no training record."""
    if path.is_dir():
        path = path / "metrics.jsonl"
    try:
        records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not a readable metrics.jsonl ({exc})") from exc
    train = [r for r in records if r.get("split") != "val" and "loss" in r]
    if not train:
        raise DataError(f"{path}: no training record (a line with 'loss') in the metrics.jsonl")
    return train, [r for r in records if r.get("split") == "val"]


def _smooth(y: np.ndarray) -> np.ndarray:
    if len(y) < SMOOTH:
        return y
    kernel = np.ones(SMOOTH) / SMOOTH
    return np.concatenate([y[:SMOOTH - 1], np.convolve(y, kernel, mode="valid")])


def curves_picture(path: str | os.PathLike[str], runs: Mapping[str, Path]) -> Path:
    """Write the six panels for every run (name → run directory or metrics.jsonl) into one PNG."""
    fig = new_figure(16, 8.5)
    axes = np.array([[fig.add_subplot(2, 3, 3 * r + c + 1) for c in range(3)] for r in range(2)])
    last = 0
    for name, run in runs.items():
        train, val = read_metrics(Path(run))
        last = max(int(k.rsplit("_", 1)[1]) for k in train[0] if k.startswith("depth_l1_"))
        steps = np.array([r["step"] for r in train])

        def curve(key: str, records: list[dict] = train) -> np.ndarray:
            return np.array([np.nan if r.get(key) is None else r[key] for r in records], float)

        axes[0, 0].plot(steps, _smooth(curve("loss")), label=name)
        for key, style in (("depth_l1", "-"), ("depth_silog", "--")):
            axes[0, 1].plot(steps, _smooth(curve(f"{key}_{last}")), style, label=f"{name} {key}")
        for key, style in (("feat_cos", "-"), ("warp", "--")):
            axes[0, 2].plot(steps, _smooth(curve(f"{key}_{last}")), style, label=f"{name} {key}")
        axes[1, 0].plot(steps, _smooth(curve(f"opacity_mean_{last}")), label=f"{name} mean")
        axes[1, 0].plot(steps, _smooth(curve(f"opacity_above_threshold_{last}")), "--", label=f"{name} > threshold")
        axes[1, 1].plot(steps, _smooth(curve(f"scale_median_{last}")), label=f"{name} median scale (m)")
        if val:
            vsteps = [r["step"] for r in val]
            # "miou_present" in logs written before pgocc.eval.metrics adopted the original's absent-class rule,
            # under which "miou" is that same number.
            key = "miou_present" if "miou_present" in val[0] else "miou"
            axes[1, 2].plot(vsteps, curve(key, val), "o-", label=f"{name} mIoU")
            axes[1, 2].plot(vsteps, curve("geometric_iou_above_ground", val), "s--", label=f"{name} geo IoU above")
            axes[1, 2].plot(vsteps, curve("geometric_iou", val), "^:", label=f"{name} geo IoU")
    titles = ("total loss", f"depth terms (stage {last})", f"feature cosine and warp (stage {last})",
              f"opacity (stage {last})", f"scale (stage {last})", "held-out validation")
    for ax, title in zip(axes.flat, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0, 1].set_yscale("log")
    fig.tight_layout()
    return save_png(fig, path)
