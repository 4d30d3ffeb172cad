"""A/B of gs_raster's projection code: an old ``kernels_triton/gs_raster/_project.py`` (a file) against the working
tree's, in one process on one GPU.

The old code is the one before the projection's values got names (issue 14): commit d2ad15c. The device copy of the
tree has no .git, so write the old file into the working tree (untracked files travel with it) before the call:

    git show d2ad15c:kernels_triton/gs_raster/_project.py > ab_old_project.py
    # on the GPU machine, from the repository root, after `source bench/gpu_env.sh`:
    python3 bench/ab_project.py --old ab_old_project.py --out $OUT

and delete ``ab_old_project.py`` afterwards. On a CPU (Triton's interpreter, tiny sizes, wall-clock time; checks
that the script runs, its figures mean nothing):

    .venv/bin/python bench/ab_project.py --old /tmp/old_project.py --out /tmp/ab --dry-run

Writes ``OUT/ab_project.md``: for each of bench/test_gs_raster.py's bench cases (float32; the Triton op takes float32
only) the forward (features + depth, no gradient), the forward + backward (gradients to all five Gaussian tensors) and
the two projection kernels alone (the op's time is mostly compositing, which both sides share). Passes run old, new,
old, new; each pass times every row over ROUNDS rounds of back-to-back calls lasting at least ROUND_MS, CUDA events,
median per call. The rows without autograd run as CUDA graphs of GRAPH_CALLS calls: a projection kernel (~20 us) is
shorter than its host launch, so eager back-to-back launches would time the host. It also checks that old and new give
bit-identical results where the code is deterministic: the op's forward outputs and both projection kernels' outputs
(the op's backward adds with atomics, so its gradients are not compared). About 25 s on an H100 (2026-12-07), Triton
compilation included.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

ROUNDS = 15
ROUND_MS = 40.0
"""Least time queued per timed round: the host's launch overhead of all calls but the first overlaps GPU work."""
MAX_CALLS = 200
GRAPH_CALLS = 20
OLD_MODULE = "kernels_triton.gs_raster._project_old"
GRAD_ARGS = ("means", "quats", "scales", "opacities", "features")


def _parse() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--old", type=Path, required=True, help="the old _project.py (e.g. from git show)")
    p.add_argument("--out", type=Path, required=True, help="folder for ab_project.md")
    p.add_argument("--dry-run", action="store_true", help="CPU: Triton's interpreter, the contract's smallest case")
    return p.parse_args()


