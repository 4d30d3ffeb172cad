"""Inference and evaluation over a split, from Python (``pgocc infer`` and ``pgocc demo`` are thin wrappers).

    dataset (split data.val_split, test-mode frames) ─ PGOcc (eval, no grad, feature cache) ─ final Gaussians
      ─ Readout.similarity(Occ3D prompt prototypes ⊕ query embeddings)   (one gs2vox pass for both)
      ─ labels [X, Y, Z] uint8 (docs/model.md §6.3) ─ predictions/<token>.npz          (pgocc eval's input)
      ─ per-query similarity ─ samples/<scene>/<token>/queries.npz, retrieval AP (given each query's classes)
      ─ rendered depth vs a synthetic world's exact depth ─ depth metrics (docs/model.md §8.3)
      ─ pictures of the first samples
    last step: the saved predictions scored against the Occ3D labels (pgocc.eval.predictions: mIoU, RayIoU)

Run directory: ``config.json``, ``kernels.json``, ``predictions/``, ``samples/<scene>/<token>/`` (queries.npz,
pictures), ``eval.json`` (scores and the rule each follows), ``summary.json`` (counts, times, scores, files).
"""

from __future__ import annotations

import dataclasses
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from pgocc.errors import CheckpointError, ConfigError, DataError
from pgocc.eval.depth import DepthMetric, DepthScores
from pgocc.eval.loop import load_prototypes, predict_labels
from pgocc.eval.predictions import (
    EvalScores,
    format_table,
    label_files,
    scene_origins,
    score_predictions,
    write_json,
    write_npz,
    write_prediction,
)
from pgocc.eval.retrieval import RetrievalAP, RetrievalScores

if TYPE_CHECKING:
    from pgocc.config import ExperimentConfig
    from pgocc.model import PGOcc, Readout
    from pgocc.text import PrototypeEncoder, TextEncoder


@dataclass(kw_only=True)
class InferOptions:
    """What to run and write (the config says which data and model)."""

    out: Path | None = None
    """Run directory (created; existing files replaced); None: a new ``<train.run_root>/infer-<time>``."""
    num_samples: int | None = None
    """The first N samples of the split; None: all."""
    tokens: Sequence[str] | None = None
    """These samples of the split instead (in split order); None: the first ``num_samples``."""
    queries: Sequence[str] = ()
    """Texts answered per voxel."""
    query_classes: Sequence[Sequence[int]] | None = None
    """The Occ3D labels each query names, for retrieval AP; None: no retrieval AP."""
    prototypes: Path | None = None
    """Embeddings of the 21 Occ3D prompts; None: ``<dataroot>/text_prototypes.npz``."""
    text_encoder: str | None = None
    """Encoder of the queries (pgocc.text.text_encoder); None: a synthetic world's own, else the prototypes."""
    pictures: int = 4
    """Samples that get pictures (the first ones)."""
    evaluate: bool = True
    """Score the predictions at the end (when the dataset has labels)."""
    rayiou: bool = True
    """Include RayIoU in that score (about 5–20 s per sample on a CPU)."""
    online: bool = False
    """Decode only the current frame's images of each sample and take the past frames' features from the cache, as a
    car would (docs/performance.md §1); needs the samples in order from their scene's first keyframe, so not with
    ``tokens``. Off: every frame's images are decoded (past frames the cache already holds are not recomputed)."""
    autocast: Literal["none", "bf16"] = "none"
    """The network's forward under bf16 autocast (CUDA only); the readout stays float32."""
    cuda_graph: bool = False
    """With ``online`` on CUDA: capture the first frame (network and readout) as a CUDA graph and replay it for every
    later frame of the same shapes (:class:`pgocc.eval.graphed.GraphedFrames`)."""


@dataclass
class InferResult:
    """What :func:`run_inference` did."""

    run_dir: Path
    samples: int
    scores: EvalScores | None
    """mIoU etc. of the saved predictions; None without labels or with ``evaluate`` off."""
    depth: DepthScores | None
    """None unless the dataset is a synthetic world with exact depth."""
    retrieval: RetrievalScores | None
    pictures: list[Path] = field(default_factory=list)
    seconds_per_sample: float = 0.0


# ---------------------------------------------------------------------------------------------------------------
# Model and text

@dataclass
class Experiment:
    """The experiment a command runs, resolved from its --checkpoint, --config and --set."""

    cfg: ExperimentConfig
    config: str
    """Where the config came from (for messages)."""
    state: dict[str, torch.Tensor] | None
    """An exported checkpoint's weights, already read; None for a .pt/.pth checkpoint or none."""


