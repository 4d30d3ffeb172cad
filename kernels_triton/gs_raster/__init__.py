"""Gaussian splatting of features, expected depth and alpha in Triton (contract: ``pgocc.ops.gs_raster``).

Reference: ``reference.gs_raster``. Modules: ``_project`` (EWA projection and its backward), ``_bin`` (per-tile
lists by a depth sort and two tile scans, no host read), ``_composite`` (front-to-back compositing and its
backward), ``op`` (the torch.library ops).
"""

from kernels_triton.gs_raster.op import gs_raster

__all__ = ["gs_raster"]
