"""The kernel registry: contracts complete, signatures shared, errors clear, imports lazy."""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pgocc import ops
from pgocc.config import KernelConfig
from pgocc.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("op", ops.OPS)
def test_contract_is_complete(op: str) -> None:
    c = ops.contract(op)
    assert c.__doc__ and "Args" in c.__doc__ and "Returns" in c.__doc__, f"pgocc/ops/{op}.py needs a shape docstring"
    for name in ("validate", "make_inputs", "bytes_moved", "IMPLS", "CASES"):
        assert hasattr(c, name), f"pgocc/ops/{op}.py lacks {name}"
    assert list(c.IMPLS)[0] == "reference", f"{op}: the reference must be registered, and first"
    assert c.IMPLS["reference"].target.startswith("reference."), f"{op}: the reference lives in reference/"
    for key in ("cpu", "gpu", "bench"):
        assert c.CASES.get(key), f"{op}: CASES[{key!r}] is empty"
    assert hasattr(KernelConfig(), op), f"KernelConfig lacks a field for {op}"


@pytest.mark.parametrize("op", ops.OPS)
def test_implementations_share_one_signature(op: str) -> None:
    expected = list(inspect.signature(ops.contract(op).validate).parameters)
    for impl in ops.available(op):
        fn = ops.load_impl(op, impl)
        got = list(inspect.signature(fn).parameters)
        assert got == expected, f"{op}/{impl}: parameters {got} differ from the contract's {expected}"


@pytest.mark.parametrize("op", ops.OPS)
def test_every_op_has_parity_tests_and_benchmarks(op: str) -> None:
    tests = list((ROOT / "tests").glob(f"test_{op}*.py"))
    assert tests, f"no tests/test_{op}*.py"
    assert any("assert_parity" in t.read_text() or "assert_equal" in t.read_text() for t in tests), (
        f"tests/test_{op}*.py never compares against the reference")
    bench = ROOT / "bench" / f"test_{op}.py"
    assert bench.exists(), f"no benchmark {bench.relative_to(ROOT)}"


def test_unknown_implementation_lists_valid_names() -> None:
    with pytest.raises(ConfigError, match=r"kernels\.fps: unknown implementation 'cuda_magic'; available: reference"):
        ops.resolve("fps", "cuda_magic")


def test_unknown_op_lists_ops() -> None:
    with pytest.raises(ConfigError, match="unknown op 'fpss'.*fps"):
        ops.resolve("fpss", "reference")


def test_resolve_validates_shapes() -> None:
    fps = ops.resolve("fps", "reference")
    with pytest.raises(ValueError, match=r"fps: points must be \[B, N, 3\]; dim 2 is 2, expected 3"):
        fps(torch.zeros(1, 10, 2), torch.tensor([10]), 4)
    with pytest.raises(ValueError, match="num_samples=11 exceeds the 10 points"):
        fps(torch.zeros(1, 10, 3), torch.tensor([10]), 11)
    with pytest.raises(ValueError, match="N = 0"):
        fps(torch.zeros(1, 0, 3), torch.tensor([0]), 1)
    with pytest.raises(ValueError, match="lengths must have dtype"):
        fps(torch.zeros(1, 10, 3), torch.tensor([10], dtype=torch.int32), 4)


def test_resolve_returns_working_wrapper() -> None:
    fps = ops.resolve("fps", "reference")
    assert (fps.op, fps.impl) == ("fps", "reference")
    pts = torch.tensor([[[0.0, 0, 0], [1, 0, 0], [5, 0, 0], [2, 0, 0]]])
    assert fps(pts, torch.tensor([4]), 3).tolist() == [[0, 2, 3]]


def test_deterministic_mode_refuses_nondeterministic_impls() -> None:
    for op in ops.OPS:
        for impl in ops.available(op):
            if not ops.is_deterministic(op, impl):
                with pytest.raises(ConfigError, match="not deterministic"):
                    ops.resolve(op, impl, deterministic=True)


def test_reference_only_run_never_imports_triton() -> None:
    code = (
        "import sys\n"
        "from pgocc import ops\n"
        "from pgocc.config import load_experiment\n"
        "cfg = load_experiment('configs.tiny:tiny')\n"
        "for op in ops.OPS:\n"
        "    ops.resolve(op, 'reference')\n"
        "assert 'triton' not in sys.modules, sorted(m for m in sys.modules if m.startswith('triton'))\n"
        "assert 'kernels_triton' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_reference_never_imports_kernels() -> None:
    for path in (ROOT / "reference").glob("*.py"):
        text = path.read_text()
        assert "import kernels_triton" not in text and "from kernels_triton" not in text, (
            f"reference/{path.name} imports kernels_triton")


def test_kernels_never_import_the_references() -> None:
    """The references (``reference/_math.py`` included) are the independent definition the kernels are tested
    against, so no implementation package shares their code."""
    for package in ("kernels_triton", "kernels_gsplat"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert "import reference" not in text and "from reference" not in text, (
                f"{path.relative_to(ROOT)} imports reference")
