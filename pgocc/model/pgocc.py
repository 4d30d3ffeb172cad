"""The PG-Occ network: backbone + FPN, query initialisation, three progressive stages with online densification,
Gaussian and open-vocabulary heads (docs/model.md §1-§3).

    Batch.images ─ ResNet + FPN ─ pyramid L × [B·T·G, N, H_l, W_l, C_g]
    Batch.depth ─ back-project ─ ego points ─ fps (op) ─ coarse centres (+ fallbacks)
    for each stage s:
        s ≥ 1: gs_raster depth-only (op, no grad) of stage s−1 ─ residual-depth mask ─ fps (op) ─ new centres
        query_embeds[:Q_s] ─ DecoderLayer (dist_attention, aniso_sample, st_fusion ops) ─ heads ─ Gaussians_s

Every hot path is resolved once in ``__init__`` through :func:`pgocc.ops.resolve`.

Host syncs: none in ``forward``, and no host data copied per call (constants come from
:func:`~pgocc.model.constants.device_constant`; tests/test_host_sync.py records both on the meta device). The
data-dependent candidate counts of the FPS (valid pixels, densification mask) stay on the device: candidates are
compacted by a stable sort and passed with their counts as ``lengths``; a stage that has too few candidates takes its
fallback points through ``torch.where``. (Inside the ops, the ``reference`` fps reads the lengths on the host; the
Triton gs_raster reads nothing back, tests/test_gs_raster_bin.py.) The error conditions (singular render intrinsics,
too few valid depth pixels, non-finite head outputs) are recorded in ``Prediction.checks`` and raised, naming the
tensor, by whoever first reads the prediction on the host (see :mod:`pgocc.model.checks`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from pgocc import ops
from pgocc.config import KernelConfig, ModelConfig
from pgocc.data.batch import Batch
from pgocc.model.backbone import FPN, ResNet, load_resnet_weights
from pgocc.model.checks import Checks
from pgocc.model.constants import device_constant
from pgocc.model.decoder import DecoderLayer
from pgocc.model.feature_cache import FeatureCache
from pgocc.model.geometry import backproject, inside_range, normalize_coords, transform_points
from pgocc.model.heads import GaussianHead, OVHead, decode_gaussians
from pgocc.model.render import Renderer
from pgocc.model.types import Gaussians, Prediction

IMAGE_MEAN = (123.675, 116.28, 103.53)
"""RGB mean of the ImageNet normalisation (0–255 scale)."""
IMAGE_STD = (58.395, 57.12, 57.375)
PAD_MULTIPLE = 32
"""Images are zero-padded (after normalisation) to a multiple of the coarsest stride."""
IDENTITY_QUAT = (1.0, 0.0, 0.0, 0.0)
"""(w, x, y, z) of the identity rotation."""
VALID_DEPTH_MAX = 80.0
"""Foundation depth counts as valid in (0, 80) m (§1.5; after the 51.2 m clamp only > 0 matters)."""

DECODER_OPS = ("dist_attention", "aniso_sample", "st_fusion")


class Candidates(NamedTuple):
    """The FPS candidates of a batch, compacted: each sample's candidates first, in pixel order."""

    points: torch.Tensor
    """[B, M, 3] ego points; row b's first ``count[b]`` are its candidates."""
    count: torch.Tensor
    """[B] int64."""


