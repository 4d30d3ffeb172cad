"""What the CUDA-graph replays share (``pgocc infer --online --cuda-graph``: :mod:`pgocc.eval.graphed`;
``train.cuda_graph``: :mod:`pgocc.training.graphed_step`): eager warm-up calls on a side stream, and the capture
with its one error message.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

T = TypeVar("T")


def on_side_stream(fn: Callable[[], T], *, calls: int = 1, side: torch.cuda.Stream | None = None) -> T:
    """Run ``fn`` ``calls`` times on the stream ``side`` (None: a fresh one), ordered after the current stream's
    queued work and before its later work; returns the last result. Warm-up calls before a capture run there (as
    torch's CUDA-graph documentation asks): Triton compiles and autotunes, lazily made state and device constants get
    their addresses, outside the graph. A caller that warms up over several calls passes the same ``side`` each
    time: the caching allocator reuses a stream's freed blocks only on that stream."""
    if calls < 1:
        raise ValueError(f"on_side_stream: calls must be >= 1, got {calls}")
    side = torch.cuda.Stream() if side is None else side
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(calls):
            out = fn()
    torch.cuda.current_stream().wait_stream(side)
    return out


def capture(fn: Callable[[], T], *, what: str, instead: str) -> tuple[torch.cuda.CUDAGraph, T]:
    """(graph, the output buffers): ``fn`` captured once (it does not run; replay the graph to run it).

    Args:
        fn: the work to capture; its tensors become the graph's buffers.
        what: names the work in the error, e.g. "GraphedFrames: the online frame".
        instead: how to run without the graph, e.g. "without --cuda-graph".

    Raises:
        RuntimeError: the capture failed (something in ``fn`` waits for the GPU or copies host data); the message
            names ``what``, the fixes and CUDA's first line.
    """
    graph = torch.cuda.CUDAGraph()
    try:
        # thread_local: the DataLoader's pin-memory thread may call into CUDA while this thread captures.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            out = fn()
    except RuntimeError as err:
        raise RuntimeError(f"{what} could not be captured as a CUDA graph (something in it waits for the GPU or "
                           "copies host data; the reference kernels do): run it with every op on triton, or "
                           f"{instead}. CUDA said: {str(err).splitlines()[0]}") from err
    return graph, out
