"""``pgocc convert-checkpoint``: map the authors' released state dict (docs/model.md §9.1) onto this model's names.

Reads the released ``.pth`` (a state dict, or one under ``state_dict``), renames every learned tensor, drops the
stored pixel/voxel grids, checks the result against the model built from ``--config`` (default
``configs.released:released``, whose sizes and fidelity switches are the released ones) and writes an exported
model: a ``.safetensors`` file with that config embedded, as ``pgocc train`` exports, so that ``pgocc infer
--checkpoint OUT`` rebuilds the released model by itself. A mismatch raises ``CheckpointError`` listing every
missing, unexpected and mis-shaped key.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pgocc.commands._common import add_experiment_arguments, experiment_from_args

HELP = "convert the authors' released PG-Occ checkpoint to this model's state-dict names"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("source", type=Path, help="the released checkpoint (.pth)")
    parser.add_argument("--out", type=Path, required=True,
                        help="where to write the converted model (.safetensors, the config embedded)")
    add_experiment_arguments(parser, default="configs.released:released")


def run(args: argparse.Namespace) -> int:
    import torch

    from pgocc.errors import CheckpointError, ConfigError
    from pgocc.model import PGOcc
    from pgocc.model.state_keys import RELEASED_BUFFERS, convert_released, read_state_dict
    from pgocc.training.checkpoint import export_model

    if args.out.suffix != ".safetensors":
        raise ConfigError(f"--out: the converted model is written as .safetensors (its config embedded), got "
                          f"{args.out}")
    cfg = experiment_from_args(args)
    raw = read_state_dict(args.source, "SOURCE")
    # Shapes are all the check needs: a meta-device model allocates nothing.
    with torch.device("meta"):
        model = PGOcc(cfg.model, cfg.kernels)
    try:
        converted = convert_released(raw, model.state_dict())
    except CheckpointError as exc:
        raise CheckpointError(f"{args.source}: {exc}") from None
    export_model(converted, cfg, args.out)
    dropped = sum(k in RELEASED_BUFFERS for k in raw)
    print(f"converted {len(converted)} tensors ({dropped} stored grids dropped) -> {args.out}")
    return 0
