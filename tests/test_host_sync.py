"""No host data enters device work and no device data reaches the host inside the model's forward, the readout, the
losses and the backward (issue 18, item 3; docs/performance.md §2).

On CUDA each of these is a synchronising runtime call that stops the host from queueing launches ahead of the GPU:
a tensor built from Python data (``torch.tensor``, ``new_tensor``) or indexed by a Python list is a pageable
host→device copy; ``torch.linalg.inv`` checks its error flag on the host; ``.item()`` and ``bool()`` read a value.
The test runs the paths on the ``meta`` device (no data, so no value can be read) under a recorder that sees them:

- a ``TorchDispatchMode`` records every aten op that mixes a CPU tensor into work on meta tensors, copies from the
  CPU to meta (``_to_copy``, ``copy_``), checks linalg errors on the host (``_linalg_check_errors``) or reads a
  scalar (``_local_scalar_dense``, ``item``);
- a ``TorchFunctionMode`` records what happens above the dispatcher, where the copy of Python data does not show as
  an aten op: ``torch.tensor`` / ``as_tensor`` / ``asarray`` / ``Tensor.new_tensor`` producing a non-CPU tensor, and
  indexing a non-CPU tensor with a Python list.

Each record names the op and the ``pgocc/`` lines of the Python stack that issued it. The paths are recorded on
their second call: the first builds the model's cached device constants (:mod:`pgocc.model.constants`, one copy each).
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from pgocc import ops
from pgocc.config import ExperimentConfig, KernelConfig
from pgocc.model import FeatureCache, PGOcc, PGOccLoss, Readout
from pgocc.model.constants import device_constant
from tests.test_model import make_batch, tiny_cfg
from tests.test_readout import OCC3D_COLUMNS

PACKAGE = str(Path(__file__).resolve().parents[1] / "pgocc")
"""Stack frames under this folder are the ones a record names."""

SYNCING_OPS = {torch.ops.aten._linalg_check_errors.default, torch.ops.aten._local_scalar_dense.default,
               torch.ops.aten.item.default}
COPY_OPS = {torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default}
FROM_HOST_DATA = {torch.tensor, torch.as_tensor, torch.asarray, torch.Tensor.new_tensor}
INDEXING = {torch.Tensor.__getitem__, torch.Tensor.__setitem__, torch.Tensor.index_put, torch.Tensor.index_put_}


def _tensors(tree: Any) -> list[torch.Tensor]:
    return [t for t in tree_flatten(tree)[0] if isinstance(t, torch.Tensor)]


def _has_list(index: Any) -> bool:
    """A Python list anywhere in an indexing argument (it becomes a CPU index tensor copied to the device)."""
    if isinstance(index, list):
        return True
    return isinstance(index, tuple) and any(_has_list(i) for i in index)


def _to_meta(kwargs: dict) -> bool:
    """``_to_copy``'s target device is the meta device (the source tensor is the only tensor argument)."""
    device = kwargs.get("device")
    return device is not None and torch.device(device).type == "meta"


@dataclass
class HostTraffic:
    """Recorded host→device data and host reads: one (what, pgocc stack lines) pair per event."""

    events: list[tuple[str, list[str]]] = field(default_factory=list)

    def add(self, what: str) -> None:
        stack = [f"{Path(f.filename).relative_to(Path(PACKAGE).parent)}:{f.lineno} {f.line}"
                 for f in traceback.extract_stack() if f.filename.startswith(PACKAGE)]
        self.events.append((what, stack))

    def report(self) -> str:
        return "\n".join(f"{what}\n" + "".join(f"    {line}\n" for line in stack) for what, stack in self.events)


class _DispatchRecorder(TorchDispatchMode):
    def __init__(self, record: HostTraffic) -> None:
        super().__init__()
        self.record = record

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        # Recorded before the call: an op mixing devices may raise on meta, and the record must still name it.
        devices = {t.device.type for t in _tensors((args, kwargs))}
        if func in SYNCING_OPS:
            self.record.add(f"{func}: a host read")
        elif func in COPY_OPS and "cpu" in devices and ("meta" in devices or _to_meta(kwargs)):
            self.record.add(f"{func}: a copy between the host and the device")
        elif "cpu" in devices and "meta" in devices:
            self.record.add(f"{func}: a CPU tensor argument in device work")
        return func(*args, **kwargs)


class _FunctionRecorder(TorchFunctionMode):
    def __init__(self, record: HostTraffic) -> None:
        super().__init__()
        self.record = record

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func in INDEXING and len(args) > 1 and args[0].device.type != "cpu" and _has_list(args[1]):
            self.record.add(f"{func.__name__}: indexing with a Python list")
        out = func(*args, **kwargs)
        if func in FROM_HOST_DATA and isinstance(out, torch.Tensor) and out.device.type != "cpu":
            self.record.add(f"{func.__name__}: a device tensor built from host data")
        return out


@contextmanager
def host_traffic() -> Iterator[HostTraffic]:
    """Record, within, every host→device transfer of host data and every host read of device data (see above)."""
    record = HostTraffic()
    with _FunctionRecorder(record), _DispatchRecorder(record):
        yield record


