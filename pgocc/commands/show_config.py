"""``pgocc show-config``: print the resolved experiment with every field's documentation."""

from __future__ import annotations

import argparse

from pgocc.commands._common import add_experiment_arguments, experiment_from_args

HELP = "print the resolved configuration of an experiment, with each field's documentation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, default="configs.base:base")


def run(args: argparse.Namespace) -> int:
    from pgocc.config import describe

    cfg = experiment_from_args(args)
    rows = describe(cfg)
    width = max(len(path) for path, _, _ in rows)
    for path, value, doc in rows:
        print(f"{path:<{width}}  {value!r:<28}  {doc}")
    return 0
