"""Teacher models that turn camera images into per-image targets (``pgocc prepare-targets``, docs/data.md §3.1).

Every teacher has one small interface (:class:`Teacher`): ``teacher(images, intrinsics)`` with ``images`` [B, 3, H, W]
float32 RGB in [0, 1] at the camera's full resolution and ``intrinsics`` [B, 3, 3] of that resolution, on the
teacher's device, returning [B, *teacher.output_shape((H, W))].

- :class:`MaskCLIP`: dense CLIP features as MaskCLIP defines them for a ViT: the image tokens run through every
  transformer block but the last; of the last block only the value path is kept (``ln_1`` → value projection of its
  attention → output projection, no query/key attention, no residual, no MLP), then ``ln_post`` and the projection
  to the text space. Input as the original's targets: resized to 432 × 768, ImageNet-normalised, so a ViT-B/16 gives
  [512, 27, 48] (the original then ran FeatUp's upsampler and pooled 16 × 16 back to 27 × 48; without FeatUp's
  weights the patch features are used directly, on the same grid). The ViT is an open_clip ``VisionTransformer``
  (:func:`load_maskclip`) or any module with its attribute names.
- :class:`MetricDepth`: any metric-depth model ``model(images, intrinsics) -> depth`` ([B, H, W] or [B, 1, H, W],
  metres along the camera's z axis), a TorchScript file or a Python callable (:func:`load_depth_model`). With
  ``canonical_focal`` it adapts a Metric3D-style model that predicts depth for a camera of that focal length: the
  image is scaled to fit ``input_size`` and padded (with the ImageNet mean colour, which normalises to 0), the model
  runs there, its depth is multiplied by ``fx · scale / canonical_focal`` and the padding is cut off before the depth
  is resized back to the image (bilinear).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F  # noqa: N812

from pgocc.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
MASKCLIP_INPUT = (432, 768)
"""(H, W) the original's MaskCLIP features were computed at (docs/data.md §3)."""
METRIC3D_INPUT = (616, 1064)
"""(H, W) Metric3D's ViT models take (the original's depth targets)."""
METRIC3D_FOCAL = 1000.0
"""Focal length in pixels of Metric3D's canonical camera."""