@pytest.fixture(scope="module")
def cfg() -> ExperimentConfig:
    return tiny_cfg()


def test_the_recorder_sees_each_kind_of_host_traffic() -> None:
    x = torch.zeros(2, 5, 3, device="meta")
    with host_traffic() as record:
        x.new_tensor([1.0, 2.0, 3.0])
        torch.tensor([1, 2], device="meta")
        x[..., [0, 2]]
        x * torch.tensor(2.0)
        torch.ones(3).to("meta")
        torch.linalg.inv(torch.zeros(3, 3, device="meta"))
        with pytest.raises(RuntimeError, match="meta"):    # meta tensors have no value to read
            x.sum().item()
    kinds = [what.split(":")[0] for what, _ in record.events]
    assert kinds == ["new_tensor", "tensor", "__getitem__", "aten.mul.Tensor", "aten._to_copy.default",
                     "aten._linalg_check_errors.default", "aten._local_scalar_dense.default"], record.report()
    device_constant((1.0, 2.0), x)                              # first use: the one copy of a cached constant
    with host_traffic() as record:                              # what the model does instead
        x - x.new_zeros(3).fill_(1.0)
        x[..., x.new_zeros(2, dtype=torch.long)]
        torch.linalg.inv_ex(torch.zeros(3, 3, device="meta"))
        device_constant((1.0, 2.0), x)
    assert not record.events, record.report()


def test_device_constant_caches_per_values_device_and_dtype() -> None:
    x = torch.zeros(3)
    a = device_constant((0.5, -0.0, float("nan")), x)
    assert device_constant([0.5, -0.0, float("nan")], x) is a          # lists and tuples, NaN: one entry
    assert torch.equal(a[:2], torch.tensor([0.5, -0.0])) and torch.signbit(a[1]) and bool(a[2].isnan())
    assert not torch.signbit(device_constant((0.5, 0.0, float("nan")), x)[1])      # -0.0 and 0.0: two entries
    assert device_constant((0.5, -0.0, float("nan")), x.double()).dtype == torch.float64
    assert device_constant((0.5, -0.0, float("nan")), x.to("meta")).device.type == "meta"
    table = device_constant(((1, 2), (3, 4)), x, torch.int64)
    assert table.dtype == torch.int64 and table.tolist() == [[1, 2], [3, 4]]
    with torch.inference_mode():                  # built there, used later by autograd: an ordinary tensor
        fresh = device_constant((0.125, 0.375), x)
    assert not fresh.is_inference() and not fresh.requires_grad
    w = torch.ones(2, requires_grad=True)
    (w * fresh).sum().backward()                  # mul saves the constant for the backward
    assert torch.equal(w.grad, fresh)


def test_online_frame_and_readout_move_no_data_between_host_and_device(cfg: ExperimentConfig) -> None:
    """One online frame as a car runs it (bench/perf.py's online_frame) with every op on Triton (the GPU's
    configuration; a custom op's fake stands in for its kernel on meta): the past frames' features in the cache,
    the current frame's images through the backbone, the stages, then the readout to labels.

    Recorded on the second frame: the first one builds the cached device constants (one copy each, by design).
    ``no_grad`` rather than ``inference_mode``, in which ``linalg.inv``'s error check does not reach a Python mode.
    The prototypes require a gradient so that the Triton gs2vox goes through its custom op (eager inference calls
    the launcher, which cannot run on meta); the readout's own code is the same either way."""
    kernels = KernelConfig(**{op: "triton" for op in ops.OPS})
    model = PGOcc(cfg.model, kernels).to("meta").eval()
    readout = Readout(cfg.model, kernels).to("meta")
    T, N = cfg.model.num_frames, 6
    batch = make_batch(T=T, D=cfg.model.ov_dims).to("meta")
    current = replace(batch, images=batch.images[:, :N])
    prototypes = torch.empty(len(OCC3D_COLUMNS), cfg.model.ov_dims, device="meta", requires_grad=True)
    cache = FeatureCache(capacity=T)

    def frame() -> torch.Tensor:
        with torch.no_grad():
            final = model(current, cache=cache).final
        return readout(final, prototypes, OCC3D_COLUMNS)

    with torch.no_grad():
        model(batch, cache=cache)                                # every frame's features cached
    frame()
    with host_traffic() as record:
        labels = frame()
    assert labels.device.type == "meta" and labels.dtype == torch.uint8
    assert not record.events, "host traffic in the online frame:\n" + record.report()


def test_train_step_moves_no_data_between_host_and_device(cfg: ExperimentConfig) -> None:
    """Forward, every loss term and the backward of a training step, every op on Triton; recorded on the second
    step (see above)."""
    kernels = KernelConfig(**{op: "triton" for op in ops.OPS})
    model = PGOcc(cfg.model, kernels).to("meta").train()
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims).to("meta")
    criterion = PGOccLoss(cfg.model, cfg.loss, kernels)
    criterion(model(batch), batch).total.backward()
    with host_traffic() as record:
        criterion(model(batch), batch).total.backward()
    assert not record.events, "host traffic in the training step:\n" + record.report()
