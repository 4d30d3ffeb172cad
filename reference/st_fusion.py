"""Reference AdaptiveMixing core: two batched matmuls and two LayerNorms in plain torch (``pgocc.ops.st_fusion``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def st_fusion(x: torch.Tensor, channel_mix: torch.Tensor, point_mix: torch.Tensor, eps: float) -> torch.Tensor:
    """Channel mix, LayerNorm, ReLU, point mix, LayerNorm, ReLU, per (batch, query, group).

    Args:
        x: [B, Q, G, TP, C].
        channel_mix: [B, Q, G, C, C] ([in, out]).
        point_mix: [B, Q, G, P_out, TP].
        eps: LayerNorm epsilon.

    Returns:
        [B, Q, G, P_out, C].
    """
    y = torch.matmul(x, channel_mix)                                    # [B, Q, G, TP, C]
    y = F.layer_norm(y, y.shape[-2:], eps=eps).relu()
    z = torch.matmul(point_mix, y)                                      # [B, Q, G, P_out, C]
    return F.layer_norm(z, z.shape[-2:], eps=eps).relu()
