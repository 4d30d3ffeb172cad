"""Pure-PyTorch reference implementations, one module per hot path.

CPU and float64 capable; never imports kernels_triton.
"""
