"""Triton kernels, one module (or package) per hot path.

Imports torch, triton, its own helpers (``_utils``) and, for constants that must agree with the contract, the op
contracts of ``pgocc.ops`` (``gs2vox``'s cut-off, density epsilon and grid, ``gs_raster``'s near plane, eps2d, alpha
bounds, stop threshold, frustum margin and tile, ``aniso_sample``'s depth epsilon); never ``pgocc.model`` or
``reference`` (docs/architecture.md §3 rule 7).
"""
