"""The whole model on the GPU at the default size (configs.base: 6 cameras × 8 frames at 256 × 704, 180 × 320
renders, three stages to 6000 Gaussians, readout to the 200 × 200 × 16 Occ3D grid), every hot path on ``triton``,
float32 unless named, one sample.

- ``infer/offline``: the forward over all 48 images + the readout (labels and similarity to the 21 prompts).
- ``infer/online``: the same with the 7 past frames' features cached (§1.1 online mode, bench/perf.py): the batch
  holds the 6 new images only, as the online loader gives them; ``infer/online-bf16`` under bf16 autocast (readout
  float32).
- ``train/step``: forward + every loss term + backward (activation checkpointing as configured; no optimizer, unlike
  bench/train_step.py and bench/ablation.py, which time the training loop's whole step).

The anchor is the original's 2.40 FPS end to end (paper, docs/kernels.md §8; its hardware is not ours, so the ratio is
indicative) and ≈ 1.15 GPU-seconds per training sample. The model is randomly initialised: speed does not depend on
the weights except through the data-dependent counts of densification (the synthetic ground-plane batch of
tests/test_model.py gives every stage its full candidate set).
"""

from __future__ import annotations

import pytest

from bench.perf import build_inference, online_frame, random_prototypes, synthetic_batch
from configs.base import base
from pgocc.model import PGOcc, PGOccLoss
from tests.test_readout import OCC3D_COLUMNS


@pytest.mark.parametrize("mode", ["offline", "online", "online-bf16"])
def test_infer(gpu_bench, mode: str) -> None:  # noqa: ANN001
    cfg = base()
    model, readout = build_inference(cfg, "cuda")
    batch = synthetic_batch(cfg, "cuda")
    if mode == "offline":
        prototypes = random_prototypes(cfg, "cuda")

        def step():  # noqa: ANN202
            return readout(model(batch).final, prototypes, OCC3D_COLUMNS)
    else:
        step = online_frame(cfg, model, readout, batch, bf16=mode == "online-bf16")

    gpu_bench(step, {}, mode="infer", group=f"model/default/infer/{mode}", impl="triton")


def test_train_step(gpu_bench) -> None:  # noqa: ANN001
    cfg = base()
    model = PGOcc(cfg.model, cfg.kernels).cuda().train()
    batch = synthetic_batch(cfg, "cuda")
    loss_fn = PGOccLoss(cfg.model, cfg.loss, cfg.kernels)
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        out = loss_fn(model(batch), batch)
        out.total.backward()
        for p in params:
            p.grad = None

    gpu_bench(step, {}, mode="fwd", group="model/default/train/step", impl="triton")
