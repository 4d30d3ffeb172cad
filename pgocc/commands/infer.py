"""``pgocc infer``: run the model over a nuScenes-format dataset and write occupancy, text-query similarity, mIoU and
pictures.

    dataset (split data.val_split, test-mode frames) ─ PGOcc (eval, no grad, feature cache) ─ final Gaussians
      ─ Readout.similarity(Occ3D prompt prototypes ⊕ --query embeddings)   (one gs2vox pass for both)
      ─ labels [X, Y, Z] uint8 (§6.3) + per-query similarity ─ occupancy.npz, mIoU (§8.1), pictures

Run directory (``--out``, default a new ``<train.run_root>/infer-<time>``): ``config.json``, ``kernels.json``,
``summary.json`` (counts, times, metrics), and per sample ``samples/<scene>/<sample token>/``: ``occupancy.npz``
(``labels`` uint8 [X, Y, Z]; ``similarity`` float16 [K, X, Y, Z], one volume per ``--query``; ``queries`` [K]) and,
for the first ``--pictures`` samples, ``bev.png``, ``cameras.png`` and ``query_<k>_<text>.png``.

The Occ3D labels need the prompt prototypes of docs/model.md §6.1 (``--prototypes``; a synthetic world ships its
own). Queries are embedded by ``--text-encoder`` (default: a synthetic world's own encoder, else the prototype table,
which only knows its own prompts); the embeddings must have the model's ``ov_dims``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from pgocc.commands._common import add_experiment_arguments, experiment_from_args

if TYPE_CHECKING:
    import torch

    from pgocc.config import ExperimentConfig
    from pgocc.model import PGOcc
    from pgocc.text import PrototypeEncoder, TextEncoder

HELP = "run the model on a nuScenes-format dataset: Occ3D occupancy, text-query similarity, mIoU and pictures"


DEFAULT_CONFIG = "configs.tiny:tiny"
"""The experiment when neither --config nor an exported checkpoint (which embeds its own) says."""


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
    parser.add_argument("--prototypes", type=Path, default=None,
                        help="embeddings of the 21 Occ3D prompts (docs/model.md §6.1): .npz with embeds/prompts, or "
                             "a CLIP [D, 21] .pt/.pth; None: DATAROOT/text_prototypes.npz")
    parser.add_argument("--text-encoder", default=None,
                        help="encoder of the --query texts: minilm, hash or a prototype file; None: the synthetic "
                             "world's own encoder, else the --prototypes table")
    parser.add_argument("--pictures", type=int, default=4, metavar="N",
                        help="write pictures for the first N samples (0: none)")


# ---------------------------------------------------------------------------------------------------------------
# Set-up


def _load_checkpoint(model: PGOcc, path: Path, config: str, state: dict | None = None) -> None:
    """Load a state dict (``state``, already read from an export, or the .pt/.pth file ``path``) into ``model``
    (strict), or raise CheckpointError listing every difference."""
    from pgocc.errors import CheckpointError
    from pgocc.model.state_keys import key_mismatch, read_state_dict

    if state is not None:
        problem = key_mismatch(model.state_dict(), state)
        if problem:
            raise CheckpointError(f"{path}: does not match the model of its embedded config\n{problem}")
        model.load_state_dict(state)
        return
    raw = read_state_dict(path, "--checkpoint")
    problem = key_mismatch(model.state_dict(), raw)
    if problem:
        raise CheckpointError(f"{path}: does not match the model of --config {config}\n{problem}")
    model.load_state_dict(raw)


def _query_encoder(name: str | None, dataroot: Path, prototypes: PrototypeEncoder, ov_dims: int) -> TextEncoder:
    from pgocc.errors import ConfigError
    from pgocc.text import text_encoder

    if name is None:
        if (dataroot / "world.json").is_file():
            from pgocc.data.synthetic import load_spec

            name = load_spec(dataroot).text_encoder
        else:
            return prototypes
    try:
        encoder = text_encoder(name)
    except ValueError as exc:
        raise ConfigError(f"--text-encoder: {exc}") from None
    if encoder.dim != ov_dims:
        raise ConfigError(f"--text-encoder: {name!r} gives {encoder.dim}-d embeddings but model.ov_dims={ov_dims}")
    return encoder


def _run_dir(out: Path | None, run_root: str) -> Path:
    """``out`` (created if needed), or a new ``run_root/infer-<time>[-i]``."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        return out
    base = Path(run_root) / time.strftime("infer-%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        path = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{base}: could not create a new run directory")


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "query"


def _write_npz(path: Path, **arrays: object) -> None:
    """Compressed ``.npz`` written under a temporary name and renamed (no half-written file)."""
    import numpy as np

    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    tmp.replace(path)


def _json(path: Path, data: object) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)


