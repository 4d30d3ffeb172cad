"""The model's Renderer (docs/model.md §4) where mutation testing found no test (tests/README.md, "Mutation testing"):
``features_and_depth`` (only stood in for by the loss tests), the arguments each method hands the ``gs_raster`` op,
and the non-deterministic default. Expectations are written here: a single Gaussian on a camera's optical axis,
whose 2D mean is a pixel centre, composites o·f there at depth z (docs of ``pgocc.ops.gs_raster``)."""

from __future__ import annotations

import pytest
import torch

from pgocc.config import KernelConfig
from pgocc.errors import ConfigError
from pgocc.model.render import Renderer
from pgocc.model.types import Gaussians

F64 = torch.float64
H, W = 3, 5
# camera z (forward) along ego +x, camera x along ego −y, camera y along ego −z: R differs from Rᵀ
R = [[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]
ORIGINS = [(1.0, 2.0, 0.5), (-3.0, 0.0, 1.0)]   # camera centres of samples 0 and 1 (one camera each)
DEPTHS = [4.0, 7.0]                              # the visible Gaussian straight ahead
OPACITIES = [0.5, 0.25]
FEATURES = [[1.0, 2.0], [-1.0, 3.0]]


def _scene() -> tuple[Gaussians, torch.Tensor, torch.Tensor, torch.Tensor]:
    """B = 2 samples of Q = 3 Gaussians: Gaussian 0 at d metres in front of the camera, 1 and 2 behind it (culled,
    features 100 so a leak would show); float64 Gaussians, float32 features, poses and intrinsics."""
    means, feats = [], []
    for t, d, f in zip(ORIGINS, DEPTHS, FEATURES, strict=True):
        means.append([[t[0] + d, t[1], t[2]], [t[0] - 2.0, t[1], t[2]], [t[0] - 5.0, t[1] + 1.0, t[2]]])
        feats.append([f, [100.0, 100.0], [100.0, -100.0]])
    B, Q = 2, 3
    g = Gaussians(torch.tensor(means, dtype=F64),
                  torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=F64).expand(B, Q, 4).clone(),
                  torch.full((B, Q, 3), 0.3, dtype=F64),
                  torch.tensor([[o, 0.9, 0.9] for o in OPACITIES], dtype=F64),
                  torch.zeros(B, Q, 4, dtype=F64))
    cam2ego = torch.eye(4).repeat(B, 1, 1, 1)
    for b, t in enumerate(ORIGINS):
        cam2ego[b, 0, :3, :3] = torch.tensor(R)
        cam2ego[b, 0, :3, 3] = torch.tensor(t)
    K = torch.tensor([[4.0, 0.0, 2.5], [0.0, 4.0, 1.5], [0.0, 0.0, 1.0]]).expand(B, 1, 3, 3).clone()
    return g, torch.tensor(feats), cam2ego, K


def test_features_and_depth_composite_each_sample_in_its_own_camera() -> None:
    g, feats, cam2ego, K = _scene()
    renderer = Renderer(KernelConfig(gs_raster="reference"))
    image, depth = renderer.features_and_depth(g, feats, cam2ego, K, (H, W))
    assert tuple(image.shape) == (2, 1, H, W, 2) and tuple(depth.shape) == (2, 1, H, W)
    assert image.dtype == F64 and depth.dtype == F64
    for b in range(2):
        # the centre pixel (row 1, column 2) is the 2D mean: a = min(0.999, o), one Gaussian, so depth = z
        assert image[b, 0, 1, 2].tolist() == pytest.approx([OPACITIES[b] * f for f in FEATURES[b]], rel=1e-12)
        assert float(depth[b, 0, 1, 2]) == pytest.approx(DEPTHS[b], rel=1e-12)
        covered = depth[b, 0] > 0
        assert torch.allclose(depth[b, 0][covered], torch.full_like(depth[b, 0][covered], DEPTHS[b]), rtol=1e-12)
        assert float(image[b, 0].abs().max()) <= OPACITIES[b] * 3.0 + 1e-12       # the culled ones add nothing
    # the depth-only render gives the same depth
    torch.testing.assert_close(renderer.depth(g, cam2ego, K, (H, W)), depth, rtol=1e-12, atol=0.0)


def test_each_method_hands_the_op_one_sample_and_its_mode() -> None:
    g, feats, cam2ego, K = _scene()
    calls: list[dict] = []

    def spy(means, quats, scales, opacities, features, viewmats, Ks, height, width, depth_only):  # noqa: ANN001, ANN202
        calls.append({"means": means, "features": features, "viewmats": viewmats, "Ks": Ks,
                      "size": (height, width), "depth_only": depth_only})
        V = viewmats.shape[0]
        C = 0 if depth_only else features.shape[1]
        return (means.new_zeros(V, height, width, C), means.new_zeros(V, height, width, 1),
                means.new_zeros(V, height, width, 1))

    renderer = Renderer(KernelConfig(gs_raster="reference"))
    renderer._raster = spy
    renderer.depth(g, cam2ego, K, (H, W))
    renderer.features_and_depth(g, feats, cam2ego, K, (H, W))
    assert [c["depth_only"] for c in calls] == [True, True, False, False]
    for i, c in enumerate(calls):
        b = i % 2
        assert torch.equal(c["means"], g.means[b]) and c["size"] == (H, W)
        assert c["Ks"].dtype == F64 and torch.equal(c["Ks"], K[b].double())
        # world-to-camera: [Rᵀ, −Rᵀ t], written out
        Rt = torch.tensor(R, dtype=F64).T
        want = torch.eye(4, dtype=F64)
        want[:3, :3] = Rt
        want[:3, 3] = -Rt @ torch.tensor(ORIGINS[b], dtype=F64)
        assert c["viewmats"].dtype == F64 and torch.equal(c["viewmats"][0], want)
        if c["depth_only"]:
            assert tuple(c["features"].shape) == (3, 0)                # no features read back
        else:
            assert c["features"].dtype == F64 and torch.equal(c["features"], feats[b].double())


def test_the_default_allows_a_non_deterministic_raster() -> None:
    assert Renderer(KernelConfig(gs_raster="triton"))._raster.impl == "triton"
    with pytest.raises(ConfigError, match="not deterministic"):
        Renderer(KernelConfig(gs_raster="triton"), deterministic=True)
