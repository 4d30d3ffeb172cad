"""Contract of ``gs_raster``: 3D Gaussian splatting of features, expected depth and alpha (docs/model.md §4).

Glossary: N Gaussians, C feature channels, V cameras, H x W image rows x columns.

    gs_raster(means, quats, scales, opacities, features, viewmats, Ks, height, width, depth_only)
        -> (features_image, depth, alpha)

Args:
    means: [N, 3] Gaussian centres in the world (ego) frame, metres.
    quats: [N, 4] rotations (w, x, y, z); normalised inside, so any non-zero length is accepted.
    scales: [N, 3] standard deviations along the local axes (Sigma = R diag(s)^2 R^T), metres.
    opacities: [N] opacity o of each Gaussian.
    features: [N, C] feature vector composited per pixel (ignored when ``depth_only``).
    viewmats: [V, 4, 4] world-to-camera transforms (OpenCV camera: x right, y down, z forward).
    Ks: [V, 3, 3] pinhole intrinsics (fx, fy, cx, cy are read).
    height: H, image rows (int >= 1).
    width: W, image columns (int >= 1).
    depth_only: render only depth and alpha (the no-grad densification render of §1.6).

    The floating tensors share one dtype (float32, or float64 for the reference) and one device.

Returns:
    features_image: [V, H, W, C] sum_i T_i a_i f_i (no normalisation by alpha); [V, H, W, 0] when ``depth_only``.
    depth: [V, H, W, 1] expected depth  sum_i T_i a_i z_i / max(alpha, 1e-10), 0 where nothing renders.
    alpha: [V, H, W, 1] sum_i T_i a_i = 1 - (transmittance left).

Semantics (gsplat 1.5.3 ``rasterization``, classic mode, ``packed=False``; the reference is the definition):
  * Projection per camera: the centre in camera space (x, y, z); a Gaussian with z < 0.01 (near plane) is dropped.
    Its 2D mean is (fx x/z + cx, fy y/z + cy) and its 2D covariance J Sigma_cam J^T + 0.3 I, where the Jacobian J
    uses x/z and y/z clamped to gsplat's frustum margin [-cx/fx - 0.15 W/fx, (W - cx)/fx + 0.15 W/fx] (likewise in y
    with H, fy, cy); the clamp affects only J (and so its gradient), never the 2D mean. z is the Gaussian's depth.
  * Pixel (u, v) is evaluated at its centre (u + 0.5, v + 0.5). With d = mean2d - centre and Q the inverse 2D
    covariance, sigma = d^T Q d / 2 and a = min(0.999, o exp(-sigma)); a Gaussian with a < 1/255 is skipped.
  * Front-to-back compositing in increasing z (ties: lower index first): T starts at 1; a Gaussian that is not
    skipped and would leave T (1 - a) <= 1e-4 stops the pixel and is not composited; otherwise it adds T a to the
    weights and T becomes T (1 - a). Zero background.
  * Gradients flow to means, quats, scales, opacities and features (the stop/skip/cull decisions are constants);
    viewmats and Ks get none.

Nothing is truncated beyond the a < 1/255 rule: an implementation that bins Gaussians into tiles must use a bound
outside which a < 1/255 holds (gsplat's opacity-aware box, extent sqrt(2 ln(255 o)) standard deviations, is such a
bound), so tiling never changes the result.
"""

from __future__ import annotations

import math

import torch

from pgocc.ops._contract import Case, Impl, check_tensor, same_device

IMPLS: dict[str, Impl] = {
    "reference": Impl("reference.gs_raster:gs_raster", deterministic=True),
    # Backward accumulates per-Gaussian gradients with fp32 atomics; the forward pass is deterministic.
    "triton": Impl("kernels_triton.gs_raster:gs_raster", deterministic=False),
    "gsplat": Impl("kernels_gsplat.gs_raster:gs_raster", deterministic=False, devices=("cuda",)),
}

NEAR_PLANE = 0.01
"""Gaussians whose camera-space z is below this are dropped (gsplat's default)."""
EPS2D = 0.3
"""Added to the diagonal of every 2D covariance (gsplat's default, no compensation)."""
ALPHA_MIN = 1.0 / 255.0
"""A Gaussian whose alpha at a pixel is below this is skipped there."""
ALPHA_MAX = 0.999
"""Alpha is clamped to this."""
T_STOP = 1e-4
"""A pixel stops before the Gaussian that would leave its transmittance at or below this."""
TILE = 16
"""Tile edge (pixels) of the binned implementations."""
FRUSTUM_MARGIN = 0.3
"""The Jacobian clamps x/z to the image's tangent range plus this fraction of tan(fov/2) (gsplat)."""

