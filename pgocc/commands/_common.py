"""Arguments and helpers shared by subcommands that take an experiment."""

from __future__ import annotations

import argparse

from pgocc.config import ExperimentConfig, apply_overrides, load_experiment


def add_experiment_arguments(parser: argparse.ArgumentParser, default: str = "configs.tiny:tiny") -> None:
    parser.add_argument("--config", default=default, help="experiment as module:function (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="typed override of one config field, e.g. --set train.num_steps=200 (repeatable)")


def experiment_from_args(args: argparse.Namespace) -> ExperimentConfig:
    return apply_overrides(load_experiment(args.config), args.overrides)


def add_tree_arguments(parser: argparse.ArgumentParser, split_help: str) -> None:
    """--dataroot, --version, --split and the target folders of a nuScenes-format tree (docs/data.md §1)."""
    from pgocc.config import DataConfig

    d = DataConfig()
    parser.add_argument("--dataroot", required=True, help="the nuScenes-format root (data.dataroot)")
    parser.add_argument("--version", default="v1.0-trainval", help="table folder under the dataroot (data.version)")
    parser.add_argument("--split", default="all",
                        help=f"{split_help}: a key of <dataroot>/splits.json, a devkit split, or all")
    parser.add_argument("--depth-dir", default=d.depth_dir,
                        help="depth folder, relative to the dataroot unless absolute (the original's: "
                             "../nuscenes_metric3d)")
    parser.add_argument("--feature-dir", default=d.feature_dir,
                        help="feature folder, relative to the dataroot unless absolute (the original's: "
                             "../nuscenes_featup)")
