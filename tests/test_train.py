"""The training engine's parts on their own: schedule, parameter groups, clipping, step gating, photometric
distortion, gradient accumulation, per-block compile, config round trips (pgocc.training, pgocc.train)."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch
from torch import nn

from pgocc.config import (
    INFERENCE_FREE_FIELDS,
    TrainConfig,
    apply_overrides,
    config_diff,
    config_from_json,
    format_diff,
    load_experiment,
    to_dict,
)
from pgocc.errors import ConfigError
from pgocc.training.optim import build_optimizer, gate_step, lr_at, param_groups
from pgocc.training.photometric import draw_parameters, photometric_distortion
from tests.data_fixtures import tiny_world  # noqa: F401

SMALL = ["data.render_size=30,54", "model.num_queries=12,4,4", "data.input_size=64,176", "data.num_workers=0",
         "model.dropout=0", "train.photometric_distortion=false"]


def _cfg(*extra: str):
    return apply_overrides(load_experiment("configs.tiny:tiny"), [*SMALL, *extra])


# ---------------------------------------------------------------------------------------------------------------
# Schedule and parameter groups


def test_lr_schedule_matches_closed_form() -> None:
    cfg = TrainConfig(num_steps=1000, lr=2e-4, warmup_steps=100, warmup_start_factor=1 / 3, min_lr_ratio=1e-3)
    for i in (0, 1, 50, 99, 100, 101, 500, 999):
        cosine = 1e-3 + (1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * i / 1000))
        warm = (1 / 3 + 2 / 3 * i / 100) if i < 100 else 1.0
        assert lr_at(i, cfg) == pytest.approx(2e-4 * warm * cosine, rel=1e-12), i
    assert lr_at(0, cfg) == pytest.approx(2e-4 / 3, rel=1e-12)
    assert lr_at(1000, cfg) == pytest.approx(2e-4 * 1e-3, rel=1e-12)      # the end of the cosine
    assert lr_at(100, cfg) > lr_at(99, cfg) > lr_at(0, cfg)                 # warm-up rises
    assert lr_at(900, cfg) < lr_at(500, cfg) < lr_at(100, cfg)              # cosine falls


def test_param_groups_low_lr_for_backbone_and_sampling_offsets() -> None:
    from pgocc.model import PGOcc

    cfg = _cfg()
    model = PGOcc(cfg.model, cfg.kernels)
    groups = {g["group"]: g for g in param_groups(model, cfg.train)}
    low, base = set(groups["low"]["names"]), set(groups["base"]["names"])
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert low | base == trainable and not low & base
    assert low == {n for n in trainable if n.startswith("backbone.") or "sampling_offset" in n}
    assert any("sampling_offset" in n for n in low) and any(n.startswith("backbone.layer4") for n in low)
    assert not any(n.startswith("backbone.layer1") or n.startswith("backbone.conv1") for n in low)  # frozen
    assert groups["low"]["lr_scale"] == 0.1 and groups["base"]["lr_scale"] == 1.0
    assert groups["low"]["weight_decay"] == groups["base"]["weight_decay"] == 0.01
    # The optimiser's per-group lr follows lr_at × scale step by step.
    optimizer, scheduler = build_optimizer(model, dataclasses.replace(cfg.train, warmup_steps=3, num_steps=10))
    tcfg = dataclasses.replace(cfg.train, warmup_steps=3, num_steps=10)
    for step in range(5):
        for g in optimizer.param_groups:
            assert g["lr"] == pytest.approx(lr_at(step, tcfg) * g["lr_scale"], rel=1e-9)
        optimizer.step()
        scheduler.step()


# ---------------------------------------------------------------------------------------------------------------
# Clipping and gating


def test_clip_gradients_to_the_global_norm() -> None:
    from pgocc.train import clip_gradients

    params = [nn.Parameter(torch.zeros(3)), nn.Parameter(torch.zeros(2, 2))]
    params[0].grad = torch.tensor([3.0, 0.0, 0.0])
    params[1].grad = torch.tensor([[0.0, 4.0], [0.0, 0.0]])
    norm = clip_gradients(params, 2.5)
    assert norm.item() == pytest.approx(5.0)
    after = torch.cat([p.grad.flatten() for p in params])
    assert after.norm().item() == pytest.approx(2.5, rel=1e-5)
    assert after[0].item() == pytest.approx(1.5, rel=1e-5)                 # direction kept
    before = [p.grad.clone() for p in params]
    assert clip_gradients(params, 100.0).item() == pytest.approx(2.5, rel=1e-5)   # under the limit: unchanged
    assert all(torch.equal(a, p.grad) for a, p in zip(before, params, strict=True))


def test_gate_step_skips_a_failed_step_on_the_device() -> None:
    model = nn.Linear(3, 2)
    optimizer, _ = build_optimizer(model, TrainConfig(num_steps=10, warmup_steps=0))
    before = [p.detach().clone() for p in model.parameters()]
    for p in model.parameters():
        p.grad = torch.full_like(p, float("nan"))
    gate_step(optimizer, torch.tensor(False))
    optimizer.step()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    gate_step(optimizer, torch.tensor(True))
    optimizer.step()
    assert all(not torch.equal(a, p) for a, p in zip(before, model.parameters(), strict=True))


# ---------------------------------------------------------------------------------------------------------------
# Photometric distortion


def test_photometric_distortion_parameters() -> None:
    images = torch.randint(0, 256, (2, 4, 3, 5, 6), dtype=torch.uint8)
    params = draw_parameters(8)
    for k in ("brightness_on", "contrast_on", "saturation_on", "hue_on", "permute_on"):
        params[k] = torch.zeros(8, dtype=torch.bool)
    assert torch.equal(photometric_distortion(images, params), images)              # every step off: identity
    params["brightness_on"] = torch.ones(8, dtype=torch.bool)
    params["brightness"] = torch.full((8,), 20.0)
    expected = (images.int() + 20).clamp(0, 255).to(torch.uint8)
    assert (photometric_distortion(images, params).int() - expected.int()).abs().max() <= 1  # via HSV round trip
    params["brightness_on"][:] = False
    params["permute_on"][:] = True
    params["permutation"] = torch.tensor([[2, 1, 0]] * 8)
    assert torch.equal(photometric_distortion(images, params), images.flip(2))        # BGR → RGB


@pytest.mark.gpu
def test_photometric_distortion_does_not_synchronise(device: torch.device) -> None:
    """The parameters, drawn on the host, reach the GPU without a synchronising copy (bench/breakdown.py counted 11
    per training step when they were copied from pageable memory); the result is the CPU's."""
    images = torch.randint(0, 256, (1, 12, 3, 16, 16), dtype=torch.uint8)
    params = draw_parameters(12)
    gpu_images = images.to(device)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        out = photometric_distortion(gpu_images, params)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert (out.cpu().int() - photometric_distortion(images, params).int()).abs().max() <= 1


