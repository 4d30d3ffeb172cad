"""Data: nuScenes-format datasets (real nuScenes + Occ3D, or the synthetic world) read through nuscenes-devkit.

``build_dataset(cfg.data, split, num_frames=…, feature_dim=…, mode=…)`` gives an :class:`OccDataset` whose items
are single-sample :class:`Batch` es; ``make_loader`` batches them (``collate``) with worker processes.
The procedural world that ``pgocc make-synthetic`` writes lives in ``pgocc.synthetic``, which this package never
imports. See ``pgocc/data/design.md``.

The names below import lazily, so that importing one numpy-only module (e.g. ``pgocc.data.layout`` in the synthetic
world's worker processes) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Batch": "pgocc.data.batch",
    "OccDataset": "pgocc.data.dataset",
    "build_dataset": "pgocc.data.dataset",
    "collate": "pgocc.data.dataset",
    "make_loader": "pgocc.data.dataset",
    "DatasetIndex": "pgocc.data.index",
    "build_index": "pgocc.data.index",
    "CAMERAS": "pgocc.data.layout",
    "DataFallbackWarning": "pgocc.data.notices",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'pgocc.data' has no attribute {name!r}")
