"""One training step of the default config on the GPU (issue-12 benchmark): the training loop's own step
(photometric distortion, forward, every loss term, backward, gradient clipping, the gated AdamW step and the
schedule), batch 1 (6 cameras × 8 frames at 256 × 704), with every hot path on its Triton kernel and on its PyTorch
reference, in float32 and under bf16 autocast, and with the Triton kernels and the blocks between them compiled
(train.compile: :func:`pgocc.training.parallelize.compile_blocks`). Prints a Markdown table.

    python bench/train_step.py [--steps 10] [--warmup 3]

The batch is tests/test_model.py's synthetic ground-plane scene at the default size (every stage gets its full
densification candidate set). Times are CUDA-event medians over the timed steps; peak memory is
``torch.cuda.max_memory_allocated`` over them. A combination that fails (out of memory, an op without a bf16 path)
is reported with its error instead of a time.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from configs.ablations import reference_kernels
from configs.base import base
from pgocc.config import ExperimentConfig
from pgocc.model import PGOcc, PGOccLoss
from pgocc.train import forward_backward, optimizer_step
from pgocc.training.optim import build_optimizer
from pgocc.training.parallelize import compile_blocks
from tests.test_model import default_size_batch


def measure(cfg: ExperimentConfig, bf16: bool, compiled: bool, steps: int, warmup: int) -> tuple[float, float]:
    """(median ms per step, peak GiB) of ``steps`` timed training steps after ``warmup`` untimed ones (compilation
    happens there), each step :func:`pgocc.train.forward_backward` + :func:`pgocc.train.optimizer_step` as the
    training loop runs them."""
    torch.manual_seed(0)
    model = PGOcc(cfg.model, cfg.kernels).cuda().train()
    if compiled:
        compile_blocks(model)
    criterion = PGOccLoss(cfg.model, cfg.loss, cfg.kernels).cuda()
    optimizer, scheduler = build_optimizer(model, cfg.train)
    params = [p for p in model.parameters() if p.requires_grad]
    batch = default_size_batch("cuda")
    times = []
    for i in range(warmup + steps):
        if i == warmup:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        out = forward_backward(model, criterion, [batch], autocast="bf16" if bf16 else "none",
                               distortion=cfg.train.photometric_distortion)
        optimizer_step(params, optimizer, scheduler, out, cfg.train.grad_clip_norm)
        end.record()
        if i >= warmup:
            times.append((start, end))
    torch.cuda.synchronize()
    for checks in out.checks:
        checks.raise_if_failed()
    peak = torch.cuda.max_memory_allocated() / 2**30
    del model, criterion, optimizer, batch, out
    torch.cuda.empty_cache()
    return statistics.median(s.elapsed_time(e) for s, e in times), peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| kernels | precision | ms / step | peak GiB |\n|---|---|---|---|")
    variants = [(kernels, make, False) for kernels, make in (("triton", base), ("reference", reference_kernels))]
    for kernels, make, compiled in [*variants, ("triton + compile", base, True)]:
        for bf16 in (False, True):
            try:
                ms, peak = measure(make(), bf16, compiled, args.steps, args.warmup)
                row = f"{ms:.1f} | {peak:.2f}"
            except Exception as exc:  # report any failure of one combination and go on with the others
                torch.cuda.empty_cache()
                row = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} | –"
            print(f"| {kernels} | {'bf16 autocast' if bf16 else 'fp32'} | {row} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
