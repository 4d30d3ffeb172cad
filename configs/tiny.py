"""A CPU-sized experiment for tests, CI and the quick demo: reference kernels, few queries, few steps."""

from dataclasses import replace

from configs.base import base
from pgocc.config import ExperimentConfig, KernelConfig


def tiny() -> ExperimentConfig:
    """Base with small sizes and the pure-PyTorch reference kernels (fast on 2 CPU cores)."""
    cfg = base()
    cfg.kernels = KernelConfig()
    cfg.model = replace(cfg.model, num_queries=(48, 16, 16), num_frames=2)
    cfg.train.num_steps = 20
    return cfg
