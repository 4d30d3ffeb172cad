"""Session fixtures shared by tests/test_data*.py: a tiny synthetic world generated once per test session.

Import the fixtures into a test module (``from tests.data_fixtures import tiny_world  # noqa: F401``); pytest then
shares the one session-scoped instance across modules.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from pgocc.synthetic.writer import WorldSpec, make_synthetic

TINY_SPEC = WorldSpec(seed=11, scenes=2, keyframes=3, sweeps=2, width=400, height=225, text_encoder="hash",
                      feature_noise=0.02)
"""Two scenes (a scene boundary), three keyframes with two camera sweeps between them, 1600×900 / 4 images."""


_WORLDS: dict[tuple[WorldSpec, str], Path] = {}
"""Worlds made in this session, by spec and layout. Importing the fixture into several modules gives each module its
own fixture definition, so the session scope alone would generate the world once per module; this cache makes it
once."""


def _world(factory: pytest.TempPathFactory, layout: str) -> Path:
    if (TINY_SPEC, layout) not in _WORLDS:
        out = factory.mktemp("world") / "synthetic"
        make_synthetic(out, TINY_SPEC, jobs=2, layout=layout)
        _WORLDS[TINY_SPEC, layout] = out
    return _WORLDS[TINY_SPEC, layout]


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the tiny synthetic world (read-only: tests that corrupt files work on :func:`clone_world`)."""
    return _world(tmp_path_factory, "pgocc")


@pytest.fixture(scope="session")
def original_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same world in the original's layout: the output folder, holding ``nuscenes/`` (the dataroot, with info
    pickles), ``nuscenes_featup/`` and ``nuscenes_metric3d/`` (read-only)."""
    return _world(tmp_path_factory, "original")


def clone_world(src: Path, dst: Path) -> Path:
    """A copy of ``src`` at ``dst`` made of real folders and symlinked files, so a test can replace single files
    (``replace_file``) cheaply without touching the shared world."""
    shutil.copytree(src, dst, copy_function=os.symlink)
    return dst


def replace_file(path: Path, data: bytes | None) -> None:
    """Replace the (symlinked) file at ``path`` with ``data``, or delete it when ``data`` is None."""
    path.unlink()
    if data is not None:
        path.write_bytes(data)


@pytest.fixture
def decoded_jpegs(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The image files the loader decodes in this process while the test runs, in order (the loader's
    ``decode_scaled`` wrapped; DataLoader workers are other processes, so use ``data.num_workers=0``)."""
    from pgocc.data import dataset as dataset_module

    decoded: list[Path] = []
    decode = dataset_module.decode_scaled

    def counting(path: Path, need: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int]]:
        decoded.append(Path(path))
        return decode(path, need)

    monkeypatch.setattr(dataset_module, "decode_scaled", counting)
    return decoded
