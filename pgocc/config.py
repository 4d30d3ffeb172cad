"""Typed experiment configuration.

Every section is a ``@dataclass(kw_only=True, slots=True)`` whose fields carry an attribute docstring on the line
below them (``pgocc show-config`` prints them). ``validate()`` checks each section and raises
:class:`~pgocc.errors.ConfigError` starting with the dotted path of the offending field. Experiments are functions in
``configs/`` that build on ``configs.base:base`` and state only their deltas; the only command-line overrides are the
narrow, typed ``--set section.field=value`` pairs of :func:`apply_overrides`.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import os
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pgocc.errors import ConfigError

Fidelity = Literal["paper", "released"]


def _require(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {message}")


@dataclass(kw_only=True, slots=True)
class KernelConfig:
    """Which implementation runs each hot path (``pgocc.ops.available(op)`` lists the names)."""

    aniso_sample: str = "reference"
    """Anisotropy-aware multi-point sampling across frames, cameras and pyramid levels."""
    st_fusion: str = "reference"
    """Spatio-temporal fusion: the AdaptiveMixing core (channel mix, LayerNorm, point mix, LayerNorm)."""
    gs_raster: str = "reference"
    """Gaussian splatting of features, expected depth and alpha into the cameras."""
    gs2vox: str = "reference"
    """Gaussian-to-voxel aggregation of density and features."""
    fps: str = "reference"
    """Farthest point sampling for query initialisation and densification."""
    dist_attention: str = "reference"
    """Distance-biased multi-head self-attention with the asymmetric stage mask."""

    def validate(self, path: str = "kernels") -> None:
        from pgocc import ops

        for op in ops.OPS:
            names = ops.available(op)
            impl = getattr(self, op)
            _require(impl in names, f"{path}.{op}", f"unknown implementation {impl!r}; available: {', '.join(names)}")


FIDELITY_SWITCHES: dict[str, tuple[bool, bool]] = {
    "anisotropic_sampling": (True, False),
    "delta_scale_by_origin": (True, False),
    "roi_at_stage0": (True, False),
    "transposed_level_weights": (False, True),
    "shifted_voxel_grid": (False, True),
    "automask_per_source": (False, True),
    "randomized_pca": (False, True),
}
"""Every fidelity switch of ModelConfig: name -> (value under fidelity 'paper', value under 'released')."""


@dataclass(kw_only=True, slots=True)
class ModelConfig:
    """The PG-Occ network (docs/model.md §1-§6) and its readout."""

    fidelity: Fidelity = "paper"
    """'paper' implements the paper; 'released' reproduces the authors' released code (docs/model.md §10). It sets
    every fidelity switch below that is left at None."""
    num_queries: tuple[int, ...] = (4000, 1000, 1000)
    """Gaussians added by each progressive stage (coarse, medium, fine); the stage count is their number."""
    box_sizes: tuple[float, ...] = (1.6, 0.8, 0.4)
    """Edge length (m) of the sampling box of the queries added by each stage (one per stage)."""
    embed_dims: int = 256
    """Query width C (also the FPN width)."""
    num_heads: int = 8
    """Self-attention heads."""
    num_groups: int = 4
    """Channel groups G of the sampling and AdaptiveMixing (C_g = embed_dims / num_groups)."""
    num_points: int = 4
    """Sampling points P per group and frame."""
    num_levels: int = 4
    """FPN levels L (one per backbone stage)."""
    num_frames: int = 8
    """Frames T (current + past)."""
    num_mix_points: int = 128
    """Points after AdaptiveMixing's point mixing (P_out)."""
    ffn_dims: int = 512
    """Hidden width of the decoder FFN."""
    head_dims: int = 1024
    """Hidden width of the Gaussian and open-vocabulary heads."""
    dropout: float = 0.1
    """Dropout of the attention probabilities and of the FFN (training only)."""
    ov_dims: int = 512
    """Width of the open-vocabulary (vision-language) feature of each Gaussian; must equal the target maps' D."""
    pc_range: tuple[float, float, float, float, float, float] = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)
    """Region of interest (x_min, y_min, z_min, x_max, y_max, z_max) in metres, ego frame; also the Occ3D grid."""
    backbone_layers: tuple[int, ...] = (3, 4, 6, 3)
    """Bottleneck blocks per ResNet stage ((3, 4, 6, 3) is ResNet-50; tests use (1, 1, 1, 1))."""
    backbone_width: int = 64
    """Width of the ResNet stem and of stage 1's bottlenecks (64 for ResNet-50; tests use 8)."""
    backbone_weights: str = ""
    """Local file of ResNet weights in torchvision or mmdet key layout; empty: random initialisation."""
    frozen_stages: int = 1
    """ResNet stages frozen with the stem (no gradient); every BatchNorm is in eval mode regardless."""
    checkpoint_activations: bool = True
    """Recompute in backward: every trainable bottleneck and the decoder's attention, sampling and mixing."""
    max_delta: float = 0.4
    """Largest position update (m) per axis and stage of a Gaussian."""
    max_scale: float = 6.4
    """Largest Gaussian scale (standard deviation, m)."""
    init_scale: float | None = None
    """Initial scale (m) of every Gaussian, set through the bias of the Gaussian head's scale outputs. None: the
    head's default initialisation, as released: max_scale · sigmoid(0) = 3.2 m, wide enough that the Gaussians next
    to the cameras cover the renders, so that no pixel is densified until training has shrunk them."""
    init_opacity: float | None = None
    """Initial opacity of every Gaussian, set through the bias of the Gaussian head's opacity output. None: the
    head's default initialisation (sigmoid(0) = 0.5), as released."""
    init_depth_max: float = 51.2
    """Foundation depth is clamped to this (m) for query initialisation and densification."""
    densify_threshold: float = 0.2
    """A pixel is densified where the rendered depth lies more than this (m) behind the foundation depth."""
    voxel_size: float = 0.4
    """Edge (m) of the occupancy voxels; the grid spans pc_range."""
    opacity_threshold: float = 0.6
    """Readout keeps Gaussians with opacity above this."""
    min_variance: float = 0.0025
    """Readout keeps Gaussians whose smallest world-axis variance (m²) exceeds this (6·min diag Σ > 0.015); 0 keeps
    every Gaussian of positive variance."""
    density_threshold: float = 0.04
    """Voxels with Gaussian density at most this are free."""
    voxel_cutoff: float = 5.0
    """Mahalanobis radius of each Gaussian's support in the readout (inf: the exact sum of the released voxelizer;
    5 drops at most 3.7e-6 of a Gaussian's peak, see pgocc.ops.gs2vox)."""
    voxel_average: bool = False
    """Readout reads each voxel's density and features as the field's mean over the voxel instead of its value at the
    centre (each kept Gaussian convolved with the voxel's box, the box taken as a Gaussian of variance size²/12 per
    axis: pgocc.model.readout.voxel_average). Neither the paper nor the release does this; it keeps a Gaussian
    smaller than a voxel from vanishing between voxel centres (bench/RESULTS.md, "Readout study")."""
    anisotropic_sampling: bool | None = None
    """Sample points c + R(q)(s ⊙ o) with the previous stage's Gaussians (paper) instead of the isotropic box
    c + box ⊙ o (released). None: as fidelity says."""
    delta_scale_by_origin: bool | None = None
    """Scale a query's position update by 1, 1/2, 1/4 by the stage that added it (paper); released applies it
    unscaled. None: as fidelity says."""
    roi_at_stage0: bool | None = None
    """Restrict the stage-0 FPS candidates to pc_range (paper); released uses every valid pixel (sky included).
    None: as fidelity says."""
    transposed_level_weights: bool | None = None
    """Group g of frame t uses the level weights of group (t·G + g) // T (released: weights flattened (g, t) but
    read (t, g), inherited from SparseBEV; ⌊t/2⌋ at T = 8, G = 4) instead of its own. None: as fidelity says."""
    shifted_voxel_grid: bool | None = None
    """Read the field at voxel centres shifted by -voxel_size on every axis (released) instead of the Occ3D centres.
    None: as fidelity says."""
    automask_per_source: bool | None = None
    """Photometric auto-mask: min(warped, identity) per source frame then mean (released) instead of one minimum
    over both sources' warped and identity errors (Monodepth2). None: as fidelity says."""
    randomized_pca: bool | None = None
    """Project the feature targets with torch.pca_lowrank (randomised, released) instead of the exact top
    eigenvectors of the covariance. None: as fidelity says."""

    def switch(self, name: str) -> bool:
        """The value of fidelity switch ``name``: its field when set, else what ``fidelity`` implies."""
        value = getattr(self, name)
        if value is None:
            return FIDELITY_SWITCHES[name][0 if self.fidelity == "paper" else 1]
        return bool(value)

    @property
    def grid_dims(self) -> tuple[int, int, int]:
        """Voxels (X, Y, Z) of the occupancy grid spanning pc_range."""
        lo, hi = self.pc_range[:3], self.pc_range[3:]
        return tuple(round((b - a) / self.voxel_size) for a, b in zip(lo, hi, strict=True))  # type: ignore[return-value]

    def validate(self, path: str = "model") -> None:
        _require(len(self.num_queries) >= 1 and all(q > 0 for q in self.num_queries), f"{path}.num_queries",
                 f"must be one or more positive counts, got {self.num_queries}")
        _require(len(self.box_sizes) == len(self.num_queries) and all(b > 0 for b in self.box_sizes),
                 f"{path}.box_sizes", f"must give one positive size per stage ({len(self.num_queries)}), "
                 f"got {self.box_sizes}")
        _require(self.embed_dims > 0 and self.embed_dims % self.num_groups == 0, f"{path}.embed_dims",
                 f"must be a positive multiple of model.num_groups={self.num_groups}, got {self.embed_dims}")
        _require(self.embed_dims % self.num_heads == 0, f"{path}.num_heads",
                 f"must divide model.embed_dims={self.embed_dims}, got {self.num_heads}")
        for name in ("num_heads", "num_groups", "num_points", "num_levels", "num_frames", "num_mix_points",
                     "ffn_dims", "head_dims", "ov_dims", "backbone_width"):
            _require(getattr(self, name) > 0, f"{path}.{name}", f"must be > 0, got {getattr(self, name)}")
        _require(len(self.backbone_layers) == self.num_levels and all(n > 0 for n in self.backbone_layers),
                 f"{path}.backbone_layers",
                 f"must give a positive block count for each of the model.num_levels={self.num_levels} stages, "
                 f"got {self.backbone_layers}")
        _require(0 <= self.frozen_stages <= self.num_levels, f"{path}.frozen_stages",
                 f"must be in [0, {self.num_levels}], got {self.frozen_stages}")
        _require(0.0 <= self.dropout < 1.0, f"{path}.dropout", f"must be in [0, 1), got {self.dropout}")
        lo, hi = self.pc_range[:3], self.pc_range[3:]
        _require(all(a < b for a, b in zip(lo, hi, strict=True)), f"{path}.pc_range",
                 f"each minimum must be below its maximum, got {self.pc_range}")
        _require(self.init_scale is None or 0 < self.init_scale < self.max_scale, f"{path}.init_scale",
                 f"must be None or in (0, model.max_scale={self.max_scale}), got {self.init_scale}")
        _require(self.init_opacity is None or 0 < self.init_opacity < 1, f"{path}.init_opacity",
                 f"must be None or in (0, 1), got {self.init_opacity}")
        for name in ("max_delta", "max_scale", "init_depth_max", "voxel_size", "voxel_cutoff"):
            _require(getattr(self, name) > 0, f"{path}.{name}", f"must be > 0, got {getattr(self, name)}")
        _require(self.min_variance >= 0, f"{path}.min_variance",
                 f"must be >= 0 (0: no filter), got {self.min_variance}")
        extents = [(b - a) / self.voxel_size for a, b in zip(lo, hi, strict=True)]
        _require(all(abs(e - round(e)) < 1e-6 for e in extents), f"{path}.voxel_size",
                 f"must divide every extent of model.pc_range, got {self.voxel_size} for {self.pc_range}")


