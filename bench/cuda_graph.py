"""Online inference and a training step replayed as CUDA graphs against the same work launched op by op (issue 18:
launch overhead).

    PYTHONPATH=. python bench/cuda_graph.py --out DIR [--config configs.base:base] [--set PATH=VALUE ...]

The frame is bench/perf.py's online frame (6 new images, 7 past frames' features cached, readout to labels), fp32
and under bf16 autocast. Each precision: the eager frame timed, then the same closure captured once with
``torch.cuda.graph`` (after three warm-up calls on a side stream, so that Triton has compiled and autotuned and the
device constants exist) and its replay timed; the replay's labels must equal the eager frame's.

The training step (:func:`training_closure`) is measured the same way: forward, every loss term, backward,
clipping and the gated fused AdamW step as one graph — what capturing the step in the training loop would give.
It leaves out what reads the host: the photometric distortion (per-image parameters drawn on the host) and the
feature targets (the PCA's eigh checks its error flag on the host; computed once beforehand), and it keeps the
learning rate fixed (a schedule inside a graph needs a tensor lr). The replay's loss must be finite.

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

from bench.perf import device_name, gpu_inference, measure, online_frame, precision, training_step
from pgocc.commands._common import add_experiment_arguments
from pgocc.config import ExperimentConfig
from pgocc.data.batch import Batch


def graph_of(frame: Callable[[], torch.Tensor]) -> tuple[torch.cuda.CUDAGraph, torch.Tensor]:
    """(graph, its output tensor): ``frame`` warmed up on a side stream, then captured."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            frame()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = frame()
    return graph, out


def training_closure(cfg: ExperimentConfig, batch: Batch, *, bf16: bool
                     ) -> tuple[torch.nn.Module, Callable[[], torch.Tensor]]:
    """(model, step): one training step on ``batch`` without the host's parts (module docstring) → its total loss
    (0-d); the AdamW is fused and capturable (its step counts on the device)."""
    from pgocc.train import clip_gradients
    from pgocc.training.optim import build_optimizer, gate_step

    device = batch.images.device
    model, criterion, _ = training_step(cfg, device, batch, bf16=bf16)
    optimizer, _ = build_optimizer(model, cfg.train)
    for group in optimizer.param_groups:
        group["capturable"] = True
    params = [p for p in model.parameters() if p.requires_grad]
    targets = criterion.feature_targets(batch)

    def step() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)  # the backward then writes the gradients (in a graph: its own pool)
        with precision(device, bf16):
            out = criterion(model(batch), batch, targets)
        out.total.backward()
        clip_gradients(params, cfg.train.grad_clip_norm)
        gate_step(optimizer, out.checks.ok)
        optimizer.step()
        return out.total.detach()

    return model, step


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
        _, step = training_closure(cfg, batch, bf16=bf16)
        eager = measure(step, device, budget_s=args.budget, warmup=2)
        row = {"eager": asdict(eager)}
        try:
            graph, loss = graph_of(step)
            replay = measure(graph.replay, device, budget_s=args.budget, warmup=2)
            row |= {"graph": asdict(replay), "loss_finite": bool(torch.isfinite(loss))}
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
