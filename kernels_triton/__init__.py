"""Triton kernels, one module (or package) per hot path.

Imports torch, triton, its own helpers (``_utils``) and, for constants that must agree with the contract, the op
contracts of ``pgocc.ops`` (``gs2vox`` takes its default cut-off, density epsilon and grid from there); never
``pgocc.model`` or ``reference`` (docs/architecture.md §3 rule 7).
"""