def resolve_experiment(checkpoint: Path | None, config: str | None, overrides: Sequence[str],
                       device: torch.device, default: str) -> Experiment:
    """The config of an exported checkpoint (``.safetensors``, which embeds its own; a ``config`` whose model
    differs is refused), else ``config`` (``default`` when None), with ``overrides`` applied; the kernels are
    checked against ``device``."""
    from pgocc import ops
    from pgocc.config import (
        INFERENCE_FREE_FIELDS,
        apply_overrides,
        check_cpu_run,
        config_diff,
        format_diff,
        load_experiment,
    )

    state = None
    if checkpoint is not None and checkpoint.suffix == ".safetensors":
        from pgocc.training.checkpoint import load_exported

        embedded, state = load_exported(checkpoint)
        if config is None:
            config = f"the config embedded in {checkpoint}"
            cfg = apply_overrides(embedded, list(overrides))
        else:
            cfg = apply_overrides(load_experiment(config), list(overrides))
        diff = config_diff(embedded, cfg, sections=("model",), ignore=INFERENCE_FREE_FIELDS)
        if diff:
            raise CheckpointError(f"{checkpoint}: its model differs from the one of --config/--set: "
                                  f"{format_diff(diff, 'checkpoint', 'requested')}")
    else:
        config = config or default
        cfg = apply_overrides(load_experiment(config), list(overrides))
    ops.check_device(cfg.kernels, device.type)
    if device.type == "cpu":
        check_cpu_run(cfg)
    return Experiment(cfg=cfg, config=config, state=state)


def load_weights(model: PGOcc, path: Path, config: str, state: dict[str, torch.Tensor] | None = None) -> None:
    """Load a state dict (``state``, already read from an export, or the .pt/.pth file ``path``) into ``model``
    (strict), or raise CheckpointError listing every difference."""
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


def build_model(cfg: ExperimentConfig, device: torch.device, checkpoint: Path | None = None,
                state: dict[str, torch.Tensor] | None = None, config: str = "") -> tuple[PGOcc, Readout, str]:
    """(model in eval mode, readout, what the weights are): ``checkpoint``'s weights, or seeded random ones."""
    from pgocc.model import PGOcc, Readout

    cfg.debug.apply()
    torch.manual_seed(cfg.train.seed)
    model = PGOcc(cfg.model, cfg.kernels, deterministic=cfg.debug.deterministic)
    if checkpoint is not None:
        load_weights(model, checkpoint, config, state)
        weights = str(checkpoint)
    else:
        weights = f"random initialisation (seed {cfg.train.seed})"
    readout = Readout(cfg.model, cfg.kernels, deterministic=cfg.debug.deterministic).to(device)
    return model.to(device).eval(), readout, weights


def query_encoder(name: str | None, dataroot: Path, prototypes: PrototypeEncoder, ov_dims: int) -> TextEncoder:
    """The encoder named ``name`` (pgocc.text.text_encoder); None: a synthetic world's own, else ``prototypes``."""
    from pgocc.text import text_encoder

    if name is None:
        if not (dataroot / "world.json").is_file():
            return prototypes
        from pgocc.synthetic.writer import load_spec

        name = load_spec(dataroot).text_encoder
    try:
        encoder = text_encoder(name)
    except ValueError as exc:
        raise ConfigError(f"--text-encoder: {exc}") from None
    if encoder.dim != ov_dims:
        raise ConfigError(f"--text-encoder: {name!r} gives {encoder.dim}-d embeddings but model.ov_dims={ov_dims}")
    return encoder


# ---------------------------------------------------------------------------------------------------------------
# Helpers


def run_directory(out: Path | None, run_root: str, prefix: str = "infer") -> Path:
    """``out`` (created if needed), or a new ``run_root/<prefix>-<time>[-i]``."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        return out
    base = Path(run_root) / time.strftime(f"{prefix}-%Y%m%d-%H%M%S")
    for i in range(1, 1000):
        path = base if i == 1 else base.with_name(f"{base.name}-{i}")
        try:
            path.mkdir(parents=True)
            return path
        except FileExistsError:
            continue
    raise FileExistsError(f"{base}: could not create a new run directory")


def slug(text: str) -> str:
    """A file-name piece for a query text."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "query"


def exact_depth(dataroot: Path) -> bool:
    """Whether ``dataroot`` is a synthetic world whose stored depth is the exact ray-cast depth (no noise)."""
    if not (dataroot / "world.json").is_file():
        return False
    from pgocc.synthetic.writer import load_spec

    return load_spec(dataroot).depth_noise == 0


