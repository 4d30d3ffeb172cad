"""``pgocc text-prototypes``: the embeddings of the 21 Occ3D prompts (docs/model.md §6.1) from any text encoder, as
the ``.npz`` prototype file the readout reads (``pgocc infer --prototypes``)."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = "write the 21 Occ3D prompt embeddings (the readout's prototype file) from a text encoder: minilm, clip, ..."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--text-encoder", required=True,
                        help="minilm, clip or clip:MODEL:WEIGHTS (the original's templates averaged), hash, or a "
                             "prototype file holding the 21 prompts")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write (embeds [D, 21], prompts [21])")


def run(args: argparse.Namespace) -> int:
    from pgocc.errors import ConfigError
    from pgocc.text import OCC3D_PROMPTS, save_prototypes, text_encoder

    if args.out.suffix != ".npz":
        raise ConfigError(f"--out: the prototype file must end in .npz, got {args.out}")
    try:
        encoder = text_encoder(args.text_encoder)
    except ValueError as exc:
        raise ConfigError(f"--text-encoder: {exc}") from None
    table = encoder.encode(list(OCC3D_PROMPTS))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.stem}.{os.getpid()}.tmp.npz")
    save_prototypes(tmp, OCC3D_PROMPTS, table)
    tmp.replace(args.out)
    print(f"pgocc text-prototypes: {len(OCC3D_PROMPTS)} prompts × {table.shape[1]} dims by {args.text_encoder} -> "
          f"{args.out}")
    return 0
