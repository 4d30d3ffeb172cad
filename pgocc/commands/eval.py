"""``pgocc eval``: score saved occupancy predictions against Occ3D labels (pgocc/eval/predictions.py).

    <predictions>/<sample token>.npz   key pred: uint8 [200, 200, 16] Occ3D labels (what pgocc infer writes under
                                       predictions/, and the convention of other occupancy projects)
    <labels>/<scene>/<token>/labels.npz

Prints the per-class table (IoU over camera-visible voxels; RayIoU at 1, 2, 4 m when ``--dataroot`` gives the
keyframe poses; the rays are cast on the GPU when there is one) and the means, and writes them as JSON with the rule
each number follows.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

HELP = ("score saved predictions (<token>.npz, key pred, uint8 200x200x16) against Occ3D labels: mIoU (15 and 17 "
        "classes), geometric IoU, RayIoU")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--predictions", type=Path, required=True, metavar="DIR",
                        help="folder of <sample token>.npz files, each with pred: uint8 [200, 200, 16] labels")
    parser.add_argument("--labels", type=Path, required=True, metavar="ROOT",
                        help="Occ3D labels root: ROOT/<scene>/<sample token>/labels.npz (a dataset's gts/)")
    parser.add_argument("--dataroot", type=Path, default=None,
                        help="the nuScenes-format dataset the samples come from: its keyframe poses give RayIoU's "
                             "ray origins; None: no RayIoU")
    parser.add_argument("--version", default=None,
                        help="nuScenes table version of --dataroot; None: a synthetic world's own, else "
                             "v1.0-trainval")
    parser.add_argument("--out", type=Path, default=None, metavar="FILE",
                        help="JSON of the scores; None: DIR/eval.json")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from pgocc.eval.predictions import (
        format_table,
        label_files,
        prediction_files,
        scene_origins,
        score_predictions,
        write_json,
    )

    files = prediction_files(args.predictions)
    labels = label_files(args.labels)
    origins = None
    if args.dataroot is not None:
        from pgocc.data.index import build_index

        version = args.version
        if version is None:
            world = args.dataroot / "world.json"
            version = json.loads(world.read_text())["version"] if world.is_file() else "v1.0-trainval"
        ix = build_index(args.dataroot, version, "all")
        origins = scene_origins(ix.scene_name, ix.ego2global, ix.lidar2ego, ix.sample_token)
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    scores = score_predictions(files, labels, origins,
                               progress=lambda it: tqdm(it, total=len(files), desc="eval", unit="sample",
                                                        file=sys.stderr), device=device)
    out = args.out or args.predictions / "eval.json"
    write_json(out, scores.as_dict())
    print(format_table(scores))
    print(f"pgocc eval: wrote {out}")
    return 0
