"""Ablations: each function states only its delta from ``configs.base:base``."""

from configs.base import base
from pgocc.config import ExperimentConfig


def reference_kernels() -> ExperimentConfig:
    """Every hot path on its pure-PyTorch reference (the speed baseline of the kernels)."""
    cfg = base()
    for op in ("aniso_sample", "st_fusion", "gs_raster", "gs2vox", "fps", "dist_attention"):
        setattr(cfg.kernels, op, "reference")
    return cfg
