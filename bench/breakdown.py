"""Where the time goes: online inference and one training step by stage, each beside its floor (docs/performance.md).

    PYTHONPATH=. python bench/breakdown.py --out DIR [--config configs.base:base] [--set PATH=VALUE ...]
        [--device cuda] [--world DIR]

Writes ``DIR/breakdown.md``, ``DIR/breakdown.json`` and ``DIR/breakdown.png``:

1. **Stages** of one online frame (bench/perf.py: 6 new images, 7 past frames cached, readout to labels) and of one
   training step, float32 and bf16 autocast: torch.profiler with a ``record_function`` range per stage (backbone +
   FPN, FPS, each decoder stage's attention / sampling / mixing / FFN, the heads, the densification renders, the
   loss renders, the other loss terms, the readout, the optimizer), installed by hooks from outside the model. A
   stage's time is the GPU time of the kernels launched inside its range (CPU time on the CPU); "backward and
   other" is the rest of the step's kernel time (autograd's backward runs outside the ranges; with activation
   checkpointing a stage's range also holds its recompute). Each stage is shown beside its floor from
   docs/model.md §11 (derivations in FLOORS_MS) and the largest gap is named.
2. **Launches and host syncs of one online frame** (CUDA only): kernel launches and synchronising runtime calls
   counted by the profiler, and every synchronising call site reported by ``torch.cuda.set_sync_debug_mode``.
3. **End to end** (with ``--world``, a nuScenes-format folder such as ``pgocc make-synthetic`` writes): the online
   loader (``mode='online'``, data.num_workers workers) → device → network with the feature cache → labels on the
   host, frame after frame over the world's samples in order; and the loader alone.

Figures are medians; the frame and step wall times come from bench/perf.py's ``measure`` (no profiler attached).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile, record_function

from bench.perf import (
    build_inference,
    device_name,
    measure,
    online_frame,
    precision,
    random_prototypes,
    synthetic_batch,
    training_step,
)
from pgocc.commands._common import add_experiment_arguments, experiment_from_args
from pgocc.config import ExperimentConfig
from pgocc.data.batch import Batch
from pgocc.model import FeatureCache, PGOcc, PGOccLoss, Readout
from tests.test_readout import OCC3D_COLUMNS

FLOORS_MS: dict[str, tuple[float | None, float | None, str]] = {
    # stage: (fp32 floor, bf16 floor, where it comes from), forward unless said; None: no floor stated.
    "backbone": (None, 0.375, "§11 context: 0.3 TFLOP for 6 images at 800 TFLOP/s bf16"),
    "fps": (15.0, 15.0, "§11(e): latency-bound, 15–30 ms with a grid-wide kernel (estimate)"),
    "attention": (None, 0.107, "§11(f): 0.05 ms bf16 at Q = 6000, × (4²+5²+6²)/6² for the three stages"),
    "sampling": (0.9, 0.45, "§11(a): 0.31 / 0.16 ms per stage at Q = 6000, three stages"),
    "mixing": (9.25, 0.69, "§11(b): 553 GFLOP for three stages; fp32 at the CUDA-core rate (3.7 ms at Q = 6000)"),
    "ffn": (None, None, "§11(b): negligible"),
    "heads": (None, None, "not in §11 (small GEMMs)"),
    "densify render": (0.03, 0.03, "§11(c): ED-only render ≈ 0.9 GFLOP at 60 TFLOP/s fp32, two renders"),
    "loss render": (0.48, 0.48, "§11(c): 0.06–0.16 ms per stage forward, three stages (backward 2–3× more)"),
    "losses": (0.18, 0.18, "§11(c): reading the 177 MB feature target once per stage at 3 TB/s"),
    "readout": (0.02, 0.02, "§11(d): truncated Gaussian → voxel aggregation, memory floor"),
    "optimizer": (None, None, "clipping + AdamW (not in §11)"),
    "backward and other": (None, None, "training backward ≈ 2× the forward FLOPs (§11)"),
}
"""Floors in ms per frame / step (docs/model.md §11; H100: 3.0 TB/s, 800 TFLOP/s bf16, 60 TFLOP/s fp32 CUDA core)."""
DECODER_PARTS = {"self_attn": "attention", "sampling": "sampling", "mixing": "mixing", "ffn": "ffn"}
"""DecoderLayer attribute → stage name."""
RANGES = ("backbone", "fps", "densify render", "loss render", "losses", "readout", "optimizer")
"""Range names besides the per-decoder-stage ones (``s<i> <part>``); "optimizer" is bench/perf.py's."""


