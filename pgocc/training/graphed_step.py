"""The training step replayed as one CUDA graph (``train.cuda_graph``; docs/performance.md §1).

A training step launches about three thousand kernels from Python (bench/RESULTS.md); on an H100 the host takes
longer to launch them than the GPU to run them. Captured once as a CUDA graph, the forward of every micro-batch, the
loss terms, the backward, the clipping and the gated AdamW update are one launch. Outside the graph, run eagerly at
every step by :func:`pgocc.train.prepare`, stays what reads the host: the photometric distortion (its parameters
are drawn on the host) and the feature targets (the PCA's ``eigh`` reads its error flag on the host). The graph reads
their results from its input buffers.

    steps 1 … WARMUP_STEPS   eager, on a side stream: Triton compiles and autotunes, the optimizer state and the
                             device constants are made outside the graph (a graph needs their addresses fixed)
    the next step            copies of its micro-batches become the input buffers; the step is captured (nothing
                             runs during a capture), then replayed
    every later step         its micro-batches are copied into the input buffers, each parameter group's learning
                             rate into the device tensor that the captured AdamW reads, and the graph replayed

The learning rate: the scheduler keeps setting each group's ``lr`` as a float. Only while capturing do the groups
hold device tensors (and ``capturable=True``, which the fused AdamW requires in a capture); each replay's rates are
written into those tensors. So the optimizer's state dict, and the checkpoints, are the same with and without the
graph, and a run resumes in either mode.

What the step does with random numbers is the same as eagerly: dropout draws from the CUDA generator, whose offset
each replay advances as the eager step would; the distortion draws on the host, outside.

One process only: FSDP2 and DDP communicate from hooks that the graph would have to capture.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from pgocc.cuda_graphs import capture, on_side_stream
from pgocc.model.criterion import FeatureTargets
from pgocc.train import MicroBatch, StepOutput, forward_backward, update_parameters

WARMUP_STEPS = 3
"""Eager steps before the capture (see the module docstring)."""


@dataclasses.dataclass(frozen=True)
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: list[MicroBatch]
    """The input buffers: each step's micro-batches are copied into their tensors before a replay."""
    output: StepOutput
    """The output buffers, rewritten by each replay."""
    lrs: list[torch.Tensor]
    """0-d float32 per parameter group: the learning rate the captured AdamW reads."""


def _copy_output(out: StepOutput) -> StepOutput:
    """Copies of what a replay rewrites (the prediction is left as it is: it is read before the next step)."""
    assert out.grad_norm is not None
    return dataclasses.replace(out, total=out.total.clone(), terms=out.terms.clone(),
                               checks=[c.copy() for c in out.checks], ok=out.ok.clone(),
                               grad_norm=out.grad_norm.clone())


