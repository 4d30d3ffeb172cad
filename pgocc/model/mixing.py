"""AdaptiveMixing (AdaMixer): query-generated channel and point mixing of the sampled features (docs/model.md §2.4).

    q ─ parameter_generator (GEMM) ─ M [C_g, C_g], S [P_out, TP] per group ─┐
    sampled x [B, Q, G, TP, C_g] ──────────────── st_fusion (op) ─────────────┴─ [B, Q, G, P_out, C_g] ─ out_proj ─
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

LN_EPS = 1e-5


class AdaptiveMixing(nn.Module):
    """Generates per-query mixing matrices, runs the ``st_fusion`` op and projects back to C.

    Args:
        embed_dims: C.
        num_groups: G (C_g = C / G).
        in_points: TP = T·P sampled points per group.
        out_points: P_out.
        fusion: the resolved ``st_fusion`` implementation.
    """

    def __init__(self, embed_dims: int, num_groups: int, in_points: int, out_points: int,
                 fusion: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.groups = num_groups
        self.channels = embed_dims // num_groups
        self.in_points, self.out_points = in_points, out_points
        self.m_size = self.channels * self.channels
        self.s_size = out_points * in_points
        self.parameter_generator = nn.Linear(embed_dims, num_groups * (self.m_size + self.s_size))
        self.out_proj = nn.Linear(num_groups * out_points * self.channels, embed_dims)
        self._fusion = fusion
        # AdaMixer starts from query-independent mixing: only the bias generates the matrices at first.
        nn.init.zeros_(self.parameter_generator.weight)

    def forward(self, x: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """x [B, Q, G, TP, C_g], query [B, Q, C] → [B, Q, C] (to be added to the query)."""
        B, Q = query.shape[:2]
        params = self.parameter_generator(query).view(B, Q, self.groups, self.m_size + self.s_size)
        m, s = params.split([self.m_size, self.s_size], -1)
        m = m.reshape(B, Q, self.groups, self.channels, self.channels)
        s = s.reshape(B, Q, self.groups, self.out_points, self.in_points)
        out = self._fusion(x, m.to(x.dtype), s.to(x.dtype), LN_EPS).reshape(B, Q, -1)
        # Under autocast the GEMM casts its input itself: casting the [B, Q, G·P_out·C_g] slab to the query's float32
        # here would only be cast back (at Q = 6000, 0.4 GB in bf16 written, read, widened and narrowed again).
        if out.dtype != self.out_proj.weight.dtype and not torch.is_autocast_enabled(out.device.type):
            out = out.to(self.out_proj.weight.dtype)
        return self.out_proj(out)
