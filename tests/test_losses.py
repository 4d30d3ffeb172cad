"""The §5 loss terms against hand-computed values on tiny inputs."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from pgocc.model.losses import (
    IDENTITY_NOISE,
    depth_losses,
    feature_losses,
    pca_basis,
    photometric_error,
    project_targets,
    ssim_error,
    warp_image,
    warping_loss,
)


def test_ssim_error_of_constant_images_matches_the_closed_form() -> None:
    a = torch.full((1, 3, 4, 5), 0.2, dtype=torch.float64)
    b = torch.full((1, 3, 4, 5), 0.6, dtype=torch.float64)
    c1, c2 = 0.01**2, 0.03**2
    # constant images: zero variances and covariance, so SSIM = (2 μa μb + C1) C2 / ((μa² + μb² + C1) C2)
    ssim = (2 * 0.2 * 0.6 + c1) * c2 / ((0.2**2 + 0.6**2 + c1) * c2)
    assert torch.allclose(ssim_error(a, b), torch.full_like(a, (1 - ssim) / 2), rtol=1e-12)
    pe = photometric_error(a, b)
    assert pe.shape == (1, 4, 5)
    assert torch.allclose(pe, torch.full_like(pe, 0.85 * (1 - ssim) / 2 + 0.15 * 0.4), rtol=1e-12)
    assert float(photometric_error(a, a).abs().max()) == 0.0


def test_ssim_error_uses_reflection_padded_3x3_means() -> None:
    a = torch.rand(2, 1, 3, 4, dtype=torch.float64)
    b = torch.rand(2, 1, 3, 4, dtype=torch.float64)
    pa, pb = F.pad(a, (1, 1, 1, 1), mode="reflect"), F.pad(b, (1, 1, 1, 1), mode="reflect")
    i, j = 1, 0                                     # one output pixel, by the definition
    wa, wb = pa[:, 0, i:i + 3, j:j + 3].flatten(1), pb[:, 0, i:i + 3, j:j + 3].flatten(1)
    ma, mb = wa.mean(1), wb.mean(1)
    va, vb = (wa * wa).mean(1) - ma**2, (wb * wb).mean(1) - mb**2
    cov = (wa * wb).mean(1) - ma * mb
    ssim = (2 * ma * mb + 1e-4) * (2 * cov + 9e-4) / ((ma**2 + mb**2 + 1e-4) * (va + vb + 9e-4))
    assert torch.allclose(ssim_error(a, b)[:, 0, i, j], ((1 - ssim) / 2).clamp(0, 1), rtol=1e-10)


def _plane_scene(shift_px: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fronto-parallel plane at 4 m seen by a camera whose source view is moved 0.5 m to the right: the source
    image is the target shifted by ``fx · 0.5 / 4`` = ``shift_px`` pixels. Returns (target, source, K, T)."""
    H, W, Z = 12, 16, 4.0
    fx = shift_px * Z / 0.5
    K = torch.tensor([[fx, 0, 7.5], [0, fx, 5.5], [0, 0, 1]], dtype=torch.float64)
    T = torch.eye(4, dtype=torch.float64)
    T[0, 3] = -0.5                                   # target camera → source camera: x_s = x_t − 0.5
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W + shift_px, dtype=torch.float64),
                          indexing="ij")
    texture = torch.stack([0.5 + 0.4 * torch.sin(0.9 * u + 0.4 * v), 0.5 + 0.4 * torch.cos(0.7 * u - 0.5 * v),
                           0.5 + 0.3 * torch.sin(0.3 * u * v / 4)])           # [3, H, W + shift]
    target = texture[:, :, :W]
    source = texture[:, :, shift_px:]                                          # s(u) = f(u + shift)
    return target, source, K, T


def test_warp_image_with_the_true_depth_reproduces_the_target() -> None:
    target, source, K, T = _plane_scene(shift_px=2)
    warped = warp_image(source[None], torch.full((1, 12, 16), 4.0, dtype=torch.float64), K[None], T[None])
    # u_s = u_t − 2: exact for u_t >= 2; the first two columns clamp to the source border
    assert torch.allclose(warped[0, :, :, 2:], target[:, :, 2:], atol=1e-9)
    assert torch.allclose(warped[0, :, :, :2], source[:, :, :1].expand(-1, -1, 2), atol=1e-9)