class Teacher(Protocol):
    """A model that makes one kind of per-image target."""

    kind: str
    """'depth' or 'features': which target folder its outputs go to."""

    def output_shape(self, image_size: tuple[int, int]) -> tuple[int, ...]:
        """Shape of the target of one image of ``image_size`` (H, W)."""
        ...

    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] float32 RGB in [0, 1], intrinsics [B, 3, 3] → [B, *output_shape((H, W))]."""
        ...


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = images.new_tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (images - mean) / std


class MaskCLIP:
    """Dense MaskCLIP features of a CLIP ViT (module docstring): [B, D, H_in/p, W_in/p] for patch size p."""

    kind = "features"

    def __init__(self, visual: torch.nn.Module, input_size: tuple[int, int] = MASKCLIP_INPUT) -> None:
        self.visual = visual.eval()
        self.input_size = input_size
        patch = visual.conv1.kernel_size
        if input_size[0] % patch[0] or input_size[1] % patch[1]:
            raise ConfigError(f"MaskCLIP: input size {input_size} is not a multiple of the patch size {patch}")
        self.grid = (input_size[0] // patch[0], input_size[1] // patch[1])
        self.dim = int(visual.proj.shape[1])

    def output_shape(self, image_size: tuple[int, int]) -> tuple[int, ...]:
        del image_size
        return (self.dim, *self.grid)

    def _positions(self) -> torch.Tensor:
        """[1 + h·w, width] the ViT's positional embedding, its patch part resized (bicubic) to the input grid."""
        pos = self.visual.positional_embedding
        side = int(round((pos.shape[0] - 1) ** 0.5))
        if (side, side) == self.grid:
            return pos
        patch = pos[1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patch = F.interpolate(patch, size=self.grid, mode="bicubic", align_corners=False)
        return torch.cat([pos[:1], patch[0].flatten(1).T])

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        del intrinsics
        v = self.visual
        x = F.interpolate(images, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        x = v.conv1(_normalise(x).to(v.conv1.weight.dtype))  # [B, width, h, w]
        x = x.flatten(2).transpose(1, 2)  # [B, h·w, width]
        cls = v.class_embedding.to(x.dtype).view(1, 1, -1).expand(x.shape[0], 1, -1)
        x = v.ln_pre(torch.cat([cls, x], dim=1) + self._positions().to(x.dtype))
        *blocks, last = v.transformer.resblocks
        batch_first = getattr(v.transformer, "batch_first", True)
        x = x if batch_first else x.transpose(0, 1)
        for block in blocks:
            x = block(x)
        x = x if batch_first else x.transpose(0, 1)
        attn = last.attn
        width = attn.embed_dim
        value = F.linear(last.ln_1(x), attn.in_proj_weight[2 * width:], attn.in_proj_bias[2 * width:])
        x = attn.out_proj(value)[:, 1:]  # the value path only, without the class token
        x = v.ln_post(x) @ v.proj  # [B, h·w, D]
        return x.transpose(1, 2).reshape(x.shape[0], self.dim, *self.grid).float()


def load_maskclip(model: str, weights: str, device: torch.device) -> MaskCLIP:
    """MaskCLIP on the vision tower of open_clip's ``model`` (e.g. ``ViT-B-16``) with ``weights``: a checkpoint file
    or an open_clip pretrained tag found in the local cache (``openai``), or ``random`` for randomly initialised
    weights (tests and throughput measurements)."""
    try:
        import open_clip
    except Exception as exc:  # noqa: BLE001 - open_clip fails with many exception types when torchvision mismatches
        raise ConfigError(f"--feature-model maskclip: open-clip-torch is not usable here ({type(exc).__name__}: "
                          f"{exc}); install the clip extra (pip install -e '.[clip]') with a torchvision that "
                          "matches torch") from exc
    if weights != "random" and not Path(weights).is_file() and "/" in weights:
        raise ConfigError(f"--clip-weights: {weights} is not a file")
    try:
        clip = open_clip.create_model(model, pretrained=None if weights == "random" else weights, device=device)
    except Exception as exc:  # noqa: BLE001 - open_clip raises RuntimeError, ValueError, OSError or hub errors
        raise ConfigError(f"--clip-model {model} --clip-weights {weights}: open_clip could not build the model "
                          f"({type(exc).__name__}: {exc})") from exc
    return MaskCLIP(clip.visual)


DepthModel = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``model(images [B, 3, h, w] float32 RGB in [0, 1], intrinsics [B, 3, 3]) -> depth [B, h, w] or [B, 1, h, w]``."""


class MetricDepth:
    """Metric depth at the image's full resolution from a depth model (module docstring): [B, H, W] metres."""

    kind = "depth"

    def __init__(self, model: DepthModel, *, canonical_focal: float | None = None,
                 input_size: tuple[int, int] = METRIC3D_INPUT) -> None:
        if canonical_focal is not None and canonical_focal <= 0:
            raise ConfigError(f"--canonical-focal: must be > 0, got {canonical_focal}")
        self.model = model
        self.canonical_focal = canonical_focal
        self.input_size = input_size

    def output_shape(self, image_size: tuple[int, int]) -> tuple[int, ...]:
        return tuple(image_size)

    @staticmethod
    def _squeeze(depth: torch.Tensor) -> torch.Tensor:
        return depth[:, 0] if depth.ndim == 4 and depth.shape[1] == 1 else depth

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        if self.canonical_focal is None:
            return self._squeeze(self.model(images, intrinsics)).float()
        H, W = images.shape[-2:]
        in_h, in_w = self.input_size
        scale = min(in_h / H, in_w / W)
        h, w = round(H * scale), round(W * scale)
        top, left = (in_h - h) // 2, (in_w - w) // 2
        x = F.interpolate(images, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
        padded = images.new_tensor(IMAGENET_MEAN).view(1, 3, 1, 1).expand(len(images), 3, in_h, in_w).clone()
        padded[:, :, top:top + h, left:left + w] = x
        k = intrinsics.clone()
        k[:, :2] *= scale
        k[:, 0, 2] += left
        k[:, 1, 2] += top
        depth = self._squeeze(self.model(padded, k)).float()
        if depth.shape[-2:] != (in_h, in_w):
            return depth  # the caller refuses the wrong shape, naming the file
        depth = depth[:, top:top + h, left:left + w] * (k[:, 0, 0] / self.canonical_focal).view(-1, 1, 1)
        return F.interpolate(depth[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]


def load_depth_model(spec: str, device: torch.device) -> DepthModel:
    """The depth model ``spec``: a TorchScript file (loaded onto ``device``) or ``module:function``, a Python
    callable with the :data:`DepthModel` signature."""
    if Path(spec).is_file():
        try:
            return torch.jit.load(spec, map_location=device).eval()
        except RuntimeError as exc:
            raise ConfigError(f"--depth-model: {spec} is not a TorchScript file ({exc})") from exc
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ConfigError(f"--depth-model: expected a TorchScript file or module:function, got {spec!r}")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"--depth-model: cannot import {spec} ({exc})") from exc
    if not callable(fn):
        raise ConfigError(f"--depth-model: {spec} is not callable")
    return fn
