"""The training objective's wiring and the photometric warp (docs/model.md §5), against values derived here: every
term of :class:`PGOccLoss` on a tiny scene whose render is fixed by hand, the total as the configured weighted sum
(one weight changed changes the total by exactly that term), and the warp of a general rigid motion (rotation,
translation, fx ≠ fy, off-centre principal point) onto a tilted plane reproducing the second view exactly.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from torch import nn

from pgocc.model import PGOccLoss, Prediction
from pgocc.model.checks import Checks
from pgocc.model.criterion import TERMS
from pgocc.model.losses import warp_image, warping_loss
from pgocc.model.types import Gaussians
from tests.test_model import make_batch, tiny_cfg

F64 = torch.float64
H, W, N, D, K = 4, 6, 2, 6, 2


class _FixedRender(nn.Module):
    """Stands in for the renderer: every pixel shows Gaussian 0's (projected) feature; the depth is the map that
    Gaussian 0's z coordinate selects from ``depths`` (one per stage)."""

    def __init__(self, depths: dict[float, torch.Tensor]) -> None:
        super().__init__()
        self.depths = depths

    def features_and_depth(self, g: Gaussians, features: torch.Tensor, cam2ego: torch.Tensor,
                           intrinsics: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        B = features.shape[0]
        image = features[:, 0].view(B, 1, 1, 1, -1).expand(B, N, *size, features.shape[-1])
        depth = torch.stack([self.depths[round(float(g.means[b, 0, 2]), 3)] for b in range(B)])
        return image, depth


def _scene() -> tuple:
    """Targets in the span of e0 (variance 9) and e1 (variance 1) plus an offset along e2 that the centring removes:
    the PCA-2 basis is ±e0, ±e1, whatever the sign convention."""
    cfg = tiny_cfg()
    mcfg = dataclasses.replace(cfg.model, ov_dims=D)
    loss_cfg = dataclasses.replace(cfg.loss, pca_dims=K, warp_weight=3.0, feat_mse_weight=5.0, feat_cos_weight=7.0,
                                   depth_silog_weight=11.0, depth_l1_weight=13.0, stage_weights=(1.0, 2.0, 0.5))
    batch = make_batch(N=N, T=mcfg.num_frames, D=D, h=H, w=W, H_r=H, W_r=W)
    a = torch.randn(N, H, W, dtype=F64)
    b = torch.randn(N, H, W, dtype=F64)
    feats = torch.zeros(1, N, D, H, W, dtype=F64)
    feats[0, :, 0], feats[0, :, 1], feats[0, :, 2] = 3 * (a - a.mean()), b - b.mean(), 4.0
    target_depth = torch.full((1, N, 1, H, W), 4.0)
    target_depth[0, 0, 0, 0, 0] = 60.0          # outside (0.1, 51.2): not in the depth losses
    target_depth[0, 1, 0, 2, 3] = 0.05          # idem
    source_valid = torch.ones(1, 2 * N, dtype=torch.bool)
    source_valid[0, N + 1] = False              # camera 1 has no next sweep: its next source is left out
    batch = dataclasses.replace(batch, features=feats.float(), depth=target_depth, source_valid=source_valid)
    stages, depths, f0 = [], {}, []
    for s, (z, d) in enumerate(((1.0, 2.0), (2.0, 5.0), (3.0, 3.5))):
        g_feat = torch.randn(1, 3, D)
        means = torch.zeros(1, 3, 3)
        means[0, 0, 2] = z
        stages.append(Gaussians(means, torch.tensor([1.0, 0, 0, 0]).expand(1, 3, 4), torch.ones(1, 3, 3),
                                torch.full((1, 3), 0.5), g_feat))
        depth = torch.full((1, N, H, W), d)
        depth[0, 1, 1, 1] = 100.0 if s == 0 else 0.01                  # clamped to 80 / 0.1 before the losses
        depths[z] = depth[0]
        f0.append(g_feat[0, 0].double())
    pred = Prediction(stages=stages, num_candidates=torch.zeros(1, 3, dtype=torch.int64), checks=Checks())
    return mcfg, loss_cfg, cfg.kernels, batch, pred, depths, f0, a - a.mean(), b - b.mean()


def _loss(mcfg, loss_cfg, kernels, depths) -> PGOccLoss:
    loss = PGOccLoss(mcfg, loss_cfg, kernels)
    loss.renderer = _FixedRender(depths)
    return loss


def test_every_term_by_hand_and_the_total_is_the_weighted_sum() -> None:
    mcfg, loss_cfg, kernels, batch, pred, depths, f0, a, b = _scene()
    torch.manual_seed(0)
    out = _loss(mcfg, loss_cfg, kernels, depths)(pred, batch)
    assert set(out.terms) == {f"{t}_{s}" for t in TERMS for s in range(3)}
    mask = (batch.depth[0, :, 0] > 0.1) & (batch.depth[0, :, 0] < 51.2)
    tgt = batch.depth[0, :, 0].double()[mask]
    for s in range(3):
        # features: the target is (±3a, ±b) per pixel, the render (±f0·e0, ±f0·e1) with the same signs
        p0, p1 = float(f0[s][0]), float(f0[s][1])
        mse = (((p0 - 3 * a) ** 2).mean() + ((p1 - b) ** 2).mean()) / 2
        cos = (p0 * 3 * a + p1 * b) / (math.hypot(p0, p1) * torch.sqrt(9 * a * a + b * b))
        assert float(out.terms[f"feat_mse_{s}"]) == pytest.approx(float(mse), rel=1e-5)
        assert float(out.terms[f"feat_cos_{s}"]) == pytest.approx(1 - float(cos.mean()), rel=1e-5, abs=1e-6)
        # depth: the render clamped to [0.1, 80], the unclamped target masked to (0.1, 51.2)
        rendered = depths[s + 1.0].double().clamp(0.1, 80.0)[mask]
        d = torch.log(rendered) - torch.log(tgt)
        silog = 10 * math.sqrt(float((d * d).mean() - 0.85 * d.mean() ** 2))
        assert float(out.terms[f"depth_silog_{s}"]) == pytest.approx(silog, rel=1e-5)
        assert float(out.terms[f"depth_l1_{s}"]) == pytest.approx(float((rendered - tgt).abs().mean()), rel=1e-5)
        # warp: the clamped render, the render intrinsics, both sources' transforms and validity (paper auto-mask)
        torch.manual_seed(1)
        warp = warping_loss(depths[s + 1.0].clamp(0.1, 80.0).unsqueeze(0), batch.render_gt, batch.render_k,
                            batch.t0_2_x_geo, per_source=False, source_valid=batch.source_valid)
        assert float(out.terms[f"warp_{s}"]) == pytest.approx(float(warp), abs=1e-4)
    weights = {"warp": 3.0, "feat_mse": 5.0, "feat_cos": 7.0, "depth_silog": 11.0, "depth_l1": 13.0}
    total = sum(sw * weights[t] * float(out.terms[f"{t}_{s}"]) for s, sw in enumerate((1.0, 2.0, 0.5)) for t in TERMS)
    assert float(out.total) == pytest.approx(total, rel=1e-6)


@pytest.mark.parametrize("term", TERMS)
def test_changing_one_weight_changes_the_total_by_exactly_that_term(term: str) -> None:
    mcfg, loss_cfg, kernels, batch, pred, depths, *_ = _scene()
    torch.manual_seed(0)
    before = _loss(mcfg, loss_cfg, kernels, depths)(pred, batch)
    changed = dataclasses.replace(loss_cfg, **{f"{term}_weight": getattr(loss_cfg, f"{term}_weight") + 1.5})
    torch.manual_seed(0)
    after = _loss(mcfg, changed, kernels, depths)(pred, batch)
    step = sum(sw * 1.5 * float(before.terms[f"{term}_{s}"]) for s, sw in enumerate(loss_cfg.stage_weights))
    ulps = 8 * torch.finfo(torch.float32).eps * float(before.total)             # the totals are float32 sums
    assert float(after.total - before.total) == pytest.approx(step, rel=1e-5, abs=ulps)
    staged = dataclasses.replace(loss_cfg, stage_weights=(1.0, 2.0, 1.5))
    torch.manual_seed(0)
    third = _loss(mcfg, staged, kernels, depths)(pred, batch)
    stage2 = sum(getattr(loss_cfg, f"{t}_weight") * float(before.terms[f"{t}_2"]) for t in TERMS)
    assert float(third.total - before.total) == pytest.approx(stage2, rel=1e-5, abs=ulps)


# ------------------------------------------------------------------------------------------------------------------
# The photometric warp (§5.1)

def _rotation(ax: float, ay: float, az: float) -> torch.Tensor:
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = torch.tensor([[1, 0, 0], [0, cx, -sx], [0, sx, cx]], dtype=F64)
    ry = torch.tensor([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]], dtype=F64)
    rz = torch.tensor([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]], dtype=F64)
    return rz @ ry @ rx