class GraphedTrainingStep:
    """One optimizer step (:func:`pgocc.train.forward_backward` + :func:`pgocc.train.update_parameters`), replayed
    as a CUDA graph from step ``WARMUP_STEPS + 1`` on (module docstring). The caller steps the schedule after each
    call, as after an eager step.

    Args:
        module: the model to call (not wrapped by FSDP2 or DDP).
        criterion: the loss.
        optimizer: the fused AdamW of :func:`pgocc.training.optim.build_optimizer`.
        params: the trainable parameters (clipped together).
        autocast: ``train.autocast``.
        grad_clip_norm: ``train.grad_clip_norm``.
    """

    def __init__(self, module: nn.Module, criterion: nn.Module, optimizer: torch.optim.Optimizer,
                 params: list[nn.Parameter], *, autocast: str, grad_clip_norm: float) -> None:
        if params[0].device.type != "cuda":
            raise ValueError(f"GraphedTrainingStep: CUDA graphs need a CUDA device; the parameters are on "
                             f"{params[0].device}")
        self.module, self.criterion, self.optimizer, self.params = module, criterion, optimizer, params
        self.autocast, self.grad_clip_norm = autocast, grad_clip_norm
        self.steps = 0
        """Steps taken, eager and replayed."""
        self.replays = 0
        """Steps taken by replaying the graph."""
        self._captured: _Captured | None = None
        self._side = torch.cuda.Stream(params[0].device)
        """The warm-up steps' stream, one for all of them (see :func:`pgocc.cuda_graphs.on_side_stream`)."""

    def _step(self, micro_batches: list[MicroBatch]) -> StepOutput:
        out = forward_backward(self.module, self.criterion, micro_batches, autocast=self.autocast)
        update_parameters(self.params, self.optimizer, out, self.grad_clip_norm)
        return out

    def __call__(self, micro_batches: list[MicroBatch]) -> StepOutput:
        """Take one step on ``micro_batches`` (the tensors of every call after the capture must have the captured
        shapes and dtypes); returns its results, copied out of the graph's buffers except the prediction.

        Raises:
            ValueError: a micro-batch differs from the captured ones in number, shape or dtype.
            RuntimeError: the step could not be captured (the message says why).
        """
        if self.steps < WARMUP_STEPS:
            out = self._warm_up(micro_batches)
        else:
            if self._captured is None:
                self._captured = self._capture(micro_batches)
            else:
                self._load(micro_batches)
            self._captured.graph.replay()
            self.replays += 1
            out = _copy_output(self._captured.output)
        self.steps += 1
        return out

    def _warm_up(self, micro_batches: list[MicroBatch]) -> StepOutput:
        def step() -> StepOutput:
            out = self._step(micro_batches)
            self.optimizer.zero_grad(set_to_none=True)  # the capture must start without gradients (it makes its own)
            return out

        return on_side_stream(step, side=self._side)

    def _load(self, micro_batches: list[MicroBatch]) -> None:
        """Copy the step's inputs and learning rates into the graph's buffers."""
        assert self._captured is not None
        inputs = self._captured.inputs
        if len(micro_batches) != len(inputs):
            raise ValueError(f"GraphedTrainingStep: {len(micro_batches)} micro-batches, the graph was captured with "
                             f"{len(inputs)}")
        for k, (buffer, new) in enumerate(zip(inputs, micro_batches, strict=True)):
            try:
                buffer.batch.copy_from(new.batch)
            except ValueError as err:
                raise ValueError(f"GraphedTrainingStep: micro-batch {k}: {err}") from None
            for name, mine, theirs in zip(FeatureTargets._fields, buffer.targets, new.targets, strict=True):
                if mine.shape != theirs.shape or mine.dtype != theirs.dtype:
                    raise ValueError(f"GraphedTrainingStep: micro-batch {k}: targets.{name} is {tuple(theirs.shape)} "
                                     f"{theirs.dtype}, the buffer is {tuple(mine.shape)} {mine.dtype}")
                mine.copy_(theirs, non_blocking=True)
        for group, lr in zip(self.optimizer.param_groups, self._captured.lrs, strict=True):
            lr.fill_(group["lr"])

    def _capture(self, micro_batches: list[MicroBatch]) -> _Captured:
        """Capture the step with copies of ``micro_batches`` as its input buffers (the graph is not run)."""
        inputs = [MicroBatch(m.batch.clone(), FeatureTargets(*(t.clone() for t in m.targets)))
                  for m in micro_batches]
        device = self.params[0].device
        groups = self.optimizer.param_groups
        lrs = [torch.tensor(group["lr"], dtype=torch.float32, device=device) for group in groups]
        saved = [(group["lr"], group.get("capturable", False)) for group in groups]
        try:
            for group, lr in zip(groups, lrs, strict=True):
                group["lr"], group["capturable"] = lr, True
            # (torch.cuda.graph synchronises and returns the warm-up's cached blocks before capturing.)
            graph, output = capture(lambda: self._step(inputs), what="GraphedTrainingStep: the training step",
                                    instead="with train.cuda_graph=false")
        finally:
            for group, (lr, capturable) in zip(groups, saved, strict=True):
                group["lr"], group["capturable"] = lr, capturable
        return _Captured(graph, inputs, output, lrs)
