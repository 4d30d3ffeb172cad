"""One decoder layer (one per progressive stage; docs/model.md §2).

    q ─ + PE(centre) ─ LN1(q + MHA_biased(q)) ─ Sampling ─ LN2(q + AdaptiveMixing(S, q)) ─ LN3(FFN(q))
                        dist_attention (op)      aniso_sample (op)       st_fusion (op)

Activation checkpointing (non-reentrant) wraps the attention, the sampling and the mixing in training (§9).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from pgocc.config import ModelConfig
from pgocc.model.attention import DistSelfAttention
from pgocc.model.heads import FFN, PositionEncoder
from pgocc.model.mixing import AdaptiveMixing


class Sampling(nn.Module):
    """Learned offsets and level weights → the ``aniso_sample`` op (§2.3).

    ``sampling_offset``: Linear(C → G·P·3), weight 0, bias U(−0.5, 0.5) (index (g·P + p)·3 + axis);
    ``scale_weights``: Linear(C → G·P·L), softmaxed over L.
    """

    def __init__(self, embed_dims: int, num_groups: int, num_points: int, num_levels: int,
                 transposed_level_weights: bool, sample: Callable[..., torch.Tensor]) -> None:
        super().__init__()
        self.groups, self.points, self.levels = num_groups, num_points, num_levels
        self.transposed_level_weights = transposed_level_weights
        self.sampling_offset = nn.Linear(embed_dims, num_groups * num_points * 3)
        self.scale_weights = nn.Linear(embed_dims, num_groups * num_points * num_levels)
        self._sample = sample
        nn.init.zeros_(self.sampling_offset.weight)
        nn.init.uniform_(self.sampling_offset.bias, -0.5, 0.5)

    def forward(self, query: torch.Tensor, centres: torch.Tensor, quats: torch.Tensor, scales: torch.Tensor,
                ego2img: torch.Tensor, pyramid: Sequence[torch.Tensor], image_size: tuple[int, int]) -> torch.Tensor:
        """query [B, Q, C]; centres/scales [B, Q, 3], quats [B, Q, 4] (float32 geometry); ego2img [B, T, N, 4, 4];
        pyramid L × [B·T·G, N, H_l, W_l, C_g] → [B, Q, G, T·P, C_g]."""
        B, Q = query.shape[:2]
        offsets = self.sampling_offset(query).view(B, Q, self.groups, self.points, 3).to(centres.dtype)
        weights = self.scale_weights(query).view(B, Q, self.groups, self.points, self.levels).softmax(-1)
        return self._sample(centres, quats, scales, offsets, ego2img, list(pyramid), weights.to(pyramid[0].dtype),
                            image_size, self.transposed_level_weights)


class DecoderLayer(nn.Module):
    """Position encoding, biased self-attention, sampling, AdaptiveMixing and FFN, post-norm (§2)."""

    def __init__(self, cfg: ModelConfig, impls: dict[str, Callable[..., torch.Tensor]]) -> None:
        super().__init__()
        C = cfg.embed_dims
        self.checkpointing = cfg.checkpoint_activations
        self.pos_encoder = PositionEncoder(C)
        self.self_attn = DistSelfAttention(C, cfg.num_heads, cfg.dropout, impls["dist_attention"])
        self.norm1 = nn.LayerNorm(C)
        self.sampling = Sampling(C, cfg.num_groups, cfg.num_points, cfg.num_levels,
                                 cfg.switch("transposed_level_weights"), impls["aniso_sample"])
        self.mixing = AdaptiveMixing(C, cfg.num_groups, cfg.num_frames * cfg.num_points, cfg.num_mix_points,
                                     impls["st_fusion"])
        self.norm2 = nn.LayerNorm(C)
        self.ffn = FFN(C, cfg.ffn_dims, cfg.dropout)
        self.norm3 = nn.LayerNorm(C)

    def _run(self, fn: Callable[..., torch.Tensor], *args: object) -> torch.Tensor:
        if self.checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(fn, *args, use_reentrant=False)
        return fn(*args)

    def forward(self, query: torch.Tensor, norm_centres: torch.Tensor, centres: torch.Tensor, quats: torch.Tensor,
                scales: torch.Tensor, num_old: int, ego2img: torch.Tensor, pyramid: Sequence[torch.Tensor],
                image_size: tuple[int, int]) -> torch.Tensor:
        """One stage's query update.

        Args:
            query: [B, Q, C] content (the embedding rows).
            norm_centres: [B, Q, 3] box centres mapped to [0, 1] by pc_range (position-encoder input).
            centres: [B, Q, 3] box centres (m).
            quats, scales: [B, Q, 4], [B, Q, 3] rotation and extents of the sampling points (§2.3 item 2).
            num_old: queries carried over from earlier stages (asymmetric mask).
            ego2img: [B, T, N, 4, 4].
            pyramid: L × [B·T·G, N, H_l, W_l, C_g].
            image_size: (H_in, W_in).

        Returns:
            [B, Q, C] updated content.
        """
        q = query + self.pos_encoder(norm_centres)
        q = self.norm1(q + self._run(self.self_attn, q, centres[..., :2], num_old))
        sampled = self._run(self.sampling, q, centres, quats, scales, ego2img, pyramid, image_size)
        q = self.norm2(q + self._run(self.mixing, sampled, q))
        return self.norm3(self.ffn(q))
