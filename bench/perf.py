"""Shared pieces of the whole-model performance scripts (bench/breakdown.py, bench/ablation.py, bench/test_model.py):
the synthetic batch at a config's sizes, one online inference frame as a car runs it, one training step as the
training loop runs it, and a timer.

An online frame (docs/performance.md §1): the batch holds the 6 current images only (as the ``online`` loader gives
them), the FeatureCache holds the 7 past frames' FPN maps (computed once beforehand), the network runs and the
readout gives the Occ3D labels [B, 200, 200, 16]. Under ``bf16`` the network runs under ``torch.autocast``; the
readout stays float32 (§6.5). Timings are CUDA-event medians on a GPU and wall-clock medians on the CPU (dry runs).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import statistics
import sys
import time
from collections.abc import Callable, Iterator

import torch

from pgocc.commands._common import experiment_from_args
from pgocc.config import ExperimentConfig
from pgocc.data.batch import Batch
from pgocc.model import FeatureCache, PGOcc, PGOccLoss, Readout
from pgocc.train import StepOutput, forward_backward, optimizer_step, prepare
from pgocc.training.graphed_step import GraphedTrainingStep
from pgocc.training.optim import build_optimizer
from tests.test_model import make_batch
from tests.test_readout import OCC3D_COLUMNS


def synthetic_batch(cfg: ExperimentConfig, device: torch.device | str, seed: int = 0) -> Batch:
    """tests/test_model.py's ground-plane scene at ``cfg``'s sizes: T frames × 6 cameras at data.input_size,
    data.render_size renders, ov_dims × 27 × 48 feature maps. At the default sizes with the seeded random weights of
    :func:`build_inference` the stage-0 FPS has 156,100 candidates and the densification none (the random Gaussians
    render no depth behind the ground), so stages 1 and 2 take their fallbacks (counted on the CPU with the
    reference kernels)."""
    (H_in, W_in), (H_r, W_r) = cfg.data.input_size, cfg.data.render_size
    return make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims, h=27, w=48, H_in=H_in, W_in=W_in, H_r=H_r,
                      W_r=W_r, seed=seed).to(device)


@contextlib.contextmanager
def precision(device: torch.device | str, bf16: bool) -> Iterator[None]:
    """``torch.autocast`` to bfloat16 when ``bf16``, else nothing."""
    if bf16:
        with torch.autocast(torch.device(device).type, dtype=torch.bfloat16):
            yield
    else:
        yield


def random_prototypes(cfg: ExperimentConfig, device: torch.device | str) -> torch.Tensor:
    """[K, ov_dims] prompt embeddings for the 21 Occ3D prompt columns (random: speed does not depend on them)."""
    return torch.randn(len(OCC3D_COLUMNS), cfg.model.ov_dims, device=device)


def online_frame(cfg: ExperimentConfig, model: PGOcc, readout: Readout, batch: Batch, *, bf16: bool = False
                 ) -> Callable[[], torch.Tensor]:
    """A closure running one online frame of ``batch`` (model in eval mode) → labels [B, X, Y, Z] uint8.

    The past frames' features are computed once here (every frame of ``batch`` through the backbone into the
    cache); each call gives the N current images only, which go through the backbone and into the cache again (a
    current frame is always recomputed), and reads the past frames from the cache.
    """
    device = batch.images.device
    N, T = batch.num_cams, batch.num_frames
    current = dataclasses.replace(batch, images=batch.images[:, :N])
    cache = FeatureCache(capacity=T)
    with torch.inference_mode(), precision(device, bf16):
        model(batch, cache=cache)
    prototypes = random_prototypes(cfg, device)

    def frame() -> torch.Tensor:
        with torch.inference_mode():
            with precision(device, bf16):
                pred = model(current, cache=cache)
            return readout(pred.final, prototypes, OCC3D_COLUMNS)

    return frame


def build_inference(cfg: ExperimentConfig, device: torch.device | str) -> tuple[PGOcc, Readout]:
    """The network (eval mode, seeded random weights) and the readout of ``cfg`` on ``device``."""
    torch.manual_seed(0)
    return PGOcc(cfg.model, cfg.kernels).to(device).eval(), Readout(cfg.model, cfg.kernels).to(device)


@dataclasses.dataclass
class GpuInference:
    """A GPU-only script's set-up: the experiment, the synthetic batch and the inference model on the GPU."""

    cfg: ExperimentConfig
    device: torch.device
    batch: Batch
    model: PGOcc
    readout: Readout


