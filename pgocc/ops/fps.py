"""Contract of ``fps``: batched farthest point sampling.

Glossary: B batch, N points per batch row (padded), K samples.

    fps(points, lengths, num_samples, active=None, prefix=None) -> indices

Args:
    points: [B, N, 3] float32/float64 coordinates; row b uses its first ``lengths[b]`` points.
    lengths: [B] int64 number of valid points per row (each >= num_samples; checked on device).
    num_samples: K >= 1 indices to select per row.
    active: optional [B] bool on the points' device: rows where it is False are not sampled (their indices are all
        0). The model's stage-0 fallbacks use it to run only for the samples that need them, without reading the
        decision on the host (docs/model.md §1.6).
    prefix: optional [B, S] int64, 1 <= S <= K, indices (each in [0, lengths[b])) taken as the first S picks: the
        sampling continues from them. With the first S indices of an FPS as ``prefix`` the result is that FPS run on
        to K picks, without redoing the S dependent steps (the model's fallbacks, docs/model.md §1.6).

Returns:
    [B, K] int64 indices into each row's valid prefix, in selection order (all 0 in an inactive row).

Semantics: the first index is 0 (with a prefix, its S indices come first); each next index is the point whose
squared Euclidean distance ``dx*dx + dy*dy + dz*dz`` (computed in the input dtype, in that order) to the selected
set is largest; ties go to the lowest index. Selected points have distance 0, so with K == length every point is
selected once.

Implementations: ``reference`` (a PyTorch loop per row, one host sync per sample) and ``triton`` (each row split over
up to one CTA per SM; on the GPU in float32 one persistent cooperative launch whose CTAs exchange one 64-bit key
each per iteration, otherwise (interpreter, float64) one launch per sample; at most 16384 points per CTA, i.e.
about 2.1 M points per row on an H100 when B = 1). Both deterministic, identical indices.
"""

from __future__ import annotations

import torch

from pgocc.ops._contract import Case, Impl, check_tensor, same_device

IMPLS: dict[str, Impl] = {
    "reference": Impl("reference.fps:fps", deterministic=True),
    "triton": Impl("kernels_triton.fps:fps", deterministic=True),
}

CASES: dict[str, list[Case]] = {
    "cpu": [
        Case("b1_n200_k16", {"B": 1, "N": 200, "K": 16}),
        Case("b3_n48_k48", {"B": 3, "N": 48, "K": 48}, note="K == N: every point selected", extra={"full": True}),
        Case("b2_n64_k1", {"B": 2, "N": 64, "K": 1}),
        Case("b2_ties_grid", {"B": 2, "N": 125, "K": 30}, note="integer grid: many exact ties", extra={"ties": True}),
        Case("b3_n100_k20_active", {"B": 3, "N": 100, "K": 20}, note="row 1 inactive", extra={"active": True}),
        Case("b2_n150_k24_prefix", {"B": 2, "N": 150, "K": 24}, note="continues 9 random picks",
             extra={"prefix": 9}),
    ],
    "gpu": [
        Case("b2_n20000_k500", {"B": 2, "N": 20000, "K": 500}),
        Case("b1_ties_grid", {"B": 1, "N": 4096, "K": 300}, extra={"ties": True}),
        Case("b1_n345600_k6000", {"B": 1, "N": 345_600, "K": 6000}, note="stage-0 size (§1.5)"),
        Case("b3_n20000_k300_active", {"B": 3, "N": 20000, "K": 300}, note="row 1 inactive", extra={"active": True}),
        Case("b2_n50000_k1200_prefix", {"B": 2, "N": 50000, "K": 1200}, note="continues 512 random picks (a tag "
             "multiple of 256)", extra={"prefix": 512}),
    ],
    "bench": [
        Case("stage0_345600_to_6000", {"B": 1, "N": 345_600, "K": 6000}, note="query initialisation (§1.5)"),
        Case("stage1_100000_to_1000", {"B": 1, "N": 100_000, "K": 1000}, note="densification (§1.6)"),
    ],
}


def validate(points: torch.Tensor, lengths: torch.Tensor, num_samples: int,
             active: torch.Tensor | None = None, prefix: torch.Tensor | None = None) -> None:
    """Check metadata; raises ValueError naming the argument."""
    check_tensor("fps", "points", points, ("B", "N", 3), dtypes=(torch.float32, torch.float64))
    device = same_device("fps", points=points, lengths=lengths)
    check_tensor("fps", "lengths", lengths, (points.shape[0],), dtypes=(torch.int64,), device=device)
    if active is not None:
        check_tensor("fps", "active", active, (points.shape[0],), dtypes=(torch.bool,), device=device)
    if points.shape[1] == 0:
        raise ValueError("fps: points has N = 0 points; farthest point sampling needs at least num_samples points")
    if not isinstance(num_samples, int) or isinstance(num_samples, bool) or num_samples < 1:
        raise ValueError(f"fps: num_samples must be an int >= 1, got {num_samples!r}")
    if num_samples > points.shape[1]:
        raise ValueError(f"fps: num_samples={num_samples} exceeds the {points.shape[1]} points per row")
    if prefix is not None:
        check_tensor("fps", "prefix", prefix, (points.shape[0], None), dtypes=(torch.int64,), device=device)
        if not 1 <= prefix.shape[1] <= num_samples:
            raise ValueError(f"fps: prefix must hold 1 to num_samples={num_samples} picks per row, got "
                             f"{prefix.shape[1]}")


def make_inputs(case: Case, *, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                seed: int = 0) -> dict:
    """Random inputs for ``case``: points spread like a 80 m x 80 m x 6.4 m scene, ragged lengths >= K."""
    g = torch.Generator().manual_seed(seed)
    B, N, K = case.dims["B"], case.dims["N"], case.dims["K"]
    if case.extra.get("ties"):
        side = round(N ** (1 / 3)) + 1
        grid = torch.stack(torch.meshgrid(*(torch.arange(side),) * 3, indexing="ij"), -1).reshape(-1, 3)
        points = torch.stack([grid[torch.randperm(grid.shape[0], generator=g)[:N]] for _ in range(B)]).to(dtype)
    else:
        points = (torch.rand(B, N, 3, generator=g, dtype=torch.float64) * torch.tensor([80.0, 80.0, 6.4])
                  - torch.tensor([40.0, 40.0, 1.0])).to(dtype)
    if case.extra.get("full"):
        lengths = torch.full((B,), N, dtype=torch.int64)
    else:
        lengths = torch.randint(max(K, N - N // 4), N + 1, (B,), generator=g)
        lengths[0] = N
    inputs = {"points": points.to(device), "lengths": lengths.to(device), "num_samples": K}
    if case.extra.get("active"):
        inputs["active"] = (torch.arange(B) != 1).to(device)
    if case.extra.get("prefix"):
        # Distinct random picks of each row's valid points (any prefix is valid, not only an FPS ordering's).
        inputs["prefix"] = torch.stack([torch.randperm(int(n), generator=g)[:case.extra["prefix"]]
                                        for n in lengths]).to(device)
    return inputs


def bytes_moved(case: Case, dtype: torch.dtype) -> int:
    """Minimal DRAM traffic: read the points once, write the indices (distances stay on chip or in L2)."""
    B, N, K = case.dims["B"], case.dims["N"], case.dims["K"]
    return B * N * 3 * torch.finfo(dtype).bits // 8 + B * K * 8