# ---------------------------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        # Triton kernels run interpreted on CPU; the flag must be set before any kernel module is imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from pgocc import ops
    from pgocc.config import INFERENCE_FREE_FIELDS, apply_overrides, config_diff, format_diff, load_experiment
    from pgocc.errors import CheckpointError, ConfigError

    state = None
    if args.checkpoint is not None and args.checkpoint.suffix == ".safetensors":
        from pgocc.training.checkpoint import load_exported

        embedded, state = load_exported(args.checkpoint)
        if args.config is None:
            args.config = f"the config embedded in {args.checkpoint}"
            cfg = apply_overrides(embedded, args.overrides)
        else:
            cfg = experiment_from_args(args)
        diff = config_diff(embedded, cfg, sections=("model",), ignore=INFERENCE_FREE_FIELDS)
        if diff:
            raise CheckpointError(f"{args.checkpoint}: its model differs from the one of --config/--set: "
                                  f"{format_diff(diff, 'checkpoint', 'requested')}")
    else:
        if args.config is None:
            args.config = DEFAULT_CONFIG
        cfg = apply_overrides(load_experiment(args.config), args.overrides)
    args.exported_state = state
    ops.check_device(cfg.kernels, "cuda" if cuda else "cpu")
    if args.dataroot is not None:
        cfg.data.dataroot = str(args.dataroot)
    if args.num_samples is not None and args.num_samples < 1:
        raise ConfigError(f"--num-samples: must be >= 1, got {args.num_samples}")
    if args.pictures < 0:
        raise ConfigError(f"--pictures: must be >= 0, got {args.pictures}")
    return _infer(cfg, args, torch.device("cuda" if cuda else "cpu"))


