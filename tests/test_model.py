"""The full network on the tiny config: shape/dtype flow of forward + backward, B >= 1, feature cache, errors.

``make_batch`` builds a small, geometrically consistent batch by hand (a nuScenes-like rig over a ground plane, the
ego driving forward), so these tests need neither the data loader nor the synthetic world.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import replace

import pytest
import torch

from configs.base import base
from configs.tiny import tiny
from pgocc.config import ExperimentConfig
from pgocc.data.batch import Batch
from pgocc.model import FeatureCache, PGOcc, PGOccLoss
from pgocc.model.checks import ModelCheckError
from pgocc.model.criterion import TERMS

# camera position (m) and yaw (deg) of the nuScenes rig (docs/data.md §5), focal length at 1600 × 900
RIG = (((1.70, 0.02, 1.51), 0, 1266), ((1.55, -0.49, 1.50), -55, 1260), ((1.52, 0.49, 1.51), 55, 1257),
       ((0.03, 0.01, 1.57), 180, 809), ((1.04, 0.48, 1.57), 110, 1256), ((1.04, -0.48, 1.56), -110, 1259))
SPEED = 0.5
"""Ego displacement (m, along +x) between consecutive frames."""


def _cam2ego(pos: tuple[float, float, float], yaw_deg: float) -> torch.Tensor:
    yaw = math.radians(yaw_deg)
    forward = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
    right = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0])
    down = torch.tensor([0.0, 0.0, -1.0])
    m = torch.eye(4)
    m[:3, :3] = torch.stack([right, down, forward], 1)
    m[:3, 3] = torch.tensor(pos)
    return m


def _intrinsics(f: float, sx: float, sy: float, crop_top: float = 0.0) -> torch.Tensor:
    return torch.tensor([[f * sx, 0.0, 800 * sx], [0.0, f * sy, 450 * sy - crop_top], [0.0, 0.0, 1.0]])


def make_batch(*, B: int = 1, T: int = 2, N: int = 6, D: int = 384, h: int = 3, w: int = 5, H_in: int = 32,
               W_in: int = 64, H_r: int = 12, W_r: int = 20, seed: int = 0) -> Batch:
    """A batch of B samples seeing a ground plane (z = 0, sky at 60 m) from the first N cameras of the rig, the ego
    moving in +x."""
    g = torch.Generator().manual_seed(seed)
    rig = RIG[:N]
    cam2ego = torch.stack([_cam2ego(p, y) for p, y, _ in rig])                          # [N, 4, 4]
    render_k = torch.stack([_intrinsics(f, W_r / 1600, H_r / 900) for _, _, f in rig])
    s = W_in / 1600
    input_k = torch.stack([_intrinsics(f, s, s, crop_top=900 * s - H_in) for _, _, f in rig])
    ego2img = torch.zeros(T, N, 4, 4)
    for t in range(T):
        ego0_to_egot = torch.eye(4)
        ego0_to_egot[0, 3] = SPEED * t                 # the past ego was SPEED·t behind: points appear further ahead
        for n in range(N):
            k4 = torch.eye(4)
            k4[:3, :3] = input_k[n]
            ego2img[t, n] = k4 @ torch.linalg.inv(cam2ego[n]) @ ego0_to_egot
    # depth of the ground plane along each render pixel's ray, 60 m where the ray does not hit it
    v, u = torch.meshgrid(torch.arange(H_r, dtype=torch.float32), torch.arange(W_r, dtype=torch.float32),
                          indexing="ij")
    rays = torch.stack([u, v, torch.ones_like(u)], -1)
    dirs = torch.einsum("nij,hwj->nhwi", torch.linalg.inv(render_k), rays)
    dz = torch.einsum("nj,nhwj->nhw", cam2ego[:, 2, :3], dirs)
    height = cam2ego[:, 2, 3].view(N, 1, 1)
    depth = torch.where(dz < -1e-3, -height / dz.clamp(max=-1e-3), torch.full_like(dz, 60.0))
    t0_2_x = torch.eye(4).repeat(2 * N, 1, 1)
    t0_2_x[:N, 2, 3] = -0.3                            # previous sweep: the camera was 0.3 m behind along its axis
    t0_2_x[N:, 2, 3] = 0.3

    def rep(x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(0).repeat(B, *([1] * x.ndim)).contiguous()

    return Batch(
        images=torch.randint(0, 256, (B, T * N, 3, H_in, W_in), generator=g, dtype=torch.uint8),
        lidar2img=rep(ego2img.flatten(0, 1)), ego2img=rep(ego2img.flatten(0, 1)), ego2lidar=rep(torch.eye(4)),
        cam2ego=rep(cam2ego), render_k=rep(render_k),
        depth=rep(depth.unsqueeze(1)) * (1 + 0.05 * torch.rand(B, N, 1, H_r, W_r, generator=g)),
        features=torch.randn(B, N, D, h, w, generator=g),
        render_gt=torch.randint(0, 256, (B, 3 * N, H_r, W_r, 3), generator=g, dtype=torch.uint8),
        t0_2_x_geo=rep(t0_2_x), source_valid=torch.ones(B, 2 * N, dtype=torch.bool),
        timestamps=torch.zeros(B, T * N, dtype=torch.int64),
        semantics=None, mask_camera=None, mask_lidar=None,
        sample_tokens=[f"s{b}" for b in range(B)], scene_names=["scene-0001"] * B,
        filenames=[[f"b{b}_t{t}_n{n}.jpg" for t in range(T) for n in range(N)] for b in range(B)],
    )


def tiny_cfg() -> ExperimentConfig:
    cfg = tiny()
    cfg.model.checkpoint_activations = False       # recomputation doubles CPU time and changes no value
    return cfg


@pytest.fixture(scope="module")
def cfg() -> ExperimentConfig:
    return tiny_cfg()


@pytest.mark.parametrize("B", [1, 2])
def test_forward_backward_shapes_and_dtypes(cfg: ExperimentConfig, B: int) -> None:
    model = PGOcc(cfg.model, cfg.kernels).train()
    loss_fn = PGOccLoss(cfg.model, cfg.loss, cfg.kernels)
    batch = make_batch(B=B, T=cfg.model.num_frames, D=cfg.model.ov_dims)
    pred = model(batch)
    assert len(pred.stages) == 3
    for s, g in enumerate(pred.stages):
        Q = sum(cfg.model.num_queries[:s + 1])
        assert g.means.shape == (B, Q, 3) and g.quats.shape == (B, Q, 4) and g.scales.shape == (B, Q, 3)
        assert g.opacities.shape == (B, Q) and g.features.shape == (B, Q, cfg.model.ov_dims)
        for t in (g.means, g.quats, g.scales, g.opacities, g.features):
            assert t.dtype == torch.float32 and bool(torch.isfinite(t).all())
        assert torch.allclose(g.quats.norm(dim=-1), torch.ones(B, Q), atol=1e-5)
        assert bool((g.scales > 0).all() and (g.scales < cfg.model.max_scale).all())
    assert pred.num_candidates.shape == (B, 3) and pred.num_candidates.dtype == torch.int64
    out = loss_fn(pred, batch)
    assert set(out.terms) == {f"{t}_{s}" for t in TERMS for s in range(3)}
    assert out.total.ndim == 0 and bool(torch.isfinite(out.total))
    out.total.backward()
    frozen = [p for n, p in model.named_parameters() if n.startswith(("backbone.conv1", "backbone.bn1",
                                                                     "backbone.layer1"))]
    assert frozen and all(p.grad is None and not p.requires_grad for p in frozen)
    for name in ("query_embeds.weight", "layers.0.sampling.sampling_offset.bias", "layers.2.mixing.out_proj.weight",
                 "layers.1.self_attn.gen_tau.bias", "gaussian_heads.2.2.weight", "ov_heads.0.4.weight",
                 "neck.fpn_convs.0.weight", "backbone.layer4.0.conv2.weight"):
        grad = dict(model.named_parameters())[name].grad
        assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0, name


def _sample(batch: Batch, b: int) -> Batch:
    values = {}
    for f in dataclasses.fields(batch):
        v = getattr(batch, f.name)
        values[f.name] = v[b:b + 1] if isinstance(v, torch.Tensor | list) else v
    return Batch(**values)


def test_samples_of_a_batch_are_independent(cfg: ExperimentConfig) -> None:
    model = PGOcc(cfg.model, cfg.kernels).eval()
    batch = make_batch(B=2, T=cfg.model.num_frames, D=cfg.model.ov_dims)
    batch.depth[1] *= 1.3                             # a different scene geometry in the second sample
    with torch.no_grad():
        both = model(batch)
        for b in range(2):
            alone = model(_sample(batch, b))
            for s in range(3):
                for f in ("means", "quats", "scales", "opacities", "features"):
                    torch.testing.assert_close(getattr(both.stages[s], f)[b:b + 1], getattr(alone.stages[s], f),
                                               rtol=1e-5, atol=1e-5)
    assert not torch.allclose(both.final.means[0], both.final.means[1])


def test_feature_cache_gives_the_same_features_and_reads_past_frames_from_the_cache(cfg: ExperimentConfig) -> None:
    model = PGOcc(cfg.model, cfg.kernels).eval()
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims)
    cache = FeatureCache()
    keys = [["frame-a", "frame-b"]]
    with torch.no_grad():
        plain = model.extract_features(batch.images, 6)
        cached = model.extract_features(batch.images, 6, keys, cache)
        for p, c in zip(plain, cached, strict=True):
            torch.testing.assert_close(p, c, rtol=1e-5, atol=1e-6)
        assert len(cache) == 2
        # the past frame comes from the cache: only the current frame's images are given (F = 1), or its images
        # are given but not used (poisoned pixels, same features)
        poisoned = batch.images.clone()
        poisoned[0, 6:] = 0
        for images in (batch.images[:, :6], poisoned):
            again = model.extract_features(images, 6, keys, cache)
            for p, c in zip(plain, again, strict=True):
                torch.testing.assert_close(p, c, rtol=1e-5, atol=1e-6)
        # a failed forward forgets the frames its plan added: their maps were never stored
        with pytest.raises(RuntimeError):
            model.extract_features(batch.images[:, :6, :2], 6, [["frame-c", "frame-b"]], cache)  # 2 channels
        assert "frame-c" not in cache and len(cache) == 2
        with pytest.raises(RuntimeError, match="inference"):
            model.train().extract_features(batch.images, 6, keys, cache)


def test_online_forward_with_a_cache_matches_the_plain_forward(cfg: ExperimentConfig) -> None:
    model = PGOcc(cfg.model, cfg.kernels).eval()
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims)
    with torch.no_grad():
        plain = model(batch)
        online = model(batch, cache=FeatureCache())
    torch.testing.assert_close(plain.final.means, online.final.means, rtol=1e-5, atol=1e-5)


def test_bad_inputs_raise_with_names(cfg: ExperimentConfig) -> None:
    model = PGOcc(cfg.model, cfg.kernels).eval()
    with pytest.raises(ValueError, match="batch has 1 frames of 6 cameras but model.num_frames=2"):
        model(make_batch(T=1, D=cfg.model.ov_dims))
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims)
    with pytest.raises(ValueError, match="batch.features has D=7 channels but the model predicts 384"):
        PGOccLoss(cfg.model, cfg.loss, cfg.kernels)(model(batch), replace(batch, features=batch.features[:, :, :7]))
    with pytest.raises(ValueError, match=r"^PGOccLoss: the batch has no render images \(batch.render_gt is None\)"):
        PGOccLoss(cfg.model, cfg.loss, cfg.kernels)(model(batch), replace(batch, render_gt=None))
    # Data-dependent errors are deferred (pgocc.model.checks): they raise where the prediction is first read.
    with torch.no_grad():
        model.gaussian_heads[1][2].bias[4] = float("nan")
    with pytest.raises(ModelCheckError, match="non-finite values in gaussian head output of stage 1"):
        model(batch).checks.raise_if_failed()
    sky = replace(batch, depth=torch.zeros_like(batch.depth))
    with pytest.raises(ModelCheckError, match="fewer than 80 valid foundation-depth pixels"):
        PGOcc(cfg.model, cfg.kernels).eval()(sky).checks.raise_if_failed()


def default_size_batch(device: torch.device | str, seed: int = 0) -> Batch:
    """One sample at the released sizes: 8 frames × 6 cameras at 256 × 704, 180 × 320 renders, 512 × 27 × 48 maps."""
    return make_batch(T=8, D=512, h=27, w=48, H_in=256, W_in=704, H_r=180, W_r=320, seed=seed).to(device)


@pytest.mark.gpu
def test_default_size_train_step_with_triton_kernels(device: torch.device) -> None:
    cfg = base()
    model = PGOcc(cfg.model, cfg.kernels).to(device).train()
    batch = default_size_batch(device)
    pred = model(batch)
    assert [g.num for g in pred.stages] == [4000, 5000, 6000]
    out = PGOccLoss(cfg.model, cfg.loss, cfg.kernels)(pred, batch)
    terms = out.read_terms()                        # raises ModelCheckError naming a non-finite head output or term
    assert len(terms) == 15 and bool(torch.isfinite(out.total))
    out.total.backward()
    grad = model.layers[0].mixing.parameter_generator.weight.grad
    assert grad is not None and bool(torch.isfinite(grad).all())