# ---- stage ranges -----------------------------------------------------------------------------------------------


def _ranged(name: str, fn: Callable[..., Any],
            enter: Callable[[str], contextlib.AbstractContextManager[Any]]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with enter(name):
            return fn(*args, **kwargs)
    return wrapper


@contextlib.contextmanager
def stage_ranges(model: PGOcc, readout: Readout | None, criterion: PGOccLoss | None,
                 enter: Callable[[str], contextlib.AbstractContextManager[Any]] = record_function) -> Iterator[None]:
    """Install a range per stage (module hooks and instance-attribute wrappers); removed on exit.

    Range names: ``backbone``, ``fps``, ``s<i> <part>`` (part in attention, sampling, mixing, ffn, heads),
    ``densify render``, ``loss render``, ``losses`` (the whole criterion, loss renders included), ``readout``.
    ``enter(name)`` makes a range's context manager: the profiler's ``record_function`` by default
    (bench/launch_counts.py passes its own, which needs no profiler).
    """
    handles: list[Any] = []
    open_ranges: dict[int, list[Any]] = {}

    def hook(module: nn.Module, name: str) -> None:
        def pre(mod: nn.Module, args: Any) -> None:
            ctx = enter(name)
            ctx.__enter__()
            open_ranges.setdefault(id(mod), []).append(ctx)

        def post(mod: nn.Module, args: Any, out: Any) -> None:
            open_ranges[id(mod)].pop().__exit__(None, None, None)

        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))

    hook(model.backbone, "backbone")
    hook(model.neck, "backbone")
    for s, layer in enumerate(model.layers):
        for attr, part in DECODER_PARTS.items():
            hook(getattr(layer, attr), f"s{s} {part}")
        hook(model.gaussian_heads[s], f"s{s} heads")
        hook(model.ov_heads[s], f"s{s} heads")
    restore: list[tuple[object, str, Any]] = []

    def wrap(obj: object, attr: str, name: str) -> None:
        original = getattr(obj, attr)
        restore.append((obj, attr, original if attr in vars(obj) else None))  # None: a method, delete the wrapper
        setattr(obj, attr, _ranged(name, original, enter))

    wrap(model, "_fps", "fps")
    wrap(model.renderer, "depth", "densify render")
    if readout is not None:
        hook(readout, "readout")
    if criterion is not None:
        hook(criterion, "losses")
        wrap(criterion, "feature_targets", "losses")  # the training step calls it before the forward
        wrap(criterion.renderer, "features_and_depth", "loss render")
    try:
        yield
    finally:
        for h in handles:
            h.remove()
        for obj, attr, original in restore:
            if original is None:
                delattr(obj, attr)
            else:
                setattr(obj, attr, original)


def _is_range(name: str) -> bool:
    parts = "|".join([*DECODER_PARTS.values(), "heads"])
    return name in RANGES or re.fullmatch(rf"s\d+ ({parts})", name) is not None


