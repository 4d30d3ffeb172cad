"""The hot-path registry: every op is a contract module plus interchangeable stateless implementations.

``resolve(op, impl)`` returns the implementation wrapped by the contract's ``validate``; the model calls it once when
a module is built, never inside ``forward``. Contract modules (``pgocc.ops.<op>``) import only torch, and
implementations are imported on first resolve, so a CPU-only or reference-only run never imports triton.

    pgocc.model.* -> ops.resolve("gs2vox", cfg.kernels.gs2vox) -> contract.validate -> reference/ or kernels_triton/
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any

from pgocc.errors import ConfigError
from pgocc.ops._contract import Case, Impl

OPS: tuple[str, ...] = ("aniso_sample", "st_fusion", "gs_raster", "gs2vox", "fps", "dist_attention")
"""Every hot path, in pipeline order."""

__all__ = ["OPS", "Case", "Impl", "available", "check_device", "contract", "impl_spec", "is_deterministic",
           "kernel_table", "load_impl", "resolve"]


def contract(op: str) -> ModuleType:
    """The contract module ``pgocc.ops.<op>`` (docstring, validate, IMPLS, CASES, make_inputs)."""
    if op not in OPS:
        raise ConfigError(f"kernels: unknown op {op!r}; ops: {', '.join(OPS)}")
    return importlib.import_module(f"pgocc.ops.{op}")


def available(op: str) -> list[str]:
    """Names of the implementations of ``op``, reference first."""
    return list(contract(op).IMPLS)


def impl_spec(op: str, impl: str) -> Impl:
    """The registry record of ``op``/``impl``; raises ConfigError listing the valid names for an unknown one."""
    impls: dict[str, Impl] = contract(op).IMPLS
    if impl not in impls:
        raise ConfigError(f"kernels.{op}: unknown implementation {impl!r}; available: {', '.join(impls)}")
    return impls[impl]


def check_device(kernels: Any, device: str) -> None:
    """Refuse a KernelConfig ``kernels`` with an implementation that cannot run on ``device`` ("cpu" or "cuda").

    Called where a run knows its device, before the model is built, so that a CUDA-only implementation on a machine
    without CUDA is a one-line ConfigError naming the op instead of a failure inside the first forward.
    """
    for op in OPS:
        impl = getattr(kernels, op)
        spec = impl_spec(op, impl)
        if device not in spec.devices:
            usable = [name for name in available(op) if device in impl_spec(op, name).devices]
            raise ConfigError(f"kernels.{op}: implementation {impl!r} runs on {', '.join(spec.devices)} only, and this "
                              f"run is on {device}" + (" (no CUDA device found)" if device == "cpu" else "")
                              + f"; implementations for {device}: {', '.join(usable)}")


def is_deterministic(op: str, impl: str) -> bool:
    """Whether ``op``/``impl`` gives bit-identical results run to run."""
    return impl_spec(op, impl).deterministic


def load_impl(op: str, impl: str) -> Callable[..., Any]:
    """Import and return the raw implementation function (no validation wrapper)."""
    module_name, _, func_name = impl_spec(op, impl).target.partition(":")
    return getattr(importlib.import_module(module_name), func_name)


def resolve(op: str, impl: str, *, deterministic: bool = False) -> Callable[..., Any]:
    """Return ``impl`` of ``op`` wrapped by the contract's ``validate``.

    Args:
        op: one of :data:`OPS`.
        impl: one of :func:`available` ``(op)``.
        deterministic: refuse (raise, never switch) an implementation that is not deterministic.

    Raises:
        ConfigError: unknown op or implementation (the message lists the valid names), or a non-deterministic
            implementation requested under ``deterministic=True``.
    """
    spec = impl_spec(op, impl)
    if deterministic and not spec.deterministic:
        raise ConfigError(f"kernels.{op}: implementation {impl!r} is not deterministic (debug.deterministic=true); "
                          f"deterministic ones: {', '.join(n for n in available(op) if is_deterministic(op, n))}")
    fn = load_impl(op, impl)
    validate = contract(op).validate

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        validate(*args, **kwargs)
        return fn(*args, **kwargs)

    checked.op = op  # type: ignore[attr-defined]
    checked.impl = impl  # type: ignore[attr-defined]
    checked.target = spec.target  # type: ignore[attr-defined]
    return checked


def kernel_table(kernels: Any) -> dict[str, dict[str, Any]]:
    """op -> {impl, target, deterministic} for a KernelConfig; logged and written to ``run_dir/kernels.json``."""
    table = {}
    for op in OPS:
        impl = getattr(kernels, op)
        spec = impl_spec(op, impl)
        table[op] = {"impl": impl, "target": spec.target, "deterministic": spec.deterministic}
    return table