def _warping_batch(depth_value: float, static: bool = False) -> dict:
    target, source, K, T = _plane_scene(shift_px=2)
    if static:
        source, T = target, torch.eye(4, dtype=torch.float64)
    N = 1
    images = torch.stack([target, source, source]).permute(0, 2, 3, 1)          # [3N, H, W, 3], prev = next
    images = (images * 255).round().to(torch.uint8).unsqueeze(0)
    return {"depth": torch.full((1, N, 12, 16), depth_value, dtype=torch.float64), "images": images,
            "intrinsics": K.view(1, 1, 3, 3), "cur_to_src": T.expand(1, 2, 4, 4).contiguous()}


@pytest.mark.parametrize("per_source", [True, False])
def test_warping_loss_is_zero_for_a_static_scene(per_source: bool) -> None:
    loss = warping_loss(**_warping_batch(4.0, static=True), per_source=per_source)
    assert abs(float(loss)) < 5 * IDENTITY_NOISE


@pytest.mark.parametrize("per_source", [True, False])
def test_warping_loss_is_small_for_the_true_depth_and_larger_for_a_wrong_one(per_source: bool) -> None:
    right = float(warping_loss(**_warping_batch(4.0), per_source=per_source))
    # with the true depth only the two border columns (and their SSIM neighbours) and uint8 rounding remain:
    # ~3 of 16 columns at an error of ~0.3
    assert right < 0.06
    for wrong_depth in (2.0, 3.0, 5.0, 8.0):
        assert float(warping_loss(**_warping_batch(wrong_depth), per_source=per_source)) > 1.5 * right


def test_warping_automask_per_source_versus_joint_minimum() -> None:
    """Prev source perfect after warping, next source perfect without warping: the joint minimum is ~0 everywhere,
    the per-source mean keeps half of each source's error."""
    target, source, K, T = _plane_scene(shift_px=2)
    images = torch.stack([target, source, target]).permute(0, 2, 3, 1)
    images = (images * 255).round().to(torch.uint8).unsqueeze(0)
    depth = torch.full((1, 1, 12, 16), 4.0, dtype=torch.float64)
    cur_to_src = torch.stack([T, torch.eye(4, dtype=torch.float64)]).unsqueeze(0)
    kw = {"depth": depth, "images": images, "intrinsics": K.view(1, 1, 3, 3), "cur_to_src": cur_to_src}
    joint = float(warping_loss(**kw, per_source=False))
    per_source = float(warping_loss(**kw, per_source=True))
    warped_prev = warp_image(images[:, 1].permute(0, 3, 1, 2).double() / 255, depth[:, 0], K[None], T[None])
    cur = images[:, 0].permute(0, 3, 1, 2).double() / 255
    prev = images[:, 1].permute(0, 3, 1, 2).double() / 255
    expected = 0.5 * torch.minimum(photometric_error(warped_prev, cur), photometric_error(prev, cur)).mean()
    assert joint < 5 * IDENTITY_NOISE
    assert per_source == pytest.approx(float(expected), abs=5 * IDENTITY_NOISE)
    assert per_source > 0.01


