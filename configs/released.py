"""The authors' released behaviour (docs/model.md §10), for evaluating their converted checkpoint."""

from configs.base import base
from pgocc.config import ExperimentConfig


def released() -> ExperimentConfig:
    """Base with model.fidelity='released' and every quirk switch set as the released code behaves."""
    cfg = base()
    m = cfg.model
    m.fidelity = "released"
    m.anisotropic_sampling = False          # §10.1: isotropic box sampling (the 3DGS branch is forced off)
    m.delta_scale_by_origin = False         # §10.2: the /2, /4 Δ scaling slices the batch dim, a no-op at B = 1
    m.roi_at_stage0 = False                 # §10.6: stage-0 FPS over every valid pixel, sky included
    m.transposed_level_weights = True       # §10.4: level weights flattened (g, t), read (t, g) (SparseBEV)
    m.shifted_voxel_grid = True             # §10.7: voxel centres shifted by -0.4 m on every axis
    m.automask_per_source = True            # §10.9: photometric auto-mask per source frame
    m.randomized_pca = True                 # §10.13: torch.pca_lowrank, re-drawn every iteration
    return cfg
