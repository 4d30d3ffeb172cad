"""Layering of the data side: the loader (``pgocc.data``) reads a synthetic world like any nuScenes dataset and never
imports the generator (``pgocc.synthetic``) or the text encoders (``pgocc.text``); the generator imports no torch
at import time, so its worker processes start without it (docs/architecture.md §3)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(code: str) -> None:
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_loader_imports_neither_generator_nor_text() -> None:
    _run(
        "import importlib, pkgutil, sys\n"
        "import pgocc.data\n"
        "for m in pkgutil.iter_modules(pgocc.data.__path__):\n"
        "    importlib.import_module(f'pgocc.data.{m.name}')\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('pgocc.synthetic', 'pgocc.text')))\n"
        "assert not bad, bad\n"
    )


def test_generator_imports_no_torch() -> None:
    _run(
        "import importlib, pkgutil, sys\n"
        "import pgocc.synthetic\n"
        "for m in pkgutil.iter_modules(pgocc.synthetic.__path__):\n"
        "    importlib.import_module(f'pgocc.synthetic.{m.name}')\n"
        "assert 'torch' not in sys.modules and 'pgocc.text' not in sys.modules\n"
    )


def test_loader_sources_name_neither_generator_nor_text() -> None:
    # The subprocess test sees module-level imports only; this one also sees imports inside functions.
    for path in sorted((ROOT / "pgocc" / "data").glob("*.py")):
        text = path.read_text()
        for package in ("pgocc.synthetic", "pgocc.text"):
            assert f"import {package}" not in text and f"from {package}" not in text, f"{path.name} imports {package}"
