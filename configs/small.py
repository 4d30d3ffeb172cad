"""A model sized for the learning proof and the demo checkpoint: the paper's architecture (every stage, op and loss)
at a width that trains in minutes on one GPU, on the synthetic world's 384-d features."""

from dataclasses import replace

from configs.base import base
from pgocc.config import ExperimentConfig, KernelConfig


def small() -> ExperimentConfig:
    """Base (paper fidelity, Triton kernels) narrowed: 4 frames, 1200/400/400 Gaussians, 64-d queries, a ResNet of
    width 16 with two blocks per stage."""
    cfg = base()
    cfg.model = replace(cfg.model, num_queries=(1200, 400, 400), num_frames=4, embed_dims=64, num_heads=4,
                        num_mix_points=32, ffn_dims=128, head_dims=128, ov_dims=384, backbone_layers=(2, 2, 2, 2),
                        backbone_width=16, init_scale=0.5, init_opacity=0.8)
    cfg.loss.pca_dims = 32
    cfg.data.train_split = "all"
    cfg.data.val_split = "all"
    return cfg


def small_reference() -> ExperimentConfig:
    """:func:`small` with every hot path on its PyTorch reference (the same model; for CPU machines)."""
    cfg = small()
    cfg.kernels = KernelConfig()
    return cfg