def test_warp_reproduces_the_second_view_of_a_tilted_plane_under_a_general_motion() -> None:
    """The source image is linear in its pixel coordinates (bilinear sampling is then exact), so the warped image
    at a target pixel must equal that linear function at the pixel where the plane point seen there projects into
    the source camera, computed here in float64; the unwarped source (a zero warp) is far from it."""
    Hh, Ww = 18, 26
    fx, fy, cx, cy = 30.0, 24.0, 11.3, 9.6
    Kt = torch.tensor([[fx, 0, cx], [0, fy, cy], [0, 0, 1]], dtype=F64)
    R, t = _rotation(0.03, -0.05, 0.04), torch.tensor([0.25, -0.1, 0.3], dtype=F64)
    T = torch.eye(4, dtype=F64)
    T[:3, :3], T[:3, 3] = R, t
    n, dist = torch.tensor([0.1, -0.35, -1.0], dtype=F64), -5.0            # plane n·X = d in the target camera
    coeff = torch.tensor([[0.031, -0.012, 0.2], [-0.017, 0.04, 0.5], [0.009, 0.021, 0.1]], dtype=F64)
    vs, us = torch.meshgrid(torch.arange(Hh, dtype=F64), torch.arange(Ww, dtype=F64), indexing="ij")
    source = (coeff[:, 0, None, None] * us + coeff[:, 1, None, None] * vs + coeff[:, 2, None, None])  # [3, H, W]
    depth = torch.empty(Hh, Ww, dtype=F64)
    expected = torch.empty(3, Hh, Ww, dtype=F64)
    inside = torch.zeros(Hh, Ww, dtype=torch.bool)
    for v in range(Hh):
        for u in range(Ww):
            ray = torch.tensor([(u - cx) / fx, (v - cy) / fy, 1.0], dtype=F64)
            z = dist / float(n @ ray)
            depth[v, u] = z
            p = R @ (z * ray) + t
            # §5.1: project with K, then divide by z + 1e-7
            su, sv = (fx * p[0] + cx * p[2]) / (p[2] + 1e-7), (fy * p[1] + cy * p[2]) / (p[2] + 1e-7)
            expected[:, v, u] = coeff[:, 0] * su + coeff[:, 1] * sv + coeff[:, 2]
            inside[v, u] = bool(0 <= su <= Ww - 1 and 0 <= sv <= Hh - 1)
    assert float(inside.double().mean()) > 0.6 and bool((depth > 3).all())
    warped = warp_image(source[None], depth[None], Kt[None], T[None])[0]
    torch.testing.assert_close(warped[:, inside], expected[:, inside], rtol=0, atol=1e-9)
    assert float((source - expected)[:, inside].abs().mean()) > 0.01       # the identity: 10⁷ × the tolerance
    # the inverse motion (a warp applied the wrong way round) is far off as well
    wrong = warp_image(source[None], depth[None], Kt[None], torch.linalg.inv(T)[None])[0]
    assert float((wrong - expected)[:, inside].abs().mean()) > 0.01
