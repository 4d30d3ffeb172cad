"""Write a trained model's final Gaussians on a world's samples, with the samples' camera-visible Occ3D labels, so
that readout variants can be studied on the CPU without the network (bench/readout_study.py).

    python bench/dump_gaussians.py --checkpoint paper.safetensors --dataroot WORLD --num-samples 16 --out dump.npz

The file holds, for N samples of Q Gaussians each: means [N, Q, 3] and opacities [N, Q] in float32, quats and scales
[N, Q, 4|3] in float16, ``sim`` [N, Q, 21] (float16), the raw dot products of each Gaussian's features with the 21
Occ3D prompt prototypes (what the readout compares), ``column_labels`` [21], the readout's grid origin, thresholds
and cut-off, each sample's ``mask_camera`` as ``np.packbits`` of the flat grid (``mask_bits`` [N, X·Y·Z / 8]) and
the ground-truth labels of its masked voxels in flat order (``mask_labels``, all samples concatenated).
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pgocc.data.dataset import build_dataset, make_loader
from pgocc.eval.infer import build_model, resolve_experiment
from pgocc.eval.loop import load_prototypes
from pgocc.eval.predictions import write_npz
from pgocc.text import OCC3D_GROUP_LABELS, OCC3D_PROMPT_GROUP, OCC3D_PROMPTS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True, help="an exported model (.safetensors)")
    parser.add_argument("--dataroot", type=Path, required=True, help="a world with Occ3D labels")
    parser.add_argument("--split", default="all")
    parser.add_argument("--num-samples", type=int, default=None, metavar="N", help="the first N samples; None: all")
    parser.add_argument("--indices", type=lambda v: [int(i) for i in v.split(",")], default=None,
                        help="comma-separated sample indices of the split instead of the first N")
    parser.add_argument("--out", type=Path, required=True, help="the .npz to write")
    parser.add_argument("--set", action="append", default=[], metavar="PATH=VALUE",
                        help="further config override (repeatable), e.g. kernels.gs_raster=reference on a CPU")
    args = parser.parse_args()

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    overrides = [f"data.dataroot={args.dataroot}", f"data.val_split={args.split}", "data.num_workers=4", *args.set]
    exp = resolve_experiment(args.checkpoint, None, overrides, device, default="")
    cfg = exp.cfg
    model, readout, _ = build_model(cfg, device, args.checkpoint, exp.state, exp.config)
    prototypes = load_prototypes(args.dataroot / "text_prototypes.npz", cfg.model.ov_dims)
    text = prototypes.encode(list(OCC3D_PROMPTS)).to(device)                                # [21, D]
    dataset = build_dataset(cfg.data, args.split, num_frames=cfg.model.num_frames, feature_dim=cfg.model.ov_dims,
                            mode="test")
    chosen = args.indices or list(range(min(args.num_samples or len(dataset), len(dataset))))
    if max(chosen) >= len(dataset):
        raise SystemExit(f"--indices: {max(chosen)} is past the split's {len(dataset)} samples")
    count = len(chosen)
    loader = make_loader(torch.utils.data.Subset(dataset, chosen),
                         dataclasses.replace(cfg.data, batch_size=1), shuffle=False)
    arrays: dict[str, list[np.ndarray]] = {k: [] for k in ("means", "quats", "scales", "opacities", "sim",
                                                             "mask_bits", "mask_labels")}
    tokens: list[str] = []
    with torch.no_grad():
        for batch in tqdm(loader, total=count, desc="dump_gaussians", unit="sample"):
            if batch.semantics is None or batch.mask_camera is None:
                raise SystemExit(f"{args.dataroot}: samples without Occ3D labels; the dump needs them")
            batch = batch.to(device)
            prediction = model(batch)
            prediction.checks.raise_if_failed()
            g = prediction.final
            arrays["means"].append(g.means[0].float().cpu().numpy())
            for name in ("quats", "scales"):
                arrays[name].append(getattr(g, name)[0].cpu().numpy().astype(np.float16))
            arrays["opacities"].append(g.opacities[0].float().cpu().numpy())
            arrays["sim"].append((g.features[0].float() @ text.T).cpu().numpy().astype(np.float16))
            mask = batch.mask_camera[0].reshape(-1).cpu().numpy().astype(bool)
            arrays["mask_bits"].append(np.packbits(mask))
            arrays["mask_labels"].append(batch.semantics[0].reshape(-1).cpu().numpy()[mask].astype(np.uint8))
            tokens.extend(batch.sample_tokens)
    stacked = {k: (np.concatenate(v) if k == "mask_labels" else np.stack(v)) for k, v in arrays.items()}
    write_npz(args.out, **stacked, tokens=np.array(tokens),
              column_labels=np.array([OCC3D_GROUP_LABELS[g] for g in OCC3D_PROMPT_GROUP], np.int64),
              opacity_threshold=np.array(cfg.model.opacity_threshold), voxel_size=np.array(cfg.model.voxel_size),
              grid_origin=np.array(readout.origin), density_threshold=np.array(cfg.model.density_threshold),
              min_variance=np.array(cfg.model.min_variance), voxel_cutoff=np.array(cfg.model.voxel_cutoff))
    print(f"dump_gaussians: {count} samples × {stacked['means'].shape[1]} Gaussians → {args.out}")


if __name__ == "__main__":
    main()
