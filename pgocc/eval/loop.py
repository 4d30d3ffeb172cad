"""One piece of code for "model → readout → labels" and for scoring a split with it (``pgocc infer`` and the
training validation both use it).

    batch ─ model (eval, no grad, optional feature cache) ─ final Gaussians
          ─ Readout.similarity(prompt prototypes ⊕ queries) ─ occupancy_labels ─ labels [B, X, Y, Z] uint8
    evaluate: labels vs the batch's Occ3D labels (camera mask) ─ OccupancyMIoU; with several processes every rank
              scores its share and the confusion matrices are all-reduced
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from pgocc.data.batch import Batch
from pgocc.eval.metrics import OccupancyMIoU, OccupancyScores
from pgocc.model.feature_cache import FeatureCache
from pgocc.model.readout import Readout, occupancy_labels
from pgocc.model.types import Prediction

if TYPE_CHECKING:
    from pgocc.text import PrototypeEncoder


@dataclass(slots=True)
class LabelledBatch:
    """What :func:`predict_labels` returns for one batch."""

    prediction: Prediction
    """The model's output (its checks are not read yet)."""
    labels: torch.Tensor
    """[B, X, Y, Z] uint8 Occ3D labels (17 = free)."""
    field: torch.Tensor
    """[B, X, Y, Z, K] density-normalised similarity to every text row (prompts first, then queries)."""


@torch.no_grad()
def predict_labels(model: nn.Module, readout: Readout, batch: Batch, text: torch.Tensor,
                   column_labels: Sequence[int], *, cache: FeatureCache | None = None,
                   autocast: torch.dtype | None = None) -> LabelledBatch:
    """Run ``model`` (already in eval mode) on ``batch`` and read its final Gaussians out as Occ3D labels.

    Args:
        text: [K, D] embeddings: the len(column_labels) Occ3D prompt prototypes first, then any text queries.
        column_labels: the Occ3D label of each prompt column.
        cache: optional per-frame feature cache (sequential inference).
        autocast: run the network (not the readout) under ``torch.autocast`` in this dtype; None: as it is.
    """
    with torch.autocast(batch.images.device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
        prediction = model(batch, cache=cache) if cache is not None else model(batch)
    density, field = readout.similarity(prediction.final, text)
    labels = occupancy_labels(density, field[..., :len(column_labels)], column_labels, readout.cfg.density_threshold)
    return LabelledBatch(prediction, labels, field)


def all_reduce_metric(metric: object, device: torch.device) -> None:
    """Sum, over the processes and in place, every numpy array of an accumulator whose arrays are sums
    (OccupancyMIoU's confusion matrices, RayIoU's ray counts, DepthMetric's and RetrievalAP's sums and counts) and its
    ``samples`` count if it has one. Sent as float64: exact for counts below 2**53."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    names = sorted(k for k, v in vars(metric).items() if isinstance(v, np.ndarray))
    samples = [float(metric.samples)] if hasattr(metric, "samples") else []
    flat = torch.cat([torch.from_numpy(getattr(metric, k)).reshape(-1).double() for k in names]
                     + [torch.tensor(samples, dtype=torch.float64)]).to(device)
    dist.all_reduce(flat)
    flat = flat.cpu().numpy()
    start = 0
    for k in names:
        a = getattr(metric, k)
        setattr(metric, k, flat[start:start + a.size].reshape(a.shape).astype(a.dtype))
        start += a.size
    if samples:
        metric.samples = int(flat[start])


def evaluate(model: nn.Module, readout: Readout, batches: Iterable[tuple[Batch, bool]], text: torch.Tensor,
             column_labels: Sequence[int], device: torch.device) -> OccupancyScores:
    """Occ3D scores of ``model`` over ``batches`` of this process, all-reduced over the processes.

    ``batches`` yields (batch, counted): every process must run the same number of forwards under FSDP, so a
    process with fewer samples repeats one with ``counted`` false. The model's mode is restored afterwards.

    Raises:
        ModelCheckError: a prediction's deferred check failed (names the tensor).
    """
    was_training = model.training
    model.eval()
    metric = OccupancyMIoU()
    try:
        for batch, counted in batches:
            batch = batch.to(device, non_blocking=True)
            out = predict_labels(model, readout, batch, text, column_labels)
            out.prediction.checks.raise_if_failed()
            if not counted or batch.semantics is None or batch.mask_camera is None:
                continue
            labels = out.labels.cpu().numpy()
            gt, mask = batch.semantics.cpu().numpy(), batch.mask_camera.cpu().numpy()
            for b in range(batch.batch_size):
                metric.update(labels[b], gt[b], mask[b])
    finally:
        model.train(was_training)
    all_reduce_metric(metric, device)
    return metric.compute()


def load_prototypes(path: Path, ov_dims: int) -> PrototypeEncoder:
    """The Occ3D prompt prototypes (docs/model.md §6.1) of ``path``; DataError if missing or of the wrong width."""
    from pgocc.errors import DataError
    from pgocc.text import PrototypeEncoder

    if not path.is_file():
        raise DataError(f"{path}: Occ3D prompt prototypes not found; pass --prototypes FILE (the embeddings of "
                        "docs/model.md §6.1's 21 prompts, e.g. the CLIP text_proto_embeds for nuScenes)")
    table = PrototypeEncoder.from_file(path)
    if table.dim != ov_dims:
        raise DataError(f"{path}: prototypes are {table.dim}-d but the model's features are model.ov_dims={ov_dims}")
    return table


def prompt_table(dataroot: Path, ov_dims: int, path: Path | None = None) -> tuple[torch.Tensor, list[int]]:
    """([21, D] prompt embeddings, the Occ3D label of each) from ``path`` or ``dataroot/text_prototypes.npz``."""
    from pgocc.text import OCC3D_GROUP_LABELS, OCC3D_PROMPT_GROUP, OCC3D_PROMPTS

    table = load_prototypes(path or dataroot / "text_prototypes.npz", ov_dims)
    return table.encode(list(OCC3D_PROMPTS)), [OCC3D_GROUP_LABELS[g] for g in OCC3D_PROMPT_GROUP]
