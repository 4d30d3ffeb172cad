"""Pure-PyTorch reference implementations, one module per hot path.

CPU and float64 capable; never imports kernels_triton. Formulas used by several references live once in
``reference._math``, which the kernels never import (the references are the definition the kernels are tested
against).
"""
