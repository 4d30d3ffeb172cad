"""One timed round on the GPU, shared by the pytest-benchmark harness (bench/conftest.py) and bench/ab_project.py."""

from __future__ import annotations

from collections.abc import Callable

import torch


def cuda_ms_per_call(step: Callable[[], object], calls: int) -> float:
    """GPU milliseconds per call of ``step``, from CUDA events around ``calls`` back-to-back calls (the host waits
    for the round to end)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / calls
