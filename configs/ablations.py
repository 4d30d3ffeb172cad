"""Ablations: each function states only its delta from ``configs.base:base``."""

from configs.base import base
from pgocc import ops
from pgocc.config import ExperimentConfig


def reference_kernels() -> ExperimentConfig:
    """Every hot path on its pure-PyTorch reference (the speed baseline of the kernels)."""
    cfg = base()
    for op in ops.OPS:
        setattr(cfg.kernels, op, "reference")
    return cfg
