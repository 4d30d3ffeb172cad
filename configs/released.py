"""The authors' released behaviour (ALGORITHM.md §10), for evaluating their converted checkpoint."""

from configs.base import base
from pgocc.config import ExperimentConfig


def released() -> ExperimentConfig:
    """Base with model.fidelity='released' and every quirk switch set as the released code behaves."""
    cfg = base()
    cfg.model.fidelity = "released"
    return cfg
