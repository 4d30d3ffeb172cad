"""Triton kernels, one module per hot path. Imports only torch, triton and its own helpers."""
