"""What the host dispatches per online frame and per training step, counted without a GPU (issue 18: launch overhead).

    TRITON_INTERPRET=1 PYTHONPATH=. python bench/launch_counts.py [--out DIR] [--config configs.base:base]
        [--set PATH=VALUE ...] [--precision fp32|bf16] [--top 25]

On a GPU, bench/breakdown.py counts kernel launches with the profiler. Their number is fixed by the host code, not
by the device, so this script counts them on any device: every ATen operator the frame or step dispatches that is
not a view or an allocation (on CUDA each launches at least one kernel or copy; cuDNN and cuBLAS may launch more)
and every Triton kernel launch (the operators the Triton interpreter runs inside a launch are not counted). Under
the interpreter the ``fps`` op runs its one-launch-per-pick design (kernels_triton/fps.py), where a GPU runs its
persistent kernel in one or two launches: its count here is not the GPU's. Each dispatch is attributed to a stage
of bench/breakdown.py (``backward`` for autograd's backward, recomputes of checkpointed blocks included; ``other``
outside the stages: the optimizer, the glue between stages) and to the line of this repository that issued it.
Operators that wait for the device on CUDA (``.item()``, ``nonzero``, boolean-mask indexing, ``linalg.eigh``'s
error check) are listed apart: each is a host sync there. A copy between host and device cannot be seen on a
CPU-only run. Under inference mode (the online frame) the dispatcher hands the mode composite operators (``linear``,
``conv2d``) before autocast casts their inputs, so a bf16 frame's casts are not counted.

bench/perf.py's online frame and training step are used, at the configuration's structure (layers, frames,
cameras, stages) and at whatever sizes ``--set`` gives: the counts depend on the structure, not on the sizes, so a
CPU run at small images counts what the GPU launches at full size. Each call is run once unmeasured first (Triton's
autotuning, first-call set-up). Writes ``DIR/launch_counts.md`` and ``DIR/launch_counts.json`` with ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from bench.breakdown import stage_ranges
from bench.perf import build_inference, online_frame, synthetic_batch, training_step
from pgocc.commands._common import add_experiment_arguments, experiment_from_args

REPO = Path(__file__).resolve().parent.parent
SOURCE_DIRS = tuple(str(REPO / d) + "/" for d in ("pgocc", "reference", "kernels_triton"))
"""A dispatch is attributed to the innermost frame in these folders (bench/ is the harness, not the program)."""
NO_LAUNCH = frozenset({"empty", "empty_strided", "empty_like", "new_empty", "new_empty_strided", "resize_",
                       "_unsafe_view", "_reshape_alias", "lift_fresh", "set_", "_has_compatible_shallow_copy_type"})
"""Operators that allocate or re-describe memory without running a kernel (views are recognised by their schema)."""
SYNCING = frozenset({"_local_scalar_dense", "nonzero", "equal", "masked_select", "_unique2", "unique_dim",
                     "unique_consecutive", "_linalg_check_errors", "linalg_eigh", "repeat_interleave"})
"""Operators that make the host wait for the device on CUDA: their output's size or value is read on the host
(``linalg_eigh`` checks its error flag there; ``repeat_interleave`` without ``output_size`` sizes its output)."""
BOOL_INDEXED = frozenset({"index", "index_put_", "index_put", "_index_put_impl_"})
"""Operators that synchronise on CUDA when an index is a boolean mask (its count of True sizes the result)."""


@dataclass
class Counts:
    """Dispatches of one call: launches by (stage, operator) and by source line, and the host syncs by line."""

    launches: Counter[tuple[str, str]] = field(default_factory=Counter)
    sites: Counter[str] = field(default_factory=Counter)
    syncs: Counter[str] = field(default_factory=Counter)

    def by_stage(self) -> dict[str, int]:
        out: Counter[str] = Counter()
        for (stage, _), n in self.launches.items():
            out[stage] += n
        return dict(out.most_common())

    def ops_by_stage(self) -> dict[str, dict[str, int]]:
        out: dict[str, Counter[str]] = {}
        for (stage, op), n in self.launches.items():
            out.setdefault(stage, Counter())[op] += n
        return {stage: dict(ops.most_common()) for stage, ops in out.items()}

    def total(self) -> int:
        return sum(self.launches.values())


def _site() -> str:
    """``path:line (function)`` of the innermost frame of the program's own code on the Python stack."""
    frame = sys._getframe(2)
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith(SOURCE_DIRS):
            return f"{Path(name).relative_to(REPO)}:{frame.f_lineno} ({frame.f_code.co_name})"
        frame = frame.f_back
    return "outside the repository"