ARGS = _parse() if __name__ == "__main__" else None
if ARGS is not None and ARGS.dry_run:
    # Read by the @triton.jit decorators when the kernel modules are imported below.
    os.environ["TRITON_INTERPRET"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import triton  # noqa: E402

import kernels_triton.gs_raster._project as new_project  # noqa: E402
import kernels_triton.gs_raster.op as op  # noqa: E402
from bench.cuda_timing import cuda_ms_per_call  # noqa: E402
from pgocc import ops  # noqa: E402

spec = ops.contract("gs_raster")


def load_old(path: Path) -> ModuleType:
    """The old _project.py as the module ``kernels_triton.gs_raster._project_old`` (a sibling of the new one, so
    that relative imports in it resolve as they did in the package)."""
    module_spec = importlib.util.spec_from_file_location(OLD_MODULE, path.resolve())
    if module_spec is None or module_spec.loader is None:
        raise SystemExit(f"ab_project: cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[OLD_MODULE] = module
    module_spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def using(project: ModuleType) -> Iterator[None]:
    """The op launches ``project``'s kernels inside the block (op.py reads them from its globals at each call)."""
    saved = op._gs_project_fwd_kernel, op._gs_project_bwd_kernel
    op._gs_project_fwd_kernel = project._gs_project_fwd_kernel
    op._gs_project_bwd_kernel = project._gs_project_bwd_kernel
    try:
        yield
    finally:
        op._gs_project_fwd_kernel, op._gs_project_bwd_kernel = saved


def project_kernels(project: ModuleType, x: dict, dproj: torch.Tensor) -> tuple[Callable[[], list], Callable[[], list]]:
    """(forward, backward) launches of ``project``'s two kernels on preallocated buffers, as op.py makes them; each
    returns its outputs: [proj [V, N, 8], rect [V, N, 4], counts [V*N]] and [dmeans, dquats, dscales, dopacities]."""
    N, V = x["means"].shape[0], x["viewmats"].shape[0]
    height, width = x["height"], x["width"]
    tiles_x, tiles_y = triton.cdiv(width, op.TILE), triton.cdiv(height, op.TILE)
    dev = x["means"].device
    proj = torch.empty(V, N, op.PROJ_STRIDE, dtype=torch.float32, device=dev)
    rect = torch.empty(V, N, 4, dtype=torch.int32, device=dev)
    counts = torch.empty(V * N, dtype=torch.int32, device=dev)
    grads = [torch.empty_like(x[k]) for k in ("means", "quats", "scales", "opacities")]
    blocks = triton.cdiv(N, op.PROJECT_BLOCK)

    def forward() -> list:
        project._gs_project_fwd_kernel[(blocks, V)](
            x["means"], x["quats"], x["scales"], x["opacities"], x["viewmats"], x["Ks"], proj, rect, counts, N, width,
            height, tiles_x, tiles_y, BLOCK=op.PROJECT_BLOCK)
        return [proj, rect, counts]

    def backward() -> list:
        project._gs_project_bwd_kernel[(blocks,)](
            x["means"], x["quats"], x["scales"], x["viewmats"], x["Ks"], dproj, *grads, N, V, width, height,
            BLOCK=op.PROJECT_BLOCK)
        return grads

    return forward, backward


def steps(project: ModuleType, x: dict, cot: list[torch.Tensor], dproj: torch.Tensor) -> dict[str, Callable]:
    """Zero-argument callables per timed row, each returning its outputs."""
    leaves = {k: x[k].detach().clone().requires_grad_(True) for k in GRAD_ARGS}

    def fwd() -> list:
        with using(project), torch.no_grad():
            return list(op.gs_raster(**x))

    def fwd_bwd() -> list:
        with using(project):
            out = op.gs_raster(**{**x, **leaves})
            return list(torch.autograd.grad(out, list(leaves.values()), cot))

    proj_fwd, proj_bwd = project_kernels(project, x, dproj)
    return {"fwd": fwd, "fwd_bwd": fwd_bwd, "project kernel fwd": proj_fwd, "project kernel bwd": proj_bwd}


def graphed(step: Callable, calls: int) -> Callable[[], None]:
    """A CUDA graph of ``calls`` calls of ``step`` (warmed up on a side stream, as capture requires); its replay."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            step()
    return graph.replay


def time_ms(step: Callable, cuda: bool, rounds: int) -> float:
    """Median time per call of ``step`` over ``rounds`` rounds of back-to-back calls (CUDA events; wall clock on the
    CPU)."""
    if not cuda:
        times = []
        for _ in range(rounds):
            t0 = time.perf_counter()
            step()
            times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)
    calls = max(1, min(MAX_CALLS, math.ceil(ROUND_MS / max(cuda_ms_per_call(step, 1), 1e-3))))
    return statistics.median(cuda_ms_per_call(step, calls) for _ in range(rounds))


def identical(a: list, b: list) -> bool:
    return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))


def main(args: argparse.Namespace) -> None:
    cuda = not args.dry_run
    if cuda and not torch.cuda.is_available():
        raise SystemExit("ab_project: no CUDA device (use --dry-run on a CPU)")
    device = "cuda" if cuda else "cpu"
    old_project = load_old(args.old)
    cases = spec.CASES["bench"] if cuda else spec.CASES["cpu"][:1]
    rounds = ROUNDS if cuda else 1
    t_start = time.perf_counter()
    rows: dict[tuple[str, str], dict[str, list[float]]] = {}
    checks: list[str] = []
    per_case = []
    for case in cases:
        x = spec.make_inputs(case, device=device, dtype=torch.float32, seed=0)
        x["depth_only"] = False
        V, N, C = x["viewmats"].shape[0], x["means"].shape[0], x["features"].shape[1]
        g = torch.Generator(device=device).manual_seed(0)
        cot = [torch.randn(V, x["height"], x["width"], c, device=device, generator=g) for c in (C, 1, 1)]
        dproj = torch.randn(V, N, op.PROJ_STRIDE, device=device, generator=g)
        sides = {"old": steps(old_project, x, cot, dproj), "new": steps(new_project, x, cot, dproj)}
        # The first calls compile; their results are the bit-identity check.
        results = {side: {name: [t.clone() for t in fn()] for name, fn in fns.items()} for side, fns in sides.items()}
        for name in ("fwd", "project kernel fwd", "project kernel bwd"):
            same = identical(results["old"][name], results["new"][name])
            checks.append(f"{case.id} {name}: {'bit-identical' if same else '**DIFFERENT**'}")
        timed = {side: {name: (graphed(fn, GRAPH_CALLS), GRAPH_CALLS) if cuda and name != "fwd_bwd" else (fn, 1)
                        for name, fn in fns.items()} for side, fns in sides.items()}
        per_case.append((case, timed))
    for side in ("old", "new", "old", "new"):
        for case, sides in per_case:
            for name, (fn, calls) in sides[side].items():
                ms = time_ms(fn, cuda, rounds) / calls
                rows.setdefault((case.id, name), {"old": [], "new": []})[side].append(ms)
    elapsed = time.perf_counter() - t_start
    write_report(args, rows, checks, elapsed, cuda, rounds)


def write_report(args: argparse.Namespace, rows: dict, checks: list[str], elapsed: float, cuda: bool,
                 rounds: int) -> None:
    digest = hashlib.sha256(args.old.read_bytes()).hexdigest()[:12]
    new_digest = hashlib.sha256(Path(new_project.__file__).read_bytes()).hexdigest()[:12]
    device = torch.cuda.get_device_name() if cuda else "CPU, TRITON_INTERPRET=1 (dry run: the times mean nothing)"
    lines = [
        "# gs_raster projection A/B: old vs new _project.py, one process",
        "",
        f"Device: {device}; torch {torch.__version__}, triton {triton.__version__}; commit "
        f"{os.environ.get('PGOCC_GIT_SHA', 'unknown')}. Old: `{args.old}` (sha256 {digest}); new: the working tree's "
        f"`kernels_triton/gs_raster/_project.py` (sha256 {new_digest}). float32 (the Triton op takes float32 only).",
        f"Passes old, new, old, new; {rounds} rounds of back-to-back calls (>= {ROUND_MS:g} ms each) "
        f"per row and pass, median ms per call (CUDA events; rows other than fwd_bwd as CUDA graphs of "
        f"{GRAPH_CALLS if cuda else 1} calls). Whole run {elapsed:.1f} s after the imports.",
        "",
        "| case | row | old ms (pass 1 / 2) | new ms (pass 1 / 2) | new / old |",
        "|---|---|---|---|---|",
    ]
    for (case_id, name), t in rows.items():
        ratio = statistics.mean(t["new"]) / statistics.mean(t["old"])
        lines.append(f"| {case_id} | {name} | {t['old'][0]:.4f} / {t['old'][1]:.4f} | "
                     f"{t['new'][0]:.4f} / {t['new'][1]:.4f} | {ratio:.3f} |")
    lines += ["", "Old vs new outputs (torch.equal; the op's backward adds with atomics and is not compared):", ""]
    lines += [f"- {c}" for c in checks]
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "ab_project.md"
    path.write_text("\n".join(lines) + "\n")
    print(path.read_text())


if __name__ == "__main__":
    assert ARGS is not None
    main(ARGS)
