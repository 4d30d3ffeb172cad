"""Score readout variants on dumped Gaussians (bench/dump_gaussians.py), on the CPU, with the metrics of ``pgocc
infer`` over the camera-visible voxels (bench/RESULTS.md, "Readout study").

    python bench/readout_study.py DUMP.npz [--samples N] [--density 0.02 0.04] [--opacity 0.3] [--min-variance 0]
        [--scale-floor 0.2] [--json FILE]

Every variant applies the readout's filters (opacity, range, smallest variance) to the Gaussians as trained, then
reads the field either at the voxel centres (``centre``, the paper's readout), at the centres with every standard
deviation raised to a floor (``floor F``), or averaged over each voxel (``voxel mean``: ``model.voxel_average``).
Prints one line per variant: mIoU, geometric IoU, geometric IoU above ground, and the per-class IoUs.
"""

from __future__ import annotations

import argparse
import itertools
import json
from collections.abc import Callable

import numpy as np
import torch

from pgocc.data.occ3d import FREE, GRID_SHAPE, OCC3D_CLASSES
from pgocc.eval.metrics import EVAL_CLASSES, OccupancyMIoU
from pgocc.model.readout import keep_mask, occupancy_labels, voxel_average
from pgocc.model.types import Gaussians
from reference.gs2vox import gs2vox_boxed

Transform = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor]]
"""(scales [B, Q, 3], opacities [B, Q], voxel size) → the scales and opacities the field is read with."""


def centre(scales: torch.Tensor, opacities: torch.Tensor, voxel: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The paper's readout: the field at the voxel centres."""
    return scales, opacities


def floor(value: float) -> Transform:
    """Every standard deviation raised to ``value`` (peak opacity unchanged)."""
    return lambda scales, opacities, voxel: (scales.clamp_min(value), opacities)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dump", help="a .npz of bench/dump_gaussians.py")
    parser.add_argument("--samples", type=int, default=None, metavar="N", help="the first N samples; None: all")
    parser.add_argument("--density", type=float, nargs="+", default=None,
                        help="density thresholds; None: the model's")
    parser.add_argument("--opacity", type=float, nargs="+", default=None,
                        help="opacity thresholds of the filter; None: the model's")
    parser.add_argument("--min-variance", type=float, nargs="+", default=None,
                        help="smallest-variance filters (m²); None: the model's")
    parser.add_argument("--scale-floor", type=float, nargs="*", default=[], help="floors to try (metres)")
    parser.add_argument("--json", default=None, help="also write every score to this file")
    args = parser.parse_args()

    d = np.load(args.dump)
    num = min(args.samples or len(d["tokens"]), len(d["tokens"]))
    voxel = float(d["voxel_size"])
    origin = tuple(float(v) for v in d["grid_origin"])
    upper = tuple(o + n * voxel for o, n in zip(origin, GRID_SHAPE, strict=True))
    column_labels = [int(c) for c in d["column_labels"]]
    cutoff = float(d["voxel_cutoff"])
    densities = args.density or [float(d["density_threshold"])]
    opacities = args.opacity or [float(d["opacity_threshold"])]
    min_variances = args.min_variance or [float(d["min_variance"])]
    variants: dict[str, Transform] = {"centre": centre, "voxel mean": voxel_average}
    variants.update({f"floor {f:g}": floor(f) for f in args.scale_floor})
    metrics = {key: OccupancyMIoU() for key in itertools.product(variants, opacities, min_variances, densities)}
    start = 0
    for i in range(num):
        mask = np.unpackbits(d["mask_bits"][i])[:int(np.prod(GRID_SHAPE))].astype(bool)
        gt = np.full(mask.size, FREE, np.uint8)
        gt[mask] = d["mask_labels"][start:start + int(mask.sum())]
        start += int(mask.sum())
        gt, mask = gt.reshape(GRID_SHAPE), mask.reshape(GRID_SHAPE)
        g = Gaussians(*(torch.from_numpy(d[k][i:i + 1]).float() for k in ("means", "quats", "scales", "opacities")),
                      features=torch.from_numpy(d["sim"][i:i + 1]).float())
        for name, transform in variants.items():
            for opacity, min_variance in itertools.product(opacities, min_variances):
                keep = keep_mask(g, origin, upper, opacity_threshold=opacity, min_variance=min_variance)
                kept = torch.where(keep, g.opacities, torch.zeros_like(g.opacities))
                scales, weights = transform(g.scales, kept, voxel)
                density, field = gs2vox_boxed(g.means, g.quats, scales, weights, g.features, grid_origin=origin,
                                              voxel_size=voxel, grid_dims=GRID_SHAPE, cutoff=cutoff)
                for thr in densities:
                    labels = occupancy_labels(density, field, column_labels, thr)[0].numpy()
                    metrics[(name, opacity, min_variance, thr)].update(labels, gt, mask)
        print(f"readout_study: sample {i + 1}/{num}", flush=True)
    report = {}
    for (name, opacity, min_variance, thr), metric in metrics.items():
        s = metric.compute()
        per_class = {OCC3D_CLASSES[c]: round(float(s.per_class_iou[c]), 3) for c in EVAL_CLASSES
                     if not np.isnan(s.per_class_iou[c])}
        print(f"{name:>12} opacity>{opacity:g} var>{min_variance:g} density>{thr:g}: mIoU {s.miou:.3f} "
              f"geo {s.geometric_iou:.3f} above {s.geometric_iou_above_ground:.3f} | {per_class}")
        report[f"{name} | opacity>{opacity:g} | var>{min_variance:g} | density>{thr:g}"] = s.as_dict()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    main()
