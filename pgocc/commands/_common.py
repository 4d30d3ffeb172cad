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
