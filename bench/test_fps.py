"""fps on the GPU: the persistent Triton kernel (the registry's ``triton``) beside the PyTorch reference loop and
the one-launch-per-iteration design (``triton-step``, the interpreter's variant run natively, for comparison)."""

from __future__ import annotations

import pytest
import torch

from pgocc import ops

OP = "fps"
spec = ops.contract(OP)


def _step_design(points: torch.Tensor, lengths: torch.Tensor, num_samples: int) -> torch.Tensor:
    from kernels_triton.fps import fps_launch

    return fps_launch(points, lengths, num_samples, persistent=False)


@pytest.mark.parametrize("impl", [*ops.available(OP), "triton-step"])
@pytest.mark.parametrize("case", spec.CASES["bench"], ids=[c.id for c in spec.CASES["bench"]])
def test_fps(gpu_bench, case, impl: str) -> None:  # noqa: ANN001
    inputs = spec.make_inputs(case, device="cuda", dtype=torch.float32, seed=0)
    fn = _step_design if impl == "triton-step" else ops.resolve(OP, impl)
    gpu_bench(fn, inputs, mode="fwd", group=f"{OP}/{case.id}/fwd", impl=impl,
              bytes_moved=spec.bytes_moved(case, torch.float32), deterministic=True)