def _range_times(prof: profile, cuda: bool, calls: int) -> tuple[dict[str, float], float]:
    """(ms per call of every range, ms per call of the whole profiled loop: the GPU time of every kernel on CUDA,
    host time on the CPU). A range's CUDA time is that of the kernels launched inside it (children included)."""
    per_range: dict[str, float] = {}
    total = 0.0
    for evt in prof.events():
        if evt.device_type != torch.autograd.DeviceType.CPU:
            continue
        us = evt.device_time_total if cuda else evt.cpu_time_total
        if _is_range(evt.name):
            per_range[evt.name] = per_range.get(evt.name, 0.0) + us / 1e3 / calls
        if cuda and evt.cpu_parent is None:  # every top-level op of every thread (autograd's backward included)
            total += us / 1e3 / calls
        elif not cuda and evt.name == "__loop__":
            total += us / 1e3 / calls
    return per_range, total


TRAINING_ONLY = ("loss render", "losses", "optimizer")


def _group(per_range: dict[str, float], total: float, training: bool) -> dict[str, float]:
    """Ranges → the stages of FLOORS_MS that a training step (or an inference frame) has (decoder parts summed over
    the stages; loss renders taken out of losses; the rest of the total as 'backward and other')."""
    out = {name: 0.0 for name in FLOORS_MS if (name != "readout" if training else name not in TRAINING_ONLY)}
    for key, ms in per_range.items():
        stage = key.split(" ", 1)[1] if key[0] == "s" and key[1:2].isdigit() else key
        if stage in out:
            out[stage] += ms
    if training:
        out["losses"] = max(out["losses"] - out["loss render"], 0.0)
    out["backward and other"] = max(total - sum(v for k, v in out.items() if k != "backward and other"), 0.0)
    return out


def profile_stages(fn: Callable[[], object], model: PGOcc, readout: Readout | None, criterion: PGOccLoss | None,
                   device: torch.device, calls: int) -> tuple[dict[str, float], dict[str, float], float]:
    """(stage → ms, range → ms, total ms) per call of ``fn`` over ``calls`` profiled calls."""
    cuda = device.type == "cuda"
    fn()  # warm (compile, autotune) outside the profile
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with stage_ranges(model, readout, criterion), profile(activities=activities) as prof:
        with record_function("__loop__"):
            for _ in range(calls):
                fn()
        if cuda:
            torch.cuda.synchronize()
    per_range, total = _range_times(prof, cuda, calls)
    return _group(per_range, total, criterion is not None), per_range, total


# ---- launches and syncs -----------------------------------------------------------------------------------------

LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx")
SYNC_CALLS = ("cudaStreamSynchronize", "cudaDeviceSynchronize", "cudaEventSynchronize")


def count_launches(fn: Callable[[], object]) -> dict[str, Any]:
    """Kernel launches, synchronising runtime calls, device-to-host copies and the host-sync call sites of one call
    of ``fn`` (CUDA)."""
    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        fn()
        torch.cuda.synchronize()
    launches = syncs = dtoh = 0
    for evt in prof.key_averages():
        if evt.key in LAUNCH_CALLS:
            launches += evt.count
        elif evt.key in SYNC_CALLS:
            syncs += evt.count
        elif "DtoH" in evt.key or "Device -> Pageable" in evt.key or "Device -> Pinned" in evt.key:
            dtoh += evt.count
    syncs = max(syncs - 1, 0)  # the closing torch.cuda.synchronize()
    sites: dict[str, int] = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            fn()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    for w in caught:
        if "synchroniz" in str(w.message):
            site = f"{Path(w.filename).name}:{w.lineno}"
            sites[site] = sites.get(site, 0) + 1
    return {"kernel_launches": launches, "sync_calls": syncs, "dtoh_copies": dtoh, "sync_sites": sites}


# ---- end to end ---------------------------------------------------------------------------------------------------


