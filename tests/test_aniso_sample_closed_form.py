"""aniso_sample against closed forms (every implementation) and gradcheck of the reference.

The closed forms are written out here by hand, independently of reference/aniso_sample.py: the texel each sample
must land on in the dyadic "exact_corners" case, and which group's level weights each (frame, group) must use.
"""

from __future__ import annotations

import pytest
import torch

from pgocc import ops
from pgocc.ops._contract import Case

OP = "aniso_sample"
spec = ops.contract(OP)
EXACT = next(c for c in spec.CASES["cpu"] if c.extra.get("exact"))

# Frame 0 of the exact case, per point in offsets order (query, group, point): (camera, h, w) in level-0 texels
# (level l: h / 2^l, w / 2^l). Derived by hand from the camera rows in pgocc.ops.aniso_sample._exact_inputs.
EXPECTED_FRAME0 = [
    (0, 7, 14),     # corner
    (0, 6, 0),      # u = 0: valid nowhere -> camera 0 anyway
    (2, 6, 24),     # u = 1 in camera 0 (strict) -> camera 2
    (0, 0, 16),     # v = 0: fallback
    (0, 8, 16),     # corner at every level
    (0, 16, 16),    # v = 1: fallback on the last row
    (1, 8, 20),     # behind cameras 0 and 2
    (0, 0, 0),      # z' = 0 everywhere: fallback, x' = y' = 0
    (0, -1, 16),    # h = -1: level 0 excluded, partly padded above
    (0, 2**-13 / 1e-5, 2**-14 / 1e-5),  # z' = 0 everywhere: z~ = 1e-5, x' = 2^-14, y' = 2^-13
    (0, 6, 12),
    (0, 4, 12),
    (0, 7, 30),     # valid in cameras 0 and 2
    (0, 0.5, 1),
    (1, 2, 4),
    (0, 0, 32),     # u = 1, v = 0: fallback on the last column
]


def ramp(batch: int, cams: int, h: int, w: int, channels: int, dtype: torch.dtype) -> torch.Tensor:
    """f[b', n, i, j, c] = i + 64 j + 4096 n + 32768 b' + c / 8: linear in (i, j), so bilinear sampling is exact."""
    b, n, i, j, c = torch.meshgrid(*(torch.arange(s, dtype=torch.float64) for s in (batch, cams, h, w, channels)),
                                   indexing="ij")
    return (i + 64 * j + 4096 * n + 32768 * b + c / 8).to(dtype)


@pytest.mark.parametrize("impl", ops.available(OP))
def test_exact_case_lands_on_the_expected_texels(impl: str, device: torch.device) -> None:
    dtype = torch.float64 if impl == "reference" else torch.float32
    x = spec.make_inputs(EXACT, dtype=dtype, device=device)
    d = EXACT.dims
    B, T, N, G, P, C = (d[k] for k in ("B", "T", "N", "G", "P", "C"))
    x["features"] = [ramp(B * T * G, N, h, w, C, dtype).to(device) for h, w in spec.level_shapes(EXACT)]
    out = ops.resolve(OP, impl)(**x).to(torch.float64).cpu()
    weights = x["level_weights"].to(torch.float64).cpu().reshape(-1, len(x["features"]))  # (q, g, p) order
    c = torch.arange(C, dtype=torch.float64)
    expected = torch.zeros(d["Q"] * G * P, C, dtype=torch.float64)
    for k, (cam, h, w) in enumerate(EXPECTED_FRAME0):
        g = (k // P) % G  # b' = (b*T + t)*G + g with b = t = 0
        for level in range(len(x["features"])):
            h_l, w_l = h / 2**level, w / 2**level
            value = h_l + 64 * w_l + 4096 * cam + 32768 * g + c / 8
            if h_l <= -1:
                value = value * 0  # outside (-1, H_l): the level contributes nothing
            elif h_l < 0:
                value = (h_l + 1) * (value - h_l)  # the row above is zero padding; weight h_l + 1 on row 0
            expected[k] += weights[k, level] * value
    got = out.reshape(d["Q"], G, T, P, C)[:, :, 0].reshape(-1, C)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6 if impl == "reference" else 1e-2)


