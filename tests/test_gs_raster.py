"""gs_raster implementations against the float64 reference: forward outputs and all five gradients.

The op has discontinuities per pixel (alpha skip at 1/255, the transmittance stop at 1e-4, the alpha clamp at
0.999). A float32 implementation may decide differently from float64 only where a decision is within rounding of
its threshold, so each test computes the reference's decision margin and compares the pixels whose margin exceeds
1e-3 (log units), giving the others a zero cotangent so that no gradient depends on them. The scenes leave more
than 90% of the pixels comparable, and the near-plane and Jacobian-clamp decisions are kept clear by make_inputs.
"""

from __future__ import annotations

import pytest
import torch

from pgocc import ops
from reference.gs_raster import decision_margin
from tests.conftest import HAS_GPU, case_ids, draw_inputs, parity_cases
from tests.parity import assert_finite, assert_parity

OP = "gs_raster"
spec = ops.contract(OP)
GRAD_ARGS = ("means", "quats", "scales", "opacities", "features")
OUT_NAMES = ("features", "depth", "alpha")
MARGIN = 1e-3
CASES = parity_cases(OP)


def _upcast(x: dict) -> dict:
    return {k: v.to(torch.float64) if isinstance(v, torch.Tensor) else v for k, v in x.items()}


def _stable_pixels(x64: dict) -> torch.Tensor:
    """[V, H, W, 1] bool: pixels whose every discrete decision is clear of its threshold."""
    margin = decision_margin(**{k: v for k, v in x64.items() if k not in ("features", "depth_only")})
    return (margin > MARGIN)[..., None]


def _forward_backward(fn, x: dict, cotangents: list[torch.Tensor]) -> tuple[tuple, dict]:
    """Outputs of fn(**x) and the gradients of sum(out * cotangent) for GRAD_ARGS (None where unused)."""
    leaves = {k: x[k].detach().clone().requires_grad_(True) for k in GRAD_ARGS}
    out = fn(**{**x, **leaves})
    pairs = [(o, c.to(o.dtype)) for o, c in zip(out, cotangents, strict=True) if o.numel()]
    grads = torch.autograd.grad([o for o, _ in pairs], list(leaves.values()), [c for _, c in pairs],
                                allow_unused=True)
    return tuple(o.detach() for o in out), dict(zip(GRAD_ARGS, grads, strict=True))


