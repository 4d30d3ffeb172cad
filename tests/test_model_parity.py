"""The whole model with every hot path on ``reference`` vs on ``triton``: same weights, same batch, same outputs,
loss terms, parameter gradients and readout.

On CPU the Triton kernels run under the interpreter (about 1.5 ms per program and op), so the network is shrunk to
two stages of 4 + 2 queries, 2 cameras, 2 frames and a 6 × 10 render; on the GPU the same test runs natively at the
tiny config's sizes.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from configs.tiny import tiny
from pgocc import ops
from pgocc.config import ExperimentConfig, KernelConfig
from pgocc.model import PGOcc, PGOccLoss, Readout
from tests.conftest import HAS_GPU
from tests.test_model import make_batch
from tests.test_readout import OCC3D_COLUMNS

# Measured on CPU (interpreter, float32, the shrunken network): outputs differ by <= 5e-7 absolute, loss terms by
# <= 3e-7 relative, the worst parameter gradient by 2e-6 relative (summation order); at the full tiny config 1e-6,
# 2e-7 and 1e-5. The bounds leave a 10-100x margin.
OUT_TOL = {"rtol": 1e-4, "atol": 1e-5}
GRAD_RATIO = 1e-3


def _config() -> tuple[ExperimentConfig, dict]:
    cfg = tiny()
    m = cfg.model
    # no dropout (the kernels draw their masks differently) and no recomputation (it changes no value)
    m.dropout, m.checkpoint_activations = 0.0, False
    if HAS_GPU:
        return cfg, {"T": m.num_frames, "D": m.ov_dims}
    cfg.model = dataclasses.replace(m, num_queries=(4, 2), box_sizes=(1.6, 0.8), embed_dims=16, num_heads=2,
                                    num_groups=2, num_points=2, num_mix_points=4, ffn_dims=16, head_dims=16,
                                    ov_dims=16)
    cfg.loss.pca_dims, cfg.loss.stage_weights = 4, (1.0, 1.0)
    return cfg, {"T": m.num_frames, "N": 2, "D": 16, "H_r": 6, "W_r": 10}


def _run(cfg: ExperimentConfig, kernels: KernelConfig, state: dict | None, batch, device: torch.device):
    model = PGOcc(cfg.model, kernels).to(device).train()
    if state is not None:
        model.load_state_dict(state)
    loss_fn = PGOccLoss(cfg.model, cfg.loss, kernels)
    torch.manual_seed(1)                       # the warping loss's identity-error noise
    pred = model(batch)
    out = loss_fn(pred, batch)
    out.total.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    protos = torch.randn(21, cfg.model.ov_dims, generator=torch.Generator().manual_seed(3)).to(device)
    # a coarse 25 × 25 × 2 grid keeps the interpreted gs2vox small
    readout = Readout(dataclasses.replace(cfg.model, voxel_size=3.2) if not HAS_GPU else cfg.model, kernels)
    with torch.no_grad():
        field = readout.similarity(pred.final, protos)
        labels = readout(pred.final, protos, OCC3D_COLUMNS)
    return model.state_dict(), pred, out, grads, field, labels


def test_reference_and_triton_models_agree(device: torch.device) -> None:
    cfg, sizes = _config()
    triton = KernelConfig(**{op: "triton" for op in ops.OPS})
    batch = make_batch(**sizes).to(device)
    torch.manual_seed(0)
    state, ref_pred, ref_loss, ref_grads, ref_field, ref_labels = _run(cfg, KernelConfig(), None, batch, device)
    _, pred, loss, grads, field, labels = _run(cfg, triton, state, batch, device)

    assert torch.equal(pred.num_candidates, ref_pred.num_candidates)
    for s, (g, ref) in enumerate(zip(pred.stages, ref_pred.stages, strict=True)):
        for f in ("means", "quats", "scales", "opacities", "features"):
            torch.testing.assert_close(getattr(g, f), getattr(ref, f), **OUT_TOL,
                                       msg=lambda m, s=s, f=f: f"stage {s} {f}: {m}")
    assert set(loss.terms) == set(ref_loss.terms)
    for key, value in loss.terms.items():
        torch.testing.assert_close(value, ref_loss.terms[key], **OUT_TOL, msg=lambda m, key=key: f"{key}: {m}")
    assert set(grads) == set(ref_grads)
    for name, grad in grads.items():
        ratio = float((grad - ref_grads[name]).norm() / ref_grads[name].norm().clamp_min(1e-30))
        assert ratio <= GRAD_RATIO, f"gradient of {name}: relative error {ratio:.2e}"
    torch.testing.assert_close(field[0], ref_field[0], **OUT_TOL)
    solid = ref_field[0] > 1e-3
    torch.testing.assert_close(field[1][solid], ref_field[1][solid], rtol=1e-3, atol=1e-4)
    assert bool((labels == ref_labels).float().mean() > 0.999)


@pytest.mark.parametrize("op", ops.OPS)
def test_model_resolves_each_op_once_through_the_registry(op: str) -> None:
    cfg, _ = _config()
    calls: list[tuple[str, str]] = []
    real = ops.resolve

    def spy(name: str, impl: str, **kw):
        calls.append((name, impl))
        return real(name, impl, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(ops, "resolve", spy)
        PGOcc(cfg.model, cfg.kernels)
        PGOccLoss(cfg.model, cfg.loss, cfg.kernels)
        Readout(cfg.model, cfg.kernels)
    expected = {"gs_raster": 2}.get(op, 1)        # the model's densification renderer and the loss's renderer
    assert calls.count((op, "reference")) == expected