@pytest.mark.parametrize("impl", ops.available(OP))
@pytest.mark.parametrize("released", [False, True], ids=["paper_order", "released_order"])
def test_level_weight_order(impl: str, released: bool, device: torch.device) -> None:
    """G = 4, T = 8: released order gives frame t the weights of group t // 2 (docs/model.md §2.3 item 5)."""
    dtype = torch.float64 if impl == "reference" else torch.float32
    T, G, L, C = 8, 4, 4, 2
    levels = [(17, 33), (9, 17), (5, 9), (3, 5)]
    camera = torch.tensor([[16.0, -8, 0, 0], [8, 0, -8, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=dtype)
    inputs = {
        "centres": torch.tensor([[[4.0, 0.0, 0.0]]], dtype=dtype),  # texel corner (8, 16) of camera 0 at level 0
        "quats": torch.tensor([[[1.0, 0.0, 0.0, 0.0]]], dtype=dtype),
        "scales": torch.ones(1, 1, 3, dtype=dtype),
        "offsets": torch.zeros(1, 1, G, 1, 3, dtype=dtype),
        "ego2img": camera.expand(1, T, 1, 4, 4).contiguous(),
        "features": [torch.full((T * G, 1, h, w, C), 10.0**level, dtype=dtype) for level, (h, w) in enumerate(levels)],
        "level_weights": torch.eye(L, dtype=dtype)[:G].reshape(1, 1, G, 1, L),  # group g: all weight on level g
        "image_size": (16, 32),
    }
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else [f.to(device) for f in v] if isinstance(v, list)
              else v for k, v in inputs.items()}
    out = ops.resolve(OP, impl)(**inputs, released_weight_order=released)[0, 0, :, :, 0].to(torch.float64).cpu()
    t, g = torch.meshgrid(torch.arange(T), torch.arange(G), indexing="ij")
    group = (t * G + g) // T if released else g
    torch.testing.assert_close(out, (10.0 ** group).T.to(torch.float64), rtol=1e-6, atol=0)


def test_reference_gradcheck_fp64(seed: int) -> None:
    case = Case("gradcheck", {"B": 1, "Q": 2, "T": 2, "N": 3, "G": 2, "P": 2, "L": 2, "C": 2, "H_in": 32,
                              "W_in": 64})
    x = spec.make_inputs(case, dtype=torch.float64, seed=seed)
    reference = ops.resolve(OP, "reference")
    names = ("centres", "quats", "scales", "offsets", "level_weights")
    args = tuple(x[k].clone().requires_grad_() for k in names) + tuple(
        f.clone().requires_grad_() for f in x["features"])

    def fn(centres, quats, scales, offsets, level_weights, *features):
        return reference(centres, quats, scales, offsets, x["ego2img"], list(features), level_weights,
                         x["image_size"], False)

    assert torch.autograd.gradcheck(fn, args, eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=True)


def test_reference_view_choice_at_the_strict_bounds() -> None:
    """A sample exactly on camera 0's depth bound or image border is not valid there, so it goes to camera 1.

    Camera 0 is the identity (u = x / z / W_in, v = y / z / H_in); camera 1 sees every point with z >= 0 strictly
    inside its image (x' = 4z + 2, y' = 2z + 1, z' = z + 1: u in [1/4, 1/2), v in [1/4, 1/2)). In the exact case the
    border samples have no valid camera, and falling back to camera 0 hides an inclusive bound; here it would not.
    """
    from pgocc.ops.aniso_sample import DEPTH_EPS
    from reference.aniso_sample import project

    H_in, W_in = 4, 8
    points = torch.tensor([
        [4 * DEPTH_EPS, 2 * DEPTH_EPS, DEPTH_EPS],  # z' = DEPTH_EPS exactly (u = v = 1/2)
        [0.0, 2, 1],                                # u = 0
        [8.0, 2, 1],                                # u = 1
        [4.0, 0, 1],                                # v = 0
        [4.0, 4, 1],                                # v = 1
        [4.0, 6, 1],                                # v = 3/2
        [12.0, 2, 1],                               # u = 3/2
        [4.0, 2, 1],                                # u = v = 1/2: valid in camera 0
    ], dtype=torch.float64)[None, None, None]      # [B=1, Q=1, G=1, P=8, 3]
    cam1 = torch.tensor([[0.0, 0, 4, 2], [0, 0, 2, 1], [0, 0, 1, 1], [0, 0, 0, 1]], dtype=torch.float64)
    ego2img = torch.stack([torch.eye(4, dtype=torch.float64), cam1])[None, None]  # [B=1, T=1, N=2, 4, 4]
    _, _, _, valid, view = project(points, ego2img, (H_in, W_in))
    assert valid[0, 0, 0, 0, 0].tolist() == [False] * 7 + [True]
    assert valid[0, 0, 1, 0, 0].tolist() == [True] * 8
    assert view[0, 0, 0, 0].tolist() == [1] * 7 + [0]


def test_reference_bilinear_border_at_minus_one() -> None:
    """At h = −1 (or w = −1) a sample is outside (the MSMV kernel's h > −1): value 0 and gradient 0. The in-range
    corner's weight fh (fw) is 0 there, so only the gradient tells the strict bound from an inclusive one; at
    h = −1/2 the same sample has value and gradient."""
    from reference.aniso_sample import bilinear

    feature = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64).reshape(1, 1, 2, 2, 1)  # H = W = 2
    zero = torch.zeros(3, dtype=torch.int64)
    u = torch.tensor([0.5, -1.0, 0.5], dtype=torch.float64, requires_grad=True)   # w = u (W − 1)
    v = torch.tensor([-1.0, 0.5, -0.5], dtype=torch.float64, requires_grad=True)  # h = v (H − 1)
    out = bilinear(feature, zero, zero, u, v)[:, 0]
    # h = −1/2, w = 1/2: only row 0 is in range, with weight 1/2: (1 + 2)/2 · 1/2.
    assert out.tolist() == [0.0, 0.0, 0.75]
    du, dv = torch.autograd.grad(out.sum(), (u, v))
    # At h = −1/2, w = 1/2: out = fh ((1 − fw)·1 + fw·2), so d/dv = (1 + 2)/2 = 1.5 and d/du = fh (2 − 1) = 0.5.
    assert du.tolist() == [0.0, 0.0, 0.5] and dv.tolist() == [0.0, 0.0, 1.5]


