"""``pgocc make-synthetic``: write the procedural nuScenes-format world (the demo's dataset and the test fixture)."""

from __future__ import annotations

import argparse

HELP = "write a synthetic nuScenes-format dataset (images, depth, features, Occ3D labels) from a seed"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from pgocc.synthetic.writer import WorldSpec

    d = WorldSpec()
    parser.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--scenes", type=int, default=d.scenes, help="number of scenes")
    parser.add_argument("--seed", type=int, default=d.seed, help="world seed")
    parser.add_argument("--keyframes", type=int, default=d.keyframes, help="keyframes per scene (2 Hz)")
    parser.add_argument("--sweeps", type=int, default=d.sweeps, help="camera sweeps between keyframes")
    parser.add_argument("--width", type=int, default=d.width, help="image width in pixels")
    parser.add_argument("--height", type=int, default=d.height, help="image height in pixels")
    parser.add_argument("--depth-noise", type=float, default=d.depth_noise,
                        help="log-normal sigma of the foundation-depth noise (0 = exact)")
    parser.add_argument("--feature-noise", type=float, default=d.feature_noise,
                        help="sigma of the Gaussian noise on each feature channel")
    parser.add_argument("--text-encoder", default=d.text_encoder,
                        help="encoder of the feature maps' text embeddings: minilm, hash, or a .npz prototype file "
                             "with the Occ3D prompts (e.g. another world's text_prototypes.npz)")
    parser.add_argument("--layout", choices=("pgocc", "original"), default="pgocc",
                        help="pgocc: dataroot OUT with depth/ and features/ (float16); original: the original's "
                             "layout, dataroot OUT/nuscenes with nuscenes_infos_{train,val}_sweep.pkl, targets in "
                             "OUT/nuscenes_metric3d and OUT/nuscenes_featup (float32)")
    parser.add_argument("--jobs", type=int, default=0, help="worker processes (0 = one per CPU core)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from pgocc.synthetic.writer import LAYOUTS, WorldSpec, infos_name, make_synthetic

    spec = WorldSpec(seed=args.seed, scenes=args.scenes, keyframes=args.keyframes, sweeps=args.sweeps,
                     width=args.width, height=args.height, depth_noise=args.depth_noise,
                     feature_noise=args.feature_noise, text_encoder=args.text_encoder)
    summary = make_synthetic(Path(args.out), spec, jobs=args.jobs or None, layout=args.layout, progress=True)
    print(f"wrote {args.out}: {summary['scenes']} scenes, {summary['samples']} samples, {summary['images']} images "
          f"in {summary['seconds']:.1f} s")
    layout = LAYOUTS[args.layout]
    if args.layout != "pgocc":
        print(f"read it with: --set data.dataroot={Path(args.out) / layout.dataroot} "
              f"--set data.depth_dir={layout.depth_dir} --set data.feature_dir={layout.feature_dir} "
              f"--set data.train_infos={infos_name('train')} --set data.val_infos={infos_name('val')}")
    return 0
