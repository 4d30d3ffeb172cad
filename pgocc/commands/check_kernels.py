"""``pgocc check-kernels``: run every hot path's configured implementation against its reference.

For each op, draw the contract's parity inputs (small ones on CPU, where Triton runs interpreted), run the
implementation chosen by the experiment's ``kernels`` section in float32 and the reference in float64, and report per
op the largest difference relative to the output's scale, the tolerance, a pass/fail verdict and the time of each.
Exits 1 when a row fails. Writes ``config.json``, ``kernels.json`` and ``check_kernels.json`` to the run directory.

The verdict is a smoke test of an installation (a miscompiled or mismatched kernel), not the parity tests of
``tests/``: those mask the inputs' unstable points and calibrate a tolerance per op, output and gradient.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from pgocc.commands._common import add_experiment_arguments, experiment_from_args

HELP = ("run each hot path's configured kernel beside its float64 reference: differences, tolerance, pass/fail and "
        "times (exit 1 on a failure)")

TOLERANCE: dict[str, float] = {"reference": 1e-5, "boxed": 1e-5, "triton": 1e-4, "gsplat": 1e-3}
"""Largest allowed max |out − ref| / max(1, max |ref|) of a float output, per implementation; integer outputs
(indices) must match exactly. The reference in float32 (and gs2vox's "boxed", the reference visiting each Gaussian's
bounding box) differs from the float64 reference only by float32 rounding, at most 2.0e-6 on the CPU cases;
Triton's kernels on CPU (interpreter, configs.base:base) measured at most 4.7e-6 (gs_raster), and the H100 figures of
tests/tolerances.py stay below 5e-5; gsplat, a peer with its own approximations, gets ten times the Triton margin,
as in tests/tolerances.py."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, default="configs.base:base")
    parser.add_argument("--impl", default=None, help="run this implementation for every op instead of the config's")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="where to write results (default train.run_root/check-<time>)")


def _errors(out: object, ref: object, same: object) -> tuple[float, float]:
    """(relative error, max |diff|) of an op's output against the reference over all its tensors.

    The relative error of a float tensor is max |out − ref| / max(1, max |ref|) with ``ref`` the float64 reference;
    of an integer tensor (indices: decisions that float64 inputs may take differently at a near-tie) the number of
    entries that differ from ``same``, the reference run on the same float32 inputs.
    """
    import torch

    if isinstance(out, torch.Tensor):
        if not out.numel():
            return 0.0, 0.0
        if not out.is_floating_point():
            mismatches = float((out != same).sum())
            return mismatches, mismatches
        diff = float((out.double() - ref.double()).abs().max())
        return diff / max(1.0, float(ref.double().abs().max())), diff
    if isinstance(out, (tuple, list)):
        pairs = [_errors(o, r, x) for o, r, x in zip(out, ref, same, strict=True)]
        return max((p[0] for p in pairs), default=0.0), max((p[1] for p in pairs), default=0.0)
    raise TypeError(f"unexpected output type {type(out).__name__}")


def _has_integer(out: object) -> bool:
    import torch

    if isinstance(out, torch.Tensor):
        return not out.is_floating_point()
    return any(_has_integer(o) for o in out)  # type: ignore[union-attr]


def run(args: argparse.Namespace) -> int:
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        # Triton kernels run interpreted on CPU; the flag must be set before any kernel module is imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from pgocc import ops
    from pgocc.config import write_config
    from pgocc.errors import ConfigError

    cfg = experiment_from_args(args)
    if args.impl is not None:
        names = sorted({name for op in ops.OPS for name in ops.available(op)})
        if args.impl not in names:
            raise ConfigError(f"--impl: unknown implementation {args.impl!r}; implementations: {', '.join(names)}")
    device = torch.device("cuda" if cuda else "cpu")
    run_dir = args.run_dir or Path(cfg.train.run_root) / time.strftime("check-%Y%m%d-%H%M%S")
    write_config(cfg, run_dir)
    table = ops.kernel_table(cfg.kernels)
    rows = []
    print(f"pgocc check-kernels on {device} ({'native' if cuda else 'Triton interpreted'}), run dir {run_dir}")
    print(f"{'op':<16}{'impl':<11}{'case':<26}{'max |diff|':>12}{'relative':>10}{'tolerance':>11}  {'verdict':<8}"
          f"{'impl ms':>9}{'ref ms':>9}")
    for op in ops.OPS:
        impl = args.impl or getattr(cfg.kernels, op)
        if args.impl and impl not in ops.available(op):
            print(f"{op:<16}{impl:<11}skipped: {op} has no {impl!r} implementation")
            continue
        spec = ops.impl_spec(op, impl)
        if device.type not in spec.devices:
            print(f"{op:<16}{impl:<11}skipped: runs on {', '.join(spec.devices)} only")
            continue
        contract = ops.contract(op)
        case = contract.CASES["gpu" if cuda else "cpu"][0]
        fn = ops.resolve(op, impl)
        ref_fn = ops.resolve(op, "reference")
        inputs = contract.make_inputs(case, device=device, dtype=torch.float32, seed=cfg.train.seed)
        ref_inputs = contract.make_inputs(case, device=device, dtype=torch.float64, seed=cfg.train.seed)
        with torch.no_grad():
            t0 = time.perf_counter()
            out = fn(**inputs)
            if cuda:
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            ref = ref_fn(**ref_inputs)
            t2 = time.perf_counter()
            same = ref_fn(**inputs) if _has_integer(out) else ref
        relative, diff = _errors(out, ref, same)
        tolerance = TOLERANCE[impl]
        passed = relative <= tolerance
        rows.append({"op": op, "impl": impl, "case": case.id, "max_abs_diff": diff, "relative_error": relative,
                     "tolerance": tolerance, "passed": passed, "impl_ms": 1e3 * (t1 - t0),
                     "reference_ms": 1e3 * (t2 - t1)})
        print(f"{op:<16}{impl:<11}{case.id:<26}{diff:>12.3e}{relative:>10.1e}{tolerance:>11.0e}  "
              f"{'pass' if passed else 'FAIL':<8}{1e3 * (t1 - t0):>9.1f}{1e3 * (t2 - t1):>9.1f}")
    (run_dir / "kernels.json").write_text(json.dumps(table, indent=2) + "\n")
    (run_dir / "check_kernels.json").write_text(json.dumps(rows, indent=2) + "\n")
    failed = [f"{r['op']}/{r['impl']}" for r in rows if not r["passed"]]
    print(f"wrote {run_dir / 'check_kernels.json'}")
    if not rows:
        print("pgocc check-kernels: no op checked (every row skipped)", file=sys.stderr)
        return 1
    if failed:
        print(f"pgocc check-kernels: FAILED: {', '.join(failed)} differ from the reference beyond the tolerance",
              file=sys.stderr)
        return 1
    print(f"pgocc check-kernels: all {len(rows)} checked op(s) within tolerance")
    return 0