def gpu_inference(args: argparse.Namespace, script: str, why: str = "") -> GpuInference:
    """:class:`GpuInference` for the ``--config`` / ``--set`` of ``args``; exits naming ``script`` (and ``why``)
    where there is no CUDA GPU."""
    if not torch.cuda.is_available():
        sys.exit(f"{script}: needs a CUDA GPU{f' ({why})' if why else ''}")
    cfg = experiment_from_args(args)
    device = torch.device("cuda")
    batch = synthetic_batch(cfg, device)
    model, readout = build_inference(cfg, device)
    return GpuInference(cfg=cfg, device=device, batch=batch, model=model, readout=readout)


def training_step(cfg: ExperimentConfig, device: torch.device | str, batch: Batch, *, bf16: bool = False,
                  graphed: bool = False) -> tuple[PGOcc, PGOccLoss, Callable[[], StepOutput]]:
    """(model, criterion, closure → the step's :class:`pgocc.train.StepOutput`): one step of the training loop on
    ``batch`` — photometric distortion as configured and feature targets (:func:`pgocc.train.prepare`), forward,
    every loss term, backward, clipping, the gated AdamW step, the schedule. ``graphed``: the step as
    ``train.cuda_graph`` runs it (:class:`pgocc.training.graphed_step.GraphedTrainingStep`: eager for its first
    WARMUP_STEPS calls, captured at the next, replayed after)."""
    torch.manual_seed(0)
    model = PGOcc(cfg.model, cfg.kernels).to(device).train()
    criterion = PGOccLoss(cfg.model, cfg.loss, cfg.kernels).to(device)
    optimizer, scheduler = build_optimizer(model, cfg.train)
    params = [p for p in model.parameters() if p.requires_grad]
    autocast = "bf16" if bf16 else "none"
    graph = (GraphedTrainingStep(model, criterion, optimizer, params, autocast=autocast,
                                 grad_clip_norm=cfg.train.grad_clip_norm) if graphed else None)

    def step() -> StepOutput:
        micro = prepare(criterion, [batch], autocast=autocast, distortion=cfg.train.photometric_distortion)
        if graph is not None:
            out = graph(micro)
            scheduler.step()
            return out
        out = forward_backward(model, criterion, micro, autocast=autocast)
        with torch.profiler.record_function("optimizer"):  # a stage of bench/breakdown.py
            optimizer_step(params, optimizer, scheduler, out, cfg.train.grad_clip_norm)
        return out

    return model, criterion, step


@dataclasses.dataclass
class Timing:
    """Median milliseconds per call over ``calls`` timed calls, and the peak memory allocated during them."""

    ms: float
    calls: int
    peak_gib: float


def measure(fn: Callable[[], object], device: torch.device | str, *, budget_s: float, warmup: int = 1,
            min_calls: int = 1, max_calls: int = 50) -> Timing:
    """Time ``fn`` after ``warmup`` untimed calls: calls until ``budget_s`` seconds are spent (at least
    ``min_calls``, at most ``max_calls``). CUDA: events around each call (GPU time; calls queue back to back);
    CPU: wall clock. Peak memory: ``torch.cuda.max_memory_allocated`` over the timed calls (0 on the CPU)."""
    cuda = torch.device(device).type == "cuda"
    for _ in range(warmup):
        fn()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    samples: list[float] = []
    start_all = time.perf_counter()
    while len(samples) < min_calls or (time.perf_counter() - start_all < budget_s and len(samples) < max_calls):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            samples.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - t0) * 1e3)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    return Timing(ms=statistics.median(samples), calls=len(samples), peak_gib=peak)


def device_name(device: torch.device | str) -> str:
    """The GPU's name, or 'cpu'."""
    return torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "cpu"
