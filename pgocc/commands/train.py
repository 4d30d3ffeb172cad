"""``pgocc train``: the training loop of :mod:`pgocc.train` (same arguments as ``python -m pgocc.train``; for several
processes launch ``torchrun --nproc_per_node=N -m pgocc.train ...``)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pgocc.commands._common import add_experiment_arguments

HELP = ("train the model on one process or many (torchrun): FSDP2, torch.compile, bf16, CUDA graphs, DCP checkpoints, "
        "resume")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser)
    parser.add_argument("--resume", default=None, metavar="PATH|auto",
                        help="continue from a checkpoint directory, a run directory (its newest checkpoint), or "
                             "'auto': the newest complete checkpoint of --out (a fresh start if there is none)")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory; None: a new train.run_root/train-<time>")
    parser.add_argument("--dataroot", type=Path, default=None, help="dataset root; None: the config's data.dataroot")
    parser.add_argument("--export-fp16", action="store_true",
                        help="store the exported model.safetensors in float16 (half the size)")
    parser.add_argument("--stop-after", type=int, default=None, metavar="STEP",
                        help="stop after this step as if killed (after its checkpoint, if one is due; no export): "
                             "for testing resume")


def run(args: argparse.Namespace) -> int:
    from pgocc.train import run as train

    return train(args)
