"""The training objective: every stage's Gaussians rendered and scored by the §5 losses, weighted and summed.

    batch.features ─ per-sample PCA basis V [D, k] ─ targets (F·V, upsampled)    (feature_targets: batch only)
    stage s: Gaussians, features·V ─ gs_raster (op, with grad) ─ feature image, expected depth (clamped)
             ─ warp, feat_mse, feat_cos, depth_silog, depth_l1
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from pgocc.config import KernelConfig, LossConfig, ModelConfig
from pgocc.data.batch import Batch
from pgocc.model.checks import Checks
from pgocc.model.constants import device_constant
from pgocc.model.losses import (
    RENDER_DEPTH_RANGE,
    depth_losses,
    feature_losses,
    pca_basis,
    project_targets,
    warping_loss,
)
from pgocc.model.render import Renderer
from pgocc.model.types import Prediction

TERMS = ("warp", "feat_mse", "feat_cos", "depth_silog", "depth_l1")
"""Loss terms of one stage, reported as ``<term>_<stage>``."""


@dataclass(slots=True)
class LossOutput:
    """The weighted total and every unweighted term."""

    total: torch.Tensor
    """Scalar Σ_s stage_weight_s · Σ_term weight_term · term_s (what backward runs on)."""
    terms: dict[str, torch.Tensor]
    """Unweighted scalar terms ``<term>_<stage>`` (term in :data:`TERMS`)."""
    checks: Checks
    """The prediction's checks followed by one finiteness check per term: a training step gates on ``checks.ok``
    (device) and raises with ``checks.raise_if_failed()`` (or :meth:`read_terms`) where it reads the host."""

    def read_terms(self) -> dict[str, float]:
        """The unweighted terms as Python floats (a host sync), after raising ``ModelCheckError`` for the first failed
        check (the prediction's first, then the terms in stage, then :data:`TERMS` order)."""
        self.checks.raise_if_failed()
        return dict(zip(self.terms, torch.stack(list(self.terms.values())).tolist(), strict=True))


class FeatureTargets(NamedTuple):
    """The feature loss's targets, which depend on the batch alone (§5.2)."""

    basis: torch.Tensor
    """[B, D, k] float64 per-sample PCA basis."""
    maps: torch.Tensor
    """[B, N, H_r, W_r, k] the target maps projected onto it and upsampled to the render size."""


class PGOccLoss(nn.Module):
    """§5 losses of a :class:`~pgocc.model.types.Prediction` against a batch's self-supervision targets.

    Args:
        model_cfg: for the fidelity switches ``automask_per_source`` and ``randomized_pca``.
        loss_cfg: weights and PCA width.
        kernels: the ``gs_raster`` implementation renders the losses' images.
        deterministic: refuse non-deterministic implementations.
    """

    def __init__(self, model_cfg: ModelConfig, loss_cfg: LossConfig, kernels: KernelConfig, *,
                 deterministic: bool = False) -> None:
        super().__init__()
        self.cfg = loss_cfg
        self.per_source = model_cfg.switch("automask_per_source")
        self.randomized_pca = model_cfg.switch("randomized_pca")
        self.renderer = Renderer(kernels, deterministic=deterministic)
        self.weights = {"warp": loss_cfg.warp_weight, "feat_mse": loss_cfg.feat_mse_weight,
                        "feat_cos": loss_cfg.feat_cos_weight, "depth_silog": loss_cfg.depth_silog_weight,
                        "depth_l1": loss_cfg.depth_l1_weight}

    def feature_targets(self, batch: Batch) -> FeatureTargets:
        """The PCA basis of ``batch.features`` and the projected target maps. The training step computes them before
        the forward: the exact PCA's ``torch.linalg.eigh`` reads its error flag on the host, and there the host waits
        only for the little work queued so far, not for the whole forward (docs/performance.md §2)."""
        if batch.features is None:
            raise ValueError("PGOccLoss: the batch has no feature targets (batch.features is None): it comes from "
                             "the online loader (mode='online'), which is for inference; train on mode='train'")
        basis = pca_basis(batch.features, self.cfg.pca_dims, randomized=self.randomized_pca)   # [B, D, k] f64
        size = (int(batch.depth.shape[-2]), int(batch.depth.shape[-1]))
        return FeatureTargets(basis, project_targets(batch.features, basis, size))

    def forward(self, pred: Prediction, batch: Batch, targets: FeatureTargets | None = None) -> LossOutput:
        """Every stage's terms and their weighted sum; ``checks`` extends ``pred.checks`` (see :class:`LossOutput`).

        Args:
            targets: :meth:`feature_targets` of ``batch`` when computed beforehand; None computes them here.

        Raises:
            ValueError: the prediction's stages or feature width do not match the loss config or the batch.
            ModelCheckError: an exception while computing the terms after a check had failed (a prediction's, or an
                earlier term's) is reported as that check, with the exception as its cause.
        """
        if len(pred.stages) != len(self.cfg.stage_weights):
            raise ValueError(f"PGOccLoss: {len(pred.stages)} stages but loss.stage_weights has "
                             f"{len(self.cfg.stage_weights)}")
        if batch.render_gt is None:
            raise ValueError("PGOccLoss: the batch has no render images (batch.render_gt is None): its loader was "
                             "built for inference (with_render=False); the photometric loss needs them")
        if targets is None:
            targets = self.feature_targets(batch)
        D = pred.final.features.shape[-1]
        if targets.basis.shape[1] != D:
            raise ValueError(f"PGOccLoss: batch.features has D={targets.basis.shape[1]} channels but the model "
                             f"predicts {D} (model.ov_dims)")
        checks = Checks()
        checks.extend(pred.checks)
        with checks.guard():
            total, terms = self._terms(pred, batch, targets, checks)
        return LossOutput(total=total, terms=terms, checks=checks)

    def _terms(self, pred: Prediction, batch: Batch, targets: FeatureTargets, checks: Checks
               ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The body of :meth:`forward`: (weighted total, unweighted terms); records each term's check.

        Each stage's Gaussians are rendered on their own (their counts differ); the loss terms then run once over
        the stages' renders stacked on a leading dim, a third of the kernel launches of one pass per stage."""
        size = (int(batch.depth.shape[-2]), int(batch.depth.shape[-1]))
        basis, target_feat = targets
        target_depth = batch.depth[:, :, 0]
        renders = []
        for g in pred.stages:
            feats = torch.einsum("bqd,bdk->bqk", g.features, basis.to(g.features.dtype))
            renders.append(self.renderer.features_and_depth(g, feats, batch.cam2ego, batch.render_k, size))
        image = torch.stack([r[0] for r in renders])                                   # [S, B, N, H, W, k]
        depth = torch.stack([r[1] for r in renders]).clamp(*RENDER_DEPTH_RANGE)        # [S, B, N, H, W]
        per_stage = (                                                                   # TERMS order, each [S]
            warping_loss(depth, batch.render_gt, batch.render_k, batch.t0_2_x_geo, per_source=self.per_source,
                         source_valid=batch.source_valid),
            *feature_losses(image, target_feat.to(image.dtype), keep=1),
            *depth_losses(depth, target_depth.to(depth.dtype), keep=1),
        )
        values = torch.stack([v.to(target_depth.dtype) for v in per_stage], 1).flatten()  # [S·5], stage-major
        names = [f"{name}_{s}" for s in range(len(pred.stages)) for name in TERMS]
        checks.finite_each([f"loss term {n}" for n in names], values)
        weights = device_constant([self.cfg.stage_weights[s] * self.weights[name]
                                   for s in range(len(pred.stages)) for name in TERMS], values)
        return (values * weights).sum(), dict(zip(names, values.unbind(0), strict=True))