# Scenes of make_inputs. "frustum": Gaussians sampled inside (and around, and behind) the cameras' view, footprints
# of a few pixels whatever the image size, with very thin and very large ones; "opaque": the same with opacities
# near 1 so that the transmittance stop and the alpha clamp fire; "volume": the model's setting, Gaussians uniform in
# the 80 m x 80 m x 6.4 m range around the ego (docs/model.md §0) seen by the 6-camera rig.
CASES: dict[str, list[Case]] = {
    "cpu": [
        Case("v2_24x40_n40_c3", {"V": 2, "H": 24, "W": 40, "N": 40, "C": 3},
             note="behind-camera, thin, large and frustum-clipped Gaussians", extra={"scene": "frustum"}),
        Case("v2_24x40_n32_c1_opaque", {"V": 2, "H": 24, "W": 40, "N": 32, "C": 1},
             note="transmittance stop and alpha clamp", extra={"scene": "opaque"}),
        Case("v2_24x40_n24_c129", {"V": 2, "H": 24, "W": 40, "N": 24, "C": 129},
             note="C above one channel block", extra={"scene": "frustum"}),
        Case("v2_24x40_n40_c32_depth", {"V": 2, "H": 24, "W": 40, "N": 40, "C": 32},
             note="depth-only mode", extra={"scene": "frustum", "depth_only": True}),
        Case("v1_19x37_n64_c5", {"V": 1, "H": 19, "W": 37, "N": 64, "C": 5},
             note="odd image size; tile lists of 40+ Gaussians (several chunks)", extra={"scene": "frustum"}),
    ],
    "gpu": [
        Case("v6_90x160_n1500_c32", {"V": 6, "H": 90, "W": 160, "N": 1500, "C": 32}, extra={"scene": "frustum"}),
        Case("v2_180x320_n600_c129", {"V": 2, "H": 180, "W": 320, "N": 600, "C": 129}, extra={"scene": "frustum"}),
        Case("v6_64x96_n800_c1_opaque", {"V": 6, "H": 64, "W": 96, "N": 800, "C": 1}, extra={"scene": "opaque"}),
        Case("v6_90x160_n1500_c128_depth", {"V": 6, "H": 90, "W": 160, "N": 1500, "C": 128},
             extra={"scene": "frustum", "depth_only": True}),
        Case("v6_90x160_n2000_c3_volume", {"V": 6, "H": 90, "W": 160, "N": 2000, "C": 3},
             extra={"scene": "volume"}),
    ],
    "bench": [
        Case("n6000_v6_180x320_c128", {"V": 6, "H": 180, "W": 320, "N": 6000, "C": 128},
             note="largest stage (§11(c))", extra={"scene": "volume"}),
        Case("n20000_v6_180x320_c128", {"V": 6, "H": 180, "W": 320, "N": 20000, "C": 128},
             note="dense scene", extra={"scene": "volume"}),
    ],
}


def validate(means: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, opacities: torch.Tensor,
             features: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, height: int, width: int,
             depth_only: bool) -> None:
    """Check metadata; raises ValueError naming the argument, the expectation and the actual value."""
    op = "gs_raster"
    dims: dict[str, int] = {}
    check_tensor(op, "means", means, ("N", 3), dtypes=(torch.float32, torch.float64), dims=dims)
    device = same_device(op, means=means, quats=quats, scales=scales, opacities=opacities, features=features,
                         viewmats=viewmats, Ks=Ks)
    for name, t, shape in (("quats", quats, ("N", 4)), ("scales", scales, ("N", 3)), ("opacities", opacities, ("N",)),
                           ("features", features, ("N", "C")), ("viewmats", viewmats, ("V", 4, 4)),
                           ("Ks", Ks, ("V", 3, 3))):
        check_tensor(op, name, t, shape, dtypes=(means.dtype,), device=device, dims=dims)
    if dims["V"] == 0:
        raise ValueError("gs_raster: viewmats must hold at least one camera (V >= 1), got V = 0")
    for name, value in (("height", height), ("width", width)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"gs_raster: {name} must be an int >= 1, got {value!r}")
    if not isinstance(depth_only, bool):
        raise ValueError(f"gs_raster: depth_only must be a bool, got {type(depth_only).__name__}")


