"""``pgocc infer``: run the model over a nuScenes-format dataset, write its occupancy (the input of ``pgocc eval``),
text-query similarity and pictures, and score it (the loop: pgocc/eval/infer.py).

Run directory (``--out``, default a new ``<train.run_root>/infer-<time>``): ``config.json``, ``kernels.json``,
``predictions/<sample token>.npz`` (``pred`` uint8 [X, Y, Z] Occ3D labels), ``eval.json`` (mIoU, RayIoU and the rule
each follows), ``summary.json`` (counts, times, scores), and per sample ``samples/<scene>/<sample token>/``:
``queries.npz`` (``similarity`` float16 [K, X, Y, Z], one volume per ``--query``; ``queries`` [K]) and, for the
first ``--pictures`` samples, ``bev.png``, ``cameras.png`` and ``query_<k>_<text>.png``.

The Occ3D labels need the prompt prototypes of docs/model.md §6.1 (``--prototypes``; a synthetic world ships its
own). Queries are embedded by ``--text-encoder`` (default: a synthetic world's own encoder, else the prototype table,
which only knows its own prompts); the embeddings must have the model's ``ov_dims``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pgocc.commands._common import add_experiment_arguments

if TYPE_CHECKING:
    import torch

HELP = ("run the model on a nuScenes-format dataset: Occ3D occupancy, text-query similarity, pictures, and its "
        "scores (mIoU, RayIoU)")

DEFAULT_CONFIG = "configs.tiny:tiny"
"""The experiment when neither --config nor an exported checkpoint (which embeds its own) says."""


def add_text_arguments(parser: argparse.ArgumentParser, texts: str) -> None:
    """--prototypes (the readout's Occ3D prompt table) and --text-encoder (of the ``texts`` argument's texts)."""
    parser.add_argument("--prototypes", type=Path, default=None,
                        help="embeddings of the 21 Occ3D prompts (docs/model.md §6.1): .npz with embeds/prompts "
                             "(pgocc text-prototypes), or a CLIP [D, 21] .pt/.pth; None: DATAROOT/text_prototypes.npz")
    parser.add_argument("--text-encoder", default=None,
                        help=f"encoder of the {texts} texts: minilm, clip[:MODEL:WEIGHTS], hash or a prototype file; "
                             "None: the synthetic world's own encoder, else the --prototypes table")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, default=None)
    parser.add_argument("--dataroot", type=Path, default=None,
                        help="nuScenes-format dataset root, synthetic or real; None: the config's data.dataroot. "
                             "The split is data.val_split (--set data.val_split=all for every scene)")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="an exported model (.safetensors from pgocc train, which embeds its config: the model "
                             "is rebuilt from it unless --config is given, and a --config whose model differs is "
                             "refused) or a state dict (.pt/.pth, e.g. from convert-checkpoint); without it the model "
                             f"is randomly initialised. Without --config and without an exported checkpoint: "
                             f"{DEFAULT_CONFIG}")
    parser.add_argument("--num-samples", type=int, default=None, metavar="N",
                        help="run on the first N samples of the split; None: all")
    parser.add_argument("--out", type=Path, default=None,
                        help="run directory (existing files are replaced); None: a new train.run_root/infer-<time>")
    parser.add_argument("--query", dest="queries", action="append", default=[], metavar="TEXT",
                        help="text query answered per voxel (repeatable)")
    add_text_arguments(parser, "--query")
    parser.add_argument("--pictures", type=int, default=4, metavar="N",
                        help="write pictures for the first N samples (0: none, and the loader skips the render "
                             "images)")
    parser.add_argument("--no-eval", action="store_true",
                        help="do not score the predictions against the dataset's Occ3D labels at the end")
    parser.add_argument("--no-rayiou", action="store_true",
                        help="score without RayIoU (it casts 14,040 rays from up to 8 origins per sample)")
    parser.add_argument("--online", action="store_true",
                        help="read only the current frame's 6 images per sample and take the past frames' features "
                             "from the cache, as a car would (the samples run in order from their scene's first "
                             "keyframe)")
    parser.add_argument("--autocast", choices=("none", "bf16"), default="none",
                        help="run the network under bf16 autocast (CUDA only; the readout stays float32)")
    parser.add_argument("--cuda-graph", action="store_true",
                        help="with --online on CUDA: capture the first frame (network and readout) as a CUDA graph "
                             "and replay it for the others, one launch per frame instead of about a thousand")


def device_for_inference() -> torch.device:
    """CUDA when present, else the CPU (with Triton's interpreter, set before any kernel module is imported)."""
    import torch

    if torch.cuda.is_available():
        return torch.device("cuda")
    os.environ.setdefault("TRITON_INTERPRET", "1")
    return torch.device("cpu")


def run(args: argparse.Namespace) -> int:
    from pgocc.errors import ConfigError
    from pgocc.eval.infer import InferOptions, build_model, print_result, resolve_experiment, run_inference

    device = device_for_inference()
    if args.num_samples is not None and args.num_samples < 1:
        raise ConfigError(f"--num-samples: must be >= 1, got {args.num_samples}")
    if args.pictures < 0:
        raise ConfigError(f"--pictures: must be >= 0, got {args.pictures}")
    exp = resolve_experiment(args.checkpoint, args.config, args.overrides, device, DEFAULT_CONFIG)
    cfg = exp.cfg
    if args.dataroot is not None:
        cfg.data.dataroot = str(args.dataroot)
    model, readout, weights = build_model(cfg, device, args.checkpoint, exp.state, exp.config)
    if args.checkpoint is None:
        print(f"\n!!! pgocc infer: NO --checkpoint: the model is RANDOMLY INITIALISED (seed {cfg.train.seed}); its "
              "occupancy, similarities and metrics mean nothing !!!\n", file=sys.stderr)
    options = InferOptions(out=args.out, num_samples=args.num_samples, queries=args.queries,
                           prototypes=args.prototypes, text_encoder=args.text_encoder, pictures=args.pictures,
                           evaluate=not args.no_eval, rayiou=not args.no_rayiou, online=args.online,
                           autocast=args.autocast, cuda_graph=args.cuda_graph)
    result = run_inference(cfg, model, readout, weights, options, device)
    print_result(result, weights, device)
    return 0
