"""``pgocc kernels``: list every hot path and its implementations."""

from __future__ import annotations

import argparse

HELP = "list the hot-path ops, their implementations and whether each is deterministic"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser


def run(args: argparse.Namespace) -> int:
    del args
    from pgocc import ops

    print(f"{'op':<16}{'impl':<12}{'deterministic':<15}{'devices':<12}target")
    for op in ops.OPS:
        for name, spec in ops.contract(op).IMPLS.items():
            print(f"{op:<16}{name:<12}{str(spec.deterministic):<15}{','.join(spec.devices):<12}{spec.target}")
    return 0
