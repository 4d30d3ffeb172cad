"""Readout: Gaussians → Occ3D labels and per-voxel text similarity (docs/model.md §6).

    Gaussians ─ filters (opacity, range, min variance) ─ [voxel_average] ─ sim = features · prototypes ─ gs2vox
              ─ density, field
    field ─ group max per label ─ argmax ─ label; density ≤ threshold ─ free

Filtered-out Gaussians get opacity 0 instead of being removed: their weight ``o · exp(…)`` is then exactly 0, so the
field is the one of the kept set, and no data-dependent count (host sync) is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from pgocc import ops
from pgocc.config import KernelConfig, ModelConfig
from pgocc.model.constants import device_constant
from pgocc.model.geometry import inside_range, quat_to_rotmat
from pgocc.model.types import Gaussians

FREE_LABEL = 17
"""Occ3D label of empty voxels."""


def keep_mask(g: Gaussians, lo: Sequence[float], hi: Sequence[float], *, opacity_threshold: float,
              min_variance: float) -> torch.Tensor:
    """[B, Q] bool: opacity above the threshold, mean inside [lo, hi] (inclusive), smallest world-axis variance of
    Σ = R diag(s)² Rᵀ above ``min_variance`` (§6.3)."""
    rot = quat_to_rotmat(g.quats)
    diag = (rot.square() * g.scales.square().unsqueeze(-2)).sum(-1)                     # [B, Q, 3] = diag Σ
    return ((g.opacities > opacity_threshold) & inside_range(g.means, lo, hi, strict=False)
            & (diag.amin(-1) > min_variance))


def voxel_average(scales: torch.Tensor, opacities: torch.Tensor, voxel_size: float
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scales and opacities of Gaussians whose value at a point is the mean of the given Gaussians over the voxel
    (edge ``voxel_size``) centred there, the voxel's uniform box approximated by an isotropic Gaussian of the same
    variance b = size²/12 per axis.

    Convolving o·exp(−½ xᵀΣ⁻¹x), Σ = R diag(s²) Rᵀ, with the normalised N(0, b I) keeps R and the integral:
    Σ' = Σ + b I = R diag(s² + b) Rᵀ, and the peak becomes o·sqrt(det Σ / det Σ') = o·Π_i s_i / s'_i. A Gaussian much
    larger than a voxel is unchanged; a thin one (a surface) is widened to about a voxel and dimmed by the same
    factor, so the voxel it passes through still holds its mass.

    Args:
        scales: [..., 3] standard deviations.
        opacities: [...] peaks (0 for an absent Gaussian stays 0).

    Returns:
        scales [..., 3] and opacities [...].
    """
    widened = (scales.square() + voxel_size * voxel_size / 12.0).sqrt()
    return widened, opacities * (scales / widened).prod(-1)