def _infer(cfg: ExperimentConfig, args: argparse.Namespace, device: torch.device) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from pgocc import ops
    from pgocc.config import write_config
    from pgocc.data.dataset import build_dataset, make_loader
    from pgocc.data.occ3d import FREE, GRID_SHAPE
    from pgocc.errors import ConfigError, DataError
    from pgocc.eval.loop import load_prototypes, predict_labels
    from pgocc.eval.metrics import OccupancyMIoU
    from pgocc.model import FeatureCache, PGOcc, Readout
    from pgocc.text import OCC3D_GROUP_LABELS, OCC3D_PROMPT_GROUP, OCC3D_PROMPTS
    from pgocc.vis import bev_picture, camera_picture, query_picture

    start = time.perf_counter()
    dataroot = Path(cfg.data.dataroot)
    if not dataroot.is_dir():
        raise DataError(f"{dataroot}: dataset root not found (--dataroot); write the synthetic one with "
                        f"`pgocc make-synthetic --out {dataroot}`")
    mcfg = cfg.model
    grid = mcfg.grid_dims

    cfg.debug.apply()
    torch.manual_seed(cfg.train.seed)
    model = PGOcc(mcfg, cfg.kernels, deterministic=cfg.debug.deterministic)
    if args.checkpoint is not None:
        _load_checkpoint(model, args.checkpoint, args.config, getattr(args, "exported_state", None))
        weights = str(args.checkpoint)
    else:
        weights = f"random initialisation (seed {cfg.train.seed})"
        print(f"\n!!! pgocc infer: NO --checkpoint: the model is RANDOMLY INITIALISED (seed {cfg.train.seed}); its "
              "occupancy, similarities and metrics mean nothing !!!\n", file=sys.stderr)
    model = model.to(device).eval()
    readout = Readout(mcfg, cfg.kernels, deterministic=cfg.debug.deterministic).to(device)

    prototypes = load_prototypes(args.prototypes or dataroot / "text_prototypes.npz", mcfg.ov_dims)
    column_labels = [OCC3D_GROUP_LABELS[g] for g in OCC3D_PROMPT_GROUP]
    text = prototypes.encode(list(OCC3D_PROMPTS))
    queries: list[str] = args.queries
    if queries:
        encoder = _query_encoder(args.text_encoder, dataroot, prototypes, mcfg.ov_dims)
        text = torch.cat([text, encoder.encode(queries)])
    text = text.to(device)
    num_prompts = len(OCC3D_PROMPTS)

    labels_dir = dataroot / cfg.data.labels_dir
    if cfg.data.with_labels and not labels_dir.is_dir():
        print(f"pgocc infer: {labels_dir} not found: no Occ3D labels, so no mIoU (data.with_labels=false)",
              file=sys.stderr)
        cfg.data.with_labels = False
    if cfg.data.with_labels and grid != GRID_SHAPE:
        raise ConfigError(f"model.pc_range: the readout grid {grid} (pc_range / voxel_size) differs from the Occ3D "
                          f"labels' {GRID_SHAPE}; set data.with_labels=false to run without metrics")
    dataset = build_dataset(cfg.data, cfg.data.val_split, num_frames=mcfg.num_frames, feature_dim=mcfg.ov_dims,
                            mode="test")
    if len(dataset) == 0:
        raise DataError(f"{dataroot}: split {cfg.data.val_split!r} has no samples")
    num = min(args.num_samples or len(dataset), len(dataset))

    run_dir = _run_dir(args.out, cfg.train.run_root)
    write_config(cfg, run_dir)
    _json(run_dir / "kernels.json", ops.kernel_table(cfg.kernels))
    # No more workers than samples: a worker without a sample to load only costs its start-up.
    loader = make_loader(torch.utils.data.Subset(dataset, range(num)),
                         dataclasses.replace(cfg.data, num_workers=min(cfg.data.num_workers, num)), shuffle=False)
    # Past frames are earlier keyframes of the same scene, processed just before in this sequential order.
    cache = FeatureCache(capacity=2 * mcfg.num_frames * cfg.data.batch_size)
    metric = OccupancyMIoU()
    origin = mcfg.pc_range[:2]
    pictures: list[Path] = []
    npz_files: list[Path] = []
    model_seconds = 0.0
    setup_seconds = time.perf_counter() - start
    loop_start = time.perf_counter()
    done = 0
    with tqdm(total=num, desc="infer", unit="sample", file=sys.stderr) as bar:
        for batch in loader:
            batch = batch.to(device)
            t0 = time.perf_counter()
            out = predict_labels(model, readout, batch, text, column_labels, cache=cache)
            prediction, labels, field = out.prediction, out.labels, out.field
            with torch.no_grad():
                # The final stage's depth in the current cameras, only for batches that get pictures.
                depth = (model.renderer.depth(prediction.final, batch.cam2ego, batch.render_k,
                                              tuple(batch.depth.shape[-2:])) if done < args.pictures else None)
            if device.type == "cuda":
                torch.cuda.synchronize()
            model_seconds += time.perf_counter() - t0
            # The first host read of this batch's results: the forward's deferred checks raise here, naming the
            # tensor (a NaN weight of a loaded checkpoint, too few valid depth pixels), before anything is written.
            prediction.checks.raise_if_failed()
            labels_np = labels.cpu().numpy()
            similarity = field[..., num_prompts:].movedim(-1, 1).to(torch.float16).cpu().numpy()  # [B, K, X, Y, Z]
            for b in range(batch.batch_size):
                name = f"{batch.scene_names[b]} / {batch.sample_tokens[b]}"
                sample_dir = run_dir / "samples" / batch.scene_names[b] / batch.sample_tokens[b]
                sample_dir.mkdir(parents=True, exist_ok=True)
                _write_npz(sample_dir / "occupancy.npz", labels=labels_np[b], similarity=similarity[b],
                           queries=np.array(queries, dtype=str))
                npz_files.append(sample_dir / "occupancy.npz")
                gt = mask = None
                if batch.semantics is not None and batch.mask_camera is not None:
                    gt, mask = batch.semantics[b].cpu().numpy(), batch.mask_camera[b].cpu().numpy()
                    metric.update(labels_np[b], gt, mask)
                if done < args.pictures and depth is not None:
                    pictures.append(bev_picture(sample_dir / "bev.png", labels_np[b], gt, mask, title=name,
                                                origin=origin, voxel_size=mcfg.voxel_size))
                    rgb = batch.render_gt[b, :batch.num_cams].flip(-1).cpu().numpy()  # BGR → RGB, current frame
                    pictures.append(camera_picture(sample_dir / "cameras.png", rgb, depth[b].cpu().numpy(),
                                                   title=f"{name}: final-stage rendered depth"))
                    occupied = labels_np[b] != FREE
                    for k, query in enumerate(queries):
                        pictures.append(query_picture(sample_dir / f"query_{k}_{_slug(query)}.png", query,
                                                      similarity[b, k], occupied, title=name, origin=origin,
                                                      voxel_size=mcfg.voxel_size))
                done += 1
                bar.update(1)
    loop_seconds = time.perf_counter() - loop_start

    scores = metric.compute() if metric.samples else None
    summary = {
        "dataroot": str(dataroot), "split": cfg.data.val_split, "samples": done, "device": str(device),
        "weights": weights, "queries": queries, "setup_seconds": setup_seconds,
        "seconds_per_sample": loop_seconds / done, "model_seconds_per_sample": model_seconds / done,
        "metrics": scores.as_dict() if scores is not None else None,
        "files": [str(p.relative_to(run_dir)) for p in npz_files + pictures],
    }
    _json(run_dir / "summary.json", summary)

    print(f"pgocc infer: {done} sample(s) of split {cfg.data.val_split!r} from {dataroot} on {device}; "
          f"weights: {weights}")
    print(f"  time: {loop_seconds / done:.2f} s/sample (model + readout {model_seconds / done:.2f} s), "
          f"set-up {setup_seconds:.1f} s")
    if scores is None:
        print("  metrics: none (no Occ3D labels)")
    else:
        def pct(x: float) -> str:
            return "n/a" if x != x else f"{100 * x:.2f} %"

        print(f"  mIoU {pct(scores.miou)} (15 classes), geometric IoU {pct(scores.geometric_iou)}, camera mask, "
              f"{scores.samples} sample(s) with labels")
    if queries:
        print(f"  queries: {', '.join(repr(q) for q in queries)} (similarity volumes in occupancy.npz)")
    print(f"  wrote {run_dir}: config.json, kernels.json, summary.json, {len(npz_files)} occupancy.npz and "
          f"{len(pictures)} picture(s) under samples/<scene>/<token>/")
    return 0
