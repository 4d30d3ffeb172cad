"""Deferred checks (pgocc.model.checks): a non-finite head output, a non-finite loss term and too few valid depth
pixels raise ``ModelCheckError`` naming the tensor where the result is first read, and the forward, the losses and the
backward read nothing on the host on the way.

The record is the same code on both devices. On the CPU, the no-sync test runs the train step on the ``meta``
device, where any host read raises; the ``gpu`` test checks on CUDA that a NaN passes the Triton ops without a device
fault, is named, and leaves the context usable.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from pgocc import ops
from pgocc.config import ExperimentConfig, KernelConfig
from pgocc.model import PGOcc, PGOccLoss, Readout
from pgocc.model.checks import Checks, ModelCheckError
from tests.test_model import make_batch, tiny_cfg


@pytest.fixture(scope="module")
def cfg() -> ExperimentConfig:
    return tiny_cfg()


def test_checks_report_the_first_failure_in_recording_order() -> None:
    checks = Checks()
    checks.finite("a", torch.ones(3))
    checks.expect(torch.tensor([True, False]), "b is short")
    checks.finite("c", torch.tensor([1.0, float("inf")]))
    assert len(checks) == 3 and checks.messages == ["non-finite values in a", "b is short", "non-finite values in c"]
    assert not bool(checks.ok)
    assert checks.first_failure() == "b is short"
    with pytest.raises(ModelCheckError, match="^b is short$"):
        checks.raise_if_failed()

    later = Checks()
    later.finite("d", torch.tensor([float("nan")]))
    passing = Checks()
    passing.finite("e", torch.zeros(2))
    assert bool(passing.ok) and passing.first_failure() is None
    passing.raise_if_failed()
    passing.extend(later)
    assert passing.first_failure() == "non-finite values in d"
    assert bool(Checks().ok) and Checks().first_failure() is None


def test_finite_each_checks_every_row_on_its_own() -> None:
    checks = Checks()
    checks.finite("before", torch.ones(1))
    rows = torch.tensor([[1.0, 2.0], [3.0, float("nan")], [float("inf"), 0.0], [5.0, 6.0]])
    checks.finite_each(["r0", "r1", "r2", "r3"], rows)
    assert len(checks) == 5 and checks.messages[1:] == [f"non-finite values in r{i}" for i in range(4)]
    assert checks.first_failure() == "non-finite values in r1"
    scalars = Checks()
    scalars.finite_each(["x", "y", "z"], torch.tensor([0.0, 1.0, float("-inf")]))
    assert scalars.first_failure() == "non-finite values in z"
    clean = Checks()
    clean.finite_each(["u", "v"], torch.zeros(2, 3))
    assert bool(clean.ok) and clean.first_failure() is None
    with pytest.raises(ValueError, match="2 names for 3 rows"):
        Checks().finite_each(["a", "b"], torch.zeros(3))


def test_guard_reports_a_failed_check_instead_of_the_error_it_caused() -> None:
    checks = Checks()
    with checks.guard():                                   # nothing raised: nothing to report, even with a failure
        checks.finite("x", torch.tensor(float("nan")))
    with pytest.raises(ModelCheckError, match="non-finite values in x") as info:
        with checks.guard():
            torch.zeros(2)[torch.tensor([5])]
    assert isinstance(info.value.__cause__, IndexError)
    with pytest.raises(IndexError):                        # no failed check: the error is left as it is
        with Checks().guard():
            torch.zeros(2)[torch.tensor([5])]


@pytest.mark.parametrize(("heads", "stage", "name"), [
    ("gaussian_heads", 2, "gaussian head output of stage 2"),
    ("ov_heads", 0, "open-vocabulary head output of stage 0"),
])
def test_non_finite_head_output_is_named_where_the_prediction_is_read(cfg: ExperimentConfig, heads: str,
                                                                       stage: int, name: str) -> None:
    model = PGOcc(cfg.model, cfg.kernels).train()
    with torch.no_grad():
        getattr(model, heads)[stage][-1].bias[0] = float("nan")
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims)
    pred = model(batch)                                    # deferred: the forward itself does not raise
    assert not bool(pred.checks.ok)
    with pytest.raises(ModelCheckError, match=f"^non-finite values in {name}$"):
        pred.checks.raise_if_failed()
    # The losses keep the prediction's checks first: the head is named, not a loss term it poisoned.
    out = PGOccLoss(cfg.model, cfg.loss, cfg.kernels)(pred, batch)
    with pytest.raises(ModelCheckError, match=f"^non-finite values in {name}$"):
        out.read_terms()


def test_non_finite_loss_term_is_named(cfg: ExperimentConfig) -> None:
    model = PGOcc(cfg.model, cfg.kernels).train()
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims)
    features = batch.features.clone()
    features[0, 0, 0, 0, 0] = 1e30                         # finite, but its squared error overflows float32
    pred = model(batch)
    loss_fn = PGOccLoss(cfg.model, cfg.loss, cfg.kernels)
    out = loss_fn(pred, replace(batch, features=features))
    assert bool(pred.checks.ok) and not bool(out.checks.ok)
    with pytest.raises(ModelCheckError, match="^non-finite values in loss term feat_mse_0$"):
        out.read_terms()
    clean = loss_fn(pred, batch).read_terms()
    assert len(clean) == 15 and all(isinstance(v, float) for v in clean.values())


def test_too_few_valid_depth_pixels_is_named(cfg: ExperimentConfig) -> None:
    model = PGOcc(cfg.model, cfg.kernels).eval()
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims)
    sky = batch.depth.clone()
    sky.view(-1)[:-79] = 0.0                               # 79 valid ground pixels (last camera, bottom rows) for
                                                           # 48 + 16 + 16 = 80 queries
    with torch.no_grad():
        pred = model(replace(batch, depth=sky))
    assert int(pred.num_candidates[0, 0]) == 79
    with pytest.raises(ModelCheckError, match="fewer than 80 valid foundation-depth pixels"):
        pred.checks.raise_if_failed()
    with torch.no_grad():
        model(batch).checks.raise_if_failed()              # the unmodified batch passes


def test_singular_intrinsics_are_named(cfg: ExperimentConfig) -> None:
    """backproject inverts K without torch.linalg.inv's host-side singularity check; the forward records it."""
    model = PGOcc(cfg.model, cfg.kernels).eval()
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims)
    render_k = batch.render_k.clone()
    render_k[0, 2, 1, 1] = 0.0                             # zero vertical focal length of camera 2
    with torch.no_grad():
        pred = model(replace(batch, render_k=render_k))
    with pytest.raises(ModelCheckError, match="^singular intrinsics K in backproject"):
        pred.checks.raise_if_failed()


