"""One training step of the default config on the GPU (issue-12 benchmark): the training loop's own step
(photometric distortion, forward, every loss term, backward, gradient clipping, the gated AdamW step and the
schedule), batch 1 (6 cameras × 8 frames at 256 × 704), with every hot path on its Triton kernel and on its PyTorch
reference, in float32 and under bf16 autocast, and with the Triton kernels and the blocks between them compiled
(train.compile: :func:`pgocc.training.parallelize.compile_blocks`), and replayed as a CUDA graph (train.cuda_graph:
:class:`pgocc.training.graphed_step.GraphedTrainingStep`). Prints a Markdown table.

    python bench/train_step.py [--steps 10] [--warmup 3]

The batch is tests/test_model.py's synthetic ground-plane scene at the default size (every stage gets its full
densification candidate set). Times are CUDA-event medians over the timed steps (the events bracket the whole
step, so the time the GPU waits for launches counts); peak memory is
``torch.cuda.max_memory_allocated`` over them. A combination that fails (out of memory, an op without a bf16 path)
is reported with its error instead of a time.
"""

from __future__ import annotations

import argparse
import sys

import torch

from bench.perf import measure as perf_measure
from bench.perf import training_step
from configs.ablations import reference_kernels
from configs.base import base
from pgocc.config import ExperimentConfig
from pgocc.training.graphed_step import WARMUP_STEPS
from pgocc.training.parallelize import compile_blocks
from tests.test_model import default_size_batch


def measure(cfg: ExperimentConfig, bf16: bool, compiled: bool, graphed: bool, steps: int, warmup: int
            ) -> tuple[float, float]:
    """(median ms per step, peak GiB) of ``steps`` timed training steps after ``warmup`` untimed ones (compilation,
    and the graph's warm-up and capture, happen there), each step :func:`bench.perf.training_step`'s, as the
    training loop runs it."""
    model, criterion, step = training_step(cfg, "cuda", default_size_batch("cuda"), bf16=bf16, graphed=graphed)
    if compiled:
        compile_blocks(model)
    timing = perf_measure(step, "cuda", budget_s=0.0, warmup=max(warmup, WARMUP_STEPS + 1 if graphed else 0),
                          min_calls=steps, max_calls=steps)
    for checks in step().checks:
        checks.raise_if_failed()
    del model, criterion, step
    torch.cuda.empty_cache()
    return timing.ms, timing.peak_gib


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    args = parser.parse_args()
    print(f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}")
    print("| kernels | precision | ms / step | peak GiB |\n|---|---|---|---|")
    variants = [("triton", base, False, False), ("reference", reference_kernels, False, False),
                ("triton + compile", base, True, False), ("triton, train.cuda_graph", base, False, True)]
    for kernels, make, compiled, graphed in variants:
        for bf16 in (False, True):
            try:
                ms, peak = measure(make(), bf16, compiled, graphed, args.steps, args.warmup)
                row = f"{ms:.1f} | {peak:.2f}"
            except Exception as exc:  # report any failure of one combination and go on with the others
                torch.cuda.empty_cache()
                row = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:120]} | –"
            print(f"| {kernels} | {'bf16 autocast' if bf16 else 'fp32'} | {row} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
