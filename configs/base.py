"""The paper's PG-Occ (docs/model.md §10, 'paper' fidelity) with the Triton kernels."""

from pgocc.config import ExperimentConfig, KernelConfig


def base() -> ExperimentConfig:
    """PG-Occ as the paper describes it, every hot path on its Triton kernel."""
    return ExperimentConfig(
        kernels=KernelConfig(aniso_sample="triton", st_fusion="triton", gs_raster="triton", gs2vox="triton",
                             fps="triton", dist_attention="triton"),
    )
