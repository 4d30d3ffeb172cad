"""The ``pgocc`` command line (also ``python -m pgocc``).

Each subcommand is a module ``pgocc.commands.<name>`` with ``HELP``, ``add_arguments(parser)`` and ``run(args)``;
modules import heavy dependencies inside ``run`` so that ``pgocc --help`` stays instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from pgocc import __version__
from pgocc.errors import PgoccError, report

# name -> module; the order is the order of `pgocc --help`.
COMMANDS: dict[str, str] = {
    "check-data": "pgocc.commands.check_data",
    "check-kernels": "pgocc.commands.check_kernels",
    "convert-checkpoint": "pgocc.commands.convert_checkpoint",
    "demo": "pgocc.commands.demo",
    "eval": "pgocc.commands.eval",
    "infer": "pgocc.commands.infer",
    "kernels": "pgocc.commands.kernels",
    "make-synthetic": "pgocc.commands.make_synthetic",
    "prepare-targets": "pgocc.commands.prepare_targets",
    "query": "pgocc.commands.query",
    "show-config": "pgocc.commands.show_config",
    "text-prototypes": "pgocc.commands.text_prototypes",
    "train": "pgocc.commands.train",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pgocc",
        description="PG-Occ open-vocabulary 3D occupancy: PyTorch + Triton engine.",
    )
    parser.add_argument("--version", action="version", version=f"pgocc {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP,
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except PgoccError as exc:
        return report(args.command, exc)


if __name__ == "__main__":
    sys.exit(main())
