"""Online frames replayed as one CUDA graph (``pgocc infer --online --cuda-graph``; docs/performance.md §1).

An online frame launches about a thousand kernels from Python; on an H100 the host needs longer to launch them than
the GPU to run them (bench/RESULTS.md). Captured once as a CUDA graph, the whole frame — backbone, feature-cache
write and read, the three stages, readout to labels — is one launch. What makes it capturable: the forward has no
host sync (tests/test_host_sync.py), and the feature cache keeps its maps and its slot indices in fixed device
buffers, the host planning the slots before each replay (:class:`pgocc.model.FeatureCache`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from pgocc.cuda_graphs import capture, on_side_stream
from pgocc.data.batch import Batch
from pgocc.eval.loop import LabelledBatch, predict_labels
from pgocc.model import FeatureCache, PGOcc, Readout

WARMUP_CALLS = 3
"""Eager calls on a side stream before the capture: Triton compiles and autotunes, the device constants and the
cache's buffers are made, outside the graph."""


@dataclasses.dataclass(frozen=True)
class _Captured:
    graph: torch.cuda.CUDAGraph
    inputs: Batch
    """The input buffers: each batch is copied into their tensors before a replay."""
    outputs: LabelledBatch
    """The output buffers, rewritten by each replay."""


class GraphedFrames:
    """Runs :func:`pgocc.eval.loop.predict_labels` with a feature cache, replaying a CUDA graph of it.

    The first call captures the frame for its batch's shapes; every later batch of those shapes is copied into the
    captured input buffers, its cache slots planned on the host, and the graph replayed. A batch of other shapes (a
    smaller last batch) runs eagerly. The returned tensors are the graph's output buffers: the next call overwrites
    them, so read them before.
    """

    def __init__(self, model: PGOcc, readout: Readout, text: torch.Tensor, column_labels: Sequence[int],
                 cache: FeatureCache, *, autocast: torch.dtype | None = None) -> None:
        if text.device.type != "cuda":
            raise ValueError(f"GraphedFrames: CUDA graphs need a CUDA device; text is on {text.device}")
        self.model, self.readout, self.text, self.column_labels = model, readout, text, list(column_labels)
        self.cache, self.autocast = cache, autocast
        self._captured: _Captured | None = None
        self.replays = 0
        """Frames run by replaying the graph (eager ones, for batches of other shapes, not counted)."""

    def _eager(self, batch: Batch) -> LabelledBatch:
        return predict_labels(self.model, self.readout, batch, self.text, self.column_labels, cache=self.cache,
                              autocast=self.autocast)

    def __call__(self, batch: Batch) -> LabelledBatch:
        """Labels of ``batch`` (on the CUDA device), from the graph where its shapes are the captured ones."""
        captured = self._captured
        if captured is None:
            captured = self._captured = self._capture(batch)
        elif batch.signature() != captured.inputs.signature():
            return self._eager(batch)
        else:
            captured.inputs.copy_from(batch)
            self.cache.plan(batch.frame_keys, batch.images.shape[1] // batch.num_cams, batch.images.device)
        captured.graph.replay()
        self.replays += 1
        return captured.outputs

    def _capture(self, batch: Batch) -> _Captured:
        """Warm up on a side stream and capture the frame of ``batch`` (copies of its tensors become the input
        buffers); the cache is planned for ``batch`` by the first warm-up call."""
        inputs = batch.clone()
        # The same frame each call: its cache slot is rewritten with equal maps.
        on_side_stream(lambda: self._eager(inputs), calls=WARMUP_CALLS)
        graph, outputs = capture(lambda: self._eager(inputs), what="GraphedFrames: the online frame",
                                 instead="without --cuda-graph")
        return _Captured(graph, inputs, outputs)
