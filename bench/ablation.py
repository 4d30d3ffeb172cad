"""The kernel ablation in one run: every op on triton, every op on reference, each single op swapped back to its
reference, and gsplat in place of our rasterizer; online inference time per frame, training step time and peak
memory of each (docs/performance.md).

    PYTHONPATH=. python bench/ablation.py --out DIR [--config configs.base:base] [--set PATH=VALUE ...]
        [--device cuda] [--variants ...]

Writes ``DIR/ablation.md`` and ``DIR/ablation.json``. Online inference and the training step are bench/perf.py's
(synthetic batch at the config's sizes, random weights); float32, plus bf16 autocast for the all-triton and
all-reference rows. A variant whose run fails (out of memory, an op without a bf16 path, a CUDA-only op on the CPU)
shows its error in place of a time. Each measurement: one warm-up call, then calls for about ``--budget`` seconds
(at least one); CUDA-event medians.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

from bench.perf import build_inference, device_name, measure, online_frame, synthetic_batch, training_step
from pgocc import ops
from pgocc.commands._common import add_experiment_arguments, experiment_from_args
from pgocc.config import ExperimentConfig, KernelConfig


def variants() -> dict[str, KernelConfig]:
    """name → kernels: ``triton``, ``reference``, ``ref:<op>`` (that op on reference, the others on triton) and
    ``gsplat`` (gs_raster on gsplat, the others on triton)."""
    triton = KernelConfig(**{op: "triton" for op in ops.OPS})
    out = {"triton": triton, "reference": KernelConfig(**{op: "reference" for op in ops.OPS})}
    out.update({f"ref:{op}": replace(triton, **{op: "reference"}) for op in ops.OPS})
    out["gsplat"] = replace(triton, gs_raster="gsplat")
    return out


BF16_VARIANTS = ("triton", "reference")
"""Variants also measured under bf16 autocast."""


def _run(what: str, cfg: ExperimentConfig, device: torch.device, bf16: bool, budget: float) -> dict[str, Any]:
    """{ms, peak_gib, calls} of one online frame (``what`` = 'infer') or one training step ('train'), or {error}."""
    try:
        ops.check_device(cfg.kernels, device.type)
        batch = synthetic_batch(cfg, device)
        if what == "infer":
            model, readout = build_inference(cfg, device)
            fn = online_frame(cfg, model, readout, batch, bf16=bf16)
        else:
            model, _, fn = training_step(cfg, device, batch, bf16=bf16)
        t = measure(fn, device, budget_s=budget)
        return {"ms": t.ms, "peak_gib": t.peak_gib, "calls": t.calls}
    except Exception as exc:  # one failing combination is reported, the others still run
        return {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"}
    finally:
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _cell(r: dict[str, Any], base: dict[str, Any] | None) -> str:
    if "error" in r:
        return f"failed: {r['error']} | –"
    ratio = f" ({r['ms'] / base['ms']:.2f}×)" if base and "ms" in base else ""
    return f"{r['ms']:.2f}{ratio} | {r['peak_gib']:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for ablation.md / ablation.json")
    add_experiment_arguments(parser, default="configs.base:base")  # its kernels are replaced by each variant's
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--variants", default=",".join(variants()),
                        help=f"comma-separated subset of: {', '.join(variants())}")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds of timed calls per measurement")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cfg = experiment_from_args(args)
    table = variants()
    chosen = args.variants.split(",")
    unknown = [v for v in chosen if v not in table]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; choose from {', '.join(table)}")
    args.out.mkdir(parents=True, exist_ok=True)
    rows: dict[str, dict[str, Any]] = {}
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    for name in chosen:
        vcfg = replace(cfg, kernels=table[name])
        for bf16 in (False, True) if name in BF16_VARIANTS else (False,):
            label = f"{name}, bf16" if bf16 else name
            rows[label] = {"kernels": asdict(table[name]), "bf16": bf16,
                           "infer": _run("infer", vcfg, device, bf16, args.budget),
                           "train": _run("train", vcfg, device, bf16, args.budget)}
            print(label, json.dumps({k: rows[label][k] for k in ("infer", "train")}), flush=True)
            _write(args.out, rows, device, date, args.config)  # after every row: a run cut short keeps its rows
    print((args.out / "ablation.md").read_text())
    return 0


def _write(out: Path, rows: dict[str, dict[str, Any]], device: torch.device, date: str, config: str) -> None:
    """ablation.json and ablation.md of the rows so far."""
    md = [f"# Kernel ablation — {device_name(device)}, {date}, {config}", "",
          "Online inference: one frame (6 new images, 7 past frames cached, readout to labels); training: one step "
          "of the training loop. Ratios to the all-triton row of the same precision.", "",
          "| variant | infer ms / frame | infer peak GiB | train ms / step | train peak GiB |", "|---|---|---|---|---|"]
    for label, r in rows.items():
        base = rows.get("triton, bf16" if r["bf16"] else "triton")
        md.append(f"| {label} | {_cell(r['infer'], base and base['infer'])} | "
                  f"{_cell(r['train'], base and base['train'])} |")
    (out / "ablation.json").write_text(json.dumps({"device": device_name(device), "date": date, "config": config,
                                                    "rows": rows}, indent=1))
    (out / "ablation.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    sys.exit(main())
