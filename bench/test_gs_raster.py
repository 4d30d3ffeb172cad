"""gs_raster benchmarks: triton beside gsplat (the peer) and the dense reference, over the contract's bench cases.

Modes: ``fwd_bwd`` (features + depth with gradients to all five Gaussian tensors, the training render),
``fwd`` (features + depth, no gradient) and ``depth_fwd`` (depth only, no gradient: the densification render).

    python3 -m pytest bench/test_gs_raster.py --benchmark-only --benchmark-json=b.json

``python3 bench/test_gs_raster.py`` (GPU) prints a kernel-time breakdown of one triton fwd+bwd and times the
spill-free block configurations of the compositing kernels: the data behind FWD_CONFIG / BWD_CONFIG.
"""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch

from pgocc import ops

OP = "gs_raster"
spec = ops.contract(OP)
GRAD_ARGS = ("means", "quats", "scales", "opacities", "features")
MODES = ("fwd_bwd", "fwd", "depth_fwd")
# The dense reference evaluates every pixel against every Gaussian: at 6000 Gaussians one forward pass takes ~3 s
# on an H100; with gradients it would keep V*H*W*N-sized tensors (~10^10 elements) for autograd. It is timed in one
# group only (run it with PGOCC_BENCH_ROUNDS=2 to keep the run short).
REFERENCE_GROUPS = ("n6000_v6_180x320_c128/fwd",)


def _inputs(case: ops.Case, mode: str) -> dict:
    x = spec.make_inputs(case, device="cuda", dtype=torch.float32, seed=0)
    x["depth_only"] = mode == "depth_fwd"
    if mode == "fwd_bwd":
        for k in GRAD_ARGS:
            x[k].requires_grad_(True)
    return x


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", spec.CASES["bench"], ids=lambda c: c.id)
@pytest.mark.parametrize("impl", ops.available(OP))
def test_gs_raster(gpu_bench, impl: str, case: ops.Case, mode: str) -> None:
    if impl == "reference" and f"{case.id}/{mode}" not in REFERENCE_GROUPS:
        pytest.skip("dense reference: timed in REFERENCE_GROUPS only (seconds per call)")
    x = _inputs(case, mode)
    bytes_case = dataclasses.replace(case, extra={**case.extra, "depth_only": mode == "depth_fwd"})
    gpu_bench(ops.resolve(OP, impl), x, mode="fwd_bwd" if mode == "fwd_bwd" else "fwd", group=f"{OP}/{case.id}/{mode}",
              impl=impl, bytes_moved=spec.bytes_moved(bytes_case, torch.float32),
              deterministic=ops.is_deterministic(OP, impl))


def _time_ms(step) -> float:
    import triton.testing

    return float(triton.testing.do_bench(step, warmup=50, rep=200, return_mode="median"))


def _steps(fn, x: dict, cot: list[torch.Tensor]) -> tuple:
    """(fwd_bwd, fwd, depth_fwd) zero-argument steps over one set of inputs."""

    def fwd_bwd() -> None:
        torch.autograd.backward(list(fn(**x)), cot)

    def fwd() -> None:
        with torch.no_grad():
            fn(**x)

    def depth() -> None:
        with torch.no_grad():
            fn(**{**x, "depth_only": True})

    return fwd_bwd, fwd, depth


def _sweep() -> None:
    """Kernel breakdown of one triton fwd+bwd per bench case, then a block-configuration sweep on the largest."""
    import kernels_triton.gs_raster.op as tri

    fn = ops.resolve(OP, "triton")
    for case in spec.CASES["bench"]:
        x = _inputs(case, "fwd_bwd")
        fwd_bwd, fwd, depth = _steps(fn, x, [torch.randn_like(o) for o in fn(**x)])
        fwd_bwd()
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
            fwd_bwd()
            torch.cuda.synchronize()
        print(f"== {case.id}: CUDA kernels of one fwd+bwd")
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=14), flush=True)
    fwd_base, bwd_base = dict(tri.FWD_CONFIG), dict(tri.BWD_CONFIG)
    print(f"== {case.id}: forward configurations (median ms)  fwd | depth_fwd")
    for block_p, block_g, max_c, warps in ((128, 32, 128, 8), (128, 16, 128, 8)):
        tri.FWD_CONFIG = {"BLOCK_P": block_p, "BLOCK_G": block_g, "MAX_BLOCK_C": max_c, "num_warps": warps}
        print(f"{tri.FWD_CONFIG}: " + " | ".join(f"{_time_ms(f):.3f}" for f in (fwd, depth)), flush=True)
    tri.FWD_CONFIG = fwd_base
    print(f"== {case.id}: backward configurations (median ms of fwd_bwd)")
    for block_p, block_g, max_c, prec in ((64, 16, 128, "tf32x3"), (64, 16, 64, "tf32x3"), (64, 16, 128, "tf32"),
                                          (128, 16, 128, "tf32")):
        tri.BWD_CONFIG = {"BLOCK_P": block_p, "BLOCK_G": block_g, "MAX_BLOCK_C": max_c, "num_warps": 8,
                          "DOT_PRECISION": prec}
        print(f"{tri.BWD_CONFIG}: {_time_ms(fwd_bwd):.3f}", flush=True)
    tri.BWD_CONFIG = bwd_base


if __name__ == "__main__":
    sys.exit(_sweep())