def test_photometric_distortion_only_on_training_images() -> None:
    from pgocc.train import forward_backward, prepare

    seen = []

    class Probe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.ones(()))

        def forward(self, batch):
            seen.append(batch)
            return batch

    class Loss(nn.Module):
        def feature_targets(self, batch):
            seen.append("targets")
            return ("targets of", batch)

        def forward(self, pred, batch, targets):
            from pgocc.model.checks import Checks
            from pgocc.model.criterion import LossOutput

            assert targets == ("targets of", batch)              # the distorted batch's, computed once
            total = pred.images.float().mean() * 0 + probe.w
            return LossOutput(total=total, terms={"x_0": total}, checks=Checks())

    probe = Probe()
    images = torch.randint(0, 256, (1, 12, 3, 8, 8), dtype=torch.uint8)
    render_gt = torch.randint(0, 256, (1, 18, 8, 8, 3), dtype=torch.uint8)
    batch = _FakeBatch(images=images, render_gt=render_gt)
    forward_backward(probe, Loss(), prepare(Loss(), [batch], distortion=False))
    forward_backward(probe, Loss(), prepare(Loss(), [batch], distortion=True))
    # the feature targets before the forward (their host sync then waits for little queued work)
    assert seen[0] == seen[2] == "targets"
    seen = [b for b in seen if b != "targets"]
    assert torch.equal(seen[0].images, images)
    assert not torch.equal(seen[1].images, images) and seen[1].images.dtype == torch.uint8
    assert torch.equal(seen[1].render_gt, render_gt)


@dataclasses.dataclass
class _FakeBatch:
    images: torch.Tensor
    render_gt: torch.Tensor


# ---------------------------------------------------------------------------------------------------------------
# Gradient accumulation and compile on the real tiny model


def _samples(world, n: int, cfg):
    from pgocc.data.dataset import build_dataset

    cfg.data.dataroot = str(world)
    ds = build_dataset(cfg.data, cfg.data.train_split, num_frames=cfg.model.num_frames,
                       feature_dim=cfg.model.ov_dims, mode="test")
    return [ds[i] for i in range(n)]


def _model_and_loss(cfg):
    from pgocc.model import PGOcc, PGOccLoss

    torch.manual_seed(0)
    model = PGOcc(cfg.model, cfg.kernels).train()
    return model, PGOccLoss(cfg.model, cfg.loss, cfg.kernels)


def test_gradient_accumulation_equals_the_large_batch(tiny_world) -> None:  # noqa: F811
    from pgocc.data.dataset import collate
    from pgocc.train import forward_backward, prepare

    # Two terms are means pooled over the batch (the original trains one sample per GPU): the warp term over the
    # (sample, camera) pairs with a source frame, the cosine term over the valid pixels. Samples with different
    # counts are weighted differently by a batch of 2 than by two batches of 1 (measured: 1e-3 relative), so they
    # are left out here; the other terms are per-sample means and must match.
    cfg = _cfg("loss.warp_weight=0", "loss.feat_cos_weight=0")
    a, b = _samples(tiny_world, 2, cfg)
    model, criterion = _model_and_loss(cfg)
    big = forward_backward(model, criterion, prepare(criterion, [collate([a, b])]))
    grads_big = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    acc = forward_backward(model, criterion, prepare(criterion, [collate([a]), collate([b])]))
    grads_acc = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    assert grads_big.keys() == grads_acc.keys() and len(grads_big) > 50
    assert acc.total.item() == pytest.approx(big.total.item(), rel=1e-5)
    for n, g in grads_big.items():
        # Relative to each gradient's norm: float32 sums over a batch of 2 vs two batches of 1.
        err = (grads_acc[n] - g).norm() / g.norm().clamp_min(1e-12)
        assert err < 2e-4, f"{n}: relative error {err:.2e}"
    # One micro-batch alone is not the mean: the comparison can fail.
    model.zero_grad(set_to_none=True)
    forward_backward(model, criterion, prepare(criterion, [collate([a])]))
    assert not torch.allclose(model.layers[0].ffn.fc1.weight.grad, grads_big["layers.0.ffn.fc1.weight"], rtol=1e-3)


