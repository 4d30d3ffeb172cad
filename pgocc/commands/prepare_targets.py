"""``pgocc prepare-targets``: write a split's depth and feature targets from teacher models (resumable)."""

from __future__ import annotations

import argparse

from pgocc.commands._common import add_tree_arguments

HELP = ("write the foundation-depth and MaskCLIP feature targets of a split's keyframe images from teacher models, "
        "in batches on the GPU, resumable after a kill (finished files are skipped, each file is written atomically)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pgocc.data.teachers import METRIC3D_FOCAL, METRIC3D_INPUT

    add_tree_arguments(parser, "scenes whose keyframe images get targets (written to --depth-dir, --feature-dir)")
    parser.add_argument("--depth-model", default="",
                        help="metric-depth teacher: a TorchScript file or module:function, called as "
                             "model(images [B,3,h,w] RGB in [0,1], intrinsics [B,3,3]) -> depth [B,h,w] metres; "
                             "empty: no depth targets")
    parser.add_argument("--canonical-focal", type=float, default=None,
                        help=f"Metric3D adapter: the model predicts depth for a camera of this focal length "
                             f"(Metric3D: {METRIC3D_FOCAL:g}); images are fitted into --depth-input-size first")
    parser.add_argument("--depth-input-size", type=int, nargs=2, default=list(METRIC3D_INPUT), metavar=("H", "W"),
                        help="input size of the Metric3D adapter")
    parser.add_argument("--feature-model", choices=("", "maskclip"), default="",
                        help="feature teacher: maskclip (CLIP ViT through open-clip-torch); empty: no features")
    parser.add_argument("--clip-model", default="ViT-B-16", help="open_clip model name of the MaskCLIP teacher")
    parser.add_argument("--clip-weights", default="openai",
                        help="CLIP weights: a checkpoint file, an open_clip pretrained tag in the local cache, or "
                             "random (randomly initialised: tests and throughput measurements only)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per teacher call")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16",
                        help="storage dtype of the targets (float16 halves the disk; the loader reads both)")
    parser.add_argument("--autocast", choices=("none", "bfloat16", "float16"), default="none",
                        help="run the teachers under torch.autocast in this dtype (faster on a GPU; outputs are "
                             "checked after the cast to --dtype all the same)")
    parser.add_argument("--device", default="cuda", help="torch device of the teachers")
    parser.add_argument("--workers", type=int, default=4, help="image-decoding worker processes")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from pgocc.data.index import build_index
    from pgocc.data.layout import data_folder
    from pgocc.data.prepare import TargetJob, prepare_targets
    from pgocc.data.teachers import MetricDepth, load_depth_model, load_maskclip
    from pgocc.errors import ConfigError

    if not args.depth_model and not args.feature_model:
        raise ConfigError("--depth-model / --feature-model: give at least one teacher")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {args.batch_size}")
    if args.workers < 0:
        raise ConfigError(f"--workers: must be >= 0, got {args.workers}")
    try:
        device = torch.device(args.device)
    except RuntimeError as exc:
        raise ConfigError(f"--device: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device here; pass --device cpu (slow) or run on a GPU machine")
    root = Path(args.dataroot)
    index = build_index(root, args.version, args.split)
    jobs = []
    if args.depth_model:
        model = load_depth_model(args.depth_model, device)
        jobs.append(TargetJob(MetricDepth(model, canonical_focal=args.canonical_focal,
                                          input_size=tuple(args.depth_input_size)), data_folder(root, args.depth_dir)))
    if args.feature_model == "maskclip":
        jobs.append(TargetJob(load_maskclip(args.clip_model, args.clip_weights, device),
                              data_folder(root, args.feature_dir)))
    summary = prepare_targets(index, jobs, batch_size=args.batch_size, dtype=getattr(torch, args.dtype),
                              device=device, num_workers=args.workers,
                              autocast=None if args.autocast == "none" else getattr(torch, args.autocast))
    for job in jobs:
        kind = job.teacher.kind
        print(f"{kind}: wrote {summary.written[kind]}, already there {summary.skipped[kind]}, of {summary.images} "
              f"images ({job.folder})")
    done = sum(summary.written.values())
    if summary.stale_removed:
        print(f"removed {summary.stale_removed} partial files of an interrupted run")
    print(f"{summary.seconds:.1f} s" + (f", {done / summary.seconds:.2f} targets/s" if done else ""))
    return 0
