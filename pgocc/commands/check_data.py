"""``pgocc check-data``: validate a dataset tree (tables, images, targets, labels) and report its problems."""

from __future__ import annotations

import argparse

from pgocc.commands._common import add_tree_arguments

HELP = ("validate a nuScenes-format tree before training on it: tables, every image, depth, feature and label file "
        "(presence always, contents of a sample or --full), sweeps per keyframe, disk footprint; exit 1 on a problem")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pgocc.config import DataConfig

    add_tree_arguments(parser, "scenes to check")
    parser.add_argument("--labels-dir", default=DataConfig().labels_dir, help="Occ3D labels folder (data.labels_dir)")
    parser.add_argument("--no-labels", action="store_true", help="the tree has no Occ3D labels")
    parser.add_argument("--infos", default="",
                        help="info pickle of --split to check against the tables (e.g. nuscenes_infos_val_sweep.pkl)")
    parser.add_argument("--feature-dim", type=int, default=None,
                        help="expected D of the feature maps (default: the first map's, shared by all)")
    amount = parser.add_mutually_exclusive_group()
    amount.add_argument("--sample-fraction", type=float, default=0.05,
                        help="fraction of keyframes whose file contents are read (presence is checked for all)")
    amount.add_argument("--full", action="store_true", help="read the contents of every keyframe's files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the keyframe sample")
    parser.add_argument("--show", type=int, default=3, help="problems listed per kind")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pgocc.data.check import DataTree, check_data
    from pgocc.errors import ConfigError

    if not args.full and not 0 < args.sample_fraction <= 1:
        raise ConfigError(f"--sample-fraction: must be in (0, 1], got {args.sample_fraction}")
    tree = DataTree(dataroot=Path(args.dataroot), version=args.version, split=args.split, depth_dir=args.depth_dir,
                    feature_dir=args.feature_dir, labels_dir=args.labels_dir, infos=args.infos,
                    with_labels=not args.no_labels, feature_dim=args.feature_dim)
    report = check_data(tree, fraction=1.0 if args.full else args.sample_fraction, seed=args.seed)
    print(report.summary(first=args.show))
    return 0 if report.ok else 1