def _label_order(column_labels: Sequence[int]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The host tables of :func:`merge_labels`: the column indices sorted by label (stable), and their labels."""
    order = tuple(sorted(range(len(column_labels)), key=lambda k: column_labels[k]))
    return order, tuple(column_labels[k] for k in order)


def merge_labels(scores: torch.Tensor, column_labels: Sequence[int]) -> torch.Tensor:
    """Occ3D label of the best prompt group: max score within each label's columns, argmax over labels.

    Equals the released softmax → group max → argmax → remap, since softmax is monotonic. Ties go to the smaller
    label (the released argmax picks the first merged class, whose labels ascend).

    The label whose group holds the largest score is the label of the best column, so this is one argmax over the
    columns ordered by label: the first of tied maxima is then a column of the smallest label, and a NaN (which
    argmax takes as the maximum, as a group max propagates it) picks the smallest label with a NaN column. The order
    and the labels are device constants, so no host data is copied per call.

    Args:
        scores: [..., K] per-prompt scores.
        column_labels: K Occ3D labels, one per prompt column (host data).

    Returns:
        [...] int64 labels.
    """
    if len(column_labels) != scores.shape[-1]:
        raise ValueError(f"merge_labels: {len(column_labels)} column labels for {scores.shape[-1]} score columns")
    order, labels = _label_order(column_labels)
    if order != tuple(range(len(order))):
        scores = scores.index_select(-1, device_constant(order, scores, torch.int64))
    return device_constant(labels, scores, torch.int64)[scores.argmax(-1)]


def occupancy_labels(density: torch.Tensor, scores: torch.Tensor, column_labels: Sequence[int],
                     density_threshold: float) -> torch.Tensor:
    """uint8 labels of a field: :func:`merge_labels`, and ``FREE_LABEL`` where density ≤ the threshold.

    Args:
        density: [...] Gaussian density.
        scores: [..., K] density-normalised per-prompt similarity.
        column_labels: K Occ3D labels, one per prompt column.
        density_threshold: free below or at this.
    """
    labels = merge_labels(scores, column_labels)
    return torch.where(density > density_threshold, labels, torch.full_like(labels, FREE_LABEL)).to(torch.uint8)


class Readout(nn.Module):
    """Gaussians → Occ3D labels [B, X, Y, Z] uint8, and the per-voxel (or per-point) similarity to text queries.

    Args:
        cfg: grid (pc_range, voxel_size), filters, density threshold, ``voxel_cutoff`` and the
            ``shifted_voxel_grid`` fidelity switch.
        kernels: the ``gs2vox`` implementation.
        deterministic: refuse non-deterministic implementations.
    """

    def __init__(self, cfg: ModelConfig, kernels: KernelConfig, *, deterministic: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self._gs2vox = ops.resolve("gs2vox", kernels.gs2vox, deterministic=deterministic)
        self.dims = cfg.grid_dims
        shift = -cfg.voxel_size if cfg.switch("shifted_voxel_grid") else 0.0
        self.origin = tuple(v + shift for v in cfg.pc_range[:3])
        self.upper = tuple(o + n * cfg.voxel_size for o, n in zip(self.origin, self.dims, strict=True))

    def kept_opacities(self, g: Gaussians) -> torch.Tensor:
        """[B, Q] opacities with every Gaussian the filters reject set to 0 (absent for gs2vox)."""
        keep = keep_mask(g, self.origin, self.upper, opacity_threshold=self.cfg.opacity_threshold,
                         min_variance=self.cfg.min_variance)
        return torch.where(keep, g.opacities, torch.zeros_like(g.opacities))

    def similarity(self, g: Gaussians, text: torch.Tensor, points: torch.Tensor | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        """Density and density-normalised similarity of the kept Gaussians to each text embedding.

        Args:
            g: B samples' Gaussians.
            text: [K, D] text embeddings (raw dot product with the unnormalised Gaussian features, §6.2).
            points: [B, M, 3] ego points to evaluate at; None: the voxel grid.

        Returns:
            density [B, X, Y, Z] (or [B, M]) and similarity [B, X, Y, Z, K] (or [B, M, K]).
        """
        sim = torch.einsum("bqd,kd->bqk", g.features, text.to(g.features.dtype))
        grid = {} if points is not None else {"grid_origin": self.origin, "voxel_size": self.cfg.voxel_size,
                                              "grid_dims": self.dims}
        scales, opacities = g.scales, self.kept_opacities(g)
        if self.cfg.voxel_average:
            scales, opacities = voxel_average(scales, opacities, self.cfg.voxel_size)
        return self._gs2vox(g.means, g.quats, scales, opacities, sim, points, cutoff=self.cfg.voxel_cutoff, **grid)

    def forward(self, g: Gaussians, prototypes: torch.Tensor, column_labels: Sequence[int]) -> torch.Tensor:
        """Occ3D labels [B, X, Y, Z] uint8 (17 = free).

        Args:
            g: the final stage's Gaussians.
            prototypes: [K, D] prompt embeddings (one per prompt column).
            column_labels: K Occ3D labels, the label each prompt column votes for (group-max merge, §6.3).
        """
        density, field = self.similarity(g, prototypes)
        return occupancy_labels(density, field, column_labels, self.cfg.density_threshold)
