"""``pgocc query``: any text against one sample: per-voxel relevance (the density-normalised similarity of the
readout, docs/model.md §6.3) and a heat map per text, with the sample's occupancy and pictures (pgocc/eval/infer.py).

Output (``--out``): ``samples/<scene>/<token>/queries.npz`` (``similarity`` float16 [K, X, Y, Z], ``queries`` [K]),
``query_<k>_<text>.png``, ``bev.png``, ``cameras.png``, and ``predictions/<token>.npz``.

Encoders (``--text-encoder``): ``minilm`` (offline, 384-d: the synthetic world's features), ``clip`` or
``clip:MODEL:WEIGHTS`` (open-clip-torch, 512-d: MaskCLIP features; weights from a file or the local cache), a
prototype file (only its own prompts), ``hash`` (tests); the default is a synthetic world's own encoder, else the
prototype table. The embeddings must have the model's ``ov_dims``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pgocc.commands._common import add_experiment_arguments
from pgocc.commands.infer import add_text_arguments

HELP = "answer free-text queries on one sample: per-voxel relevance (queries.npz) and a heat map per text"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, default=None)
    parser.add_argument("--checkpoint", type=Path, required=True,
                        help="an exported model (.safetensors, config embedded) or a state dict (.pt/.pth, with "
                             "--config)")
    parser.add_argument("--dataroot", type=Path, required=True, help="nuScenes-format dataset root")
    parser.add_argument("--sample", dest="tokens", action="append", required=True, metavar="TOKEN",
                        help="sample token of split data.val_split (repeatable; --set data.val_split=all for any)")
    parser.add_argument("--text", dest="texts", action="append", required=True, metavar="TEXT",
                        help="the query, e.g. 'a parked car' (repeatable)")
    add_text_arguments(parser, "--text")
    parser.add_argument("--out", type=Path, default=None,
                        help="output directory; None: a new train.run_root/infer-<time>")


def run(args: argparse.Namespace) -> int:
    from pgocc.commands.infer import DEFAULT_CONFIG, device_for_inference
    from pgocc.errors import ConfigError
    from pgocc.eval.infer import InferOptions, build_model, resolve_experiment, run_inference, slug

    if any(not t.strip() for t in args.texts):
        raise ConfigError("--text: must not be empty")
    device = device_for_inference()
    exp = resolve_experiment(args.checkpoint, args.config, args.overrides, device, DEFAULT_CONFIG)
    cfg = exp.cfg
    cfg.data.dataroot = str(args.dataroot)
    model, readout, weights = build_model(cfg, device, args.checkpoint, exp.state, exp.config)
    options = InferOptions(out=args.out, tokens=args.tokens, queries=args.texts, prototypes=args.prototypes,
                           text_encoder=args.text_encoder, pictures=len(args.tokens), evaluate=False)
    result = run_inference(cfg, model, readout, weights, options, device, log_prefix="query")
    for volumes in sorted(result.run_dir.glob("samples/*/*/queries.npz")):
        print(f"pgocc query: {volumes.parent.name}: relevance in {volumes}")
        for k, text in enumerate(args.texts):
            print(f"  {text!r}: {volumes.parent / f'query_{k}_{slug(text)}.png'}")
    return 0
