"""Session fixtures shared by tests/test_data*.py: a tiny synthetic world generated once per test session.

Import the fixtures into a test module (``from tests.data_fixtures import tiny_world  # noqa: F401``); pytest then
shares the one session-scoped instance across modules.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from pgocc.data.synthetic import WorldSpec, make_synthetic

TINY_SPEC = WorldSpec(seed=11, scenes=2, keyframes=3, sweeps=2, width=400, height=225, text_encoder="hash",
                      feature_noise=0.02)
"""Two scenes (a scene boundary), three keyframes with two camera sweeps between them, 1600×900 / 4 images."""


_WORLDS: dict[WorldSpec, Path] = {}
"""Worlds made in this session. Importing the fixture into several modules gives each module its own fixture
definition, so the session scope alone would generate the world once per module; this cache makes it once."""


@pytest.fixture(scope="session")
def tiny_world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Root of the tiny synthetic world (read-only: tests that corrupt files work on :func:`clone_world`)."""
    if TINY_SPEC not in _WORLDS:
        root = tmp_path_factory.mktemp("world") / "synthetic"
        make_synthetic(root, TINY_SPEC, jobs=2)
        _WORLDS[TINY_SPEC] = root
    return _WORLDS[TINY_SPEC]


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
