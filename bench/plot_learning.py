"""Plot training runs from their metrics.jsonl (``pgocc train``): losses, Gaussian statistics and validation.

    python bench/plot_learning.py --out curves.png NAME=RUN_DIR_OR_METRICS_JSONL [NAME=... ...]

Panels: total loss; the final stage's terms (depth L1, SILog, feature cosine, warp); the final stage's mean opacity
and the fraction above the readout threshold; median scale and densification candidates; held-out mIoU and geometric
IoU above the ground layer at each validation. Training curves are smoothed with a running mean over 10 logged
points.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SMOOTH = 10


def _read(path: Path) -> tuple[list[dict], list[dict]]:
    """(training records, validation records) of a run directory or a metrics.jsonl."""
    if path.is_dir():
        path = path / "metrics.jsonl"
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("split") != "val"], [r for r in records if r.get("split") == "val"]


def _smooth(y: np.ndarray) -> np.ndarray:
    if len(y) < SMOOTH:
        return y
    kernel = np.ones(SMOOTH) / SMOOTH
    return np.concatenate([y[:SMOOTH - 1], np.convolve(y, kernel, mode="valid")])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("runs", nargs="+", metavar="NAME=PATH")
    args = parser.parse_args()
    fig, axes = plt.subplots(2, 3, figsize=(16, 8.5))
    for spec in args.runs:
        name, _, path = spec.partition("=")
        train, val = _read(Path(path))
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
        ax.legend(fontsize=7)
    axes[0, 1].set_yscale("log")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
