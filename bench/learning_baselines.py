"""Scores of the label-only baselines on a held-out world, for the learning proof (bench/RESULTS.md), and of the
held-out world's own 2-D targets lifted into the grid.

    python bench/learning_baselines.py --train-world DIR --heldout-world DIR [--split all] [--num-samples N]
        [--config configs.small:small] [--set data.render_size=396,704] [--no-lift] > out.json

- ``ground_plane``: road on the ground layer, free elsewhere;
- ``height_prior``: the per-layer most common class counted over the training world's camera-visible voxels;
- ``lifted_targets``: each held-out sample's depth and feature targets (at CONFIG's render size) lifted into the
  grid (:func:`pgocc.eval.baselines.lift_targets`), labels and geometry both from the targets;
- ``lifted_semantics``: the same labels on the ground truth's geometry (an occupied voxel no pixel reached scores as
  a miss): how well the 2-D feature targets alone name the classes, the most a model taught by them could reach.

Each is scored on every held-out sample with the metrics of ``pgocc infer``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from tqdm import tqdm

from pgocc.config import apply_overrides, load_experiment
from pgocc.data.dataset import build_dataset
from pgocc.data.index import build_index
from pgocc.data.occ3d import FREE, GRID_SHAPE, load_labels
from pgocc.eval.baselines import HeightPrior, ground_plane_labels, lift_targets
from pgocc.eval.loop import prompt_table
from pgocc.eval.metrics import OccupancyMIoU


def _labels(root: Path, split: str, version: str) -> list[tuple]:
    index = build_index(root, version, split)
    return [load_labels(root / "gts" / str(index.scene_name[i]) / str(index.sample_token[i]) / "labels.npz")
            for i in range(len(index))]


def _lifted(world: Path, split: str, config: str, overrides: list[str], num: int | None
            ) -> dict[str, OccupancyMIoU]:
    cfg = apply_overrides(load_experiment(config), overrides)
    cfg.data.dataroot = str(world)
    dataset = build_dataset(cfg.data, split, num_frames=1, feature_dim=cfg.model.ov_dims, mode="test",
                            with_render=False)
    prompts, column_labels = prompt_table(world, cfg.model.ov_dims)
    metrics = {"lifted_targets": OccupancyMIoU(), "lifted_semantics": OccupancyMIoU()}
    for i in tqdm(range(min(num or len(dataset), len(dataset))), desc="lifted targets", unit="sample"):
        b = dataset[i]
        gt, mask = b.semantics[0].numpy(), b.mask_camera[0].numpy()
        lifted = lift_targets(b.depth[0, :, 0], b.features[0], b.render_k[0], b.cam2ego[0], prompts, column_labels)
        metrics["lifted_targets"].update(lifted.labels, gt, mask)
        metrics["lifted_semantics"].update(lifted.on_geometry(gt != FREE), gt, mask)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-world", type=Path, required=True)
    parser.add_argument("--heldout-world", type=Path, required=True)
    parser.add_argument("--split", default="all")
    parser.add_argument("--version", default="v1.0-synthetic")
    parser.add_argument("--num-samples", type=int, default=None, metavar="N",
                        help="score the first N held-out samples (the order of pgocc infer and of validation)")
    parser.add_argument("--config", default="configs.small:small",
                        help="the config whose render size and feature width the lifted targets use")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a field of CONFIG (repeatable), e.g. data.render_size=396,704")
    parser.add_argument("--no-lift", action="store_true", help="leave out the two lifted-target rows")
    args = parser.parse_args()
    prior = HeightPrior(GRID_SHAPE[2])
    for sem, _, mask_camera in _labels(args.train_world, args.split, args.version):
        prior.update(sem, mask_camera)
    predictions = {"ground_plane": ground_plane_labels(GRID_SHAPE), "height_prior": prior.labels(GRID_SHAPE)}
    metrics = {name: OccupancyMIoU() for name in predictions}
    for sem, _, mask_camera in _labels(args.heldout_world, args.split, args.version)[:args.num_samples]:
        for name, pred in predictions.items():
            metrics[name].update(pred, sem, mask_camera)
    if not args.no_lift:
        metrics |= _lifted(args.heldout_world, args.split, args.config, args.set, args.num_samples)
    print(json.dumps({name: m.compute().as_dict() for name, m in metrics.items()}, indent=1))


if __name__ == "__main__":
    main()