class DispatchCounter(TorchDispatchMode):
    """Counts into ``counts`` every launching operator and Triton launch while active (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__()
        self.counts = Counts()
        self.stages: list[str] = []
        self.in_triton = 0

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self.stages.append(name)
        try:
            yield
        finally:
            self.stages.pop()

    def record(self, name: str) -> None:
        site = _site()
        # Inside autograd's backward (recomputes of checkpointed blocks included, whose early stop skips the
        # block's closing hook) the stage stack says nothing: those ops are "backward".
        if torch._C._current_autograd_node() is not None:
            stage = "backward"
        else:
            stage = self.stages[-1] if self.stages else "other"
        self.counts.launches[(stage, name)] += 1
        self.counts.sites[site] += 1

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple[Any, ...] = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = func._schema.name.split("::")[-1]
        if not self.in_triton and not func.is_view and name not in NO_LAUNCH:
            self.record(name)
            if name in SYNCING or (name in BOOL_INDEXED and _has_bool_index(args)):
                self.counts.syncs[f"{_site()}: {name}"] += 1
        return func(*args, **kwargs)

    @contextlib.contextmanager
    def triton_launches(self) -> Iterator[None]:
        """Count each Triton kernel launch (native or interpreted) as one, not the operators inside it."""
        patched = []
        for module, cls in (("triton.runtime.jit", "JITFunction"),
                            ("triton.runtime.interpreter", "InterpretedFunction")):
            try:
                owner = getattr(__import__(module, fromlist=[cls]), cls)
            except (ImportError, AttributeError):
                continue
            original = owner.run

            def run(fn_self: Any, *args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
                if not self.in_triton:
                    self.record("triton:" + getattr(fn_self, "__name__", type(fn_self).__name__))
                self.in_triton += 1
                try:
                    return _original(fn_self, *args, **kwargs)
                finally:
                    self.in_triton -= 1

            owner.run = run
            patched.append((owner, original))
        try:
            yield
        finally:
            for owner, original in patched:
                owner.run = original


def _has_bool_index(args: tuple[Any, ...]) -> bool:
    indices = args[1] if len(args) > 1 and isinstance(args[1], (list, tuple)) else ()
    return any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in indices)


def count(fn: Callable[[], object], model: Any, readout: Any, criterion: Any) -> Counts:
    """The dispatches of one call of ``fn`` (after one unmeasured call), by bench/breakdown.py's stages."""
    fn()
    counter = DispatchCounter()
    with counter.triton_launches(), stage_ranges(model, readout, criterion, enter=counter.stage), counter:
        fn()
    return counter.counts


def report(title: str, counts: Counts, top: int) -> list[str]:
    lines = [f"## {title}: {counts.total()} launches, {sum(counts.syncs.values())} host syncs on CUDA", "",
             "| stage | launches |", "|---|---|"]
    lines += [f"| {stage} | {n} |" for stage, n in counts.by_stage().items()]
    lines += ["", f"Lines issuing the most ({top}):", "", "| launches | line |", "|---|---|"]
    lines += [f"| {n} | `{site}` |" for site, n in counts.sites.most_common(top)]
    if counts.syncs:
        lines += ["", "Host syncs on CUDA:", ""] + [f"- {n} × `{site}`" for site, n in counts.syncs.most_common()]
    return lines + [""]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="folder for launch_counts.md / .json")
    parser.add_argument("--device", default="cpu", help="torch device (the counts do not depend on it)")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                        help="bf16: under autocast (its casts are launches too)")
    parser.add_argument("--top", type=int, default=25, help="source lines listed per call")
    add_experiment_arguments(parser, default="configs.base:base")
    args = parser.parse_args(argv)
    cfg = experiment_from_args(args)
    device = torch.device(args.device)
    bf16 = args.precision == "bf16"
    batch = synthetic_batch(cfg, device)
    model, readout = build_inference(cfg, device)
    frame = online_frame(cfg, model, readout, batch, bf16=bf16)
    runs = {"online frame": count(frame, model, readout, None)}
    model, criterion, step = training_step(cfg, device, batch, bf16=bf16)
    runs["training step"] = count(step, model, None, criterion)
    lines = [f"# Launches and host syncs — {args.config}, {args.precision}, counted on {device.type}", ""]
    for title, counts in runs.items():
        lines += report(title, counts, args.top)
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "launch_counts.md").write_text(text + "\n")
        (args.out / "launch_counts.json").write_text(json.dumps({
            "config": args.config, "precision": args.precision,
            "runs": {title: {"launches": c.total(), "by_stage": c.by_stage(), "ops_by_stage": c.ops_by_stage(),
                             "sites": dict(c.sites.most_common()), "syncs": dict(c.syncs.most_common())}
                     for title, c in runs.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
