"""The progressive stages' glue (docs/model.md §1.5, §1.6, §2): densification on a scene whose rendered depth is set by
hand, and what one forward hands to each decoder layer (normalised centres to the position encoder, BEV metres and
the old-query count to the attention) and how it moves the Gaussians (Δ scaled by the stage that added the query).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from pgocc.model import PGOcc
from pgocc.model.pgocc import Candidates, Fallbacks
from reference.fps import fps as reference_fps
from tests.test_model import make_batch, tiny_cfg

THRESHOLD = 0.3
"""A non-default densification threshold (the default is 0.2), so a hard-coded constant shows."""


class _FixedDepth(nn.Module):
    """Stands in for the renderer: the 'rendered' expected depth is whatever the test set."""

    def __init__(self, rendered: torch.Tensor) -> None:
        super().__init__()
        self.rendered = rendered

    def depth(self, g: object, cam2ego: torch.Tensor, intrinsics: torch.Tensor, size: tuple[int, int]
              ) -> torch.Tensor:
        assert tuple(self.rendered.shape[-2:]) == tuple(size)
        return self.rendered


def _ego_points(depth: torch.Tensor, K: torch.Tensor, cam2ego: torch.Tensor) -> torch.Tensor:
    """[B, N·H·W, 3] in float64, written out: X_cam = D · K⁻¹ [u, v, 1] at integer pixels, X_ego = R X_cam + t."""
    B, N, H, W = depth.shape
    out = torch.empty(B, N, H, W, 3, dtype=torch.float64)
    for b in range(B):
        for n in range(N):
            k = K[b, n].double()
            fx, fy, cx, cy = k[0, 0], k[1, 1], k[0, 2], k[1, 2]
            for v in range(H):
                for u in range(W):
                    d = depth[b, n, v, u].double()
                    cam = torch.stack([(u - cx) / fx * d, (v - cy) / fy * d, d])
                    out[b, n, v, u] = cam2ego[b, n, :3, :3].double() @ cam + cam2ego[b, n, :3, 3].double()
    return out.flatten(1, 3)


def test_densification_adds_gaussians_exactly_where_the_render_lies_behind_the_foundation_depth() -> None:
    cfg = tiny_cfg()
    mcfg = dataclasses.replace(cfg.model, densify_threshold=THRESHOLD)
    model = PGOcc(mcfg, cfg.kernels).eval()
    batch = make_batch(B=2, T=mcfg.num_frames, D=mcfg.ov_dims)
    depth = batch.depth[:, :, 0].clamp(max=mcfg.init_depth_max)                     # [B, N, H, W]
    B, N, H, W = depth.shape
    M = N * H * W
    ego = _ego_points(depth, batch.render_k, batch.cam2ego).float()
    num = mcfg.num_queries[2]                                                      # densify stage 2: 16 new
    g = torch.Generator().manual_seed(3)
    # residual (rendered − foundation) per pixel: in front (−1), behind but under the threshold (0.25), behind by
    # more (0.35, the only ones selected), and uncovered (rendered 0); plus pixels an earlier stage excluded
    perm = [torch.randperm(M, generator=g) for _ in range(B)]
    chosen = [perm[0][:num], perm[1][:num - 6]]                   # sample 1 has too few: it takes its fallbacks
    excluded = [p[num:num + 20] for p in perm]
    residual = torch.full((B, M), -1.0)
    for b in range(B):
        residual[b, perm[b][num + 20:num + 120]] = 0.25
        residual[b, chosen[b]] = 0.35
        residual[b, excluded[b]] = 5.0
    rendered = (depth.flatten(1) + residual).view(B, N, H, W)
    uncovered = perm[0][num + 120:num + 200]
    rendered.view(B, M)[0, uncovered] = 0.0
    candidates = torch.ones(B, M, dtype=torch.bool)
    for b in range(B):
        candidates[b, excluded[b]] = False
    model.renderer = _FixedDepth(rendered)
    # the stage-0 candidates: the first 200 and 150 of some random points, with their first Q_0 FPS picks (the
    # fallbacks are the rest of that FPS ordering)
    stage0 = Candidates(torch.randn(B, 240, 3), torch.tensor([200, 150]))
    total = sum(mcfg.num_queries)
    coarse = reference_fps(stage0.points, stage0.count, mcfg.num_queries[0])
    fallbacks = Fallbacks(model._fps, stage0, coarse, total)
    new, count, narrowed = model._densify(None, batch, depth, ego, candidates, 2, fallbacks)  # type: ignore[arg-type]

    assert count.tolist() == [num, num - 6]
    expected_mask = torch.zeros(B, M, dtype=torch.bool)
    for b in range(B):
        expected_mask[b, chosen[b]] = True
    assert torch.equal(narrowed, expected_mask)
    # sample 0: the 16 new centres are exactly the chosen pixels' ego points (FPS of 16 among 16: each once)
    dist = torch.cdist(new[0].double(), ego[0, chosen[0]].double())              # [16 new, 16 chosen]
    assert bool((dist.amin(1) < 1e-4).all()) and bool((dist.amin(0) < 1e-4).all())
    # sample 1: fewer than 16 candidates, so rows Q_0 + Q_1 .. + 16 of its stage-0 FPS ordering (§1.6)
    start = mcfg.num_queries[0] + mcfg.num_queries[1]
    order = reference_fps(stage0.points[1:, :150], torch.tensor([150]), start + num)[0]
    assert torch.equal(new[1], stage0.points[1, order[start:]])


def test_forward_feeds_normalised_centres_to_the_position_encoder_and_bev_metres_to_the_attention() -> None:
    cfg = tiny_cfg()
    model = PGOcc(cfg.model, cfg.kernels).eval()
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims)
    seen: dict[str, tuple] = {}

    def keep(name: str):
        def hook(module: nn.Module, args: tuple, *rest: object) -> None:
            seen[name] = tuple(a.detach().clone() if isinstance(a, torch.Tensor) else a for a in args)
        return hook

    model.layers[1].pos_encoder.register_forward_pre_hook(keep("pe1"))
    model.layers[1].self_attn.register_forward_pre_hook(keep("attn1"))
    model.layers[2].self_attn.register_forward_pre_hook(keep("attn2"))
    model.layers[0].self_attn.register_forward_pre_hook(keep("attn0"))
    model.layers[1].sampling.register_forward_pre_hook(keep("sampling1"))
    model.gaussian_heads[1].register_forward_hook(lambda m, a, out: seen.__setitem__("raw1", out.detach().clone()))
    with torch.no_grad():
        pred = model(batch)
    Q0, Q1 = cfg.model.num_queries[:2]
    means0, means1 = pred.stages[0].means, pred.stages[1].means
    x0, y0, z0, x1, y1, z1 = cfg.model.pc_range
    lo, span = torch.tensor([x0, y0, z0]), torch.tensor([x1 - x0, y1 - y0, z1 - z0])
    # stage 1's input positions: stage 0's Gaussians, then the new centres (read from the sampling's centres)
    centres1 = seen["sampling1"][1]
    assert torch.equal(centres1[:, :Q0], means0)
    torch.testing.assert_close(seen["pe1"][0], (centres1 - lo) / span, rtol=0, atol=1e-6)
    # the attention gets the BEV (x, y) centres in metres and the count of queries of earlier stages
    torch.testing.assert_close(seen["attn1"][1], centres1[..., :2], rtol=0, atol=0)
    assert seen["attn0"][2] == 0 and seen["attn1"][2] == Q0 and seen["attn2"][2] == Q0 + Q1
    # Δ: (2σ(r) − 1)·max_delta, × 1 for the coarse queries and × ½ for the ones stage 1 added (paper)
    raw = seen["raw1"]
    delta = (2 / (1 + torch.exp(-raw[..., :3])) - 1) * cfg.model.max_delta
    scale = torch.cat([torch.ones(Q0), torch.full((Q1,), 0.5)]).view(1, -1, 1)
    torch.testing.assert_close(means1, centres1 + delta * scale, rtol=0, atol=1e-6)


def test_fallbacks_are_the_stage0_ordering_computed_once_per_sample() -> None:
    """Rows Q_0 … of the stage-0 FPS ordering, continued from the coarse picks only for the samples that need them
    and only once: stage 1 needs them for sample 0, stage 2 for both (sample 0's are reused)."""
    g = torch.Generator().manual_seed(5)
    stage0 = Candidates(torch.randn(2, 300, 3, generator=g), torch.tensor([300, 260]))
    full = reference_fps(stage0.points, stage0.count, 36)                 # Q = 20 / 8 / 8
    active_rows = []

    def fps(points: torch.Tensor, lengths: torch.Tensor, k: int, active: torch.Tensor | None = None,
            prefix: torch.Tensor | None = None) -> torch.Tensor:
        active_rows.append(active.tolist())
        return reference_fps(points, lengths, k, active, prefix)

    fallbacks = Fallbacks(fps, stage0, full[:, :20], 36)
    first = fallbacks.rows(torch.tensor([True, False]), 20, 8)
    assert torch.equal(first[0], stage0.points[0, full[0, 20:28]])
    second = fallbacks.rows(torch.tensor([True, True]), 28, 8)
    for b in range(2):
        assert torch.equal(second[b], stage0.points[b, full[b, 28:36]])
    assert active_rows == [[True, False], [False, True]]