def test_compiled_block_gives_the_eager_loss(tiny_world) -> None:  # noqa: F811
    from pgocc.data.dataset import collate
    from pgocc.train import forward_backward, prepare
    from pgocc.training.parallelize import compile_blocks, is_compiled

    cfg = _cfg()
    batch = collate(_samples(tiny_world, 1, cfg))
    model, criterion = _model_and_loss(cfg)
    eager = forward_backward(model, criterion, prepare(criterion, [batch]))
    grad = model.gaussian_heads[2][0].weight.grad.clone()
    model.zero_grad(set_to_none=True)
    assert compile_blocks(model, ("gaussian_heads.2",)) == ["gaussian_heads.2"]
    assert is_compiled(model.gaussian_heads[2]) and not is_compiled(model.gaussian_heads[1])
    compiled = forward_backward(model, criterion, prepare(criterion, [batch]))
    assert compiled.total.item() == pytest.approx(eager.total.item(), rel=1e-5)
    torch.testing.assert_close(model.gaussian_heads[2][0].weight.grad, grad, rtol=1e-4, atol=1e-6)
    assert list(model.state_dict()) == list(_model_and_loss(cfg)[0].state_dict())   # names unchanged


# ---------------------------------------------------------------------------------------------------------------
# Config round trip and differences


def test_config_json_round_trip_and_diff() -> None:
    cfg = _cfg("train.lr=1e-3", "model.fidelity=released")
    back = config_from_json(json.dumps(to_dict(cfg)))
    assert back == cfg and config_diff(cfg, back) == []
    other = _cfg("model.embed_dims=64", "model.opacity_threshold=0.3")
    diff = config_diff(cfg, other, sections=("model",), ignore=INFERENCE_FREE_FIELDS)
    assert [d[0] for d in diff] == ["model.fidelity", "model.embed_dims"]
    line = format_diff(diff, "checkpoint", "requested")
    assert "\n" not in line and "model.embed_dims: 32 (checkpoint) vs 64 (requested)" in line
    with pytest.raises(ConfigError, match="train.bogus"):
        config_from_json(json.dumps({"train": {"bogus": 1}}))


def test_train_config_validation() -> None:
    for bad, path in (("train.lr=0", "train.lr"), ("train.grad_accum_steps=0", "train.grad_accum_steps"),
                      ("train.autocast=fp16", "train.autocast"), ("train.keep_checkpoints=0",
                                                                  "train.keep_checkpoints")):
        with pytest.raises(ConfigError, match=path):
            _cfg(bad)


def test_metrics_log_writes_jsonl_and_every_numeric_value_to_tensorboard(tmp_path, monkeypatch) -> None:
    """TensorBoard is optional (not a dependency): a stand-in ``torch.utils.tensorboard`` module records what the log
    sends it. Numbers go under train/ or val/ at the record's step; text, lists and booleans do not; rank ≠ 0 writes
    nothing."""
    import sys
    import types

    from pgocc.train import MetricsLog

    calls: list[tuple[str, float, int]] = []
    dirs: list[str] = []

    class Writer:
        def __init__(self, log_dir: str) -> None:
            dirs.append(log_dir)

        def add_scalar(self, tag: str, value: float, step: int) -> None:
            calls.append((tag, value, step))

        def flush(self) -> None:
            calls.append(("flush", 0.0, 0))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = Writer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    log = MetricsLog(tmp_path, enabled=True)
    log.write({"step": 5, "lr": 1e-4, "loss": 2.5, "candidates_1": 7})
    log.write({"step": 5, "split": "val", "miou": 0.25, "eval_classes": ["car"], "samples": 3, "flag": True})
    assert dirs == [str(tmp_path / "tb")]
    assert calls == [("train/lr", 1e-4, 5), ("train/loss", 2.5, 5), ("train/candidates_1", 7, 5), ("flush", 0.0, 0),
                     ("val/miou", 0.25, 5), ("val/samples", 3, 5), ("flush", 0.0, 0)]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [5, 5] and lines[1]["eval_classes"] == ["car"]
    calls.clear()
    quiet = tmp_path / "rank1"
    quiet.mkdir()
    MetricsLog(quiet, enabled=False).write({"step": 1, "loss": 1.0})
    assert calls == [] and not (quiet / "metrics.jsonl").exists() and len(dirs) == 1