def check_parity(impl: str, case: ops.Case, device: torch.device, seed: int, tol_key: str) -> None:
    def draw(s: int) -> tuple[dict, dict, torch.Tensor]:
        x = spec.make_inputs(case, device=device, dtype=torch.float32, seed=s)
        x64 = _upcast(x)
        return x, x64, _stable_pixels(x64)

    def usable(drawn: tuple[dict, dict, torch.Tensor]) -> str | None:
        stable = float(drawn[2].float().mean())
        return None if stable > 0.9 else f"only {stable:.3f} of the pixels are clear of their thresholds"

    x, x64, stable = draw_inputs(draw, usable, seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    channels = (0 if x["depth_only"] else x["features"].shape[1], 1, 1)
    cotangents = [torch.randn(*stable.shape[:3], c, dtype=torch.float64, device=device, generator=gen) * stable
                  for c in channels]
    ref, ref_grads = _forward_backward(ops.resolve(OP, "reference"), x64, cotangents)
    out, grads = _forward_backward(ops.resolve(OP, impl), x, cotangents)
    for name, o, r in zip(OUT_NAMES, out, ref, strict=True):
        assert_finite(f"{OP}/{impl}/{name}", o)
        assert_parity(name, torch.where(stable, o.to(torch.float64), r), r, op=tol_key, dtype=torch.float32)
    for name in GRAD_ARGS:
        if ref_grads[name] is None:  # features in depth-only mode: no gradient at all
            assert grads[name] is None or float(grads[name].abs().max()) == 0.0, f"d{name} must be zero"
            continue
        assert grads[name] is not None, f"{impl}: no gradient for {name}"
        assert_parity(f"d{name}", grads[name], ref_grads[name], op=tol_key, quantity="grad", dtype=torch.float32)


@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_triton_matches_reference(case: ops.Case, device: torch.device, seed: int) -> None:
    check_parity("triton", case, device, seed, OP)


@pytest.mark.gpu
@pytest.mark.parametrize("case", CASES, ids=case_ids(CASES))
def test_gsplat_matches_reference(case: ops.Case, device: torch.device, seed: int) -> None:
    check_parity("gsplat", case, device, seed, "gs_raster_gsplat")


def _handmade_scene(device: torch.device) -> dict:
    """One camera at the origin (32 x 48 image, 3 x 2 tiles): Gaussians centred on tile corners and edges, one 1e3
    times thinner along one axis, one covering the whole image, one behind the camera and one beyond the edge of
    the Jacobian clamp's range (so its clamped branch is differentiated), some overlapping."""
    f64 = torch.float64
    H, W, focal = 32, 48, 40.0
    viewmats = torch.eye(4, dtype=f64)[None]
    Ks = torch.tensor([[[focal, 0, 24.0], [0, focal, 16.0], [0, 0, 1]]], dtype=f64)
    pix = torch.tensor([[16.0, 16.0], [32.0, 16.0], [16.0, 8.0], [40.0, 31.0], [24.0, 16.0], [24.0, 16.0],
                        [5.0, 5.0], [60.0, 10.0]], dtype=f64)
    z = torch.tensor([4.0, 6.0, 5.0, 3.0, 9.0, 2.0, -3.0, 5.0], dtype=f64)
    means = torch.stack([(pix[:, 0] - 24.0) / focal * z, (pix[:, 1] - 16.0) / focal * z, z], -1)
    scales = torch.tensor([[0.3, 0.2, 0.25], [0.4, 0.4, 0.1], [0.5, 0.5, 0.5], [0.2, 0.3, 0.2],
                           [0.6, 0.6, 0.6], [3.0, 2.0, 1.0], [0.5, 0.5, 0.5], [0.6, 0.3, 0.4]], dtype=f64)
    scales[1, 0] = 4e-4  # very thin
    quats = torch.tensor([[1.0, 0.2, -0.1, 0.3], [0.3, 1.0, 0.5, -0.2], [1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.5, 0.5],
                          [2.0, 0.1, 0.0, 0.0], [1.0, -0.4, 0.2, 0.1], [1.0, 0.0, 0.0, 0.0], [0.7, 0.1, 0.7, 0.0]],
                         dtype=f64)
    opacities = torch.tensor([0.9, 0.7, 0.5, 0.95, 0.8, 0.3, 0.9, 0.6], dtype=f64)
    features = torch.linspace(-2.0, 3.0, 8 * 3, dtype=f64).reshape(8, 3)
    x = {"means": means, "quats": quats, "scales": scales, "opacities": opacities, "features": features,
         "viewmats": viewmats, "Ks": Ks}
    return {**{k: v.to(device=device, dtype=torch.float32) for k, v in x.items()},
            "height": H, "width": W, "depth_only": False}


def test_triton_tile_corners_and_extremes(device: torch.device) -> None:
    x = _handmade_scene(device)
    x64 = _upcast(x)
    stable = _stable_pixels(x64)
    cotangents = [torch.linspace(-1.0, 1.0, stable.numel() * c, dtype=torch.float64, device=device).reshape(
        *stable.shape[:3], c) * stable for c in (3, 1, 1)]
    ref, ref_grads = _forward_backward(ops.resolve(OP, "reference"), x64, cotangents)
    out, grads = _forward_backward(ops.resolve(OP, "triton"), x, cotangents)
    assert float(ref[2].amax()) > 0.9 and float(ref[2].amin()) > 0.0, "the big Gaussian must cover every pixel"
    for name, o, r in zip(OUT_NAMES, out, ref, strict=True):
        assert_parity(name, torch.where(stable, o.to(torch.float64), r), r, op=OP, dtype=torch.float32)
    for name in GRAD_ARGS:
        assert_parity(f"d{name}", grads[name], ref_grads[name], op=OP, quantity="grad", dtype=torch.float32)
    assert float(grads["means"][6].abs().max()) == 0.0, "a Gaussian behind the camera gets no gradient"


@pytest.mark.parametrize("impl", ["reference", "triton"])
@pytest.mark.parametrize("scene", ["empty", "all_behind"])
def test_nothing_to_render(impl: str, scene: str, device: torch.device) -> None:
    x = _handmade_scene(device)
    if scene == "empty":
        x.update({k: x[k][:0] for k in GRAD_ARGS})
    else:
        x["means"] = torch.cat([x["means"][:, :2], -x["means"][:, 2:].abs()], 1)
    leaves = {k: x[k].clone().requires_grad_(True) for k in GRAD_ARGS}
    feats, depth, alpha = ops.resolve(OP, impl)(**{**x, **leaves})
    for t in (feats, depth, alpha):
        assert t.shape[:3] == (1, 32, 48) and float(t.detach().abs().max()) == 0.0
    (feats.sum() + depth.sum() + alpha.sum()).backward()
    for name, leaf in leaves.items():
        assert leaf.grad is None or float(leaf.grad.abs().sum()) == 0.0, name


def test_triton_forward_is_deterministic(device: torch.device, seed: int) -> None:
    x = spec.make_inputs(CASES[-1], device=device, seed=seed)
    fn = ops.resolve(OP, "triton")
    for a, b in zip(fn(**x), fn(**x), strict=True):
        assert torch.equal(a, b)


def test_triton_compiles_fullgraph(device: torch.device, seed: int) -> None:
    x = spec.make_inputs(CASES[-1], device=device, seed=seed)
    fn = ops.resolve(OP, "triton")

    def loss(means: torch.Tensor, scales: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        f, d, a = fn(**{**x, "means": means, "scales": scales, "features": features})
        return (f * f).sum() + (d * a).sum()

    leaves = [x[k].clone().requires_grad_(True) for k in ("means", "scales", "features")]
    compiled = torch.compile(loss, fullgraph=True)
    eager_loss = loss(*leaves)
    eager_grads = torch.autograd.grad(eager_loss, leaves)
    comp_loss = compiled(*leaves)
    comp_grads = torch.autograd.grad(comp_loss, leaves)
    torch.testing.assert_close(comp_loss, eager_loss, rtol=1e-6, atol=1e-6)
    # The backward adds with atomics: on the GPU the order, hence the rounding, differs run to run.
    for a, b in zip(comp_grads, eager_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * float(b.abs().max()))


def test_triton_refuses_float64(device: torch.device) -> None:
    x = _upcast(_handmade_scene(device))
    with pytest.raises(NotImplementedError, match="float32 only"):
        ops.resolve(OP, "triton")(**x)


@pytest.mark.skipif(HAS_GPU, reason="checks the CPU error")
def test_gsplat_refuses_cpu() -> None:
    with pytest.raises(RuntimeError, match="gsplat rasterizes on CUDA only"):
        ops.resolve(OP, "gsplat")(**_handmade_scene(torch.device("cpu")))


@pytest.mark.parametrize("impl", ops.available(OP))
def test_rejects_bad_input(impl: str) -> None:
    fn = ops.resolve(OP, impl)
    good = _handmade_scene(torch.device("cpu"))

    def bad(message: str, **change) -> None:
        with pytest.raises(ValueError, match=message):
            fn(**{**good, **change})

    bad(r"means must be \[N, 3\]; dim 1 is 2, expected 3", means=good["means"][:, :2])
    bad(r"quats must be \[N, 4\] \(2-D\)", quats=good["quats"][None])
    bad(r"scales must be \[N, 3\]; dim 0 \(N\) is 7 but N=8", scales=good["scales"][:7])
    bad(r"opacities must have dtype in \['torch.float32'\]", opacities=good["opacities"].double())
    bad(r"features must be \[N, C\] \(2-D\)", features=good["features"][:, 0])
    bad(r"Ks must be \[V, 3, 3\]; dim 0 \(V\) is 2 but V=1", Ks=good["Ks"].expand(2, 3, 3))
    bad(r"viewmats must hold at least one camera", viewmats=good["viewmats"][:0], Ks=good["Ks"][:0])
    bad(r"means must have dtype in", means=good["means"].half())
    bad(r"all tensors must be on one device", features=good["features"].to("meta"))
    bad(r"height must be an int >= 1, got 0", height=0)
    bad(r"width must be an int >= 1, got 48.0", width=48.0)
    bad(r"depth_only must be a bool, got int", depth_only=1)