@dataclass(kw_only=True, slots=True)
class LossConfig:
    """Training losses (docs/model.md §5): per stage, weighted and summed over the stages."""

    warp_weight: float = 10.0
    """Temporal photometric depth-warping loss."""
    feat_mse_weight: float = 10.0
    """Mean squared error of the rendered features against the PCA-projected vision-language maps."""
    feat_cos_weight: float = 1.0
    """1 - mean per-pixel cosine similarity of the same."""
    depth_silog_weight: float = 0.075
    """Scale-invariant log depth error against the foundation depth (0.5 · 0.15 in the released code)."""
    depth_l1_weight: float = 0.425
    """L1 depth error against the foundation depth (0.5 · 0.85)."""
    stage_weights: tuple[float, ...] = (1.0, 1.0, 1.0)
    """Weight of each progressive stage's losses (one per stage of model.num_queries)."""
    pca_dims: int = 128
    """The feature losses compare the maps after projection onto this many principal directions of the target."""

    def validate(self, path: str = "loss") -> None:
        for name in ("warp_weight", "feat_mse_weight", "feat_cos_weight", "depth_silog_weight", "depth_l1_weight"):
            _require(getattr(self, name) >= 0, f"{path}.{name}", f"must be >= 0, got {getattr(self, name)}")
        _require(all(w >= 0 for w in self.stage_weights), f"{path}.stage_weights",
                 f"must be non-negative, got {self.stage_weights}")
        _require(self.pca_dims > 0, f"{path}.pca_dims", f"must be > 0, got {self.pca_dims}")


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """The run: optimiser, schedule, parallelism, checkpoints, logging and where results go (docs/model.md §9)."""

    num_steps: int = 24_000
    """Optimizer steps to run."""
    seed: int = 0
    """Seed of every random generator (torch, numpy, Python) at the start of the run."""
    run_root: str = "runs"
    """Folder under which each run gets its own directory (config.json, kernels.json, logs, checkpoints)."""
    lr: float = 2e-4
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.01
    """AdamW's decoupled weight decay, applied to every parameter (no norm or bias exclusion, as the original)."""
    low_lr_patterns: tuple[str, ...] = ("backbone.", "sampling_offset")
    """Parameters whose name contains any of these get lr × low_lr_multiplier (the original's img_backbone and
    sampling_offset)."""
    low_lr_multiplier: float = 0.1
    """Learning-rate multiplier of the parameters matched by low_lr_patterns."""
    warmup_steps: int = 500
    """Steps of linear warm-up from warmup_start_factor · lr (0: none)."""
    warmup_start_factor: float = 1.0 / 3.0
    """Learning-rate factor at step 0 of the warm-up (the original: lr · (1/3 + 2/3 · i / 500))."""
    min_lr_ratio: float = 1e-3
    """The cosine schedule ends at min_lr_ratio · lr. It is updated every step over num_steps; the original (mmcv's
    CosineAnnealing, by_epoch) updates it once per epoch."""
    grad_clip_norm: float = 350.0
    """Clip the global L2 norm of the gradients to this (0: no clipping)."""
    grad_accum_steps: int = 1
    """Micro-batches of data.batch_size samples per optimizer step and process."""
    global_batch_size: int = 0
    """Samples per optimizer step over all processes; 0: processes × data.batch_size × grad_accum_steps. When set,
    it must be a multiple of processes × data.batch_size, and the quotient replaces grad_accum_steps (the original:
    8 = 8 GPUs × 1)."""
    photometric_distortion: bool = True
    """Training-only photometric distortion of the network-input images on the device (docs/model.md §7.4; not of
    render_gt): per image, each with probability 0.5, brightness ±32, contrast ×[0.5, 1.5] before or after the HSV
    changes, saturation ×[0.5, 1.5], hue ±18°, and a random channel permutation."""
    autocast: Literal["none", "bf16"] = "none"
    """Mixed precision of the forward: 'none' (float32, as the original) or 'bf16' (CUDA only; with FSDP also bf16
    parameters and float32 gradient reduction)."""
    compile: bool = False
    """torch.compile the blocks that compile (backbone bottlenecks, FPN, position encoders, FFNs, heads); the
    decoder's attention, sampling and mixing ops stay eager (see pgocc.training.parallelize)."""
    cuda_graph: bool = False
    """Replay the training step as one CUDA graph after three eager warm-up steps (one CUDA process only; every op
    should be on triton): forward, losses, backward, clipping and AdamW become one launch instead of about three
    thousand (pgocc.training.graphed_step; docs/performance.md §1). The checkpoints are the same either way."""
    fsdp: bool = True
    """With more than one process: shard with FSDP2 (per decoder layer, per backbone stage, then the root); false
    replicates with DDP. Ignored on one process."""
    checkpoint_every: int = 1000
    """Write a checkpoint every this many steps (and at the end; 0: only at the end)."""
    keep_checkpoints: int = 3
    """Keep the newest this many checkpoints (older ones are deleted)."""
    log_every: int = 10
    """Log (progress bar, metrics.jsonl) every this many steps; the only steps that read values on the host."""
    val_every: int = 1000
    """Validate every this many steps and at the end (0: only at the end), when val_samples > 0."""
    val_samples: int = 8
    """Samples of data.val_split scored (mIoU, geometric IoU) at each validation (0: no validation)."""

    def validate(self, path: str = "train") -> None:
        _require(self.num_steps > 0, f"{path}.num_steps", f"must be > 0, got {self.num_steps}")
        _require(self.seed >= 0, f"{path}.seed", f"must be >= 0, got {self.seed}")
        _require(bool(self.run_root), f"{path}.run_root", "must be a non-empty path")
        _require(self.lr > 0, f"{path}.lr", f"must be > 0, got {self.lr}")
        _require(self.weight_decay >= 0, f"{path}.weight_decay", f"must be >= 0, got {self.weight_decay}")
        _require(all(bool(p) for p in self.low_lr_patterns), f"{path}.low_lr_patterns",
                 f"patterns must be non-empty, got {self.low_lr_patterns}")
        _require(self.low_lr_multiplier > 0, f"{path}.low_lr_multiplier",
                 f"must be > 0, got {self.low_lr_multiplier}")
        _require(self.warmup_steps >= 0, f"{path}.warmup_steps", f"must be >= 0, got {self.warmup_steps}")
        _require(0 < self.warmup_start_factor <= 1, f"{path}.warmup_start_factor",
                 f"must be in (0, 1], got {self.warmup_start_factor}")
        _require(0 <= self.min_lr_ratio <= 1, f"{path}.min_lr_ratio", f"must be in [0, 1], got {self.min_lr_ratio}")
        _require(self.grad_clip_norm >= 0, f"{path}.grad_clip_norm", f"must be >= 0, got {self.grad_clip_norm}")
        _require(self.grad_accum_steps >= 1, f"{path}.grad_accum_steps",
                 f"must be >= 1, got {self.grad_accum_steps}")
        for name in ("checkpoint_every", "val_every", "val_samples", "global_batch_size"):
            _require(getattr(self, name) >= 0, f"{path}.{name}", f"must be >= 0, got {getattr(self, name)}")
        _require(self.keep_checkpoints >= 1, f"{path}.keep_checkpoints",
                 f"must be >= 1, got {self.keep_checkpoints}")
        _require(self.log_every >= 1, f"{path}.log_every", f"must be >= 1, got {self.log_every}")


