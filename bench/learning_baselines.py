"""Scores of the label-only baselines on a held-out world, for the learning proof (bench/RESULTS.md).

    python bench/learning_baselines.py --train-world DIR --heldout-world DIR [--split all] [--num-samples N] > out.json

Ground plane (road on the ground layer, free elsewhere) and the per-layer most common class counted over the
training world's camera-visible voxels, each scored on every held-out sample with the metrics of ``pgocc infer``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pgocc.data.index import build_index
from pgocc.data.occ3d import GRID_SHAPE, load_labels
from pgocc.eval.baselines import HeightPrior, ground_plane_labels
from pgocc.eval.metrics import OccupancyMIoU


def _labels(root: Path, split: str, version: str) -> list[tuple]:
    index = build_index(root, version, split)
    return [load_labels(root / "gts" / str(index.scene_name[i]) / str(index.sample_token[i]) / "labels.npz")
            for i in range(len(index))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-world", type=Path, required=True)
    parser.add_argument("--heldout-world", type=Path, required=True)
    parser.add_argument("--split", default="all")
    parser.add_argument("--version", default="v1.0-synthetic")
    parser.add_argument("--num-samples", type=int, default=None, metavar="N",
                        help="score the first N held-out samples (the order of pgocc infer and of validation)")
    args = parser.parse_args()
    prior = HeightPrior(GRID_SHAPE[2])
    for sem, _, mask_camera in _labels(args.train_world, args.split, args.version):
        prior.update(sem, mask_camera)
    predictions = {"ground_plane": ground_plane_labels(GRID_SHAPE), "height_prior": prior.labels(GRID_SHAPE)}
    metrics = {name: OccupancyMIoU() for name in predictions}
    for sem, _, mask_camera in _labels(args.heldout_world, args.split, args.version)[:args.num_samples]:
        for name, pred in predictions.items():
            metrics[name].update(pred, sem, mask_camera)
    print(json.dumps({name: m.compute().as_dict() for name, m in metrics.items()}, indent=1))


if __name__ == "__main__":
    main()
