"""Contract of ``aniso_sample``: anisotropy-aware multi-point sampling across frames, cameras and pyramid levels.

Glossary: B batch, Q query Gaussians, G channel groups, P points per group and frame, T frames, N cameras,
L pyramid levels, C channels per group (C_g), H_l x W_l the size of level l, H_in x W_in the network input image.

    aniso_sample(centres, quats, scales, offsets, ego2img, features, level_weights, image_size,
                 released_weight_order) -> sampled

Args:
    centres: [B, Q, 3] Gaussian centres in the current ego frame (metres).
    quats: [B, Q, 4] rotations (w, x, y, z); need not be unit, R is built from q / |q|.
    scales: [B, Q, 3] extents along the local axes (metres). With quats = identity and scales = the box edge this is
        the released code's isotropic box mode (docs/model.md §2.3 item 2).
    offsets: [B, Q, G, P, 3] learned offsets in the Gaussian's local frame.
    ego2img: [B, T, N, 4, 4] current ego frame -> pixel coordinates (x depth) of camera n at frame t in the
        H_in x W_in input image (ego-motion compensated; only rows 0..2 are used). No gradient flows to it.
    features: L tensors [B*T*G, N, H_l, W_l, C] (channels-last); the batch index is b' = (b*T + t)*G + g.
    level_weights: [B, Q, G, P, L] per-point level weights (already softmaxed), shared over frames.
    image_size: (H_in, W_in).
    released_weight_order: False: frame t, group g uses level_weights[:, :, g]. True: it uses the weights of group
        (t*G + g) // T, the released code's (g, t) / (t, g) flattening mismatch (docs/model.md §2.3 item 5; with G = 4,
        T = 8 that is group t // 2).

Returns:
    [B, Q, G, T*P, C] in the features' dtype; point index t*P + p (frame-major).

Semantics (the released MSMV kernel's conventions, docs/model.md §2.3 items 2-8):
    point      x = c + R(q / |q|) (s * o)
    project    [x', y', z'] = ego2img[b, t, n, :3] [x; 1];  z~ = max(z', 1e-5);  u = x'/z~/W_in;  v = y'/z~/H_in
    valid      z' > 1e-5 and 0 < u < 1 and 0 < v < 1 (strict)
    view       n* = the first camera (index order) where valid, else 0; the valid flag is then discarded, so a point
               visible nowhere is sampled from camera 0 at its (usually out-of-range) coordinates
    level l    h = v (H_l - 1), w = u (W_l - 1); if -1 < h < H_l and -1 < w < W_l, bilinear interpolation of the corners
               floor(h) + {0, 1} x floor(w) + {0, 1} with corners outside the map contributing 0 (zero padding);
               otherwise the level contributes 0
    output     sum over l of level weight x bilinear value
Gradients flow to centres, quats, scales, offsets, features and level_weights; none to ego2img or the discrete view
choice (z~ passes a gradient only where z' > 1e-5). At a texel line the derivative is the one of the formula with
floor(h), i.e. the right-hand derivative.

Dtypes: centres, quats, scales, offsets and ego2img share one dtype (float32 or float64); features and
level_weights share one dtype (float32, bfloat16 or float64). Implementations accumulate in at least float32.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from pgocc.ops._contract import Case, Impl, check_tensor, same_device

OP = "aniso_sample"

IMPLS: dict[str, Impl] = {
    "reference": Impl("reference.aniso_sample:aniso_sample", deterministic=True),
    # The backward scatters into the feature gradients with fp32 atomics: run-to-run order-dependent rounding.
    "triton": Impl("kernels_triton.aniso_sample:aniso_sample", deterministic=False),
}

DEPTH_EPS = 1e-5
"""Depth clamp and validity threshold of the projection (z~ = max(z', 1e-5), valid only where z' > 1e-5), the released
projection code's value."""

_DEFAULT = {"B": 1, "Q": 6000, "T": 8, "N": 6, "G": 4, "P": 4, "L": 4, "C": 64, "H_in": 256, "W_in": 704}

CASES: dict[str, list[Case]] = {
    "cpu": [
        Case("b1_q5_t2_n3_g2_p2_l2_c8", {"B": 1, "Q": 5, "T": 2, "N": 3, "G": 2, "P": 2, "L": 2, "C": 8,
                                          "H_in": 32, "W_in": 64}),
        Case("b2_q7_t4_n2_g2_p3_l3_c12_released", {"B": 2, "Q": 7, "T": 4, "N": 2, "G": 2, "P": 3, "L": 3, "C": 12,
                                                    "H_in": 48, "W_in": 80},
             note="released weight order, odd P and C, two cameras with gaps", extra={"released": True}),
        Case("exact_corners", {"B": 1, "Q": 2, "T": 2, "N": 3, "G": 2, "P": 4, "L": 4, "C": 8, "H_in": 16, "W_in": 32},
             note="dyadic geometry: points exactly on texel corners, on image borders (u, v = 0 or 1), on h = -1, "
                  "behind every camera (z' = 0, sampled inside camera 0), visible nowhere, visible in two cameras",
             extra={"exact": True}),
    ],
    "gpu": [
        Case("default_q6000", dict(_DEFAULT), note="the model's stage-2 size (docs/model.md §1.7)"),
        Case("b2_q300_t8_n6_g4_p4_l4_c32_released", {**_DEFAULT, "B": 2, "Q": 300, "C": 32, "H_in": 128,
                                                     "W_in": 352}, extra={"released": True}),
        Case("exact_corners", {"B": 1, "Q": 2, "T": 2, "N": 3, "G": 2, "P": 4, "L": 4, "C": 8, "H_in": 16, "W_in": 32},
             extra={"exact": True}),
    ],
    "bench": [
        Case("q6000_t8_n6_g4_p4_l4_c64", dict(_DEFAULT), note="stage 2 of the default config, 256x704 input"),
    ],
}

GEOMETRY_DTYPES = (torch.float32, torch.float64)
FEATURE_DTYPES = (torch.float32, torch.bfloat16, torch.float64)

_EXACT_LEVELS = ((17, 33), (9, 17), (5, 9), (3, 5))
"""Level sizes of the exact case: (H_l - 1) / H_in and (W_l - 1) / W_in are powers of two, so every coordinate is
exact in float32."""


def validate(centres: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor, offsets: torch.Tensor,
             ego2img: torch.Tensor, features: Sequence[torch.Tensor], level_weights: torch.Tensor,
             image_size: Sequence[int], released_weight_order: bool) -> None:
    """Check metadata; raises ValueError naming the argument, the expectation and the actual value."""
    dims: dict[str, int] = {}
    check_tensor(OP, "offsets", offsets, ("B", "Q", "G", "P", 3), dtypes=GEOMETRY_DTYPES, dims=dims)
    if not isinstance(features, (list, tuple)) or not features:
        raise ValueError(f"{OP}: features must be a non-empty list of L tensors [B*T*G, N, H_l, W_l, C], "
                         f"got {type(features).__name__}")
    device = same_device(OP, centres=centres, quats=quats, scales=scales, offsets=offsets, ego2img=ego2img,
                         level_weights=level_weights,
                         **{f"features[{i}]": f for i, f in enumerate(features) if isinstance(f, torch.Tensor)})
    gdt = offsets.dtype
    check_tensor(OP, "centres", centres, ("B", "Q", 3), dtypes=(gdt,), device=device, dims=dims)
    check_tensor(OP, "quats", quats, ("B", "Q", 4), dtypes=(gdt,), device=device, dims=dims)
    check_tensor(OP, "scales", scales, ("B", "Q", 3), dtypes=(gdt,), device=device, dims=dims)
    check_tensor(OP, "ego2img", ego2img, ("B", "T", "N", 4, 4), dtypes=(gdt,), device=device, dims=dims)
    check_tensor(OP, "level_weights", level_weights, ("B", "Q", "G", "P", None), dtypes=FEATURE_DTYPES,
                 device=device, dims=dims)
    L = level_weights.shape[-1]
    if len(features) != L:
        raise ValueError(f"{OP}: features has {len(features)} levels but level_weights has L={L} (last dim)")
    btg = dims["B"] * dims["T"] * dims["G"]
    for i, f in enumerate(features):
        check_tensor(OP, f"features[{i}]", f, (btg, "N", None, None, "C"), dtypes=(level_weights.dtype,),
                     device=device, dims=dims)
        if f.shape[2] < 1 or f.shape[3] < 1:
            raise ValueError(f"{OP}: features[{i}] must have H_l, W_l >= 1, got shape {tuple(f.shape)}")
    if (not isinstance(image_size, (tuple, list)) or len(image_size) != 2
            or not all(isinstance(s, int) and not isinstance(s, bool) and s > 0 for s in image_size)):
        raise ValueError(f"{OP}: image_size must be (H_in, W_in) with positive ints, got {image_size!r}")
    if not isinstance(released_weight_order, bool):
        raise ValueError(f"{OP}: released_weight_order must be a bool, got {released_weight_order!r}")


def level_shapes(case: Case) -> list[tuple[int, int]]:
    """(H_l, W_l) of every level: FPN strides 4, 8, 16, ... of the input image (the exact case: dyadic sizes)."""
    d = case.dims
    if case.extra.get("exact"):
        return list(_EXACT_LEVELS[: d["L"]])
    return [(max(1, d["H_in"] // (4 << lvl)), max(1, d["W_in"] // (4 << lvl))) for lvl in range(d["L"])]


def _rot_z(yaw: float) -> torch.Tensor:
    c, s = math.cos(yaw), math.sin(yaw)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)


def _camera_rig(B: int, T: int, N: int, H_in: int, W_in: int, g: torch.Generator) -> torch.Tensor:
    """[B, T, N, 4, 4] float64 ego2img of a ring of outward-looking cameras on a car driving forward.

    Six cameras follow nuScenes' order (FRONT, FRONT_RIGHT, FRONT_LEFT, BACK, BACK_LEFT, BACK_RIGHT); other counts
    are spread evenly. A 64 degree horizontal field of view leaves overlaps between neighbours (first-valid view
    selection matters) and, with few cameras, gaps (points visible nowhere).
    """
    yaws_deg = [0.0, -55.0, 55.0, 180.0, 125.0, -125.0] if N == 6 else [-360.0 * n / N for n in range(N)]
    out = torch.empty(B, T, N, 4, 4, dtype=torch.float64)
    for b in range(B):
        speed = 0.5 + 2.0 * float(torch.rand((), generator=g, dtype=torch.float64))
        turn = math.radians(float(torch.randn((), generator=g, dtype=torch.float64)) * 2.0)
        for n in range(N):
            yaw = math.radians(yaws_deg[n] + 3.0 * float(torch.randn((), generator=g, dtype=torch.float64)))
            fwd = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0], dtype=torch.float64)
            right = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0], dtype=torch.float64)
            down = torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64)
            cam2ego = torch.stack([right, down, fwd], dim=1)
            pos = torch.tensor([1.0 * math.cos(yaw), 0.5 * math.sin(yaw), 1.6], dtype=torch.float64)
            ego2cam = torch.eye(4, dtype=torch.float64)
            ego2cam[:3, :3] = cam2ego.T
            ego2cam[:3, 3] = -cam2ego.T @ pos
            f = (W_in / 2) / math.tan(math.radians(32.0))
            jitter = torch.randn(2, generator=g, dtype=torch.float64)
            K = torch.eye(4, dtype=torch.float64)
            K[0, 0], K[1, 1] = f, f
            K[0, 2], K[1, 2] = W_in / 2 + 0.02 * W_in * jitter[0], H_in / 2 + 0.02 * H_in * jitter[1]
            for t in range(T):
                # Past ego pose in the current frame: behind by speed * t metres, yawed by turn * t.
                past2cur = torch.eye(4, dtype=torch.float64)
                past2cur[:3, :3] = _rot_z(turn * t)
                past2cur[:3, 3] = torch.tensor([-speed * t, 0.3 * speed * t * math.sin(turn * t), 0.0])
                out[b, t, n] = K @ ego2cam @ torch.linalg.inv(past2cur)
    return out