def _rig(V: int, H: int, W: int, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A nuScenes-like ring of V <= 6 cameras 1.6 m above the ego origin, slightly pitched/rolled at random.

    Returns viewmats [V, 4, 4] (world-to-camera) and Ks [V, 3, 3], float64.
    """
    if V > 6:
        raise ValueError(f"gs_raster.make_inputs: the rig has 6 cameras, case asks for V={V}")
    yaws = torch.tensor([0.0, -55.0, 55.0, 180.0, 110.0, -110.0])[:V] * math.pi / 180
    tilt = (torch.rand(V, 2, generator=g, dtype=torch.float64) - 0.5) * (6 * math.pi / 180)
    viewmats = torch.zeros(V, 4, 4, dtype=torch.float64)
    Ks = torch.zeros(V, 3, 3, dtype=torch.float64)
    for v in range(V):
        cy_, sy_ = math.cos(yaws[v]), math.sin(yaws[v])
        forward = torch.tensor([cy_, sy_, 0.0], dtype=torch.float64)
        right = torch.tensor([sy_, -cy_, 0.0], dtype=torch.float64)
        down = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
        rot = torch.stack([right, down, forward])  # rows: camera axes in the world -> world-to-camera rotation
        pitch, roll = float(tilt[v, 0]), float(tilt[v, 1])
        rx = torch.tensor([[1, 0, 0], [0, math.cos(pitch), -math.sin(pitch)], [0, math.sin(pitch), math.cos(pitch)]],
                          dtype=torch.float64)
        rz = torch.tensor([[math.cos(roll), -math.sin(roll), 0], [math.sin(roll), math.cos(roll), 0], [0, 0, 1]],
                          dtype=torch.float64)
        rot = rz @ rx @ rot
        centre = torch.tensor([1.0 * cy_, 0.5 * sy_, 1.6], dtype=torch.float64)
        viewmats[v, :3, :3] = rot
        viewmats[v, :3, 3] = -rot @ centre
        viewmats[v, 3, 3] = 1.0
        focal = (0.5 if v == 3 else 0.79) * W  # the back camera is wider, as in nuScenes
        Ks[v] = torch.tensor([[focal, 0, W / 2 + 0.37], [0, focal, H / 2 - 0.21], [0, 0, 1]], dtype=torch.float64)
    return viewmats, Ks


def _random_quats(n: int, g: torch.Generator) -> torch.Tensor:
    """Random rotations, deliberately unnormalised (length in [0.5, 2])."""
    q = torch.randn(n, 4, generator=g, dtype=torch.float64)
    return q / q.norm(dim=-1, keepdim=True) * (0.5 + 1.5 * torch.rand(n, 1, generator=g, dtype=torch.float64))


def _frustum_scene(N: int, H: int, W: int, viewmats: torch.Tensor, Ks: torch.Tensor, opaque: bool,
                   g: torch.Generator) -> dict[str, torch.Tensor]:
    """Gaussians sampled through random cameras: pixel position in [-0.3, 1.3] x image, depth 1.5..25 m (10% behind
    the camera), footprint sigma 0.7..6 px, anisotropy up to 3x; 10% very thin (one axis 1e-3 of the others) and 5%
    very large (tens of pixels or the whole image)."""
    f64 = torch.float64
    cam = torch.randint(0, viewmats.shape[0], (N,), generator=g)
    u = (torch.rand(N, generator=g, dtype=f64) * 1.6 - 0.3) * W
    v = (torch.rand(N, generator=g, dtype=f64) * 1.6 - 0.3) * H
    z = torch.exp(torch.rand(N, generator=g, dtype=f64) * math.log(25 / 1.5)) * 1.5
    behind = torch.rand(N, generator=g) < 0.1
    z = torch.where(behind, -z / 3, z)
    K = Ks[cam]
    fx, fy, cx, cy = K[:, 0, 0], K[:, 1, 1], K[:, 0, 2], K[:, 1, 2]
    p_cam = torch.stack([(u - cx) / fx * z, (v - cy) / fy * z, z], -1)
    rot, trans = viewmats[cam, :3, :3], viewmats[cam, :3, 3]
    means = torch.einsum("nji,nj->ni", rot, p_cam - trans)  # R^T (p - t)
    sigma_px = torch.exp(torch.rand(N, generator=g, dtype=f64) * math.log(6 / 0.7)) * (2.0 if opaque else 0.7)
    scales = (sigma_px * z.abs() / fx)[:, None] * torch.exp((torch.rand(N, 3, generator=g, dtype=f64) - 0.5)
                                                           * math.log(9))
    thin = torch.rand(N, generator=g) < 0.1
    scales[thin, 0] *= 1e-3
    large = torch.rand(N, generator=g) < 0.05
    scales[large] *= 8.0
    if opaque:
        opacities = 0.9 + 0.1 * torch.rand(N, generator=g, dtype=f64)
        opacities[torch.rand(N, generator=g) < 0.2] = 1.0
    else:
        opacities = 0.05 + 0.9 * torch.rand(N, generator=g, dtype=f64)
    return {"means": means, "scales": scales, "opacities": opacities}


def _volume_scene(N: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    """Gaussians uniform in [-40, 40] x [-40, 40] x [-1, 5.4] m, scales log-uniform in 0.15..1.5 m, opacities
    0.05..0.95 (at 6000 / 20000 Gaussians ~80 / ~280 tile intersections per 16 x 16 tile of a 180 x 320 image)."""
    f64 = torch.float64
    lo, hi = torch.tensor([-40.0, -40.0, -1.0], dtype=f64), torch.tensor([40.0, 40.0, 5.4], dtype=f64)
    means = lo + (hi - lo) * torch.rand(N, 3, generator=g, dtype=f64)
    scales = 0.15 * torch.exp(torch.rand(N, 3, generator=g, dtype=f64) * math.log(10))
    opacities = 0.05 + 0.9 * torch.rand(N, generator=g, dtype=f64)
    return {"means": means, "scales": scales, "opacities": opacities}


def _unclear(means: torch.Tensor, viewmats: torch.Tensor, Ks: torch.Tensor, H: int, W: int) -> torch.Tensor:
    """[N] bool: Gaussians within 1e-3 m of the near plane, or whose x/z or y/z lies within 1e-4 (relative) of a
    Jacobian clamp limit, in some camera (float64)."""
    p = torch.einsum("vij,nj->vni", viewmats[:, :3, :3], means) + viewmats[:, None, :3, 3]
    bad = (p[..., 2] - NEAR_PLANE).abs() <= 1e-3
    z = p[..., 2].clamp_min(NEAR_PLANE)
    for axis, size, f, c in ((0, W, Ks[:, 0, 0], Ks[:, 0, 2]), (1, H, Ks[:, 1, 1], Ks[:, 1, 2])):
        margin = FRUSTUM_MARGIN * 0.5 * size / f
        for lim in ((size - c) / f + margin, -(c / f + margin)):
            bad |= ((p[..., axis] / z - lim[:, None]) / lim[:, None]).abs() <= 1e-4
    return bad.any(0)


def make_inputs(case: Case, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                seed: int = 0) -> dict:
    """Random inputs for ``case`` (keyword arguments of ``gs_raster``).

    No Gaussian lies within 1e-3 m of the near plane or has x/z or y/z within 1e-4 (relative) of a Jacobian clamp
    limit (such ones are redrawn), so float32 and float64 runs take the same branch there; the remaining
    discontinuities (alpha skip, transmittance stop, alpha clamp) are per pixel and are handled by the tests (see
    ``reference.gs_raster.decision_margin``).
    """
    g = torch.Generator().manual_seed(seed)
    d = case.dims
    V, H, W, N, C = d["V"], d["H"], d["W"], d["N"], d["C"]
    scene = case.extra.get("scene", "frustum")
    viewmats, Ks = _rig(V, H, W, g)

    def draw() -> dict[str, torch.Tensor]:
        if scene == "volume":
            return _volume_scene(N, g)
        if scene in ("frustum", "opaque"):
            return _frustum_scene(N, H, W, viewmats, Ks, scene == "opaque", g)
        raise ValueError(f"gs_raster.make_inputs: unknown scene {scene!r}")

    gauss = draw()
    for _ in range(100):
        bad = _unclear(gauss["means"], viewmats, Ks, H, W)
        if not bool(bad.any()):
            break
        fresh = draw()
        for k in gauss:
            gauss[k][bad] = fresh[k][bad]
    else:
        raise RuntimeError("gs_raster.make_inputs: could not draw Gaussians clear of the clamp limits")
    inputs = {
        "means": gauss["means"],
        "quats": _random_quats(N, g),
        "scales": gauss["scales"],
        "opacities": gauss["opacities"],
        "features": torch.randn(N, C, generator=g, dtype=torch.float64),
        "viewmats": viewmats,
        "Ks": Ks,
    }
    out: dict = {k: t.to(device=device, dtype=dtype) for k, t in inputs.items()}
    out.update(height=H, width=W, depth_only=bool(case.extra.get("depth_only", False)))
    return out


def bytes_moved(case: Case, dtype: torch.dtype) -> int:
    """Minimal DRAM traffic of a forward pass: read the Gaussians once, write the feature, depth and alpha images."""
    d = case.dims
    size = torch.finfo(dtype).bits // 8
    C = 0 if case.extra.get("depth_only", False) else d["C"]
    return (d["N"] * (3 + 4 + 3 + 1 + C) + d["V"] * d["H"] * d["W"] * (C + 2)) * size
