"""A CPU-sized experiment for tests, CI and the quick demo: reference kernels, few queries, few steps."""

from dataclasses import replace

from configs.base import base
from pgocc.config import ExperimentConfig, KernelConfig


def tiny() -> ExperimentConfig:
    """Base with small sizes and the pure-PyTorch reference kernels (fast on 2 CPU cores)."""
    cfg = base()
    cfg.kernels = KernelConfig()
    # ov_dims stays the synthetic world's feature width (384, MiniLM); everything else shrinks.
    cfg.model = replace(cfg.model, num_queries=(48, 16, 16), num_frames=2, embed_dims=32, num_heads=4,
                        num_mix_points=16, ffn_dims=64, head_dims=64, ov_dims=384, backbone_layers=(1, 1, 1, 1),
                        backbone_width=8)
    cfg.loss.pca_dims = 8
    cfg.train.num_steps = 20
    return cfg
