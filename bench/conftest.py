"""Benchmark harness (pytest-benchmark) for a CUDA GPU.

``gpu_bench(fn, inputs, mode=..., group=..., bytes_moved=...)`` warms up (Triton autotune/JIT and Inductor compile
are never timed), times ``fn`` with CUDA events over K back-to-back calls per round (K chosen so a round lasts
>= 50 ms, at most 100 calls: the host's launch overhead of all calls but the first overlaps GPU work, as it does
inside the model's forward, so the figures are GPU time per call) and records
median, p20/p80, peak memory, achieved GB/s and the fraction of the measured device bandwidth in
``benchmark.extra_info``. Benchmarks never run in ``pytest tests``; ``bench/run_gpu.sh`` runs them.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import torch

from bench.cuda_timing import cuda_ms_per_call

BENCH_ROUNDS = int(os.environ.get("PGOCC_BENCH_ROUNDS", "15"))
ROUND_MS = 50.0
"""Least GPU time queued per timed round (until 2026-11-24: 1 ms, which exposed the ~0.1-0.3 ms host overhead of a
single call of a multi-millisecond op)."""


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="GPU benchmark: needs a CUDA device (bench/run_gpu.sh)")
    for item in items:
        if "gpu_bench" in getattr(item, "fixturenames", ()):
            item.add_marker(skip)


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    import triton

    machine_info["gpu"] = torch.cuda.get_device_name() if torch.cuda.is_available() else "none"
    machine_info["torch"] = torch.__version__
    machine_info["cuda"] = torch.version.cuda
    machine_info["triton"] = triton.__version__
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        sha = ""
    machine_info["git_sha"] = sha or os.environ.get("PGOCC_GIT_SHA", "unknown")


_BANDWIDTH_GBPS: float | None = None


def measured_bandwidth_gbps() -> float:
    """Device-to-device copy bandwidth of a 1 GiB buffer (read + write), measured once per session."""
    global _BANDWIDTH_GBPS
    if _BANDWIDTH_GBPS is None:
        n = 1 << 28
        a = torch.empty(n, dtype=torch.float32, device="cuda")
        b = torch.empty_like(a)
        for _ in range(3):
            b.copy_(a)
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(10):
            b.copy_(a)
        end.record()
        torch.cuda.synchronize()
        _BANDWIDTH_GBPS = 2 * 4 * n * 10 / (start.elapsed_time(end) * 1e-3) / 1e9
        del a, b
    return _BANDWIDTH_GBPS


def _grads_of(out: Any) -> list[torch.Tensor]:
    outs = [out] if isinstance(out, torch.Tensor) else [o for o in out if isinstance(o, torch.Tensor)]
    return [o for o in outs if o.requires_grad]


def make_step(fn: Callable[..., Any], inputs: dict[str, Any], mode: str) -> Callable[[], Any]:
    """A zero-argument callable running ``fn`` in ``mode``: fwd, fwd_bwd or infer (inference_mode)."""
    if mode == "fwd":
        return lambda: fn(**inputs)
    if mode == "infer":
        def infer() -> Any:
            with torch.inference_mode():
                return fn(**inputs)
        return infer
    if mode == "fwd_bwd":
        leaves = [v for v in inputs.values() if isinstance(v, torch.Tensor) and v.requires_grad]
        if not leaves:
            raise ValueError("fwd_bwd benchmark: no input requires grad")
        probe = _grads_of(fn(**inputs))
        cotangents = [torch.randn_like(o) for o in probe]

        def fwd_bwd() -> None:
            outs = _grads_of(fn(**inputs))
            torch.autograd.backward(outs, cotangents)
            for leaf in leaves:
                leaf.grad = None
        return fwd_bwd
    raise ValueError(f"unknown benchmark mode {mode!r}; expected fwd, fwd_bwd or infer")


@pytest.fixture
def gpu_bench(benchmark: Any) -> Callable[..., dict[str, float]]:
    """Time ``fn(**inputs)`` on the GPU; returns and records the figures in ``benchmark.extra_info``."""

    def run(fn: Callable[..., Any], inputs: dict[str, Any], *, mode: str, group: str, impl: str,
            bytes_moved: int | None = None, deterministic: bool | None = None) -> dict[str, float]:
        step = make_step(fn, inputs, mode)
        for _ in range(3):  # autotune, JIT and compile happen here, untimed
            step()
        torch.cuda.synchronize()
        k = max(1, min(100, int(ROUND_MS / max(cuda_ms_per_call(step, 1), 1e-3))))
        torch.cuda.reset_peak_memory_stats()
        base_mem = torch.cuda.memory_allocated()
        per_call: list[float] = []

        def timed_round() -> None:
            per_call.append(cuda_ms_per_call(step, k))

        benchmark.group = group
        benchmark.pedantic(timed_round, rounds=BENCH_ROUNDS, warmup_rounds=1, iterations=1)
        q = torch.tensor(per_call[1:] if len(per_call) > 1 else per_call, dtype=torch.float64)
        median = float(q.median())
        info = {
            "impl": impl,
            "mode": mode,
            "median_ms_cuda": median,
            "p20_ms": float(q.quantile(0.2)),
            "p80_ms": float(q.quantile(0.8)),
            "peak_mem_mb": (torch.cuda.max_memory_allocated() - base_mem) / 2**20,
            "calls_per_round": k,
        }
        if deterministic is not None:
            info["deterministic"] = deterministic
        if bytes_moved:
            gbps = bytes_moved / (median * 1e-3) / 1e9
            info["GB_per_s"] = gbps
            info["pct_of_measured_bw"] = 100.0 * gbps / measured_bandwidth_gbps()
        benchmark.extra_info.update(info)
        return info

    return run