def test_reference_bilinear_last_half_texel() -> None:
    """h in (H − 1, H) (a fallback sample below the last row): only row H − 1 is in range, with weight 1 − fh; the
    missing row H counts as zero, not as a copy of row H − 1. The same for w in (W − 1, W)."""
    from reference.aniso_sample import bilinear

    feature = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64).reshape(1, 1, 2, 2, 1)  # H = W = 2
    zero = torch.zeros(2, dtype=torch.int64)
    u = torch.tensor([0.5, 1.5], dtype=torch.float64)   # w = 1/2, 3/2
    v = torch.tensor([1.5, 0.5], dtype=torch.float64)   # h = 3/2, 1/2
    out = bilinear(feature, zero, zero, u, v)[:, 0]
    # h = 3/2, w = 1/2: (1 − 1/2) · (3 + 4)/2 = 1.75; h = 1/2, w = 3/2: (1 − 1/2) · (2 + 4)/2 = 1.5.
    assert out.tolist() == [1.75, 1.5]


def test_reference_one_level_is_two_levels_with_a_zero_weight(seed: int) -> None:
    """L = 1 is allowed (a non-empty list): it equals L = 2 with all the weight on level 0."""
    case = Case("two_levels", {"B": 1, "Q": 3, "T": 2, "N": 2, "G": 2, "P": 2, "L": 2, "C": 4, "H_in": 16,
                               "W_in": 32})
    x = spec.make_inputs(case, dtype=torch.float64, seed=seed)
    weights = torch.zeros_like(x["level_weights"])
    weights[..., 0] = 1
    reference = ops.resolve(OP, "reference")
    args = (x["centres"], x["quats"], x["scales"], x["offsets"], x["ego2img"])
    two = reference(*args, x["features"], weights, x["image_size"], False)
    one = reference(*args, x["features"][:1], weights[..., :1], x["image_size"], False)
    assert one.dtype == two.dtype and torch.equal(one, two)
