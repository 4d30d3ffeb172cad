"""The Triton rasterizer's tile binning and its host-sync freedom (issue 18, item 3).

The binning must give every tile exactly the Gaussians whose tile rectangle covers it, in increasing depth with
ties by increasing index (the reference's compositing order), and the render, as the model's densification step
calls it, must not read anything back to the host: on CUDA under ``torch.cuda.set_sync_debug_mode("error")``, on CPU
(interpreted Triton) by making every host read of a tensor from our code (``item``, ``int(t)``, ``if t:``,
``tolist``, ``cpu``, ``numpy``, ``nonzero``) raise.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from pgocc import ops
from pgocc.config import KernelConfig
from pgocc.model.render import Renderer
from pgocc.model.types import Gaussians

ROOT = Path(__file__).resolve().parents[1]
OURS = (str(ROOT / "pgocc"), str(ROOT / "kernels_triton"))
HOST_READS = ("item", "tolist", "cpu", "numpy", "nonzero", "__int__", "__float__", "__bool__", "__index__")


def _expected_lists(depth: torch.Tensor, rect: torch.Tensor, counts: torch.Tensor, tiles_x: int, tiles_y: int
                     ) -> list[list[int]]:
    """Per tile (camera-major, then row-major), the covering Gaussians sorted by (depth, index), in plain Python."""
    V, N = depth.shape
    lists = []
    for v in range(V):
        for ty in range(tiles_y):
            for tx in range(tiles_x):
                hits = [(float(depth[v, n]), n) for n in range(N) if int(counts[v * N + n]) > 0
                        and int(rect[v, n, 0]) <= tx <= int(rect[v, n, 2]) and int(rect[v, n, 1]) <= ty <= int(
                            rect[v, n, 3])]
                lists.append([n for _, n in sorted(hits)])
    return lists


def test_binning_lists_each_tile_front_to_back(device: torch.device, seed: int) -> None:
    from kernels_triton.gs_raster._bin import bin_gaussians

    g = torch.Generator().manual_seed(seed)
    V, N, tiles_x, tiles_y = 2, 400, 5, 3  # ~320 kept per camera, over one scan block (256): the offset carries
    x0 = torch.randint(0, tiles_x, (V, N), generator=g)
    y0 = torch.randint(0, tiles_y, (V, N), generator=g)
    rect = torch.stack([x0, y0, (x0 + torch.randint(0, 3, (V, N), generator=g)).clamp(max=tiles_x - 1),
                        (y0 + torch.randint(0, 2, (V, N), generator=g)).clamp(max=tiles_y - 1)], -1).int()
    counts = ((rect[..., 2] - rect[..., 0] + 1) * (rect[..., 3] - rect[..., 1] + 1)).int()
    counts[torch.rand(V, N, generator=g) < 0.2] = 0                          # dropped (behind the camera, ...)
    depth = torch.randint(1, 40, (V, N), generator=g).float() * 0.25         # many exact ties
    proj = torch.zeros(V, N, 8)
    proj[..., 5] = depth
    tile_start, gids = bin_gaussians(proj.to(device), rect.to(device), counts.flatten().to(device), tiles_x, tiles_y)
    tile_start, gids = tile_start.cpu(), gids.cpu()
    expected = _expected_lists(depth, rect, counts.flatten(), tiles_x, tiles_y)
    assert tile_start.tolist() == [0] + torch.tensor([len(e) for e in expected]).cumsum(0).tolist()
    for t, want in enumerate(expected):
        assert gids[tile_start[t]:tile_start[t + 1]].tolist() == want, f"tile {t}"


@contextmanager
def _no_host_reads(device: torch.device) -> Iterator[None]:
    """Raise on a device-to-host read inside the block (see the module docstring)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return
    originals = {name: getattr(torch.Tensor, name) for name in HOST_READS}

    def guard(name: str):  # noqa: ANN202
        def read(self: torch.Tensor, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            caller = inspect.currentframe().f_back.f_code.co_filename
            if caller.startswith(OURS):
                raise AssertionError(f"host read Tensor.{name} from {caller}")
            return originals[name](self, *args, **kwargs)
        return read

    for name in HOST_READS:
        setattr(torch.Tensor, name, guard(name))
    try:
        yield
    finally:
        for name, fn in originals.items():
            setattr(torch.Tensor, name, fn)


def test_depth_only_render_reads_nothing_back(device: torch.device, seed: int) -> None:
    case = next(c for c in ops.contract("gs_raster").CASES["cpu"] if c.extra.get("depth_only"))
    x = ops.contract("gs_raster").make_inputs(case, device=device, seed=seed)
    V, H, W = x["viewmats"].shape[0], x["height"], x["width"]
    gauss = Gaussians(x["means"][None], x["quats"][None], x["scales"][None], x["opacities"][None],
                      x["features"][None])
    cam2ego = torch.linalg.inv(x["viewmats"])[None]
    renderer = Renderer(KernelConfig(gs_raster="triton"))
    expected = ops.resolve("gs_raster", "reference")(**{k: v.double() if isinstance(v, torch.Tensor) else v
                                                       for k, v in x.items()})[1][..., 0]
    with torch.no_grad():
        renderer.depth(gauss, cam2ego, x["Ks"][None], (H, W))  # compile the kernels outside the guard
    with _no_host_reads(device), torch.no_grad():
        depth = renderer.depth(gauss, cam2ego, x["Ks"][None], (H, W))
    assert depth.shape == (1, V, H, W)
    # the same picture as the reference, up to float32 rounding (a few pixels at a threshold may differ)
    close = torch.isclose(depth[0].double(), expected, rtol=1e-4, atol=1e-4)
    assert float(close.double().mean()) > 0.97


def test_the_host_read_guard_catches_a_read(device: torch.device) -> None:
    """The guard itself: a read the old binning made (``int(ends[-1])``) from our code raises."""
    if device.type == "cuda":
        pytest.skip("the CUDA guard is torch's own sync debug mode")
    from kernels_triton.gs_raster import _bin

    code = compile("int(torch.ones(3).cumsum(0)[-1])", _bin.__file__, "eval")
    with _no_host_reads(device), pytest.raises(AssertionError, match="host read Tensor.__int__"):
        eval(code, {"torch": torch})  # noqa: S307
