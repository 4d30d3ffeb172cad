"""Reference distance-biased attention: the explicit [B, H, Q, Q] logits, softmax and dropout in plain torch
(see ``pgocc.ops.dist_attention``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dist_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centres: torch.Tensor, tau: torch.Tensor,
                   num_old: int, dropout_p: float) -> torch.Tensor:
    """Softmax attention with the additive bias -τ_i·‖c_i - c_j‖ and the old/new mask, materialised.

    Args:
        q, k, v: [B, H, Q, D].
        centres: [B, Q, 2] BEV centres in metres (detached: no gradient).
        tau: [B, H, Q].
        num_old: queries i < num_old do not see keys j >= num_old.
        dropout_p: dropout on the probabilities (torch's generator).

    Returns:
        [B, H, Q, D] in q's dtype.
    """
    Q, D = q.shape[-2:]
    c = centres.detach()
    diff = c[:, :, None, :] - c[:, None, :, :]                                   # [B, Q, Q, 2]
    dist = torch.sqrt(diff[..., 0] * diff[..., 0] + diff[..., 1] * diff[..., 1])  # [B, Q, Q]
    # Logits in at least float32, as the released code adds a float32 bias (PyTorch float attn_mask semantics).
    logit_dtype = torch.promote_types(q.dtype, torch.float32)
    logits = torch.matmul(q, k.transpose(-1, -2)).to(logit_dtype) / D**0.5
    logits = logits - tau.to(logit_dtype)[..., None] * dist[:, None].to(logit_dtype)   # [B, H, Q, Q]
    i = torch.arange(Q, device=q.device)
    blocked = (i[:, None] < num_old) & (i[None, :] >= num_old)
    logits = logits.masked_fill(blocked, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if dropout_p > 0:
        probs = F.dropout(probs, dropout_p, training=True)
    return torch.matmul(probs.to(v.dtype), v)