def gather_points(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``points[b, idx[b]]`` for each sample: [B, M, 3] and [B, K] int64 → [B, K, 3]."""
    return torch.gather(points, 1, idx.unsqueeze(-1).expand(-1, -1, 3))


class Fallbacks:
    """Rows Q_0 … ΣQ − 1 of the stage-0 FPS ordering: the centres a later stage takes when it has too few candidates
    (§1.6). The stage-0 FPS draws only the Q_0 coarse picks; a sample's fallback rows are computed at the first stage
    that needs them, as the continuation of its coarse picks up to ΣQ (the ``fps`` op's ``prefix``; its ``active``
    mask, decided on the device, runs it for those samples only), and kept for the later stages. FPS is greedy, so
    the rows are those of one ΣQ-point run; a frame that needs none skips their dependent steps.

    Args:
        fps: the resolved ``fps`` op.
        stage0: the stage-0 candidates.
        coarse: [B, Q_0] int64 their first FPS picks.
        total: ΣQ.
    """

    def __init__(self, fps: Callable[..., torch.Tensor], stage0: Candidates, coarse: torch.Tensor, total: int) -> None:
        self.fps, self.stage0, self.coarse, self.total = fps, stage0, coarse, total
        self.order = coarse.new_zeros(coarse.shape[0], total)
        """[B, ΣQ] the ordering of the samples in ``done`` (0 elsewhere)."""
        self.done = torch.zeros(coarse.shape[0], dtype=torch.bool, device=coarse.device)

    def rows(self, need: torch.Tensor, start: int, num: int) -> torch.Tensor:
        """[B, num, 3] the points of rows ``start`` … ``start + num − 1`` for the samples where ``need`` ([B] bool)
        is True; filler in the other rows (the caller keeps its own centres there)."""
        fresh = need & ~self.done
        order = self.fps(self.stage0.points, self.stage0.count.clamp_min(self.total), self.total, fresh, self.coarse)
        self.order = torch.where(fresh.unsqueeze(1), order, self.order)
        self.done = self.done | fresh
        return gather_points(self.stage0.points, self.order[:, start:start + num])


class QueryInit(NamedTuple):
    """What the query initialisation hands to the stages."""

    depth: torch.Tensor
    """[B, N, H_r, W_r] clamped foundation depth."""
    ego_points: torch.Tensor
    """[B, N·H_r·W_r, 3] every render pixel back-projected into the ego frame."""
    candidates: torch.Tensor
    """[B, N·H_r·W_r] bool: valid and inside pc_range (the densification candidates before any residual mask)."""
    positions: torch.Tensor
    """[B, Q_0, 3] the coarse centres."""
    fallbacks: Fallbacks
    """The later stages' fallback centres."""


class PGOcc(nn.Module):
    """PG-Occ: predicts each stage's 3D Gaussians from a :class:`~pgocc.data.batch.Batch`.

    Args:
        cfg: the network (sizes and fidelity switches).
        kernels: the implementation of every hot path.
        deterministic: refuse non-deterministic implementations (``debug.deterministic``).
    """

    def __init__(self, cfg: ModelConfig, kernels: KernelConfig, *, deterministic: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.num_stages = len(cfg.num_queries)
        impls = {op: ops.resolve(op, getattr(kernels, op), deterministic=deterministic) for op in DECODER_OPS}
        self._fps: Callable[..., torch.Tensor] = ops.resolve("fps", kernels.fps, deterministic=deterministic)
        self.renderer = Renderer(kernels, deterministic=deterministic)
        self.anisotropic = cfg.switch("anisotropic_sampling")
        self.delta_by_origin = cfg.switch("delta_scale_by_origin")
        self.roi_at_stage0 = cfg.switch("roi_at_stage0")

        self.backbone = ResNet(cfg.backbone_layers, cfg.backbone_width, cfg.frozen_stages, cfg.checkpoint_activations)
        if cfg.backbone_weights:
            load_resnet_weights(self.backbone, cfg.backbone_weights)
        self.neck = FPN(self.backbone.out_channels, cfg.embed_dims)
        self.query_embeds = nn.Embedding(sum(cfg.num_queries), cfg.embed_dims)
        self.layers = nn.ModuleList(DecoderLayer(cfg, impls) for _ in range(self.num_stages))
        self.gaussian_heads = nn.ModuleList(GaussianHead(cfg.embed_dims, cfg.head_dims, init_scale=cfg.init_scale,
                                                         init_opacity=cfg.init_opacity, max_scale=cfg.max_scale)
                                            for _ in range(self.num_stages))
        self.ov_heads = nn.ModuleList(OVHead(cfg.embed_dims, cfg.head_dims, cfg.ov_dims)
                                      for _ in range(self.num_stages))
        # Per query row: the edge of its sampling box and the stage that added it (fixed for its lifetime, §1.6).
        self.register_buffer("box_size", torch.cat([torch.full((n,), size) for n, size in zip(
            cfg.num_queries, cfg.box_sizes, strict=True)]), persistent=False)
        self.register_buffer("origin_stage", torch.cat([torch.full((n,), float(i)) for i, n in enumerate(
            cfg.num_queries)]), persistent=False)
        self.register_buffer("image_mean", torch.tensor(IMAGE_MEAN).view(3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(IMAGE_STD).view(3, 1, 1), persistent=False)

    # ----------------------------------------------------------------------------------------------------------
    # Image features

    def image_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """uint8 BGR images [M, 3, H, W] → L FPN maps [M, C, H_l, W_l] (padded to a multiple of 32)."""
        x = (images.flip(1).to(self.image_mean.dtype) - self.image_mean) / self.image_std
        H, W = x.shape[-2:]
        x = F.pad(x, (0, -W % PAD_MULTIPLE, 0, -H % PAD_MULTIPLE))
        # Channels-last activations: cuDNN's tensor-core convolutions (and oneDNN's) work in NHWC, so NCHW costs a
        # layout change per layer. The maps come out channels-last too, the layout sampling_pyramid wants.
        return self.neck(self.backbone(x.contiguous(memory_format=torch.channels_last)))

    def extract_features(self, images: torch.Tensor, num_cams: int, frame_keys: list[list[str]] | None = None,
                         cache: FeatureCache | None = None) -> list[torch.Tensor]:
        """FPN maps of all T·N images of each sample: L × [B, T·N, C, H_l, W_l].

        With ``cache`` (inference only), frame t of sample b is cached under ``frame_keys[b][t]`` (its CAM_FRONT
        file name). ``images`` then holds the first F ≤ T frames of each sample (the online loader gives F = 1):
        the current frames and those of the others not cached yet go through the backbone and into the cache, and
        every frame not in ``images`` must be cached already. The cache's plan is made here unless the caller made
        it for these frames (a CUDA graph's runner plans on the host before each replay).

        Args:
            images: [B, F·N, 3, H_in, W_in] uint8 BGR, F = T without a cache.
            num_cams: N.
            frame_keys: [B][T] frame ids, required with ``cache``.
            cache: per-frame feature cache.

        Raises:
            KeyError: a frame is neither cached nor in ``images`` (online samples not in scene order).
        """
        B, FN = images.shape[:2]
        if cache is None:
            maps = self.image_features(images.flatten(0, 1))
            return [m.unflatten(0, (B, FN)) for m in maps]
        if self.training:
            raise RuntimeError("PGOcc.extract_features: the feature cache is for inference; call model.eval()")
        if frame_keys is None:
            raise ValueError("PGOcc.extract_features: frame_keys are required with a cache")
        F = FN // num_cams
        plan = cache.last_plan
        if plan is None or plan.num_given != F or plan.keys != tuple(tuple(k) for k in frame_keys):
            plan = cache.plan(frame_keys, F, images.device)
        N = num_cams
        if len(plan.fresh) == B * F:
            fresh = images.flatten(0, 1)
        else:
            fresh = torch.cat([images[r // F, (r % F) * N:(r % F + 1) * N] for r in plan.fresh])
        try:
            return cache.store_and_read(self.image_features(fresh), plan)
        except BaseException:
            cache.forget(plan)  # the frames it added were never stored
            raise

    def sampling_pyramid(self, maps: list[torch.Tensor], num_frames: int) -> list[torch.Tensor]:
        """L × [B, T·N, C, H_l, W_l] → L × [B·T·G, N, H_l, W_l, C_g] channels-last, b' = (b·T + t)·G + g (§1.3)."""
        G = self.cfg.num_groups
        out = []
        for m in maps:
            B, TN, C, H, W = m.shape
            m = m.view(B, num_frames, TN // num_frames, G, C // G, H, W).permute(0, 1, 3, 2, 5, 6, 4)
            out.append(m.reshape(B * num_frames * G, TN // num_frames, H, W, C // G))
        return out

    # ----------------------------------------------------------------------------------------------------------
    # Query initialisation and densification

    @staticmethod
    def _compact(points: torch.Tensor, mask: torch.Tensor) -> Candidates:
        """The candidates ``points[mask]`` of each sample first, without a host sync.

        Args:
            points: [B, M, 3] points in pixel order.
            mask: [B, M] bool candidates.
        """
        # A stable sort of ~mask keeps the candidates first, in camera-major, row-major pixel order (§1.5 item 4).
        order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)
        return Candidates(torch.gather(points, 1, order.unsqueeze(-1).expand(-1, -1, 3)), mask.sum(1))

    def _first_picks(self, candidates: Candidates, num: int) -> torch.Tensor:
        """[B, num] int64 the first ``num`` picks of each sample's FPS ordering of its candidates. Where a count is
        below ``num`` the FPS runs over the first ``num`` compacted points and the caller must replace the result."""
        return self._fps(candidates.points, candidates.count.clamp_min(num), num)

    # ----------------------------------------------------------------------------------------------------------

    def forward(self, batch: Batch, *, cache: FeatureCache | None = None) -> Prediction:
        """Predict every stage's Gaussians.

        Args:
            batch: images, matrices and foundation depth (the depth is a model input, §1.1).
            cache: optional per-frame feature cache for online inference (model in eval mode).

        Returns:
            The prediction; its ``checks`` must pass (``raise_if_failed``) before its values are trusted.

        Raises:
            ModelCheckError: an exception inside the forward after a check had failed (e.g. an op indexing with a NaN
                coordinate) is reported as that check, naming the tensor, with the exception as its cause.
        """
        checks = Checks()
        with checks.guard():
            stages, counts = self._stages(batch, cache, checks)
        return Prediction(stages=stages, num_candidates=torch.stack(counts, 1), checks=checks)

    def _stages(self, batch: Batch, cache: FeatureCache | None, checks: Checks
                ) -> tuple[list[Gaussians], list[torch.Tensor]]:
        """The body of :meth:`forward`: every stage's Gaussians and [B] candidate counts; records into ``checks``."""
        cfg = self.cfg
        B = batch.batch_size
        N = batch.num_cams
        T = batch.num_frames
        if T != cfg.num_frames:
            raise ValueError(f"PGOcc: batch has {T} frames of {N} cameras but model.num_frames={cfg.num_frames}")
        image_size = (int(batch.images.shape[-2]), int(batch.images.shape[-1]))
        frame_keys = batch.frame_keys if cache is not None else None
        if cache is None and batch.images.shape[1] != T * N:
            raise ValueError(f"PGOcc: batch has the images of {batch.images.shape[1] // N} of its {T} frames (online "
                             "loader); pass the FeatureCache that holds the others")
        pyramid = self.sampling_pyramid(self.extract_features(batch.images, N, frame_keys, cache), T)
        depth, ego_points, candidates, positions, fallbacks = self._query_init(batch, checks)
        ego2img = batch.ego2img.view(B, T, N, 4, 4)
        counts = [fallbacks.stage0.count]

        stages: list[Gaussians] = []
        for s in range(self.num_stages):
            Q = sum(cfg.num_queries[:s + 1])
            if s > 0:
                new, count, candidates = self._densify(stages[-1], batch, depth, ego_points, candidates, s,
                                                       fallbacks)
                positions = torch.cat([positions, new], 1)
                counts.append(count)
            num_old = Q - cfg.num_queries[s] if s > 0 else 0
            box = self.box_size[:Q]
            quats, scales = self._sampling_frames(stages[-1] if s > 0 else None, box, B, num_old)
            query = self.query_embeds.weight[:Q].unsqueeze(0).expand(B, -1, -1)
            query = self.layers[s](query, normalize_coords(positions, cfg.pc_range), positions, quats, scales,
                                   num_old, ego2img, pyramid, image_size)
            # Gaussians are float32 whatever the autocast dtype of the heads (the rendering ops take one dtype).
            raw = self.gaussian_heads[s](query).float()
            checks.finite(f"gaussian head output of stage {s}", raw)
            delta, g_quats, g_scales, opacities = decode_gaussians(raw, max_delta=cfg.max_delta,
                                                                   max_scale=cfg.max_scale)
            if self.delta_by_origin:
                delta = delta * torch.exp2(-self.origin_stage[:Q]).unsqueeze(-1)
            features = self.ov_heads[s](query).float()
            checks.finite(f"open-vocabulary head output of stage {s}", features)
            positions = positions + delta
            stages.append(Gaussians(positions, g_quats, g_scales, opacities, features))
        return stages, counts

    def _query_init(self, batch: Batch, checks: Checks) -> QueryInit:
        """Query initialisation (§1.5): the back-projected, clamped foundation depth and the coarse centres."""
        cfg = self.cfg
        depth = batch.depth[:, :, 0].clamp(max=cfg.init_depth_max)                        # [B, N, H_r, W_r]
        valid = (depth > 0) & (depth < VALID_DEPTH_MAX)
        cam_points = backproject(depth, batch.render_k, checks)                            # [B, N, H_r, W_r, 3]
        ego_points = transform_points(batch.cam2ego, cam_points).flatten(1, 3)            # [B, N·H_r·W_r, 3]
        lo, hi = cfg.pc_range[:3], cfg.pc_range[3:]
        roi = inside_range(ego_points, lo, hi, strict=True)
        valid = valid.flatten(1)
        total = sum(cfg.num_queries)
        stage0 = self._compact(ego_points, valid & roi if self.roi_at_stage0 else valid)
        checks.expect(stage0.count >= total, f"PGOcc: fewer than {total} valid foundation-depth pixels (batch.depth) "
                                             "to initialise the queries")
        coarse = self._first_picks(stage0, cfg.num_queries[0])
        return QueryInit(depth, ego_points, valid & roi, gather_points(stage0.points, coarse),
                         Fallbacks(self._fps, stage0, coarse, total))

    def _sampling_frames(self, prev: Gaussians | None, box: torch.Tensor, batch_size: int, num_old: int
                         ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotation [B, Q, 4] and extents [B, Q, 3] of the sampling points (§2.3 item 2).

        Isotropic box (released, and every query without a previous Gaussian): identity and the box edge on all
        axes. Anisotropic (paper): the previous stage's rotation and scales for the queries it predicted.
        """
        Q = box.shape[0]
        quats = device_constant(IDENTITY_QUAT, box).expand(batch_size, Q, 4)
        scales = box.view(1, Q, 1).expand(batch_size, Q, 3)
        if self.anisotropic and prev is not None:
            quats = torch.cat([prev.quats, quats[:, num_old:]], 1)
            scales = torch.cat([prev.scales, scales[:, num_old:]], 1)
        return quats, scales

    def _densify(self, prev: Gaussians, batch: Batch, depth: torch.Tensor, ego_points: torch.Tensor,
                 candidates: torch.Tensor, stage: int, fallbacks: Fallbacks
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """New centres of ``stage`` (§1.6 item 1) from the candidates narrowed by the previous stage's residual mask.

        Args:
            prev: the previous stage's Gaussians (rendered without gradient).
            depth: [B, N, H_r, W_r] clamped foundation depth.
            ego_points: [B, N·H_r·W_r, 3].
            candidates: [B, N·H_r·W_r] bool, valid & roi & the residual masks of the earlier stages.
            fallbacks: the stage-0 ordering's rows Q_0 + …, taken where a sample has too few candidates (§1.6).

        Returns:
            ([B, Q_s, 3] new centres, [B] candidate counts, [B, N·H_r·W_r] the narrowed candidates).
        """
        cfg = self.cfg
        with torch.no_grad():
            rendered = self.renderer.depth(prev, batch.cam2ego, batch.render_k, tuple(depth.shape[-2:]))
        behind = (rendered - depth) > cfg.densify_threshold                               # ED = 0 never passes
        candidates = candidates & behind.flatten(1)
        num = cfg.num_queries[stage]
        narrowed = self._compact(ego_points, candidates)
        new = gather_points(narrowed.points, self._first_picks(narrowed, num))
        enough = narrowed.count >= num
        fallback = fallbacks.rows(~enough, sum(cfg.num_queries[:stage]), num)
        return torch.where(enough.view(-1, 1, 1), new, fallback), narrowed.count, candidates