def _true_depth(folder: Path, filenames: Sequence[str]) -> list[np.ndarray]:
    """The stored depth maps [H, W] of the given current-camera images."""
    from pgocc.data.layout import target_stem
    from pgocc.data.targets import check_depth, read_target

    out = []
    for name in filenames:
        depth, path = read_target(folder, target_stem(name), "depth")
        out.append(check_depth(depth, path).astype(np.float32))
    return out


# ---------------------------------------------------------------------------------------------------------------


def run_inference(cfg: ExperimentConfig, model: PGOcc, readout: Readout, weights: str, options: InferOptions,
                  device: torch.device, *, log_prefix: str = "infer") -> InferResult:
    """Run ``model`` over ``cfg.data.val_split`` of ``cfg.data.dataroot``, write the run directory, score it.

    Raises:
        DataError: missing dataset, prototypes, labels or target files (names the file).
        ModelCheckError: a prediction's deferred check failed (names the tensor).
    """
    from tqdm import tqdm

    from pgocc import ops
    from pgocc.config import write_config
    from pgocc.data.dataset import build_dataset, make_loader
    from pgocc.data.index import check_tables
    from pgocc.data.layout import CAMERAS
    from pgocc.data.occ3d import FREE, GRID_SHAPE
    from pgocc.eval.graphed import GraphedFrames
    from pgocc.model import FeatureCache
    from pgocc.text import OCC3D_GROUP_LABELS, OCC3D_PROMPT_GROUP, OCC3D_PROMPTS
    from pgocc.vis import bev_picture, camera_picture, query_picture, voxel_picture

    if options.online and options.tokens is not None:
        raise ConfigError("--online: runs the samples in order from their scene's first keyframe (the past frames "
                          "come from the feature cache); it cannot run chosen samples (--sample), use --num-samples")
    if options.autocast == "bf16" and device.type != "cuda":
        raise ConfigError(f"--autocast: 'bf16' needs a CUDA device; this run is on {device.type}")
    if options.cuda_graph and (device.type != "cuda" or not options.online):
        raise ConfigError("--cuda-graph: replays online frames on a CUDA device; needs --online and CUDA (this run: "
                          f"{'online' if options.online else 'not online'}, on {device.type})")
    dataroot = Path(cfg.data.dataroot)
    if not dataroot.is_dir():
        raise DataError(f"{dataroot}: dataset root not found (--dataroot); write the synthetic one with "
                        f"`pgocc make-synthetic --out {dataroot}`")
    # The tables first: in a folder that is not a dataset they are what is missing, not the prototypes or labels.
    check_tables(dataroot, cfg.data.version)
    mcfg = cfg.model
    queries = list(options.queries)
    if options.query_classes is not None and len(options.query_classes) != len(queries):
        raise ValueError(f"run_inference: {len(queries)} queries but {len(options.query_classes)} class lists")
    prototypes = load_prototypes(options.prototypes or dataroot / "text_prototypes.npz", mcfg.ov_dims)
    column_labels = [OCC3D_GROUP_LABELS[g] for g in OCC3D_PROMPT_GROUP]
    text = prototypes.encode(list(OCC3D_PROMPTS))
    if queries:
        encoder = query_encoder(options.text_encoder, dataroot, prototypes, mcfg.ov_dims)
        text = torch.cat([text, encoder.encode(queries)])
    text = text.to(device)
    num_prompts = len(OCC3D_PROMPTS)

    labels_dir = dataroot / cfg.data.labels_dir
    if cfg.data.with_labels and not labels_dir.is_dir():
        print(f"pgocc {log_prefix}: {labels_dir} not found: no Occ3D labels, so no mIoU (data.with_labels=false)",
              file=sys.stderr)
        cfg.data.with_labels = False
    if cfg.data.with_labels and mcfg.grid_dims != GRID_SHAPE:
        raise ConfigError(f"model.pc_range: the readout grid {mcfg.grid_dims} (pc_range / voxel_size) differs from "
                          f"the Occ3D labels' {GRID_SHAPE}; set data.with_labels=false to run without metrics")
    # The render images serve only the pictures: without pictures the loader decodes and resizes each image once.
    dataset = build_dataset(cfg.data, cfg.data.val_split, num_frames=mcfg.num_frames, feature_dim=mcfg.ov_dims,
                            mode="online" if options.online else "test", with_render=options.pictures > 0)
    if len(dataset) == 0:
        raise DataError(f"{dataroot}: split {cfg.data.val_split!r} has no samples")
    if options.tokens is not None:
        where = {str(t): i for i, t in enumerate(dataset.index.sample_token)}
        missing = [t for t in options.tokens if t not in where]
        if missing:
            raise DataError(f"{dataroot}: no sample {missing[0]!r} in split {cfg.data.val_split!r} (--sample)")
        chosen = sorted(where[t] for t in options.tokens)
    else:
        chosen = list(range(min(options.num_samples or len(dataset), len(dataset))))
    num = len(chosen)
    scoring = options.evaluate and cfg.data.with_labels

    run_dir = run_directory(options.out, cfg.train.run_root)
    pred_dir = run_dir / "predictions"
    pred_dir.mkdir(exist_ok=True)
    write_config(cfg, run_dir)
    write_json(run_dir / "kernels.json", ops.kernel_table(cfg.kernels))
    # No more workers than samples: a worker without a sample to load only costs its start-up.
    loader = make_loader(torch.utils.data.Subset(dataset, chosen),
                         dataclasses.replace(cfg.data, num_workers=min(cfg.data.num_workers, num)), shuffle=False)
    # Past frames are earlier keyframes of the same scene, processed just before in this sequential order.
    cache = FeatureCache(capacity=2 * mcfg.num_frames * cfg.data.batch_size)
    autocast = torch.bfloat16 if options.autocast == "bf16" else None
    graphed = (GraphedFrames(model, readout, text, column_labels, cache, autocast=autocast)
               if options.cuda_graph else None)
    depth_metric = DepthMetric(len(CAMERAS)) if options.evaluate and exact_depth(dataroot) else None
    retrieval = (RetrievalAP(queries, options.query_classes)
                 if options.query_classes is not None and queries and scoring else None)
    origin = mcfg.pc_range[:2]
    pictures: list[Path] = []
    written: list[Path] = []
    model_seconds = 0.0
    loop_start = time.perf_counter()
    done = 0
    with tqdm(total=num, desc=log_prefix, unit="sample", file=sys.stderr) as bar:
        # A sample of a large model takes minutes on a CPU: the bar names the part of the forward now running.
        stage_hooks = [model.backbone.register_forward_pre_hook(lambda m, a: bar.set_postfix_str("image features"))]
        stage_hooks += [layer.register_forward_pre_hook(
            lambda m, a, s=s: bar.set_postfix_str(f"stage {s + 1}/{len(model.layers)}"))
            for s, layer in enumerate(model.layers)]
        stage_hooks.append(model.register_forward_hook(lambda m, a, out: bar.set_postfix_str("readout")))
        for batch in loader:
            batch = batch.to(device, non_blocking=True)  # pinned by the loader: no wait for the GPU
            t0 = time.perf_counter()
            out = (graphed(batch) if graphed is not None
                   else predict_labels(model, readout, batch, text, column_labels, cache=cache, autocast=autocast))
            prediction, labels, similarity_field = out.prediction, out.labels, out.field
            draw = done < options.pictures
            rendered_depth = rendered_features = None
            with torch.no_grad():
                size = tuple(batch.depth.shape[-2:])
                if draw:
                    final = prediction.final
                    rendered_features, rendered_depth = model.renderer.features_and_depth(
                        final, final.features, batch.cam2ego, batch.render_k, size)
                elif depth_metric is not None:
                    rendered_depth = model.renderer.depth(prediction.final, batch.cam2ego, batch.render_k, size)
            if device.type == "cuda":
                torch.cuda.synchronize()
            model_seconds += time.perf_counter() - t0
            # The first host read of this batch's results: the forward's deferred checks raise here, naming the
            # tensor (a NaN weight of a loaded checkpoint, too few valid depth pixels), before anything is written.
            prediction.checks.raise_if_failed()
            labels_np = labels.cpu().numpy()
            similarity = similarity_field[..., num_prompts:].movedim(-1, 1).to(torch.float16).cpu().numpy()
            for b in range(batch.batch_size):
                scene, token = batch.scene_names[b], batch.sample_tokens[b]
                name = f"{scene} / {token}"
                sample_dir = run_dir / "samples" / scene / token
                written.append(write_prediction(pred_dir, token, labels_np[b]))
                if queries:
                    sample_dir.mkdir(parents=True, exist_ok=True)
                    written.append(write_npz(sample_dir / "queries.npz", similarity=similarity[b],
                                             queries=np.array(queries, dtype=str)))
                gt = mask = None
                if batch.semantics is not None and batch.mask_camera is not None:
                    gt, mask = batch.semantics[b].cpu().numpy(), batch.mask_camera[b].cpu().numpy()
                    if retrieval is not None:
                        retrieval.update(similarity[b].astype(np.float32), gt, mask)
                if depth_metric is not None and rendered_depth is not None:
                    depth_metric.update(rendered_depth[b].float().cpu().numpy(),
                                        _true_depth(dataset.depth_dir, batch.filenames[b][:batch.num_cams]))
                if draw and rendered_depth is not None and rendered_features is not None:
                    pictures.append(bev_picture(sample_dir / "bev.png", labels_np[b], gt, mask, title=name,
                                                origin=origin, voxel_size=mcfg.voxel_size))
                    pictures.append(voxel_picture(sample_dir / "voxels.png", labels_np[b], gt, mask, title=name,
                                                  origin=mcfg.pc_range[:3], voxel_size=mcfg.voxel_size))
                    rgb = batch.render_gt[b, :batch.num_cams].flip(-1).cpu().numpy()  # BGR → RGB, current frame
                    pictures.append(camera_picture(
                        sample_dir / "cameras.png", rgb, foundation=batch.depth[b, :, 0].cpu().numpy(),
                        rendered=rendered_depth[b].float().cpu().numpy(),
                        features=rendered_features[b].float().cpu().numpy(), title=name))
                    occupied = labels_np[b] != FREE
                    for k, query in enumerate(queries):
                        pictures.append(query_picture(sample_dir / f"query_{k}_{slug(query)}.png", query,
                                                      similarity[b, k], occupied, title=name, origin=origin,
                                                      voxel_size=mcfg.voxel_size))
                done += 1
                bar.update(1)
        for hook in stage_hooks:
            hook.remove()
    loop_seconds = time.perf_counter() - loop_start

    scores = None
    if scoring:
        origins = None
        if options.rayiou:
            ix = dataset.index
            origins = scene_origins(ix.scene_name, ix.ego2global, ix.lidar2ego, ix.sample_token)
        files = sorted(p for p in pred_dir.glob("*.npz"))
        scores = score_predictions(files, label_files(labels_dir), origins,
                                   progress=lambda it: tqdm(it, total=len(files), desc="score", unit="sample",
                                                            file=sys.stderr), device=device)
        write_json(run_dir / "eval.json", scores.as_dict())
    result = InferResult(run_dir=run_dir, samples=done, scores=scores,
                         depth=None if depth_metric is None else depth_metric.compute(),
                         retrieval=None if retrieval is None else retrieval.compute(), pictures=pictures,
                         seconds_per_sample=loop_seconds / done)
    write_json(run_dir / "summary.json", {
        "dataroot": str(dataroot), "split": cfg.data.val_split, "samples": done, "device": str(device),
        "weights": weights, "queries": queries, "seconds_per_sample": loop_seconds / done,
        "model_seconds_per_sample": model_seconds / done,
        "cuda_graph_replays": None if graphed is None else graphed.replays,
        "metrics": None if scores is None else scores.as_dict(),
        "depth": None if result.depth is None else result.depth.as_dict(),
        "retrieval": None if result.retrieval is None else result.retrieval.as_dict(),
        "files": [str(p.relative_to(run_dir)) for p in written + pictures],
    })
    return result


def print_result(result: InferResult, weights: str, device: torch.device, command: str = "infer") -> None:
    """The run's summary lines and, when scored, the table of pgocc eval."""
    print(f"pgocc {command}: {result.samples} sample(s) on {device}, {result.seconds_per_sample:.2f} s/sample; "
          f"weights: {weights}")
    if result.scores is None:
        print("  metrics: none (no Occ3D labels, or --no-eval)")
    else:
        print(format_table(result.scores))
    if result.depth is not None:
        v = result.depth.values
        print(f"  rendered depth vs exact depth ({result.depth.images} images): abs_rel {v['abs_rel']:.3f}, "
              f"rmse {v['rmse']:.2f} m, δ<1.25 {100 * v['delta_1.25']:.1f} %")
    if result.retrieval is not None:
        ap = ", ".join(f"{q!r} {'n/a' if v != v else f'{100 * v:.1f} %'}" for q, v in result.retrieval.ap.items())
        print(f"  retrieval AP: {ap}")
    print(f"  wrote {result.run_dir}: config.json, kernels.json, summary.json"
          + (", eval.json" if result.scores is not None else "")
          + f", predictions/<token>.npz, {len(result.pictures)} picture(s) under samples/<scene>/<token>/")