def end_to_end(cfg: ExperimentConfig, world: Path, device: torch.device, bf16: bool, graph: bool
               ) -> dict[str, float]:
    """Online frames from disk to labels on the host over ``world`` (all samples, in order), as ``pgocc infer
    --online`` runs them (``predict_labels``, or with ``graph`` its ``--cuda-graph`` replays), and the loader
    alone."""
    from pgocc.data.dataset import OccDataset, build_index, make_loader
    from pgocc.eval.graphed import GraphedFrames
    from pgocc.eval.loop import LabelledBatch, predict_labels

    model, readout = build_inference(cfg, device)
    index = build_index(world, cfg.data.version, "all")
    dataset = OccDataset(index, num_frames=cfg.model.num_frames, mode="online", input_size=cfg.data.input_size,
                         render_size=cfg.data.render_size, with_labels=False, with_render=False)
    t0 = time.perf_counter()
    for i in range(len(dataset)):
        dataset[i]
    loader_ms = (time.perf_counter() - t0) * 1e3 / len(dataset)
    prototypes = random_prototypes(cfg, device)
    cache = FeatureCache(capacity=2 * cfg.model.num_frames)
    autocast = torch.bfloat16 if bf16 else None
    graphed = GraphedFrames(model, readout, prototypes, OCC3D_COLUMNS, cache, autocast=autocast) if graph else None

    def labelled(batch: Batch) -> LabelledBatch:
        if graphed is not None:
            return graphed(batch)
        return predict_labels(model, readout, batch, prototypes, OCC3D_COLUMNS, cache=cache, autocast=autocast)

    stamps = []
    for batch in make_loader(dataset, replace(cfg.data, batch_size=1), shuffle=False):
        out = labelled(batch.to(device, non_blocking=True))
        labels = out.labels.cpu()
        out.prediction.checks.raise_if_failed()
        stamps.append(time.perf_counter())
    assert labels.dtype == torch.uint8
    gaps = [(b - a) * 1e3 for a, b in zip(stamps[1:], stamps[2:], strict=False)]  # the first two frames warm up
    return {"frames": len(stamps), "frame_ms": statistics.median(gaps) if gaps else float("nan"),
            "loader_ms_per_sample_one_process": loader_ms, "workers": cfg.data.num_workers,
            "path": "CUDA graph replay" if graph else "eager"}


# ---- report -------------------------------------------------------------------------------------------------------


def floors(stages: dict[str, float], bf16: bool, training: bool, recompute: bool
           ) -> dict[str, tuple[float | None, str]]:
    """stage → (floor ms or None, its source) for a frame (``training`` False) or a training step. In a step, the
    backbone sees 48 images (2.4 TFLOP forward, 3 ms bf16), and with activation checkpointing (``recompute``) the
    decoder parts' ranges also hold their recompute in the backward (checkpoint calls the module again, its hooks
    fire): twice the forward. The backbone's recompute runs per bottleneck, outside its range, in "backward and
    other"."""
    out = {}
    for name in stages:
        fp32, half, source = FLOORS_MS[name]
        floor = half if bf16 else fp32
        if training and name == "backbone":
            floor, source = (3.0 if bf16 else None), "§11 context: 48 images, 2.4 TFLOP forward at 800 TFLOP/s bf16"
        if training and recompute and name in DECODER_PARTS.values() and floor is not None:
            floor, source = 2 * floor, source + "; ×2: recomputed in the backward (activation checkpointing)"
        out[name] = (floor, source)
    return out


def _plot(path: Path, results: dict[str, dict[str, float]], floors_of: dict[str, dict[str, tuple[float | None, str]]]
          ) -> None:
    from pgocc.vis.palette import new_figure, save_png

    fig = new_figure(14, 4.2 * len(results))
    for row, (title, stages) in enumerate(results.items()):
        ax = fig.add_subplot(len(results), 1, row + 1)
        names = list(stages)
        measured = [stages[n] for n in names]
        floor = [floors_of[title][n][0] or 0.0 for n in names]
        x = range(len(names))
        ax.bar([i - 0.2 for i in x], measured, 0.4, label="measured", color="#4878d0")
        ax.bar([i + 0.2 for i in x], floor, 0.4, label="floor (§11)", color="#999999")
        gap = max((i for i in range(len(names)) if floor[i]), key=lambda i: measured[i] - floor[i])
        ax.bar([gap - 0.2], [measured[gap]], 0.4, color="#d65f5f", label=f"largest gap: {names[gap]}")
        ax.set_xticks(list(x), names, rotation=20, fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path)


