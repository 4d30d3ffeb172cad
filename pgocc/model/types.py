"""What the model hands to the losses and the readout."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pgocc.model.checks import Checks


@dataclass(slots=True)
class Gaussians:
    """One stage's 3D Gaussians, B samples × Q Gaussians, in the current ego frame (metres); float32."""

    means: torch.Tensor
    """[B, Q, 3] centres."""
    quats: torch.Tensor
    """[B, Q, 4] unit rotations (w, x, y, z)."""
    scales: torch.Tensor
    """[B, Q, 3] standard deviations along the local axes (Σ = R diag(s)² Rᵀ)."""
    opacities: torch.Tensor
    """[B, Q] in (0, 1)."""
    features: torch.Tensor
    """[B, Q, D] vision-language features (not normalised)."""

    @property
    def num(self) -> int:
        """Q."""
        return int(self.means.shape[1])

    def select(self, b: int) -> Gaussians:
        """Sample ``b`` as a batch of one."""
        return Gaussians(self.means[b:b + 1], self.quats[b:b + 1], self.scales[b:b + 1], self.opacities[b:b + 1],
                         self.features[b:b + 1])


@dataclass(slots=True)
class Prediction:
    """The decoder's output for a batch."""

    stages: list[Gaussians]
    """The Gaussians of every progressive stage (coarse first); the last is the final prediction."""
    num_candidates: torch.Tensor
    """[B, S] int64 candidate pixels of each stage's FPS (stage 0: query initialisation; s ≥ 1: densification
    mask); where fewer than the stage's new queries, the stage used its fallback points (§1.6)."""
    checks: Checks
    """The forward's deferred checks (enough valid foundation-depth pixels, finite head outputs of every stage):
    call ``checks.raise_if_failed()`` before reading anything of this prediction on the host."""

    @property
    def final(self) -> Gaussians:
        """The last stage's Gaussians (used at inference)."""
        return self.stages[-1]