def test_feature_losses_by_hand() -> None:
    pred = torch.tensor([[1.0, 0.0], [0.0, 0.0], [3.0, 4.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    mse, cos = feature_losses(pred, target)
    assert float(mse) == pytest.approx((0 + 1 + 4 + 0 + 9 + 16) / 6)
    # pixels 1 (zero prediction) and 2 (zero target) are skipped; pixel 0 has cosine 1/√2
    assert float(cos) == pytest.approx(1 - 1 / math.sqrt(2))
    _, cos_none = feature_losses(torch.zeros(2, 3), torch.ones(2, 3))
    assert float(cos_none) == 1.0


def test_feature_cosine_gradient_is_finite_at_uncovered_pixels() -> None:
    pred = torch.tensor([[0.0, 0.0], [1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    _, cos = feature_losses(pred, torch.tensor([[1.0, 0.0], [2.0, 1.0]], dtype=torch.float64))
    cos.backward()
    assert bool(torch.isfinite(pred.grad).all()) and float(pred.grad[0].abs().sum()) == 0.0


def test_depth_losses_by_hand() -> None:
    pred = torch.tensor([[2.0, 4.0, 7.0, 9.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 4.0, 0.0, 60.0]], dtype=torch.float64)          # last two outside (0.1, 51.2)
    silog, l1 = depth_losses(pred, target)
    d = torch.tensor([math.log(2.0), 0.0], dtype=torch.float64)
    expected = 10 * math.sqrt(float((d**2).mean() - 0.85 * d.mean() ** 2))
    assert float(silog) == pytest.approx(expected, rel=1e-12)
    assert float(l1) == pytest.approx(0.5, rel=1e-12)


def test_depth_losses_average_per_sample() -> None:
    pred = torch.tensor([[2.0, 2.0], [3.0, 1.0]], dtype=torch.float64)
    target = torch.tensor([[1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)         # sample 0 has one valid pixel
    _, l1 = depth_losses(pred, target)
    assert float(l1) == pytest.approx((1.0 + 1.0) / 2)


def _features_with_known_axes(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    D, k = 12, 3
    axes = torch.linalg.qr(torch.randn(D, D, generator=g, dtype=torch.float64))[0]
    coeff = torch.randn(2 * 4 * 5 * 6, D, generator=g, dtype=torch.float64) * torch.logspace(1, -2, D,
                                                                                             dtype=torch.float64)
    x = coeff @ axes.T + 3.0                                                   # an offset the PCA must centre away
    return x.view(1, 2, 4, 5, 6, D).permute(0, 1, 5, 2, 3, 4)[:, :, :, 0], axes[:, :k]


@pytest.mark.parametrize("randomized", [False, True])
def test_pca_basis_spans_the_leading_axes(randomized: bool) -> None:
    feats, axes = _features_with_known_axes(0)                                 # [1, 2, 12, 4, 5]
    basis = pca_basis(feats.float(), 3, randomized=randomized)
    assert basis.shape == (1, 12, 3) and basis.dtype == torch.float64
    assert torch.allclose(basis[0].T @ basis[0], torch.eye(3, dtype=torch.float64), atol=1e-10)
    # the same subspace: the projection matrices agree
    assert torch.allclose(basis[0] @ basis[0].T, axes @ axes.T, atol=0.05)


def test_project_targets_is_an_uncentred_projection_then_bilinear_upsampling() -> None:
    feats = torch.randn(1, 2, 4, 3, 5, dtype=torch.float64)
    basis = torch.linalg.qr(torch.randn(1, 4, 2, dtype=torch.float64))[0]
    out = project_targets(feats, basis, (6, 10))
    assert out.shape == (1, 2, 6, 10, 2)
    direct = torch.einsum("ndhw,dk->nkhw", feats[0], basis[0])
    up = F.interpolate(direct, size=(6, 10), mode="bilinear", align_corners=False)
    assert torch.allclose(out[0], up.permute(0, 2, 3, 1), atol=1e-12)


@pytest.mark.parametrize("per_source", [True, False])
def test_warping_loss_leaves_out_a_missing_source(per_source: bool) -> None:
    """A scene's first keyframe: the loader puts the current image and the identity in place of the missing previous
    sweep. Kept, its identity error (≈ 0) would zero the joint minimum everywhere; left out, the loss is what the next
    source alone gives, computed here by hand from the warped next view."""
    target, source, K, T = _plane_scene(shift_px=2)
    images = torch.stack([target, target, source]).permute(0, 2, 3, 1)      # prev: the duplicate, next: real
    images = (images * 255).round().to(torch.uint8).unsqueeze(0)
    depth = torch.full((1, 1, 12, 16), 3.0, dtype=torch.float64)               # a wrong depth: the warp errs
    cur_to_src = torch.stack([torch.eye(4, dtype=torch.float64), T]).unsqueeze(0)
    kw = {"depth": depth, "images": images, "intrinsics": K.view(1, 1, 3, 3), "cur_to_src": cur_to_src}
    valid = torch.tensor([[False, True]])
    cur = images[:, 0].permute(0, 3, 1, 2).double() / 255
    nxt = images[:, 2].permute(0, 3, 1, 2).double() / 255
    warped = warp_image(nxt, depth[:, 0], K[None], T[None])
    expected = torch.minimum(photometric_error(warped, cur), photometric_error(nxt, cur)).mean()
    assert float(expected) > 0.02
    loss = float(warping_loss(**kw, per_source=per_source, source_valid=valid))
    assert loss == pytest.approx(float(expected), abs=5 * IDENTITY_NOISE)
    # the duplicate kept (no mask): the joint minimum collapses to the identity noise, the per-source mean halves
    kept = float(warping_loss(**kw, per_source=per_source))
    assert kept == pytest.approx(0.0 if not per_source else float(expected) / 2, abs=5 * IDENTITY_NOISE)
    # no source at all: nothing to compare, the term is 0
    none = warping_loss(**kw, per_source=per_source, source_valid=torch.zeros(1, 2, dtype=torch.bool))
    assert float(none) == 0.0


def _constant_warping_batch(cur: int, prev: int, nxt: int, H: int = 5, W: int = 6) -> dict:
    """One camera whose three images are each a single uint8 grey level. Warping a constant image gives the same
    constant whatever the depth and motion, so each source's warped error equals its identity error (a tie)."""
    images = torch.tensor([cur, prev, nxt], dtype=torch.uint8).view(1, 3, 1, 1, 1).expand(1, 3, H, W, 3)
    K = torch.tensor([[4.0, 0, (W - 1) / 2], [0, 4.0, (H - 1) / 2], [0, 0, 1]], dtype=torch.float64)
    T = torch.eye(4, dtype=torch.float64)
    T[0, 3] = 0.3
    return {"depth": torch.full((1, 1, H, W), 2.0, dtype=torch.float64), "images": images.contiguous(),
            "intrinsics": K.view(1, 1, 3, 3), "cur_to_src": T.expand(1, 2, 4, 4).contiguous()}


def _constant_photometric_error(a: float, b: float) -> float:
    """Closed form for two constant images: zero variances, SSIM = (2ab + C1) / (a² + b² + C1)."""
    return 0.85 * (a - b) ** 2 / (2 * (a * a + b * b + 0.01**2)) + 0.15 * abs(a - b)


@pytest.mark.parametrize("per_source", [True, False])
def test_identity_noise_breaks_exact_ties_with_std_1e_minus_5(per_source: bool) -> None:
    """On an exact tie the identity error + N(0, 1e-5²) noise wins where the noise is negative: each pixel gets
    e + 1e-5 · min(0, z) (per source) or e + 1e-5 · min(0, z_prev, z_next) (joint). The draws are redone here: one
    ``randn`` of both sources' [2, B·N, H, W] errors, previous first."""
    e = _constant_photometric_error(51 / 255, 204 / 255)
    rng = torch.get_rng_state()
    loss = float(warping_loss(**_constant_warping_batch(51, 204, 204), per_source=per_source))
    torch.set_rng_state(rng)
    z_prev, z_next = torch.randn(2, 1, 5, 6, dtype=torch.float64)
    zero = torch.zeros_like(z_prev)
    if per_source:
        expected = e + 1e-5 * float((torch.minimum(zero, z_prev) + torch.minimum(zero, z_next)).mean() / 2)
    else:
        expected = e + 1e-5 * float(torch.minimum(zero, torch.minimum(z_prev, z_next)).mean())
    assert float(torch.minimum(zero, z_prev).sum()) < 0                     # some noise is negative: a visible term
    assert loss == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("per_source", [True, False])
def test_warping_loss_leaves_out_a_missing_next_source(per_source: bool) -> None:
    """A scene's last keyframe: only the previous sweep exists (the next is a duplicate of the current image). The
    loss is the previous source's closed-form constant-image error, not 0 and not halved."""
    kw = _constant_warping_batch(51, 204, 51)
    e = _constant_photometric_error(51 / 255, 204 / 255)
    loss = float(warping_loss(**kw, per_source=per_source, source_valid=torch.tensor([[True, False]])))
    assert loss == pytest.approx(e, abs=5 * IDENTITY_NOISE)
    assert e > 0.2


def _rotated_camera_batch() -> tuple[dict, torch.Tensor]:
    """B = 2 samples × N = 2 cameras, each camera with its own texture and focal length. Cameras (0, 0) and (1, 1)
    see sources that did not move (identity, source = target); cameras (0, 1) and (1, 0) see sources rotated by 180°
    about the optical axis: with the principal point at the image centre, pixel (u, v) maps to (W−1−u, H−1−v)
    exactly, so the source is the target flipped on both axes and the true warp reproduces the target."""
    B, N, H, W = 2, 2, 6, 8
    v, u = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64), indexing="ij")
    flip = torch.diag(torch.tensor([-1.0, -1.0, 1.0, 1.0], dtype=torch.float64))
    images = torch.zeros(B, 3 * N, H, W, 3, dtype=torch.uint8)
    cur_to_src = torch.zeros(B, 2 * N, 4, 4, dtype=torch.float64)
    intrinsics = torch.zeros(B, N, 3, 3, dtype=torch.float64)
    for b in range(B):
        for n in range(N):
            c = 2 * b + n
            tex = torch.stack([0.5 + 0.4 * torch.sin((0.9 + 0.2 * c) * u + 0.4 * v + c),
                               0.5 + 0.4 * torch.cos(0.7 * u - (0.5 + 0.1 * c) * v),
                               0.5 + 0.3 * torch.sin(0.3 * u * v / 4 + c)], -1)             # [H, W, 3]
            tgt = (tex * 255).round().to(torch.uint8)
            rotated = b != n
            src = tgt.flip(0, 1) if rotated else tgt
            images[b, n], images[b, N + n], images[b, 2 * N + n] = tgt, src, src
            cur_to_src[b, n] = cur_to_src[b, N + n] = flip if rotated else torch.eye(4, dtype=torch.float64)
            intrinsics[b, n] = torch.tensor([[3.0 + c, 0, (W - 1) / 2], [0, 3.0 + c, (H - 1) / 2], [0, 0, 1]])
    depth = torch.full((B, N, H, W), 5.0, dtype=torch.float64)
    return {"depth": depth, "images": images, "intrinsics": intrinsics, "cur_to_src": cur_to_src}, images


@pytest.mark.parametrize("per_source", [True, False])
def test_warping_loss_warps_every_sample_and_camera_with_its_own_motion(per_source: bool) -> None:
    """Several samples × several cameras: each (sample, camera) pair is warped with its own transform and K, so
    the true motions give a loss of ~0 (a few 1e-8 from PROJ_EPS, plus the identity noise where source = target);
    the rotated cameras warped with the identity instead would be off by their flipped images' error."""
    kw, images = _rotated_camera_batch()
    for source_valid in (None, torch.ones(2, 4, dtype=torch.bool)):
        loss = float(warping_loss(**kw, per_source=per_source, source_valid=source_valid))
        assert abs(loss) < 5 * IDENTITY_NOISE
    # the rotated cameras' identity error is large: a missed rotation cannot hide under the auto-mask
    cur = images[0, 1].permute(2, 0, 1).double() / 255
    flipped = images[0, 3].permute(2, 0, 1).double() / 255
    assert float((cur - flipped).abs().mean()) > 0.1


def test_depth_losses_range_is_strict_at_0_1_and_51_2() -> None:
    """Targets of exactly 0.1 m and 51.2 m, and 51.5 m, are outside the open range; only 2 m and 10 m count."""
    pred = torch.tensor([[3.0, 5.0, 7.0, 9.0, 11.0]], dtype=torch.float64)
    target = torch.tensor([[2.0, 0.1, 51.2, 51.5, 10.0]], dtype=torch.float64)
    silog, l1 = depth_losses(pred, target)
    d = [math.log(3.0 / 2.0), math.log(11.0 / 10.0)]
    mean_d, mean_d2 = sum(d) / 2, sum(x * x for x in d) / 2
    assert float(silog) == pytest.approx(10 * math.sqrt(mean_d2 - 0.85 * mean_d**2), rel=1e-12)
    assert float(l1) == pytest.approx((1.0 + 1.0) / 2, rel=1e-12)


@pytest.mark.parametrize("randomized", [False, True])
def test_pca_basis_is_per_sample(randomized: bool) -> None:
    """Two samples, each exactly rank 2 about its own (different) mean along its own axes: each sample's basis spans
    its own axes exactly (centring per sample, not across the batch)."""
    g = torch.Generator().manual_seed(3)
    B, N, D, h, w, k = 2, 2, 6, 3, 4, 2
    axes = torch.linalg.qr(torch.randn(B, D, D, generator=g, dtype=torch.float64))[0][..., :k]     # [B, D, k]
    coeff = torch.randn(B, N * h * w, k, generator=g, dtype=torch.float64) * torch.tensor([3.0, 1.0],
                                                                                          dtype=torch.float64)
    means = torch.tensor([[5.0] * D, [-2.0, 7.0, 1.0, 0.0, 3.0, -4.0]], dtype=torch.float64)
    x = coeff @ axes.transpose(1, 2) + means[:, None]                                  # [B, N·h·w, D]
    feats = x.view(B, N, h, w, D).permute(0, 1, 4, 2, 3)
    basis = pca_basis(feats, k, randomized=randomized)
    assert basis.shape == (B, D, k)
    for b in range(B):
        assert torch.allclose(basis[b] @ basis[b].T, axes[b] @ axes[b].T, atol=1e-9)


def test_randomized_pca_basis_is_the_released_pca_lowrank_call() -> None:
    """The randomized basis is ``torch.pca_lowrank(x, q=k, niter=4)`` of each sample's [N·h·w, D] vectors in
    float64, draw for draw (a slowly decaying spectrum, where the iteration count shows)."""
    feats, _ = _features_with_known_axes(1)                                      # [1, 2, 12, 4, 5]
    rng = torch.get_rng_state()
    basis = pca_basis(feats, 3, randomized=True)
    torch.set_rng_state(rng)
    x = feats[0].permute(0, 2, 3, 1).reshape(-1, 12)                            # rows in (camera, y, x) order
    expected = torch.pca_lowrank(x, q=3, niter=4)[2]
    assert torch.allclose(basis[0], expected, atol=1e-12)


@pytest.mark.parametrize("per_source", [True, False])
def test_stacked_depths_give_each_the_loss_and_gradient_of_its_own_call(per_source: bool) -> None:
    """The criterion stacks the stages' depths: each leading index must get exactly what a call with its depth
    alone gives (same identity noise: the RNG is reset before each call), gradients included. Three depths of the
    several-sample, several-camera batch, one per stage, one of them with a missing source."""
    kw, _ = _rotated_camera_batch()
    g = torch.Generator().manual_seed(3)
    depths = (kw["depth"] * (0.5 + torch.rand(3, *kw["depth"].shape, generator=g, dtype=torch.float64))
              ).requires_grad_()
    valid = torch.ones(2, 4, dtype=torch.bool)
    valid[1, 2] = False
    rest = {k: v for k, v in kw.items() if k != "depth"}
    torch.manual_seed(5)
    stacked = warping_loss(depths, **rest, per_source=per_source, source_valid=valid)
    assert stacked.shape == (3,)
    (grad,) = torch.autograd.grad((stacked * torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)).sum(), depths)
    for s in range(3):
        alone = depths[s].detach().requires_grad_()
        torch.manual_seed(5)
        loss = warping_loss(alone, **rest, per_source=per_source, source_valid=valid)
        (grad_s,) = torch.autograd.grad(loss * (s + 1.0), alone)
        assert float(stacked[s].detach()) == pytest.approx(float(loss.detach()), rel=1e-12, abs=1e-15)
        torch.testing.assert_close(grad[s], grad_s, rtol=1e-10, atol=1e-14)
    assert len(set(stacked.detach().tolist())) == 3


def test_stacked_feature_and_depth_losses_equal_their_separate_calls() -> None:
    g = torch.Generator().manual_seed(4)
    pred = torch.randn(3, 2, 2, 5, 6, 4, generator=g, dtype=torch.float64)
    pred[1, 0, 1, :2] = 0                                          # uncovered pixels in one stage only
    target = torch.randn(2, 2, 5, 6, 4, generator=g, dtype=torch.float64)
    depth = 0.2 + 60 * torch.rand(3, 2, 2, 5, 6, generator=g, dtype=torch.float64)
    depth_target = 70 * torch.rand(2, 2, 5, 6, generator=g, dtype=torch.float64)
    mse, cos = feature_losses(pred, target, keep=1)
    silog, l1 = depth_losses(depth, depth_target, keep=1)
    assert mse.shape == cos.shape == silog.shape == l1.shape == (3,)
    for s in range(3):
        for got, want in zip((mse[s], cos[s], silog[s], l1[s]),
                             (*feature_losses(pred[s], target), *depth_losses(depth[s], depth_target)), strict=True):
            assert float(got) == pytest.approx(float(want), rel=1e-12)
