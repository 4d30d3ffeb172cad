"""The benchmark harness pieces that run without a GPU: step builder and the Markdown summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from conftest import make_step  # noqa: E402  (bench/conftest.py)


def test_fwd_bwd_step_produces_and_clears_grads() -> None:
    w = torch.randn(4, requires_grad=True)
    calls = []

    def fn(w: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return w * 2

    step = make_step(fn, {"w": w}, "fwd_bwd")
    step()
    assert w.grad is None and len(calls) == 2  # one probe call for the cotangent shape, one timed call


def test_fwd_bwd_without_grad_inputs_is_an_error() -> None:
    with pytest.raises(ValueError, match="no input requires grad"):
        make_step(lambda x: x, {"x": torch.zeros(2)}, "fwd_bwd")


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="unknown benchmark mode"):
        make_step(lambda x: x, {"x": torch.zeros(2)}, "sideways")


def test_summary_table_has_ratios(tmp_path: Path) -> None:
    data = {"benchmarks": [
        {"name": "a", "group": "op/case/fwd", "extra_info": {"impl": "reference", "median_ms_cuda": 4.0}},
        {"name": "b", "group": "op/case/fwd", "extra_info": {"impl": "triton", "median_ms_cuda": 1.0,
                                                              "GB_per_s": 1500.0, "pct_of_measured_bw": 50.0}},
        {"name": "c", "group": "op/case/fwd", "extra_info": {"impl": "gsplat", "median_ms_cuda": 2.0}},
    ]}
    (tmp_path / "b.json").write_text(json.dumps(data))
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "summarize.py"), str(tmp_path / "b.json")],
                         capture_output=True, text=True, check=True).stdout
    row = next(line for line in out.splitlines() if "| triton |" in line)
    assert "| 4.00 | 2.00 |" in row, row


def test_summary_missing_file_is_clear(tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "summarize.py"), str(tmp_path / "none.json")],
                         capture_output=True, text=True)
    assert res.returncode == 1 and "not found" in res.stderr
