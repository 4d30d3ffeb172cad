"""Implementations on gsplat's CUDA kernels (the peer backend), one module per op it covers: ``gs_raster``.

Like ``kernels_triton``, registered in the op contracts' ``IMPLS`` (``pgocc.ops``) and imported on first resolve;
imports torch, gsplat (on first call) and the contracts' constants, never ``pgocc.model`` or ``reference``.
"""
