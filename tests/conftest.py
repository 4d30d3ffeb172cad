"""Test-suite set-up: interpreter mode for Triton on CPU, markers, seeded randomness, device and case fixtures."""

from __future__ import annotations

import os
import random
import time
import zlib
from collections.abc import Callable
from typing import TypeVar

# Must happen before anything imports triton: the @triton.jit decorators read it when they run. Decided from the
# device node rather than torch.cuda so that importing torch here cannot race the flag.
HAS_GPU = os.path.exists("/dev/nvidia0") or os.path.exists("/dev/nvidiactl")
if not HAS_GPU:
    os.environ["TRITON_INTERPRET"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

BASE_SEED = int(os.environ.get("PGOCC_TEST_SEED", str(int(time.time()) % 100_000)))
DRAWS = 8
"""Fresh draws :func:`draw_inputs` may make before it gives up."""

T = TypeVar("T")


def pytest_report_header(config: pytest.Config) -> list[str]:
    mode = "native CUDA" if HAS_GPU else "TRITON_INTERPRET=1 (CPU)"
    return [f"pgocc: triton mode {mode}; PGOCC_TEST_SEED={BASE_SEED} (set it to reproduce a failure)"]


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    # The header is hidden by -q (what `make test` and CI run); the summary is not, so a failure's seed is always shown.
    terminalreporter.write_line(f"pgocc: PGOCC_TEST_SEED={BASE_SEED} (set it to reproduce a failure)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_GPU:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (runs in bench/run_gpu.sh)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True)
def _seed_everything(request: pytest.FixtureRequest) -> int:
    """Seed torch, numpy and random per test: fresh inputs each session, reproducible with PGOCC_TEST_SEED."""
    seed = (BASE_SEED * 1_000_003 + zlib.crc32(request.node.nodeid.encode())) % (2**31)
    torch.manual_seed(seed)
    np.random.seed(seed)
    random.seed(seed)
    return seed


@pytest.fixture
def seed(_seed_everything: int) -> int:
    """This test's seed (pass it to input factories)."""
    return _seed_everything


@pytest.fixture(scope="session")
def device() -> torch.device:
    """cuda when present (native Triton), else cpu (interpreted Triton)."""
    return torch.device("cuda" if HAS_GPU and torch.cuda.is_available() else "cpu")


def draw_inputs(make: Callable[[int], T], usable: Callable[[T], str | None], seed: int) -> T:
    """``make(seed')`` for the first of up to DRAWS seeds derived from ``seed`` whose inputs are ``usable``.

    For preconditions of a comparison that depend on the random inputs alone (enough samples away from a texel edge,
    enough pixels clear of a threshold), never on the implementation under test: a draw that cannot test anything is
    replaced instead of failing the test, and a failure still reproduces from ``seed``. ``usable`` returns None, or
    why the inputs cannot be used; after DRAWS unusable draws that reason fails the test. ``make`` may return the
    inputs together with what ``usable`` derives from them, so that the caller does not compute it again.
    """
    reason = None
    for k in range(DRAWS):
        inputs = make((seed + 7919 * k) % (2**31))
        reason = usable(inputs)
        if reason is None:
            return inputs
    raise AssertionError(f"{DRAWS} draws from seed {seed} were all unusable; the last: {reason}")


def parity_cases(op: str) -> list:
    """The contract's parity cases for this machine: small 'cpu' ones under the interpreter, 'gpu' ones natively."""
    from pgocc import ops

    return ops.contract(op).CASES["gpu" if HAS_GPU else "cpu"]


def case_ids(cases: list) -> list[str]:
    return [c.id for c in cases]
