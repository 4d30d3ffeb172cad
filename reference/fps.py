"""Reference farthest point sampling: a plain greedy loop per batch row (see ``pgocc.ops.fps``)."""

from __future__ import annotations

import torch


def fps(points: torch.Tensor, lengths: torch.Tensor, num_samples: int,
        active: torch.Tensor | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """Farthest point sampling, one row at a time.

    Args:
        points: [B, N, 3] float32/float64.
        lengths: [B] int64 valid points per row.
        num_samples: K.
        active: optional [B] bool; a False row is skipped and left at index 0.
        prefix: optional [B, S] int64 first picks; the greedy loop takes them in order, then goes on.

    Returns:
        [B, K] int64 indices, first index 0, ties to the lowest index (``torch.argmax`` returns the first maximum).
    """
    B = points.shape[0]
    out = torch.zeros(B, num_samples, dtype=torch.int64, device=points.device)
    for b in range(B):
        n = int(lengths[b])
        if n < num_samples:
            raise ValueError(f"fps: lengths[{b}]={n} is smaller than num_samples={num_samples}")
        forced = [] if prefix is None else [int(i) for i in prefix[b]]
        if any(not 0 <= i < n for i in forced):
            raise ValueError(f"fps: prefix[{b}] holds an index outside the row's {n} points")
        if active is not None and not bool(active[b]):
            continue
        p = points[b, :n]
        best = torch.full((n,), float("inf"), dtype=points.dtype, device=points.device)
        idx = forced[0] if forced else 0
        for k in range(num_samples):
            out[b, k] = idx
            d = p - p[idx]
            dist = d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2]
            best = torch.minimum(best, dist)
            idx = forced[k + 1] if k + 1 < len(forced) else int(torch.argmax(best))
    return out
