"""Distance-biased attention on torch FlexAttention (contract: ``pgocc.ops.dist_attention``).

The bias -τ_i·‖c_i - c_j‖ is a ``score_mod`` reading the captured centres and τ (τ gets its gradient through
FlexAttention's captured-buffer support), and the old/new mask is a block mask, so fully masked tiles are skipped.
Inductor compiles it to Triton on the GPU and to C++ on the CPU (forward only there: FlexAttention has no CPU
backward). FlexAttention has no dropout on the probabilities, so this implementation serves evaluation only
(``dropout_p`` must be 0); training with dropout uses ``triton``.
"""

from __future__ import annotations

import torch
from torch.nn.attention.flex_attention import BlockMask, create_block_mask, flex_attention

_flex_attention = torch.compile(flex_attention, dynamic=False)


def _stage_mask(num_old: int, Q: int, device: torch.device) -> BlockMask | None:
    """Block mask of 'query i < num_old does not see key j >= num_old'; None when nothing is masked."""
    if num_old in (0, Q):
        return None

    def old_sees_only_old(b: torch.Tensor, h: torch.Tensor, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        return (i >= num_old) | (j < num_old)

    # Compiled, the mask is evaluated block by block instead of as a materialised Q×Q boolean tensor.
    return create_block_mask(old_sees_only_old, None, None, Q, Q, device=device, _compile=True)


def dist_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, centers: torch.Tensor, tau: torch.Tensor,
                   num_old: int, dropout_p: float) -> torch.Tensor:
    """FlexAttention with the distance bias as ``score_mod``; see ``pgocc.ops.dist_attention``.

    Args:
        q, k, v: [B, H, Q, D].
        centers: [B, Q, 2] BEV centres in metres (no gradient).
        tau: [B, H, Q].
        num_old: K_old in [0, Q].
        dropout_p: must be 0.

    Returns:
        [B, H, Q, D].

    Raises:
        ValueError: ``dropout_p > 0`` (FlexAttention cannot drop probabilities).
    """
    if dropout_p != 0:
        raise ValueError(f"dist_attention/flex: FlexAttention has no dropout on the attention probabilities; "
                         f"dropout_p must be 0, got {dropout_p} (use the 'triton' implementation for training)")
    c = centers.detach()
    # Contiguous copies: Inductor's CPU lowering rejects strided views as captured score_mod buffers.
    cx, cy = c[..., 0].contiguous(), c[..., 1].contiguous()                             # [B, Q]

    def distance_bias(score: torch.Tensor, b: torch.Tensor, h: torch.Tensor, i: torch.Tensor,
                      j: torch.Tensor) -> torch.Tensor:
        dx = cx[b, i] - cx[b, j]
        dy = cy[b, i] - cy[b, j]
        return score - tau[b, h, i] * torch.sqrt(dx * dx + dy * dy)

    block_mask = _stage_mask(num_old, q.shape[2], q.device)
    return _flex_attention(q, k, v, score_mod=distance_bias, block_mask=block_mask)