def _table(title: str, stages: dict[str, float], wall_ms: float, floor: dict[str, tuple[float | None, str]]
           ) -> list[str]:
    over = {n: ms - (floor[n][0] or 0.0) for n, ms in stages.items() if floor[n][0]}
    gap = max(over, key=lambda n: over[n])
    lines = [f"### {title}", "", f"Wall time per call (no profiler): **{wall_ms:.2f} ms**. Largest gap to a floor: "
             f"**{gap}**, {stages[gap]:.2f} ms against {floor[gap][0]} ms.", "",
             "| stage | ms | floor ms | × floor | floor source |", "|---|---|---|---|---|"]
    for name, ms in sorted(stages.items(), key=lambda kv: -kv[1]):
        f, source = floor[name]
        lines.append(f"| {name} | {ms:.3f} | {f if f is not None else '–'} | {f'{ms / f:.1f}' if f else '–'} | "
                     f"{source} |")
    return [*lines, ""]


class Report:
    """breakdown.json / .md / .png in ``out``, rewritten after every run (a run cut short keeps what it measured)."""

    def __init__(self, out: Path, header: dict[str, Any]) -> None:
        self.out = out
        self.data: dict[str, Any] = {**header, "runs": {}}
        self.md = [f"# Breakdown — {header['device']}, {header['date']}, {header['config']}", ""]
        self.stages_of: dict[str, dict[str, float]] = {}
        self.floors_of: dict[str, dict[str, tuple[float | None, str]]] = {}

    def add_run(self, title: str, fn: Callable[[], object], model: PGOcc, readout: Readout | None,
                criterion: PGOccLoss | None, device: torch.device, *, bf16: bool, budget: float, calls: int,
                min_calls: int) -> None:
        """Wall time of ``fn`` (no profiler), then its stages under the profiler; a table and a plot panel. A run
        with a ``criterion`` is a training step. A run that fails is reported with its error; the others go on."""
        try:
            wall = measure(fn, device, budget_s=budget, min_calls=min_calls)
            stages, ranges, total = profile_stages(fn, model, readout, criterion, device, calls)
        except Exception as exc:  # e.g. an op without a bf16 path: say so, measure the rest
            self.data["runs"][title] = {"error": f"{type(exc).__name__}: {str(exc)[:300]}"}
            self.md += [f"### {title}", "", f"Failed: `{self.data['runs'][title]['error']}`", ""]
            self.save()
            return
        floor = floors(stages, bf16, criterion is not None, model.cfg.checkpoint_activations)
        self.stages_of[title], self.floors_of[title] = stages, floor
        self.data["runs"][title] = {"wall_ms": wall.ms, "peak_gib": wall.peak_gib, "stages_ms": stages,
                                    "floors_ms": {n: f for n, (f, _) in floor.items()}, "ranges_ms": ranges,
                                    "profiled_total_ms": total}
        self.md += _table(title, stages, wall.ms, floor)
        self.save()

    def add_launch_counts(self, title: str, unit: str, fn: Callable[[], object], device: torch.device) -> None:
        """Kernel launches and host syncs of one call of ``fn`` (:func:`count_launches`) under run ``title``."""
        if device.type != "cuda" or "error" in self.data["runs"][title]:
            self.md += ["Launch and sync counts need CUDA (not measured on the CPU).", ""]
            return
        counts = count_launches(fn)
        self.data["runs"][title]["launches"] = counts
        self.md += [f"Launches and host syncs of one {unit}: {counts['kernel_launches']} kernel launches, "
                    f"{counts['sync_calls']} synchronising runtime calls, {counts['dtoh_copies']} device-to-host "
                    "copies; sync sites (torch sync debug mode): "
                    + (", ".join(f"`{k}` ×{v}" for k, v in counts["sync_sites"].items()) or "none"), ""]
        self.save()

    def add_candidates(self, title: str, model: PGOcc, batch: Batch, device: torch.device, bf16: bool) -> None:
        """The FPS candidate counts of ``batch`` per stage under run ``title``: stage 0's, then each densification
        mask's; a stage with fewer than its new queries takes the stage-0 fallbacks (a longer FPS chain)."""
        with torch.inference_mode(), precision(device, bf16):
            counts = [int(c) for c in model(batch).num_candidates[0]]
        new = list(model.cfg.num_queries)
        self.data["runs"].setdefault(title, {})["fps_candidates"] = counts
        taken = [s for s in range(1, len(counts)) if counts[s] < new[s]]
        self.md += [f"FPS candidates per stage (stage 0, then each densification mask): {counts}; stages taking the "
                    f"stage-0 fallbacks: {taken or 'none'}.", ""]
        self.save()

    def save(self) -> None:
        (self.out / "breakdown.json").write_text(json.dumps(self.data, indent=1))
        (self.out / "breakdown.md").write_text("\n".join(self.md))
        try:
            _plot(self.out / "breakdown.png", self.stages_of, self.floors_of)
        except ImportError as exc:  # the tables and the JSON hold every figure; the picture is a view of them
            print(f"breakdown: no picture ({exc}); install matplotlib", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for breakdown.md / .json / .png")
    add_experiment_arguments(parser, default="configs.base:base")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--calls", type=int, default=5, help="profiled calls per measurement")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per wall-time measurement")
    parser.add_argument("--precision", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    parser.add_argument("--world", type=Path, help="nuScenes-format folder for the end-to-end measurement")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    cfg = experiment_from_args(args)
    args.out.mkdir(parents=True, exist_ok=True)
    batch = synthetic_batch(cfg, device)
    rep = Report(args.out, {"device": device_name(device), "torch": torch.__version__, "config": args.config,
                            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())})
    for bf16 in [p == "bf16" for p in args.precision]:
        tag = "bf16 autocast" if bf16 else "fp32"
        model, readout = build_inference(cfg, device)
        frame = online_frame(cfg, model, readout, batch, bf16=bf16)
        rep.add_run(f"online inference, {tag}", frame, model, readout, None, device, bf16=bf16, budget=args.budget,
                    calls=args.calls, min_calls=3)
        rep.add_launch_counts(f"online inference, {tag}", "frame", frame, device)
        rep.add_candidates(f"online inference, {tag}", model, batch, device, bf16)
        del model, readout, frame
        model, criterion, step = training_step(cfg, device, batch, bf16=bf16)
        rep.add_run(f"training step, {tag}", step, model, None, criterion, device, bf16=bf16, budget=args.budget,
                    calls=max(1, args.calls // 2), min_calls=2)
        rep.add_launch_counts(f"training step, {tag}", "step", step, device)
        del model, criterion, step
        if device.type == "cuda":
            torch.cuda.empty_cache()
    if args.world is not None:
        paths = (False, True) if device.type == "cuda" else (False,)
        e2e = {f"{tag}{', graph' if graph else ''}": end_to_end(cfg, args.world, device, tag == "bf16", graph)
               for tag in args.precision for graph in paths}
        rep.data["end_to_end"] = e2e
        rep.md += ["### End to end (online loader → labels on the host, as `pgocc infer --online [--cuda-graph]`)",
                   "", "| precision | path | frames | ms / frame | FPS | loader ms / sample (one process) | workers |",
                   "|---|---|---|---|---|---|---|"]
        rep.md += [f"| {tag.split(',')[0]} | {r['path']} | {r['frames']} | {r['frame_ms']:.2f} | "
                   f"{1e3 / r['frame_ms']:.1f} | {r['loader_ms_per_sample_one_process']:.1f} | {r['workers']} |"
                   for tag, r in e2e.items()]
        rep.md.append("")
        rep.save()
    print("\n".join(rep.md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
