"""What the data loader yields per batch: one typed :class:`Batch` (docs/model.md §1.1, §1.4, §5.1, §7).

Glossary of dims (docs/model.md §0):
    B        samples in the batch (B >= 1)
    T        frames: t = 0 the current keyframe, t = 1..T-1 past frames of increasing age (default 8)
    N        cameras, fixed order FRONT, FRONT_RIGHT, FRONT_LEFT, BACK, BACK_LEFT, BACK_RIGHT (6)
    H_in, W_in   network input size, 256 × 704 for the nuScenes 900 × 1600 images (§7.4)
    H_r, W_r     render size 180 × 320 (§1.4)
    D, h, w  vision-language feature width and map size (512 × 27 × 48 for MaskCLIP; 384 × h × w for the
             synthetic world's MiniLM features at 1/16 of the image)
    X, Y, Z  Occ3D grid 200 × 200 × 16

Image index within a sample: ``k = N·t + n`` (camera-major inside a frame, frames in increasing age).

Frames: "ego" is the ego frame at the current keyframe's LiDAR timestamp (x forward, y left, z up), which is also the
Occ3D label frame; camera frames are OpenCV style (x right, y down, z forward). Every matrix is float32, composed in
float64 on the host from the global poses and cast once (only local, small-translation transforms remain).
Images are uint8 **BGR** (the channel order the released model was trained with).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import torch


def _describe(t: torch.Tensor | None) -> str:
    return "None" if t is None else f"{tuple(t.shape)} {t.dtype}"


@dataclass(kw_only=True, slots=True)
class Batch:
    """One batch of B samples. Field names are stable: the model imports them."""

    images: torch.Tensor
    """[B, T·N, 3, H_in, W_in] uint8 BGR: the T frames × N cameras resized and cropped by the image transform (§7.4);
    [B, N, 3, H_in, W_in], the current frame only, from the online loader (the past frames' features come from the
    model's FeatureCache; every other per-image field still covers all T·N images)."""
    lidar2img: torch.Tensor
    """[B, T·N, 4, 4] float32: current-keyframe LiDAR frame → pixel (u·z, v·z, z, 1) of image k in the network input,
    ego-motion compensated for past frames through the global poses, image transform included (§1.4)."""
    ego2img: torch.Tensor
    """[B, T·N, 4, 4] float32: ``lidar2img @ ego2lidar``, current ego frame → pixel of image k (§1.4)."""
    ego2lidar: torch.Tensor
    """[B, 4, 4] float32: current ego frame → current LiDAR frame (inverse of the keyframe's lidar2ego)."""
    cam2ego: torch.Tensor
    """[B, N, 4, 4] float32: static calibration camera → ego of the current cameras; rendering uses its inverse."""
    render_k: torch.Tensor
    """[B, N, 3, 3] float32: intrinsics of the H_r × W_r renders covering the full original field of view
    (row 0 scaled by W_r / W_orig, row 1 by H_r / H_orig)."""
    depth: torch.Tensor
    """[B, N, 1, H_r, W_r] float32 metres: foundation (metric) depth of the current cameras, resampled
    corner-aligned bilinear (§7.3). A model input at inference. 0 where the source gave no depth."""
    features: torch.Tensor | None
    """[B, N, D, h, w] float32: vision-language feature maps of the current cameras (not normalised); None from the
    online loader (a training target only)."""
    render_gt: torch.Tensor | None
    """[B, 3·N, H_r, W_r, 3] uint8 BGR: current images, then the camera sweep just before, then just after
    (each N images in camera order), resized to the render size (§5.1). Duplicates of the current images where
    the scene has no previous/next sweep. [B, N, H_r, W_r, 3], the current images only, from the online loader.
    None from a loader built with ``with_render=False`` (inference without pictures)."""
    t0_2_x_geo: torch.Tensor
    """[B, 2·N, 4, 4] float32: current camera n → previous-sweep camera (rows 0..N-1), then → next-sweep camera
    (rows N..2N-1), ``inverse(cam2global[src]) @ cam2global[cur]``; identity where the sweep is missing (§5.1)."""
    source_valid: torch.Tensor
    """[B, 2·N] bool: whether the previous (rows 0..N-1) / next (rows N..2N-1) sweep of camera n exists. Where it
    does not (a scene's first or last keyframe), ``render_gt`` and ``t0_2_x_geo`` hold the current image and the
    identity, and the photometric loss leaves that source out."""
    timestamps: torch.Tensor
    """[B, T·N] int64 microseconds: capture time of image k."""
    semantics: torch.Tensor | None
    """[B, X, Y, Z] uint8 Occ3D labels (0 others … 16 vegetation, 17 free), axes (x, y, z) in the ego frame;
    None when the dataset has no labels (inference)."""
    mask_camera: torch.Tensor | None
    """[B, X, Y, Z] bool: voxels observed by the cameras (Occ3D ``mask_camera``); None without labels."""
    mask_lidar: torch.Tensor | None
    """[B, X, Y, Z] bool: voxels observed by the LiDAR (Occ3D ``mask_lidar``); None without labels."""
    sample_tokens: list[str]
    """[B] nuScenes sample tokens of the current keyframes."""
    scene_names: list[str]
    """[B] scene names (``scene-0001``…)."""
    filenames: list[list[str]]
    """[B][T·N] image paths relative to the dataroot, in the order of ``images`` (index k = N·t + n)."""

    @property
    def batch_size(self) -> int:
        """B."""
        return int(self.images.shape[0])

    @property
    def num_cams(self) -> int:
        """N."""
        return int(self.cam2ego.shape[1])

    @property
    def num_frames(self) -> int:
        """T (from ``ego2img``, which covers every frame also where ``images`` holds only the current one)."""
        return int(self.ego2img.shape[1]) // self.num_cams

    @property
    def frame_keys(self) -> list[list[str]]:
        """[B][T] each frame's id, its CAM_FRONT file name: the model's feature-cache keys."""
        N = self.num_cams
        return [[names[t * N] for t in range(self.num_frames)] for names in self.filenames]

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Batch:
        values = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            values[f.name] = fn(v) if isinstance(v, torch.Tensor) else v
        return Batch(**values)

    def to(self, device: torch.device | str, *, non_blocking: bool = False) -> Batch:
        """A copy with every tensor on ``device`` (dtypes unchanged; metadata lists shared)."""
        return self._map(lambda t: t.to(device, non_blocking=non_blocking))

    def clone(self) -> Batch:
        """A copy with every tensor copied (metadata lists shared): e.g. the input buffers of a CUDA graph."""
        return self._map(torch.clone)

    def signature(self) -> tuple[tuple[tuple[int, ...], torch.dtype] | None, ...]:
        """Every tensor field's (shape, dtype), None where the field is None: what a batch must share with another
        to be copied into it (:meth:`copy_from`)."""
        return tuple(None if (v := getattr(self, f.name)) is None else (tuple(v.shape), v.dtype)
                     for f in dataclasses.fields(self) if not isinstance(getattr(self, f.name), list))

    def copy_from(self, src: Batch) -> None:
        """Copy every tensor of ``src`` into this batch's tensors, in place and non-blocking (a CUDA graph's input
        buffers keep their addresses); the metadata lists are taken from ``src``.

        Raises:
            ValueError: ``src`` has another :meth:`signature` (nothing is copied); the message names the first field
                that differs.
        """
        pairs = [(f.name, getattr(self, f.name), getattr(src, f.name)) for f in dataclasses.fields(self)]
        for name, mine, theirs in pairs:  # every field checked before any is written
            if isinstance(mine, list) or (mine is None and theirs is None):
                continue
            if mine is None or theirs is None or mine.shape != theirs.shape or mine.dtype != theirs.dtype:
                raise ValueError(f"Batch.copy_from: {name} is {_describe(theirs)}, the buffer is {_describe(mine)}")
        for name, mine, theirs in pairs:
            if isinstance(mine, list):
                setattr(self, name, theirs)
            elif mine is not None:
                mine.copy_(theirs, non_blocking=True)

    def pin_memory(self) -> Batch:
        """A copy with every tensor in pinned host memory (called by ``DataLoader(pin_memory=True)``)."""
        return self._map(lambda t: t.pin_memory())
