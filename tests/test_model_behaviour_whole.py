"""The whole network against an independent path (issue 13 item 2): a very small PG-Occ whose forward is recomputed
here, step by step and in float64, from its parameters with plain tensor code written from docs/model.md §1-§3:
image normalisation, back-projection, farthest point sampling, the position encoding, the attention with its bias and
mask, the sampling (``grid_sample`` on a 5-D volume, the spec's equivalent of the MSMV kernel, instead of the
reference op's gathers), AdaptiveMixing, the FFN, the heads and the densification. Only the backbone + FPN (tested by
hand in test_model_backbone.py) and the densification render (the gs_raster op, tested against its float64 reference
and gsplat) are taken from the model.

Preconditions (data only, no implementation under test): every FPS choice and every densification decision must be
clear of rounding (the model runs in float32), else the draw is replaced (``draw_inputs``).
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from pgocc.data.batch import Batch
from pgocc.model import PGOcc
from pgocc.model.types import Gaussians
from tests.conftest import draw_inputs
from tests.test_model import make_batch, tiny_cfg

F64 = torch.float64
MEAN = torch.tensor([123.675, 116.28, 103.53], dtype=F64).view(3, 1, 1)
STD = torch.tensor([58.395, 57.12, 57.375], dtype=F64).view(3, 1, 1)
FPS_MARGIN = 1e-4
"""Relative gap required between the farthest and the second-farthest candidate at every FPS step."""
DENSIFY_MARGIN = 1e-3
"""|rendered − foundation − threshold| (m) required at every candidate pixel."""


def _cfg(fidelity: str):
    cfg = tiny_cfg()
    cfg.model = dataclasses.replace(
        cfg.model, fidelity=fidelity, num_queries=(10, 4, 4), embed_dims=16, num_heads=2, num_groups=2, num_points=2,
        num_mix_points=6, ffn_dims=24, head_dims=20, ov_dims=8, densify_threshold=0.3)
    return cfg


def _ln(x: torch.Tensor, dims: int, w: torch.Tensor | None = None, b: torch.Tensor | None = None) -> torch.Tensor:
    axes = tuple(range(-dims, 0))
    mu = x.mean(axes, keepdim=True)
    out = (x - mu) / torch.sqrt(((x - mu) ** 2).mean(axes, keepdim=True) + 1e-5)
    return out if w is None else out * w + b


def _lin(x: torch.Tensor, layer: torch.nn.Linear) -> torch.Tensor:
    return x @ layer.weight.double().T + layer.bias.double()


def _fps(points: torch.Tensor, k: int) -> tuple[list[int], float]:
    """Greedy farthest point sampling from index 0, ties to the lowest index; and the smallest relative gap between
    the chosen candidate and the runner-up."""
    best = torch.full((points.shape[0],), math.inf, dtype=F64)
    idx, chosen, margin = 0, [], math.inf
    for _ in range(k):
        chosen.append(idx)
        best = torch.minimum(best, ((points - points[idx]) ** 2).sum(-1))
        top = torch.topk(best, 2).values
        margin = min(margin, float((top[0] - top[1]) / top[0].clamp_min(1e-12)))
        idx = int(torch.argmax(best))
    return chosen, margin


def _rot(q: torch.Tensor) -> torch.Tensor:
    w, x, y, z = (q / q.norm(dim=-1, keepdim=True)).unbind(-1)
    return torch.stack([
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1)], -2)


def independent_forward(model: PGOcc, batch: Batch) -> tuple[list[dict[str, torch.Tensor]], float, float]:
    """Every stage's Gaussians of sample 0 in float64, the smallest FPS margin and the smallest densification
    margin."""
    cfg = model.cfg
    G, P, L, T, C = cfg.num_groups, cfg.num_points, cfg.num_levels, cfg.num_frames, cfg.embed_dims
    Cg, heads = C // G, cfg.num_heads
    N = batch.num_cams
    H_in, W_in = batch.images.shape[-2:]
    paper = cfg.fidelity == "paper"
    lo, hi = torch.tensor(cfg.pc_range[:3], dtype=F64), torch.tensor(cfg.pc_range[3:], dtype=F64)
    fps_margin, dens_margin = math.inf, math.inf

    # §1.2 BGR → RGB, ImageNet normalisation; backbone + FPN taken from the model
    x = (batch.images[0].flip(1).double() - MEAN) / STD
    with torch.no_grad():
        maps = [m.double() for m in model.neck(model.backbone(x.float()))]              # L × [T·N, C, H_l, W_l]

    # §1.5 query initialisation
    depth = batch.depth[0, :, 0].double().clamp(max=cfg.init_depth_max)                 # [N, H, W]
    Hr, Wr = depth.shape[-2:]
    v, u = torch.meshgrid(torch.arange(Hr, dtype=F64), torch.arange(Wr, dtype=F64), indexing="ij")
    K = batch.render_k[0].double()
    cam = torch.stack([(u - K[:, 0, 2, None, None]) / K[:, 0, 0, None, None] * depth,
                       (v - K[:, 1, 2, None, None]) / K[:, 1, 1, None, None] * depth, depth], -1)
    c2e = batch.cam2ego[0].double()
    ego = (torch.einsum("nij,nhwj->nhwi", c2e[:, :3, :3], cam) + c2e[:, None, None, :3, 3]).reshape(-1, 3)
    valid = ((depth > 0) & (depth < 80)).flatten()
    roi = ((ego > lo) & (ego < hi)).all(-1)
    cand0 = valid & roi if paper else valid
    pts0 = ego[cand0]
    chosen, m = _fps(pts0, sum(cfg.num_queries))
    fps_margin = min(fps_margin, m)
    init = pts0[chosen]
    positions = init[:cfg.num_queries[0]]
    candidates = valid & roi
    box = torch.cat([torch.full((n,), s, dtype=F64) for n, s in zip(cfg.num_queries, cfg.box_sizes, strict=True)])
    origin = torch.cat([torch.full((n,), float(i), dtype=F64) for i, n in enumerate(cfg.num_queries)])
    ego2img = batch.ego2img[0].double().view(T, N, 4, 4)

    stages: list[dict[str, torch.Tensor]] = []
    for s in range(len(cfg.num_queries)):
        Q = sum(cfg.num_queries[:s + 1])
        num_old = Q - cfg.num_queries[s] if s else 0
        if s:
            # §1.6 densification: the model's renderer (the gs_raster op) on this path's previous Gaussians
            prev = stages[-1]
            g32 = Gaussians(*(prev[k][None].float() for k in ("means", "quats", "scales", "opacities", "features")))
            with torch.no_grad():
                rendered = model.renderer.depth(g32, batch.cam2ego[:1], batch.render_k[:1], (Hr, Wr))[0].double()
            residual = (rendered - depth).flatten() - cfg.densify_threshold
            dens_margin = min(dens_margin, float(residual[candidates].abs().min()))
            candidates = candidates & (residual > 0)
            num = cfg.num_queries[s]
            if int(candidates.sum()) >= num:
                chosen, m = _fps(ego[candidates], num)
                fps_margin = min(fps_margin, m)
                new = ego[candidates][chosen]
            else:
                new = init[Q - num:Q]
            positions = torch.cat([positions, new])
        layer = model.layers[s]
        # §2.1 position encoding of the normalised centre
        pe = layer.pos_encoder
        h = _ln(_lin((positions - lo) / (hi - lo), pe[0]), 1, pe[1].weight.double(), pe[1].bias.double()).relu()
        h = _ln(_lin(h, pe[3]), 1, pe[4].weight.double(), pe[4].bias.double()).relu()
        q = model.query_embeds.weight[:Q].double() + h
        # §2.2 attention: packed in_proj (q, k, v), bias −τ_i‖c_i − c_j‖ (BEV), old queries do not see new ones
        att = layer.self_attn
        qkv = _lin(q, att.in_proj).view(Q, 3, heads, C // heads).permute(1, 2, 0, 3)
        tau = _lin(q, att.gen_tau).T                                                      # [heads, Q]
        dist = torch.cdist(positions[:, :2], positions[:, :2])
        logits = qkv[0] @ qkv[1].transpose(-1, -2) / math.sqrt(C // heads) - tau[:, :, None] * dist
        logits[:, :num_old, num_old:] = -math.inf
        attn = (logits.softmax(-1) @ qkv[2]).permute(1, 0, 2).reshape(Q, C)
        q = _ln(q + _lin(attn, att.out_proj), 1, layer.norm1.weight.double(), layer.norm1.bias.double())
        # §2.3 sampling: points, projection, first valid view, 4 levels by grid_sample on [C_g, N, H_l, W_l]
        smp = layer.sampling
        off = _lin(q, smp.sampling_offset).view(Q, G, P, 3)
        lw = _lin(q, smp.scale_weights).view(Q, G, P, L).softmax(-1)
        if cfg.switch("anisotropic_sampling") and s:
            rot = torch.cat([_rot(stages[-1]["quats"]), torch.eye(3, dtype=F64).expand(Q - num_old, 3, 3)])
            ext = torch.cat([stages[-1]["scales"], box[num_old:Q, None].expand(-1, 3)])
        else:
            rot, ext = torch.eye(3, dtype=F64).expand(Q, 3, 3), box[:Q, None].expand(-1, 3)
        pts = positions[:, None, None] + torch.einsum("qij,qgpj->qgpi", rot, ext[:, None, None] * off)
        sampled = torch.zeros(Q, G, T * P, Cg, dtype=F64)
        for t in range(T):
            hom = torch.cat([pts, torch.ones_like(pts[..., :1])], -1)
            proj = torch.einsum("nij,qgpj->nqgpi", ego2img[t], hom)                       # [N, Q, G, P, 4]
            z = proj[..., 2]
            zc = torch.where(z > 1e-5, z, torch.full_like(z, 1e-5))
            uu, vv = proj[..., 0] / zc / W_in, proj[..., 1] / zc / H_in
            ok = (z > 1e-5) & (uu > 0) & (uu < 1) & (vv > 0) & (vv < 1)
            view = torch.zeros(Q, G, P, dtype=torch.int64)
            for n in reversed(range(N)):
                view = torch.where(ok[n], n, view)
            us = uu.gather(0, view[None]).squeeze(0)
            vs = vv.gather(0, view[None]).squeeze(0)
            for g in range(G):
                g_w = (t * G + g) // T if cfg.switch("transposed_level_weights") else g
                grid = torch.stack([2 * us[:, g] - 1, 2 * vs[:, g] - 1, 2 * view[:, g].double() / (N - 1) - 1], -1)
                for lvl in range(L):
                    vol = maps[lvl][t * N:(t + 1) * N, g * Cg:(g + 1) * Cg].permute(1, 0, 2, 3)[None]
                    val = F.grid_sample(vol, grid.view(1, 1, 1, Q * P, 3), mode="bilinear", padding_mode="zeros",
                                        align_corners=True).view(Cg, Q, P).permute(1, 2, 0)
                    sampled[:, g, t * P:(t + 1) * P] += lw[:, g_w, :, lvl, None] * val
        # §2.4 AdaptiveMixing: per group M [C_g in, C_g out], then S [P_out, T·P]
        mix = layer.mixing
        Pout, TP = cfg.num_mix_points, T * P
        params = _lin(q, mix.parameter_generator).view(Q, G, Cg * Cg + Pout * TP)
        Mg = params[..., :Cg * Cg].reshape(Q, G, Cg, Cg)
        Sg = params[..., Cg * Cg:].reshape(Q, G, Pout, TP)
        y = _ln(sampled @ Mg, 2).relu()
        zz = _ln(Sg @ y, 2).relu()
        q = _ln(q + _lin(zz.reshape(Q, -1), mix.out_proj), 1, layer.norm2.weight.double(), layer.norm2.bias.double())
        # §2.5 FFN (its own residual), then norm3
        q = q + _lin(_lin(q, layer.ffn.fc1).relu(), layer.ffn.fc2)
        q = _ln(q, 1, layer.norm3.weight.double(), layer.norm3.bias.double())
        # §3 heads
        gh, ov = model.gaussian_heads[s], model.ov_heads[s]
        raw = _lin(_lin(q, gh[0]).relu(), gh[2])
        feats = _lin(_lin(_lin(q, ov[0]).relu(), ov[2]).relu(), ov[4])
        delta = (2 * torch.sigmoid(raw[:, 0:3]) - 1) * cfg.max_delta
        if cfg.switch("delta_scale_by_origin"):
            delta = delta * 0.5 ** origin[:Q, None]
        positions = positions + delta
        stages.append({"means": positions, "quats": raw[:, 3:7] / raw[:, 3:7].norm(dim=-1, keepdim=True),
                       "scales": cfg.max_scale * torch.sigmoid(raw[:, 7:10]), "opacities": torch.sigmoid(raw[:, 10]),
                       "features": feats})
    return stages, fps_margin, dens_margin


def _draw(fidelity: str, seed: int) -> tuple[PGOcc, Batch]:
    cfg = _cfg(fidelity)
    torch.manual_seed(seed)
    model = PGOcc(cfg.model, cfg.kernels).eval()
    with torch.no_grad():                            # no zero-initialised weight stays zero (query-independent)
        for name, p in model.named_parameters():
            if not name.startswith(("backbone", "neck")):
                p.add_(torch.randn_like(p) * 0.2)
    batch = make_batch(N=3, T=cfg.model.num_frames, D=cfg.model.ov_dims, seed=seed)
    # sky at 44-50 m instead of 60 m: clamped to 51.2 m every sky point would lie on one plane per camera, where FPS
    # meets exact distance ties (released mode draws from the sky too)
    g = torch.Generator().manual_seed(seed)
    sky = 44 + 6 * torch.rand(batch.depth.shape, generator=g)
    batch = dataclasses.replace(batch, depth=torch.where(batch.depth > 50, sky, batch.depth))
    return model, batch


@pytest.mark.parametrize("fidelity", ["paper", "released"])
def test_whole_model_matches_an_independent_float64_forward(fidelity: str, seed: int) -> None:
    def make(s: int):
        model, batch = _draw(fidelity, s)
        return model, batch, independent_forward(model, batch)

    def usable(inputs) -> str | None:
        _, _, (_, fps_margin, dens_margin) = inputs
        if fps_margin < FPS_MARGIN:
            return f"an FPS step within rounding of a tie (relative gap {fps_margin:.2g})"
        if dens_margin < DENSIFY_MARGIN:
            return f"a densification residual within {dens_margin:.2g} m of the threshold"
        return None

    model, batch, (want, _, _) = draw_inputs(make, usable, seed)
    pred = model(batch)
    pred.checks.raise_if_failed()
    for s, g in enumerate(pred.stages):
        for name in ("means", "quats", "scales", "opacities", "features"):
            torch.testing.assert_close(getattr(g, name)[0].detach().double(), want[s][name], rtol=1e-4, atol=1e-4,
                                       msg=lambda m, s=s, name=name: f"stage {s} {name}: {m}")


def test_positions_carry_their_gradient_through_the_stages(seed: int) -> None:
    """§1.6: positions are not detached. With the later stages' Gaussian heads made query-independent (last layer's
    weight 0, so their Δ is a constant), a coarse query's final mean is its initial point + Δ_0 + constants, and
    ∂ Σ_q means[q, j] / ∂ bias_0[j] = Σ_q 2σ'(r_qj)·max_delta, from stage 0's raw output r."""
    model, batch = _draw("paper", seed)
    with torch.no_grad():
        for s in (1, 2):
            model.gaussian_heads[s][2].weight.zero_()
    raw: list[torch.Tensor] = []
    model.gaussian_heads[0].register_forward_hook(lambda m, a, out: raw.append(out.detach().double()))
    pred = model(batch)
    Q0 = model.cfg.num_queries[0]
    bias = model.gaussian_heads[0][2].bias
    (grad,) = torch.autograd.grad(pred.final.means[:, :Q0].sum(), bias)
    sig = torch.sigmoid(raw[0][0, :, :3])
    want = (2 * sig * (1 - sig) * model.cfg.max_delta).sum(0)
    torch.testing.assert_close(grad[:3].double(), want, rtol=1e-4, atol=1e-6)
