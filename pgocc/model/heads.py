"""Per-stage output heads (docs/model.md §3) and the decoder's small MLPs (§2.1, §2.5)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GAUSSIAN_OUTPUTS = 11
"""Raw Gaussian-head outputs: Δxyz (3), quaternion (4), scales (3), opacity (1)."""


SCALE_OUTPUTS = slice(7, 10)
"""Raw outputs decoded into the scales (see :func:`decode_gaussians`)."""
OPACITY_OUTPUT = 10


class GaussianHead(nn.Sequential):
    """``Linear(C→H) → ReLU → Linear(H→11)``: raw Gaussian parameters per query (indices 0, 2 as released).

    Args:
        init_scale: initial scale (m) of every Gaussian: the scale outputs' bias is set to
            ``logit(init_scale / max_scale)`` so that :func:`decode_gaussians` gives it at zero input; None keeps
            PyTorch's default bias.
        init_opacity: likewise for the opacity output, ``logit(init_opacity)``.
        max_scale: the decoder's largest scale (m), ``model.max_scale``.
    """

    def __init__(self, embed_dims: int, hidden: int, *, max_scale: float, init_scale: float | None = None,
                 init_opacity: float | None = None) -> None:
        super().__init__(nn.Linear(embed_dims, hidden), nn.ReLU(), nn.Linear(hidden, GAUSSIAN_OUTPUTS))
        out: nn.Linear = self[2]
        with torch.no_grad():
            if init_scale is not None:
                out.bias[SCALE_OUTPUTS] = torch.logit(torch.tensor(init_scale / max_scale))
            if init_opacity is not None:
                out.bias[OPACITY_OUTPUT] = torch.logit(torch.tensor(init_opacity))


class OVHead(nn.Sequential):
    """``Linear(C→H) → ReLU → Linear(H→H) → ReLU → Linear(H→D)``: the unnormalised vision-language feature."""

    def __init__(self, embed_dims: int, hidden: int, ov_dims: int) -> None:
        super().__init__(nn.Linear(embed_dims, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, ov_dims))


def decode_gaussians(raw: torch.Tensor, *, max_delta: float, max_scale: float
                     ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Split the raw head output [..., 11] into Gaussian parameters.

    Returns:
        delta [..., 3] m in (−max_delta, max_delta); quats [..., 4] unit (w, x, y, z);
        scales [..., 3] standard deviations in (0, max_scale) m; opacities [...] in (0, 1).
    """
    delta = (2 * torch.sigmoid(raw[..., 0:3]) - 1) * max_delta
    quats = F.normalize(raw[..., 3:7], dim=-1)
    scales = max_scale * torch.sigmoid(raw[..., SCALE_OUTPUTS])
    opacities = torch.sigmoid(raw[..., OPACITY_OUTPUT])
    return delta, quats, scales, opacities


class PositionEncoder(nn.Sequential):
    """``Linear(3→C) → LN → ReLU → Linear(C→C) → LN → ReLU`` of the normalised box centre (§2.1)."""

    def __init__(self, embed_dims: int) -> None:
        super().__init__(nn.Linear(3, embed_dims), nn.LayerNorm(embed_dims), nn.ReLU(),
                         nn.Linear(embed_dims, embed_dims), nn.LayerNorm(embed_dims), nn.ReLU())


class FFN(nn.Module):
    """``x + Dropout(fc2(Dropout(ReLU(fc1(x)))))`` (§2.5)."""

    def __init__(self, embed_dims: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.fc1 = nn.Linear(embed_dims, hidden)
        self.fc2 = nn.Linear(hidden, embed_dims)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.dropout(self.fc2(self.dropout(F.relu(self.fc1(x)))))
