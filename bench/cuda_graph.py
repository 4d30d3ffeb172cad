"""Online inference and a training step replayed as CUDA graphs against the same work launched op by op (issue 18:
launch overhead).

    PYTHONPATH=. python bench/cuda_graph.py --out DIR [--config configs.base:base] [--set PATH=VALUE ...]

The frame is bench/perf.py's online frame (6 new images, 7 past frames' features cached, readout to labels), fp32
and under bf16 autocast. Each precision: the eager frame timed, then the same closure captured once with
``torch.cuda.graph`` (after three warm-up calls on a side stream, so that Triton has compiled and autotuned and the
device constants exist) and its replay timed; the replay's labels must equal the eager frame's.

The training step is the training loop's (:func:`bench.perf.training_step`: distortion and feature targets,
forward, every loss term, backward, clipping, the gated AdamW step, the schedule), eager and as ``train.cuda_graph``
runs it (:class:`pgocc.training.graphed_step.GraphedTrainingStep`: eager warm-up steps, then one capture, then
replays; the distortion and the feature targets run eagerly before each replay). Both time whole steps, host work
included; the graphed step's losses must be finite.

A capture that fails (a host sync or a CPU tensor inside) is reported with its error. Writes
``DIR/cuda_graph.md`` and ``DIR/cuda_graph.json``; needs a GPU.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch

from bench.perf import device_name, gpu_inference, measure, online_frame, training_step
from pgocc.commands._common import add_experiment_arguments
from pgocc.cuda_graphs import capture, on_side_stream
from pgocc.eval.graphed import WARMUP_CALLS
from pgocc.training.graphed_step import WARMUP_STEPS


def graph_of(frame: Callable[[], torch.Tensor]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """(graph, its output tensor): ``frame`` warmed up on a side stream, then captured (as GraphedFrames does)."""
    on_side_stream(frame, calls=WARMUP_CALLS)
    return capture(frame, what="bench/cuda_graph.py: the online frame", instead="eagerly")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget", type=float, default=5.0, help="seconds of timed calls per row")
    add_experiment_arguments(parser, default="configs.base:base")
    args = parser.parse_args()
    run = gpu_inference(args, "bench/cuda_graph.py", "CUDA graphs do not exist on the CPU")
    cfg, device, model, readout, batch = run.cfg, run.device, run.model, run.readout, run.batch
    args.out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for bf16 in (False, True):
        name = "bf16" if bf16 else "fp32"
        frame = online_frame(cfg, model, readout, batch, bf16=bf16)
        eager = measure(frame, device, budget_s=args.budget, warmup=2)
        row = {"eager": asdict(eager)}
        try:
            graph, out = graph_of(frame)
            replay = measure(graph.replay, device, budget_s=args.budget, warmup=2)
            row |= {"graph": asdict(replay), "labels_equal": bool(torch.equal(out, frame()))}
        except Exception as err:  # noqa: BLE001 - a failed capture is a result to report
            row["graph_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        rows[name] = row
        print(name, json.dumps(row), flush=True)
    for bf16 in (False, True):
        name = "training step, " + ("bf16" if bf16 else "fp32")
        _, _, step = training_step(cfg, device, batch, bf16=bf16)
        row = {"eager": asdict(measure(step, device, budget_s=args.budget, warmup=2))}
        del step
        torch.cuda.empty_cache()
        try:
            _, _, step = training_step(cfg, device, batch, bf16=bf16, graphed=True)
            row["graph"] = asdict(measure(step, device, budget_s=args.budget, warmup=WARMUP_STEPS + 1))
            row["loss_finite"] = bool(torch.isfinite(step().total))
        except Exception as err:  # noqa: BLE001 - a failed capture is a result to report
            row["graph_error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:300]}"
        rows[name] = row
        print(name, json.dumps(row), flush=True)
        del step
        torch.cuda.empty_cache()
    lines = [f"# Online frame and training step as CUDA graphs — {device_name(device)}, {args.config}", "",
             "| call | eager ms | graph replay ms | eager / graph | replay checked | peak GiB (replay) |",
             "|---|---|---|---|---|---|"]
    for name, row in rows.items():
        if "graph" in row:
            e, g = row["eager"]["ms"], row["graph"]["ms"]
            check = (f"labels equal: {row['labels_equal']}" if "labels_equal" in row
                     else f"loss finite: {row['loss_finite']}")
            lines.append(f"| {name} | {e:.2f} | {g:.2f} | {e / g:.2f}× | {check} | {row['graph']['peak_gib']:.2f} |")
        else:
            lines.append(f"| {name} | {row['eager']['ms']:.2f} | capture failed: {row['graph_error']} | – | – | – |")
    (args.out / "cuda_graph.md").write_text("\n".join(lines) + "\n")
    (args.out / "cuda_graph.json").write_text(json.dumps({"device": device_name(device), "config": args.config,
                                                          "rows": rows}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