def _exact_inputs(case: Case, g: torch.Generator) -> dict:
    """Dyadic geometry whose float32 evaluation is exact (see ``_EXACT_LEVELS``).

    Cameras (focal 8, principal point (16, 8); frame 1 is the ego shifted 1 m to the left):
        0 looks along +x, 1 along -x, 2 along +x with principal point (8, 8).
    At X = 4 camera 0 maps (X, Y, Z) to level-0 texel coordinates w = 16 - 2Y, h = 8 - 2Z.
    """
    d = case.dims
    if (d["B"], d["Q"], d["T"], d["N"], d["G"], d["P"]) != (1, 2, 2, 3, 2, 4):
        raise ValueError("the exact case is built for B=1, Q=2, T=2, N=3, G=2, P=4")
    rows = {  # camera: rows 0..2 of [K | 0] @ ego2cam, frame 0
        0: [[16.0, -8.0, 0.0, 0.0], [8.0, 0.0, -8.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
        1: [[-16.0, 8.0, 0.0, 0.0], [-8.0, 0.0, -8.0, 0.0], [-1.0, 0.0, 0.0, 0.0]],
        2: [[8.0, -8.0, 0.0, 0.0], [8.0, 0.0, -8.0, 0.0], [1.0, 0.0, 0.0, 0.0]],
    }
    ego2img = torch.zeros(1, 2, 3, 4, 4, dtype=torch.float64)
    for n, r in rows.items():
        for t in range(2):
            m = torch.tensor(r + [[0.0, 0.0, 0.0, 1.0]], dtype=torch.float64)
            m[:3, 3] = m[:3, 1] * -float(t)  # Y -> Y - t: the ego moved t metres along +y
            ego2img[0, t, n] = m
    points = torch.tensor([
        [4, 1, 0.5],      # level-0 texel corner (7, 14); half-texel at level 1
        [4, 8, 1],        # u = 0 exactly: invalid everywhere -> camera 0 fallback, sampled at column 0
        [4, -8, 1],       # u = 1 in camera 0 (strict) -> camera 2
        [4, 0, 4],        # v = 0 exactly: fallback, top row
        [4, 0, 0],        # a texel corner at every level
        [4, 0, -4],       # v = 1: fallback at the last row, lower corners zero-padded
        [-4, 2, 0],       # behind cameras 0 and 2, valid in camera 1
        [0, 0, 0],        # z' = 0 in every camera: z~ = 1e-5, sampled at texel (0, 0) of camera 0
        [4, 0, 4.5],      # h = -1 exactly at level 0 (excluded), h = -0.5 at level 1 (partly padded)
        [0, -2**-17, -2**-16],  # z' = 0 everywhere but x', y' != 0: camera 0 at u = x'/1e-5/W_in ~ 0.19 (inside)
        [8, 4, 2],        # corner at X = 8
        [2, 1, 1],        # corner at X = 2
        [4, -7, 0.5],     # valid in cameras 0 and 2: the first wins
        [4, 7.5, 3.75],   # near the top-left corner
        [-4, -6, 3],      # camera 1
        [4, -8, 4],       # u = 1, v = 0: fallback at the last column
    ], dtype=torch.float64).reshape(1, 2, 2, 4, 3)
    centres = torch.tensor([[[0.0, 0.0, 0.0], [2.0, -1.0, 0.5]]], dtype=torch.float64)
    scales = torch.tensor([[[1.0, 1.0, 1.0], [2.0, 4.0, 0.5]]], dtype=torch.float64)
    quats = torch.tensor([[[1.0, 0.0, 0.0, 0.0], [-2.0, 0.0, 0.0, 0.0]]], dtype=torch.float64)
    offsets = (points - centres[:, :, None, None, :]) / scales[:, :, None, None, :]
    return {"centres": centres, "quats": quats, "scales": scales, "offsets": offsets, "ego2img": ego2img}


def _random_geometry(case: Case, g: torch.Generator) -> dict:
    d = case.dims
    B, Q, G, P = d["B"], d["Q"], d["G"], d["P"]
    u3 = torch.rand(B, Q, 3, generator=g, dtype=torch.float64)
    centres = u3 * torch.tensor([80.0, 80.0, 6.4], dtype=torch.float64) - torch.tensor([40.0, 40.0, 1.0])
    scales = torch.exp(math.log(0.1) + (math.log(2.0) - math.log(0.1)) * torch.rand(B, Q, 3, generator=g,
                                                                                   dtype=torch.float64))
    kind = torch.rand(B, Q, generator=g, dtype=torch.float64)
    # ~8% inside the camera ring (behind every camera), ~8% high above the cars (visible nowhere).
    inner = kind < 0.08
    high = (kind >= 0.08) & (kind < 0.16)
    centres[inner] = torch.tensor([0.0, 0.0, 1.6], dtype=torch.float64) + 0.2 * (u3[inner] - 0.5)
    scales[inner] = 0.05
    centres[high, 2] = 25.0 + 20.0 * u3[high, 2]
    centres[high, :2] *= 0.25
    quats = torch.randn(B, Q, 4, generator=g, dtype=torch.float64)
    offsets = 3.0 * torch.rand(B, Q, G, P, 3, generator=g, dtype=torch.float64) - 1.5
    ego2img = _camera_rig(B, d["T"], d["N"], d["H_in"], d["W_in"], g)
    return {"centres": centres, "quats": quats, "scales": scales, "offsets": offsets, "ego2img": ego2img}


def make_inputs(case: Case, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                seed: int = 0) -> dict:
    """Keyword arguments of the op for ``case``.

    ``dtype`` is the features' and level weights' dtype; the geometry is float64 when ``dtype`` is float64, else
    float32. Random cases: an 80 m x 80 m x 6.4 m scene seen by a moving camera rig (see ``_camera_rig``), random
    quaternions of any norm, log-uniform extents, offsets in [-1.5, 1.5]; some Gaussians sit behind every camera or
    above every image. Features are standard normal, level weights a softmax of normal logits.
    """
    g = torch.Generator().manual_seed(seed)
    d = case.dims
    geo = _exact_inputs(case, g) if case.extra.get("exact") else _random_geometry(case, g)
    gdt = torch.float64 if dtype == torch.float64 else torch.float32
    B, Q, T, N, G, P, L, C = (d[k] for k in ("B", "Q", "T", "N", "G", "P", "L", "C"))
    features = [torch.randn(B * T * G, N, h, w, C, generator=g, dtype=torch.float32).to(dtype).to(device)
                for h, w in level_shapes(case)]
    level_weights = torch.softmax(torch.randn(B, Q, G, P, L, generator=g, dtype=torch.float64), dim=-1)
    out = {k: v.to(gdt).to(device) for k, v in geo.items()}
    return {**out, "features": features, "level_weights": level_weights.to(dtype).to(device),
            "image_size": (d["H_in"], d["W_in"]), "released_weight_order": bool(case.extra.get("released", False))}


def bytes_moved(case: Case, dtype: torch.dtype, mode: str = "fwd") -> int:
    """Minimal DRAM traffic of one call (geometry is negligible and left out).

    fwd: read the pyramid once, write the output. fwd_bwd adds the backward's floor: read the output gradient and
    the pyramid again (the level-weight and coordinate gradients need the sampled values) and write the pyramid
    gradient once.
    """
    d = case.dims
    size = torch.finfo(dtype).bits // 8
    pyramid = d["B"] * d["T"] * d["G"] * d["N"] * d["C"] * sum(h * w for h, w in level_shapes(case)) * size
    out = d["B"] * d["Q"] * d["G"] * d["T"] * d["P"] * d["C"] * size
    if mode == "fwd":
        return pyramid + out
    if mode == "fwd_bwd":
        return 3 * pyramid + 2 * out
    raise ValueError(f"{OP}: bytes_moved mode must be 'fwd' or 'fwd_bwd', got {mode!r}")
