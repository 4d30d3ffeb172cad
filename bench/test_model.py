"""The whole model on the GPU at the default size (configs.base: 6 cameras × 8 frames at 256 × 704, 180 × 320
renders, three stages to 6000 Gaussians, readout to the 200 × 200 × 16 Occ3D grid), every hot path on ``triton``,
float32, one sample.

- ``infer/offline``: the forward over all 48 images + the readout (labels and similarity to the 21 prompts).
- ``infer/online``: the same with the 7 past frames' features cached (§1.1 online mode): the backbone sees the 6
  new images only.
- ``train/step``: forward + every loss term + backward (activation checkpointing as configured).

The anchor is the original's 2.40 FPS end to end (paper, docs/kernels.md §8; its hardware is not ours, so the ratio is
indicative) and ≈ 1.15 GPU-seconds per training sample. The model is randomly initialised: speed does not depend on
the weights except through the data-dependent counts of densification (the synthetic ground-plane batch of
tests/test_model.py gives every stage its full candidate set).
"""

from __future__ import annotations

import pytest
import torch

from configs.base import base
from pgocc.config import ExperimentConfig
from pgocc.data.batch import Batch
from pgocc.model import FeatureCache, PGOcc, PGOccLoss, Readout
from pgocc.model.readout import occupancy_labels
from tests.test_model import default_size_batch
from tests.test_readout import OCC3D_COLUMNS


def _setup(train: bool) -> tuple[ExperimentConfig, PGOcc, Batch]:
    cfg = base()
    model = PGOcc(cfg.model, cfg.kernels).cuda()
    model.train(train)
    return cfg, model, default_size_batch("cuda")


@pytest.mark.parametrize("mode", ["offline", "online"])
def test_infer(gpu_bench, mode: str) -> None:  # noqa: ANN001
    cfg, model, batch = _setup(train=False)
    readout = Readout(cfg.model, cfg.kernels).cuda()
    protos = torch.randn(len(OCC3D_COLUMNS), cfg.model.ov_dims, device="cuda")
    N = batch.num_cams
    past: list[tuple[str, list[torch.Tensor]]] = []
    if mode == "online":
        warm = FeatureCache(capacity=cfg.model.num_frames)
        with torch.inference_mode():
            model(batch, cache=warm)
        keys = [batch.filenames[0][t * N] for t in range(1, cfg.model.num_frames)]
        past = [(key, warm.get(key)) for key in keys]

    def step() -> torch.Tensor:
        cache: FeatureCache | None = None
        if mode == "online":
            cache = FeatureCache(capacity=cfg.model.num_frames)
            for key, maps in past:
                cache.put(key, maps)
        pred = model(batch, cache=cache)
        density, field = readout.similarity(pred.final, protos)
        return occupancy_labels(density, field, OCC3D_COLUMNS, cfg.model.density_threshold)

    gpu_bench(step, {}, mode="infer", group=f"model/default/infer/{mode}", impl="triton")


def test_train_step(gpu_bench) -> None:  # noqa: ANN001
    cfg, model, batch = _setup(train=True)
    loss_fn = PGOccLoss(cfg.model, cfg.loss, cfg.kernels)
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        out = loss_fn(model(batch), batch)
        out.total.backward()
        for p in params:
            p.grad = None

    gpu_bench(step, {}, mode="fwd", group="model/default/train/step", impl="triton")
