"""``pgocc check-kernels``: run every hot path's configured implementation against its reference.

For each op, draw the contract's parity inputs (small ones on CPU, where Triton runs interpreted), run the
implementation chosen by the experiment's ``kernels`` section and the float64 reference, and report the largest
difference and the time of each. Writes ``config.json``, ``kernels.json`` and ``check_kernels.json`` to the run
directory.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from pgocc.commands._common import add_experiment_arguments, experiment_from_args

HELP = "run each hot path's configured kernel beside its float64 reference and report differences and times"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_experiment_arguments(parser, default="configs.base:base")
    parser.add_argument("--impl", default=None, help="run this implementation for every op instead of the config's")
    parser.add_argument("--run-dir", type=Path, default=None,
                        help="where to write results (default train.run_root/check-<time>)")


def _max_diff(out: object, ref: object) -> float:
    import torch

    if isinstance(out, torch.Tensor):
        if not out.is_floating_point():
            return float((out != ref).sum())
        return float((out.double() - ref.double()).abs().max()) if out.numel() else 0.0
    if isinstance(out, (tuple, list)):
        return max((_max_diff(o, r) for o, r in zip(out, ref, strict=True)), default=0.0)
    raise TypeError(f"unexpected output type {type(out).__name__}")


def run(args: argparse.Namespace) -> int:
    import torch

    cuda = torch.cuda.is_available()
    if not cuda:
        # Triton kernels run interpreted on CPU; the flag must be set before any kernel module is imported.
        os.environ.setdefault("TRITON_INTERPRET", "1")
    from pgocc import ops
    from pgocc.config import write_config

    cfg = experiment_from_args(args)
    device = torch.device("cuda" if cuda else "cpu")
    run_dir = args.run_dir or Path(cfg.train.run_root) / time.strftime("check-%Y%m%d-%H%M%S")
    write_config(cfg, run_dir)
    table = ops.kernel_table(cfg.kernels)
    rows = []
    print(f"pgocc check-kernels on {device} ({'native' if cuda else 'Triton interpreted'}), run dir {run_dir}")
    print(f"{'op':<16}{'impl':<11}{'case':<26}{'max |diff|':>12}{'impl ms':>10}{'ref ms':>10}")
    for op in ops.OPS:
        impl = args.impl or getattr(cfg.kernels, op)
        if args.impl and impl not in ops.available(op):
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
        diff = _max_diff(out, ref)
        rows.append({"op": op, "impl": impl, "case": case.id, "max_abs_diff": diff,
                     "impl_ms": 1e3 * (t1 - t0), "reference_ms": 1e3 * (t2 - t1)})
        print(f"{op:<16}{impl:<11}{case.id:<26}{diff:>12.3e}{1e3 * (t1 - t0):>10.1f}{1e3 * (t2 - t1):>10.1f}")
    (run_dir / "kernels.json").write_text(json.dumps(table, indent=2) + "\n")
    (run_dir / "check_kernels.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"wrote {run_dir / 'check_kernels.json'}")
    return 0