CPU_MAX_QUERY_FRAMES = 2000
"""Largest sum(model.num_queries) × model.num_frames a run without CUDA accepts; the sampling, fusion and attention
of every stage grow with it. On 2 CPU cores configs.small:small_cpu (500 Gaussians × 2 frames) infers the demo's 2
samples in about 80 s; configs.small:small with reference kernels (2000 × 4) had not finished one sample after
400 s (a shared machine: 145 CPU-seconds) and configs.base:base (6000 × 8) not after 500 s."""
CPU_CONFIGS = "configs.small:small_cpu or configs.tiny:tiny"


def default_num_workers() -> int:
    """The default of ``data.num_workers``: the CPU cores this process may use (its affinity mask where the system
    has one), at most 4; more workers than cores only compete with the model for them."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return min(4, cores)


@dataclass(kw_only=True, slots=True)
class DataConfig:
    """The dataset and its loader (docs/model.md §1.1, §7; docs/data.md)."""

    dataroot: str = "data/synthetic"
    """nuScenes-format dataset root holding <version>/*.json (`pgocc make-synthetic --out data/synthetic` writes the
    default one)."""
    version: str = "v1.0-synthetic"
    """nuScenes version: the table folder under the dataroot (v1.0-trainval, v1.0-mini, ...)."""
    train_split: str = "train"
    """Scenes to train on: a key of <dataroot>/splits.json if present, else a nuscenes-devkit split name."""
    val_split: str = "val"
    """Scenes to evaluate on (same lookup as train_split)."""
    val_dataroot: str = ""
    """Dataset root of the evaluation scenes when they live in another dataset (e.g. a held-out synthetic world
    written with another seed); empty: the dataroot."""
    depth_dir: str = "depth"
    """Folder of the foundation-depth maps <image stem>.npy|.npz (relative to the dataroot unless absolute)."""
    feature_dir: str = "features"
    """Folder of the vision-language feature maps <image stem>.npy|.npz, [D, h, w] (relative to the dataroot unless
    absolute: ../nuscenes_featup is the original's folder beside a dataroot data/nuscenes)."""
    labels_dir: str = "gts"
    """Folder of the Occ3D labels <scene>/<sample token>/labels.npz (relative to the dataroot unless absolute)."""
    train_infos: str = ""
    """mmdet3d info pickle of train_split (e.g. nuscenes_infos_train_sweep.pkl; relative to the dataroot unless
    absolute): its sample order and sweeps are used, and it must agree with the tables; empty: the tables alone."""
    val_infos: str = ""
    """Info pickle of val_split (e.g. nuscenes_infos_val_sweep.pkl), as train_infos."""
    with_labels: bool = True
    """Load Occ3D labels (a missing file is an error); false for data without labels."""
    input_size: tuple[int, int] = (256, 704)
    """(H, W) of the network input: images are resized to width W and bottom-cropped to H rows."""
    render_size: tuple[int, int] = (180, 320)
    """(H, W) of renders, foundation depth and photometric targets (covering each camera's full view)."""
    train_stride: tuple[int, int] = (4, 8)
    """Inclusive range of the random stride (in prev-list entries) between past frames in training."""
    batch_size: int = 1
    """Samples per batch per process."""
    num_workers: int = field(default_factory=default_num_workers)
    """DataLoader worker processes per training process (0 loads in the main process); default: the CPU cores this
    process may use, at most 4."""

    def validate(self, path: str = "data") -> None:
        for name in ("dataroot", "version", "train_split", "val_split", "depth_dir", "feature_dir", "labels_dir"):
            _require(bool(getattr(self, name)), f"{path}.{name}", "must be non-empty")
        for name in ("input_size", "render_size"):
            size = getattr(self, name)
            _require(len(size) == 2 and all(v > 0 for v in size), f"{path}.{name}",
                     f"must be two positive sizes (H, W), got {size}")
        _require(self.train_split != self.val_split or self.train_infos == self.val_infos, f"{path}.val_infos",
                 f"must equal {path}.train_infos when train_split and val_split are both {self.train_split!r}")
        lo, hi = self.train_stride
        _require(1 <= lo <= hi, f"{path}.train_stride", f"must satisfy 1 <= lo <= hi, got {self.train_stride}")
        _require(self.batch_size >= 1, f"{path}.batch_size", f"must be >= 1, got {self.batch_size}")
        _require(self.num_workers >= 0, f"{path}.num_workers", f"must be >= 0, got {self.num_workers}")


@dataclass(kw_only=True, slots=True)
class DebugConfig:
    """Reproducibility switches."""

    deterministic: bool = False
    """Refuse non-deterministic kernel implementations (``validate`` and ``resolve`` raise), and have
    :meth:`apply`, called where a program starts, set torch's deterministic flags."""

    def apply(self) -> None:
        """Set the process-wide torch flags this config asks for; call it once where the program starts, before any
        CUDA work. With ``deterministic``: ``torch.use_deterministic_algorithms(True, warn_only=True)`` (an op
        without a deterministic implementation warns instead of raising), cuDNN deterministic without benchmark
        autotuning, and ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` unless already set (cuBLAS needs it for reproducible
        GEMMs). Without: nothing is changed."""
        if not self.deterministic:
            return
        import os

        import torch

        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False

    def validate(self, path: str = "debug") -> None:
        del path


@dataclass(kw_only=True, slots=True)
class ExperimentConfig:
    """The whole experiment; ``configs/*.py`` functions return one."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The network."""
    kernels: KernelConfig = field(default_factory=KernelConfig)
    """The implementation of each hot path."""
    loss: LossConfig = field(default_factory=LossConfig)
    """Training losses and their weights."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The run."""
    data: DataConfig = field(default_factory=DataConfig)
    """The dataset and its loader."""
    debug: DebugConfig = field(default_factory=DebugConfig)
    """Reproducibility switches."""

    def validate(self) -> None:
        """Validate every section; raises ConfigError naming the dotted path of the first bad field."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        _require(len(self.loss.stage_weights) == len(self.model.num_queries), "loss.stage_weights",
                 f"must give one weight per stage ({len(self.model.num_queries)}), got {self.loss.stage_weights}")
        _require(self.loss.pca_dims <= self.model.ov_dims, "loss.pca_dims",
                 f"must be <= model.ov_dims={self.model.ov_dims}, got {self.loss.pca_dims}")
        if self.debug.deterministic:
            from pgocc import ops

            for op in ops.OPS:
                impl = getattr(self.kernels, op)
                _require(ops.is_deterministic(op, impl), f"kernels.{op}",
                         f"implementation {impl!r} is not deterministic but debug.deterministic=true")


# ---------------------------------------------------------------------------------------------------------------
# Loading, overriding, dumping


def load_experiment(spec: str) -> ExperimentConfig:
    """Build the experiment named ``module:function`` (e.g. ``configs.tiny:tiny``) and validate it."""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f"--config: expected 'module:function' such as 'configs.base:base', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"--config: cannot import module {module_name!r} ({exc})") from exc
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ConfigError(f"--config: module {module_name!r} has no experiment function {func_name!r}")
    cfg = fn()
    if not isinstance(cfg, ExperimentConfig):
        raise ConfigError(f"--config: {spec} returned {type(cfg).__name__}, expected ExperimentConfig")
    cfg.validate()
    return cfg


def _parse_value(raw: str, tp: Any, path: str) -> Any:
    """Parse ``raw`` as the annotated field type ``tp`` (bool, int, float, str, Literal, tuple[...])."""
    origin = typing.get_origin(tp)
    if tp is bool:
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{path}: expected a boolean (true/false), got {raw!r}")
    if tp is int:
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{path}: expected an integer, got {raw!r}") from None
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{path}: expected a number, got {raw!r}") from None
    if tp is str:
        return raw
    if origin is Literal:
        choices = typing.get_args(tp)
        if raw not in choices:
            raise ConfigError(f"{path}: expected one of {', '.join(map(str, choices))}, got {raw!r}")
        return raw
    if origin is tuple:
        args = typing.get_args(tp)
        parts = [p for p in raw.strip("()[] ").split(",") if p.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_value(p.strip(), args[0], path) for p in parts)
        if len(parts) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} comma-separated values, got {raw!r}")
        return tuple(_parse_value(p.strip(), a, path) for p, a in zip(parts, args, strict=True))
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if raw.strip().lower() == "none" and len(args) < len(typing.get_args(tp)):
            return None
        return _parse_value(raw, args[0], path)
    raise ConfigError(f"{path}: fields of type {tp} cannot be set from the command line")


def apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply ``section.field=value`` overrides in place, parsed against the field types, then re-validate.

    Raises ConfigError for a malformed pair, an unknown path (listing the valid names) or a value of the wrong type.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set: expected 'section.field=value', got {item!r}")
        parts = key.strip().split(".")
        node: Any = cfg
        for depth, name in enumerate(parts):
            path = ".".join(parts[: depth + 1])
            if not dataclasses.is_dataclass(node):
                raise ConfigError(f"{path}: {'.'.join(parts[:depth])} is a value, not a section")
            names = [f.name for f in dataclasses.fields(node)]
            if name not in names:
                raise ConfigError(f"{path}: unknown key; valid keys here: {', '.join(names)}")
            if depth == len(parts) - 1:
                hints = typing.get_type_hints(type(node))
                if dataclasses.is_dataclass(getattr(node, name)):
                    raise ConfigError(f"{path}: is a section; set one of its fields, e.g. {path}.<field>=...")
                setattr(node, name, _parse_value(raw, hints[name], path))
            else:
                node = getattr(node, name)
    cfg.validate()
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved configuration as plain JSON-able data."""
    return dataclasses.asdict(cfg)


def write_config(cfg: ExperimentConfig, run_dir: Path) -> Path:
    """Write ``run_dir/config.json`` (the resolved tree) atomically and return its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / "config.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    tmp.replace(target)
    return target


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a config dataclass, read from its source (for ``pgocc show-config``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:], strict=False):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def describe(cfg: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted path, value, docstring) for every leaf field, in declaration order."""
    rows: list[tuple[str, Any, str]] = []
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            rows.extend(describe(value, path + "."))
        else:
            rows.append((path, value, docs.get(f.name, "")))
    return rows


def _from_value(value: Any, tp: Any, path: str) -> Any:
    """JSON data ``value`` as the annotated type ``tp`` (sections, tuples, Literals, optionals, scalars)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, path)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_from_value(v, args[0], path) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} values, got {value!r}")
        return tuple(_from_value(v, a, path) for v, a in zip(value, args, strict=True))
    if origin in (types.UnionType, typing.Union):
        if value is None:
            return None
        return _from_value(value, next(a for a in typing.get_args(tp) if a is not type(None)), path)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{path}: expected one of {typing.get_args(tp)}, got {value!r}")
        return value
    if tp is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if tp in (bool, int, str) and type(value) is tp:
        return value
    raise ConfigError(f"{path}: expected a value of type {getattr(tp, '__name__', tp)}, got {value!r}")


def from_dict(cls: type, data: Any, path: str = "") -> Any:
    """Rebuild a config dataclass (e.g. :class:`ExperimentConfig`) from :func:`to_dict`'s data; a missing field keeps
    its default, an unknown one raises ConfigError naming its dotted path. The result is not validated."""
    if not isinstance(data, dict):
        raise ConfigError(f"{path or 'config'}: expected a JSON object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{path + '.' if path else ''}{unknown[0]}: unknown key; valid keys here: "
                          f"{', '.join(sorted(names))}")
    return cls(**{k: _from_value(v, hints[k], f"{path + '.' if path else ''}{k}") for k, v in data.items()})


def config_from_json(text: str) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from the JSON of :func:`write_config` (validated)."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"config: not valid JSON ({exc})") from None
    cfg = from_dict(ExperimentConfig, data)
    cfg.validate()
    return cfg


def _leaves(data: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for k, v in data.items():
            out.update(_leaves(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: data}


INFERENCE_FREE_FIELDS: frozenset[str] = frozenset({
    "model.checkpoint_activations", "model.backbone_weights", "model.frozen_stages", "model.dropout",
    "model.opacity_threshold", "model.min_variance", "model.density_threshold", "model.voxel_cutoff",
    "model.voxel_size", "model.voxel_average"})
"""Fields of the ``model`` section that do not change the trained weights (training-only switches and the readout's
thresholds and grid): an inference may set them differently from the checkpoint's config."""


def config_diff(a: ExperimentConfig, b: ExperimentConfig, *, sections: tuple[str, ...] | None = None,
                ignore: frozenset[str] | set[str] = frozenset()) -> list[tuple[str, Any, Any]]:
    """(dotted path, value in ``a``, value in ``b``) of every leaf field that differs, in declaration order; only
    under ``sections`` when given, never the paths in ``ignore``."""
    la, lb = _leaves(to_dict(a)), _leaves(to_dict(b))
    return [(k, la[k], lb.get(k)) for k in la
            if la[k] != lb.get(k) and k not in ignore and (sections is None or k.split(".")[0] in sections)]


def format_diff(diff: list[tuple[str, Any, Any]], left: str, right: str) -> str:
    """``path: A (left) vs B (right); ...`` on one line."""
    return "; ".join(f"{k}: {va!r} ({left}) vs {vb!r} ({right})" for k, va, vb in diff)


def check_cpu_run(cfg: ExperimentConfig) -> None:
    """Refuse, before anything is built, an experiment that cannot run in reasonable time without CUDA: a Triton
    kernel (on CPU it runs in the Triton interpreter, meant for the tests' small cases) or a model larger than
    :data:`CPU_MAX_QUERY_FRAMES`. Call only when the run is on the CPU."""
    from pgocc import ops

    triton = [op for op in ops.OPS if getattr(cfg.kernels, op) == "triton"]
    if triton:
        raise ConfigError(f"kernels.{triton[0]}: 'triton' on a machine without CUDA runs in the Triton interpreter, "
                          f"which is for tests and far too slow for a model (kernels {', '.join(triton)}); on CPU use "
                          f"the reference kernels, e.g. --config {CPU_CONFIGS}")
    size = sum(cfg.model.num_queries) * cfg.model.num_frames
    if size > CPU_MAX_QUERY_FRAMES:
        raise ConfigError(f"model.num_queries: {sum(cfg.model.num_queries)} Gaussians × {cfg.model.num_frames} "
                          f"frames = {size} is above the {CPU_MAX_QUERY_FRAMES} a machine without CUDA runs in "
                          f"reasonable time (one sample would take many minutes); on CPU use --config {CPU_CONFIGS}")
