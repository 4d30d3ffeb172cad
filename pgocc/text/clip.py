"""A CLIP text encoder through open-clip-torch (the ``clip`` extra), building prompt embeddings the way the original's
prototype file was built (docs/model.md §6.1): per text, every template of :data:`CLIP_TEMPLATES` filled in, encoded,
each L2-normalised, averaged and normalised again.

No package ships CLIP weights: ``weights`` is a checkpoint file, an open_clip pretrained tag already in the local
Hugging Face cache (e.g. ``openai``; the hub is never contacted), or ``random`` (randomly initialised: tests only).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pgocc.errors import ConfigError

_OBJECT_TEMPLATES = (
    "a bad photo of a {}.", "a bad photo of the {}.", "a black and white photo of a {}.",
    "a black and white photo of the {}.", "a blurry photo of a {}.", "a blurry photo of the {}.",
    "a bright photo of a {}.", "a bright photo of the {}.", "a cartoon {}.", "a close-up photo of a {}.",
    "a close-up photo of the {}.", "a cropped photo of a {}.", "a cropped photo of the {}.", "a dark photo of a {}.",
    "a dark photo of the {}.", "a doodle of a {}.", "a doodle of the {}.", "a drawing of a {}.",
    "a drawing of the {}.", "a embroidered {}.", "a good photo of a {}.", "a good photo of the {}.",
    "a jpeg corrupted photo of a {}.", "a jpeg corrupted photo of the {}.", "a low resolution photo of a {}.",
    "a low resolution photo of the {}.", "a origami {}.", "a painting of a {}.", "a painting of the {}.",
    "a photo of a clean {}.", "a photo of a cool {}.", "a photo of a dirty {}.", "a photo of a hard to see {}.",
    "a photo of a large {}.", "a photo of a nice {}.", "a photo of a small {}.", "a photo of a weird {}.",
    "a photo of a {}.", "a photo of many {}.", "a photo of my {}.", "a photo of one {}.",
    "a photo of the clean {}.", "a photo of the cool {}.", "a photo of the dirty {}.",
    "a photo of the hard to see {}.", "a photo of the large {}.", "a photo of the nice {}.",
    "a photo of the small {}.", "a photo of the weird {}.", "a photo of the {}.", "a pixelated photo of a {}.",
    "a plastic {}.", "a plushie {}.", "a rendering of a {}.",
    "a rendering of the {}.", "a rendition of a {}.", "a rendition of the {}.", "a sculpture of a {}.",
    "a sculpture of the {}.", "a sketch of a {}.", "a sketch of the {}.", "a tattoo of a {}.", "a tattoo of the {}.",
    "a toy {}.", "a {} in a video game.", "art of a {}.", "art of the {}.", "graffiti of a {}.",
    "graffiti of the {}.", "itap of a {}.", "itap of my {}.", "itap of the {}.", "the cartoon {}.",
    "the embroidered {}.", "the origami {}.", "the plastic {}.", "the plushie {}.", "the toy {}.",
    "the {} in a video game.",
)
"""The 79 distinct prompt templates of CLIP's ImageNet evaluation (alphabetical; its list of 80 holds "a pixelated
photo of a {}." twice, where "… of the {}." was meant)."""

_SCENE_TEMPLATES = (
    "there is a {} in the scene.", "there is the {} in the scene.", "this is a {} in the scene.",
    "this is the {} in the scene.", "this is one {} in the scene.",
)

CLIP_TEMPLATES: tuple[str, ...] = (*_OBJECT_TEMPLATES, "a pixelated photo of a {}.", *_SCENE_TEMPLATES)
"""[85] the original's templates (84 distinct): CLIP's 80 with "a pixelated photo of a {}." twice (so it weighs twice
in the mean, as there), and 5 "in the scene" ones."""


class ClipTextEncoder:
    """open_clip's text tower of ``model`` with ``weights`` (module docstring); 512-d for ViT-B-16."""

    def __init__(self, model: str = "ViT-B-16", weights: str = "openai",
                 templates: Sequence[str] = CLIP_TEMPLATES) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            import open_clip
        except Exception as exc:  # noqa: BLE001 - open_clip fails with many exception types (e.g. no torchvision)
            raise ConfigError(f"text encoder clip: open-clip-torch is not usable here ({type(exc).__name__}: {exc}); "
                              "install the clip extra (pip install -e '.[clip]') with a torchvision that matches "
                              "torch, or use minilm or a prototype file") from exc
        if weights not in ("random",) and ("/" in weights or weights.endswith((".pt", ".bin", ".safetensors"))) \
                and not Path(weights).is_file():
            raise ConfigError(f"text encoder clip: weights file {weights} not found")
        try:
            clip = open_clip.create_model(model, pretrained=None if weights == "random" else weights, device="cpu")
        except Exception as exc:  # noqa: BLE001 - open_clip raises RuntimeError, ValueError, OSError or hub errors
            raise ConfigError(f"text encoder clip:{model}:{weights}: open_clip could not build it "
                              f"({type(exc).__name__}: {exc}); CLIP weights are not available offline: download "
                              f"them where there is network and pass the file as clip:{model}:/path/to/weights") \
                from exc
        self._model = clip.eval()
        self._tokenize = open_clip.get_tokenizer(model)
        self.templates = tuple(templates)
        self._dim = int(clip.text_projection.shape[-1]) if hasattr(clip, "text_projection") else 512

    @property
    def dim(self) -> int:
        return self._dim

    @torch.no_grad()
    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        rows = []
        for p in prompts:
            e = self._model.encode_text(self._tokenize([t.format(p) for t in self.templates])).double()
            e = (e / e.norm(dim=-1, keepdim=True)).mean(0)
            rows.append((e / e.norm()).numpy())
        return torch.from_numpy(np.stack(rows).astype(np.float32)) if rows else torch.zeros((0, self.dim))
