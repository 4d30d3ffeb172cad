"""The gs_raster reference against closed forms, and its autograd against finite differences (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from pgocc import ops
from reference.gs_raster import decision_margin, gs_raster, project

F64 = torch.float64
OP = "gs_raster"


def _head_on_camera(H: int, W: int, focal: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera at the origin looking down +z, principal point on the centre of pixel (W // 2, H // 2)."""
    viewmats = torch.eye(4, dtype=F64)[None]
    Ks = torch.tensor([[[focal, 0, W // 2 + 0.5], [0, focal, H // 2 + 0.5], [0, 0, 1]]], dtype=F64)
    return viewmats, Ks


def _gaussians(z: list[float], scale: list[float], opacity: list[float], feats: list[list[float]]) -> dict:
    """Isotropic Gaussians on the optical axis at depths z."""
    n = len(z)
    return {
        "means": torch.tensor([[0.0, 0.0, zi] for zi in z], dtype=F64),
        "quats": torch.tensor([[2.0, 0.0, 0.0, 0.0]] * n, dtype=F64),  # identity, unnormalised on purpose
        "scales": torch.tensor([[s, s, s] for s in scale], dtype=F64),
        "opacities": torch.tensor(opacity, dtype=F64),
        "features": torch.tensor(feats, dtype=F64),
    }


def _alpha_head_on(H: int, W: int, focal: float, z: float, scale: float, opacity: float) -> torch.Tensor:
    """[H, W] alpha of one isotropic Gaussian on the axis: variance (f s / z)^2 + 0.3 in pixels, skip below 1/255."""
    var = (focal * scale / z) ** 2 + 0.3
    v, u = torch.meshgrid(torch.arange(H, dtype=F64), torch.arange(W, dtype=F64), indexing="ij")
    r2 = (u - W // 2) ** 2 + (v - H // 2) ** 2
    alpha = torch.clamp(opacity * torch.exp(-0.5 * r2 / var), max=0.999)
    return torch.where(alpha >= 1 / 255, alpha, 0.0)


def test_one_gaussian_head_on() -> None:
    H, W, focal = 15, 21, 40.0
    g = _gaussians([5.0], [0.25], [0.8], [[2.0, -1.0]])
    feats, depth, alpha = gs_raster(**g, **dict(zip(("viewmats", "Ks"), _head_on_camera(H, W, focal), strict=True)),
                                    height=H, width=W, depth_only=False)
    want = _alpha_head_on(H, W, focal, 5.0, 0.25, 0.8)
    torch.testing.assert_close(alpha[0, ..., 0], want, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(feats[0], want[..., None] * torch.tensor([2.0, -1.0], dtype=F64), rtol=1e-12,
                               atol=1e-14)
    torch.testing.assert_close(depth[0, ..., 0], torch.where(want > 0, 5.0, 0.0).to(F64), rtol=1e-12, atol=1e-14)
    assert bool((want == 0).any()) and bool((want > 0).sum() > 20), "scene must have both covered and empty pixels"


def test_two_gaussians_composite_in_depth_order() -> None:
    H, W, focal = 13, 17, 30.0
    # Listed far first: the reference must sort by depth.
    g = _gaussians([9.0, 4.0], [0.6, 0.2], [0.7, 0.6], [[1.0, 5.0], [3.0, -2.0]])
    cams = dict(zip(("viewmats", "Ks"), _head_on_camera(H, W, focal), strict=True))
    feats, depth, alpha = gs_raster(**g, **cams, height=H, width=W, depth_only=False)
    a_near = _alpha_head_on(H, W, focal, 4.0, 0.2, 0.6)
    a_far = _alpha_head_on(H, W, focal, 9.0, 0.6, 0.7)
    w_near, w_far = a_near, (1 - a_near) * a_far
    want_alpha = w_near + w_far
    torch.testing.assert_close(alpha[0, ..., 0], want_alpha, rtol=1e-12, atol=1e-14)
    want_f = w_near[..., None] * torch.tensor([3.0, -2.0], dtype=F64) + w_far[..., None] * torch.tensor([1.0, 5.0],
                                                                                                       dtype=F64)
    torch.testing.assert_close(feats[0], want_f, rtol=1e-12, atol=1e-14)
    want_d = (w_near * 4.0 + w_far * 9.0) / want_alpha.clamp_min(1e-10)
    torch.testing.assert_close(depth[0, ..., 0], want_d, rtol=1e-12, atol=1e-14)
    _, _, alpha_d = gs_raster(**g, **cams, height=H, width=W, depth_only=True)
    torch.testing.assert_close(alpha_d, alpha, rtol=0, atol=0)


def test_transmittance_stop_excludes_the_stopping_gaussian() -> None:
    H, W, focal = 9, 9, 30.0
    # Three opaque Gaussians: at the centre alpha is 0.999 each. After the first T = 1e-3; the second would leave
    # 1e-6 <= 1e-4, so the pixel stops there and neither the second nor the third is composited.
    g = _gaussians([3.0, 5.0, 7.0], [0.3, 0.3, 0.3], [1.0, 1.0, 1.0], [[1.0], [10.0], [100.0]])
    feats, depth, alpha = gs_raster(**g, **dict(zip(("viewmats", "Ks"), _head_on_camera(H, W, focal), strict=True)),
                                    height=H, width=W, depth_only=False)
    c = (H // 2, W // 2)
    assert alpha[0, c[0], c[1], 0].item() == pytest.approx(0.999, abs=1e-15)
    assert feats[0, c[0], c[1], 0].item() == pytest.approx(0.999, abs=1e-15)
    assert depth[0, c[0], c[1], 0].item() == pytest.approx(3.0, abs=1e-12)


def test_alpha_skip_and_near_plane() -> None:
    H, W, focal = 9, 11, 30.0
    cams = dict(zip(("viewmats", "Ks"), _head_on_camera(H, W, focal), strict=True))
    below = _gaussians([3.0], [0.3], [0.0039], [[1.0]])  # o < 1/255: alpha < 1/255 everywhere, never composited
    assert float(gs_raster(**below, **cams, height=H, width=W, depth_only=False)[2].abs().max()) == 0.0
    above = _gaussians([3.0], [0.3], [0.0040], [[1.0]])  # o > 1/255: only pixels near the centre pass
    alpha = gs_raster(**above, **cams, height=H, width=W, depth_only=False)[2][0, ..., 0]
    torch.testing.assert_close(alpha, _alpha_head_on(H, W, focal, 3.0, 0.3, 0.0040), rtol=1e-12, atol=1e-15)
    assert 0 < int((alpha > 0).sum()) < alpha.numel()
    behind = _gaussians([0.009], [0.001], [0.9], [[1.0]])  # in front of the camera but before the near plane
    assert float(gs_raster(**behind, **cams, height=H, width=W, depth_only=False)[2].abs().max()) == 0.0
    after = _gaussians([0.011], [0.001], [0.9], [[1.0]])
    assert float(gs_raster(**after, **cams, height=H, width=W, depth_only=False)[2].max()) > 0.5


def test_jacobian_clamp_leaves_the_mean_alone() -> None:
    H, W, focal = 10, 20, 10.0
    viewmats, Ks = _head_on_camera(H, W, focal)
    # x/z = 3 is beyond the clamp limit (W - cx)/f + 0.15 W/f = 0.95 + 0.3 = 1.25.
    means = torch.tensor([[3.0, 0.0, 1.0]], dtype=F64)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]], dtype=F64)
    scales = torch.tensor([[0.1, 0.2, 0.3]], dtype=F64)
    mean2d, conic, depth = project(means, quats, scales, viewmats, Ks, H, W)
    assert mean2d[0, 0].tolist() == pytest.approx([focal * 3.0 + W // 2 + 0.5, H // 2 + 0.5])
    lim = (W - Ks[0, 0, 2].item()) / focal + 0.15 * W / focal
    jac = torch.tensor([[focal, 0.0, -focal * lim], [0.0, focal, 0.0]], dtype=F64)
    cov2d = jac @ torch.diag(scales[0] ** 2) @ jac.T + 0.3 * torch.eye(2, dtype=F64)
    torch.testing.assert_close(conic[0, 0], torch.linalg.inv(cov2d), rtol=1e-12, atol=1e-14)
    assert depth[0, 0].item() == 1.0


def _clear_scene(seed: int) -> dict:
    """A tiny random scene whose skip/stop/clamp decisions are all >= 1e-3 (log units) from their thresholds, so
    that finite differences never flip one."""
    case = ops.Case("v1_10x12_n3_c2", {"V": 1, "H": 10, "W": 12, "N": 3, "C": 2}, extra={"scene": "frustum"})
    for k in range(50):
        x = ops.contract(OP).make_inputs(case, dtype=F64, seed=seed + k)
        margin = decision_margin(**{n: v for n, v in x.items() if n not in ("features", "depth_only")})
        if float(margin.min()) > 1e-3 and float(gs_raster(**x)[2].amax()) > 0.3:
            return x
    raise AssertionError("no clear scene in 50 draws")


@pytest.mark.parametrize("depth_only", [False, True], ids=["features", "depth_only"])
def test_reference_gradcheck_fp64(seed: int, depth_only: bool) -> None:
    x = _clear_scene(seed)
    x["depth_only"] = depth_only
    names = ("means", "quats", "scales", "opacities") + (() if depth_only else ("features",))

    def fn(*leaves: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = gs_raster(**{**x, **dict(zip(names, leaves, strict=True))})
        return tuple(o for o in out if o.numel())

    leaves = tuple(x[n].clone().requires_grad_(True) for n in names)
    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-5, fast_mode=True)


def test_margin_flags_a_pixel_at_the_skip_threshold() -> None:
    H, W, focal = 9, 11, 30.0
    cams = dict(zip(("viewmats", "Ks"), _head_on_camera(H, W, focal), strict=True))
    # Opacity chosen so that the pixel one to the right of the centre sits exactly on alpha = 1/255.
    var = (focal * 0.3 / 3.0) ** 2 + 0.3
    g = _gaussians([3.0], [0.3], [math.exp(0.5 / var) / 255], [[1.0]])
    margin = decision_margin(**{k: v for k, v in g.items() if k != "features"}, **cams, height=H, width=W)
    assert margin[0, H // 2, W // 2 + 1].item() < 1e-9
    assert margin[0, H // 2, W // 2].item() > 1e-3