def test_train_step_reads_nothing_on_the_host(cfg: ExperimentConfig) -> None:
    """Forward, losses and backward on ``meta`` tensors, which have no data: ``.item()``, ``bool()``, ``.cpu()``,
    ``.tolist()`` or a data-dependent shape anywhere on the way raises. fps runs its Triton op (the reference loops
    over host-read lengths by design; a custom op's fake stands in for its kernel here), every other op its
    reference, so this covers the model code and the reference ops, not the Triton ops' host code."""
    kernels = replace(cfg.kernels, fps="triton")
    model = PGOcc(cfg.model, kernels).to("meta").train()
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims).to("meta")
    out = PGOccLoss(cfg.model, cfg.loss, kernels)(model(batch), batch)
    assert out.total.device.type == "meta"
    out.total.backward()
    assert model.layers[0].mixing.parameter_generator.weight.grad is not None
    assert len(out.checks) == 2 + 2 * 3 + 5 * 3
    # The check itself: reading the record is the host sync this test would catch inside the step.
    with pytest.raises(NotImplementedError, match="meta"):
        out.checks.raise_if_failed()


@pytest.mark.gpu
def test_on_cuda_a_nan_is_named_and_the_context_stays_usable(cfg: ExperimentConfig, device: torch.device) -> None:
    """What the deferred record is for: on CUDA with the Triton kernels, NaN Gaussians flow through the later
    stages' ops, the losses' render and the readout without a device fault, the error names the head, and the CUDA
    context still works afterwards (a device-side assert would have lost both)."""
    kernels = KernelConfig(**{op: "triton" for op in ops.OPS})
    model = PGOcc(cfg.model, kernels).to(device).train()
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims).to(device)
    clean = model(batch)
    with torch.no_grad():
        model.gaussian_heads[1][-1].bias.fill_(float("nan"))      # every Gaussian of stage 1: means included
    pred = model(batch)
    out = PGOccLoss(cfg.model, cfg.loss, kernels)(pred, batch)
    out.total.backward()
    with torch.no_grad():
        Readout(cfg.model, kernels).similarity(pred.final, torch.randn(21, cfg.model.ov_dims, device=device))
    torch.cuda.synchronize()                                      # no device fault on the way
    with pytest.raises(ModelCheckError, match="^non-finite values in gaussian head output of stage 1$"):
        out.read_terms()
    clean.checks.raise_if_failed()
    assert bool(torch.isfinite(model(batch).stages[0].means).all())   # the context is still usable
