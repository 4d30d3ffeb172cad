"""Scale-adaptive self-attention with the asymmetric stage mask (docs/model.md §2.2).

    x ─ in_proj ─ q, k, v ─┐
    x ─ gen_tau ─ τ ────────┼─ dist_attention (op): softmax(q·k/√D − τ_i‖c_i − c_j‖, old ↛ new) · v ─ out_proj
    centres (BEV, no grad) ─┘
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class DistSelfAttention(nn.Module):
    """Multi-head self-attention over the queries with a per-query, per-head distance penalty τ.

    Parameters mirror ``nn.MultiheadAttention`` (packed ``in_proj``, ``out_proj``, same initialisation) plus
    ``gen_tau`` (weight 0, bias U(0, 2)), so the released weights load one to one.

    Args:
        embed_dims: C.
        num_heads: H (head dim C / H).
        dropout: attention-probability dropout in training.
        attention: the resolved ``dist_attention`` implementation.
    """

    def __init__(self, embed_dims: int, num_heads: int, dropout: float,
                 attention: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.heads = num_heads
        self.dropout = dropout
        self.in_proj = nn.Linear(embed_dims, 3 * embed_dims)
        self.out_proj = nn.Linear(embed_dims, embed_dims)
        self.gen_tau = nn.Linear(embed_dims, num_heads)
        self._attention = attention
        nn.init.xavier_uniform_(self.in_proj.weight)
        nn.init.zeros_(self.in_proj.bias)
        nn.init.zeros_(self.out_proj.bias)
        nn.init.zeros_(self.gen_tau.weight)
        nn.init.uniform_(self.gen_tau.bias, 0.0, 2.0)

    def forward(self, x: torch.Tensor, centres: torch.Tensor, num_old: int) -> torch.Tensor:
        """x [B, Q, C], centres [B, Q, 2] BEV metres, num_old K_old → [B, Q, C] (to be added to x)."""
        B, Q, C = x.shape
        q, k, v = self.in_proj(x).view(B, Q, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        tau = self.gen_tau(x).transpose(1, 2)                                            # [B, H, Q]
        out = self._attention(q, k, v, centres.detach(), tau, num_old, self.dropout if self.training else 0.0)
        return self.out_proj(out.transpose(1, 2).reshape(B, Q, C))
