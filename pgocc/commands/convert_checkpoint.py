"""``pgocc convert-checkpoint``: map the authors' released state dict (docs/model.md §9.1) onto this model's names.

Reads the released ``.pth`` (a state dict, or one under ``state_dict``), renames every learned tensor, drops the
stored pixel/voxel grids, checks the result against the model built from ``--config`` (default
``configs.released:released``, whose sizes and fidelity switches are the released ones) and writes a plain state
dict that ``PGOcc.load_state_dict`` accepts. A mismatch raises ``CheckpointError`` listing every missing, unexpected
and mis-shaped key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pgocc.commands._common import add_experiment_arguments, experiment_from_args

HELP = "convert the authors' released PG-Occ checkpoint to this model's state-dict names"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="the released checkpoint (.pth)")
    parser.add_argument("--out", type=Path, required=True, help="where to write the converted state dict")
    add_experiment_arguments(parser, default="configs.released:released")


def run(args: argparse.Namespace) -> int:
    import torch

    from pgocc.errors import CheckpointError
    from pgocc.model import PGOcc
    from pgocc.model.state_keys import RELEASED_BUFFERS, convert_released, read_state_dict

    cfg = experiment_from_args(args)
    raw = read_state_dict(args.source, "SOURCE")
    # Shapes are all the check needs: a meta-device model allocates nothing.
    with torch.device("meta"):
        model = PGOcc(cfg.model, cfg.kernels)
    try:
        converted = convert_released(raw, model.state_dict())
    except CheckpointError as exc:
        raise CheckpointError(f"{args.source}: {exc}") from None
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    torch.save(converted, tmp)
    tmp.replace(args.out)
    dropped = sum(k in RELEASED_BUFFERS for k in raw)
    print(f"converted {len(converted)} tensors ({dropped} stored grids dropped) -> {args.out}")
    return 0
