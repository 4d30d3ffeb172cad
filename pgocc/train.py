"""``pgocc train`` / ``python -m pgocc.train`` / ``torchrun --nproc_per_node=N -m pgocc.train``: the training loop.

Reads top to bottom: arguments → process group (when torchrun launched us: NCCL on GPUs, gloo on CPU) → config →
seed → model + loss → parallelize (compile, FSDP2/DDP) → optimiser + schedule → data → resume → loop → final
checkpoint and export. The parts live in :mod:`pgocc.training`.

One optimizer step: ``train.grad_accum_steps`` micro-batches of ``data.batch_size`` samples per process (photometric
distortion of the input images and feature targets: :func:`prepare`; forward, §5 losses, backward of total /
accumulation: :func:`forward_backward`), global-norm clipping, AdamW (skipped on the device when a loss or prediction
check failed), schedule. With ``train.cuda_graph`` everything after :func:`prepare` but the schedule is replayed as
one CUDA graph (:mod:`pgocc.training.graphed_step`). Values are read on the host only on
logging, checkpoint and validation steps: the losses are summed on the device in between. A failed check (e.g. a
non-finite loss term) stops the run at the next such read with a one-line error naming the step, term and stage;
a checkpoint is only written after the checks of every step before it passed.

Run directory (``--out``, default ``<train.run_root>/train-<time>``): ``config.json``, ``kernels.json``,
``metrics.jsonl`` (one JSON object per logging step, and one per validation with ``"split": "val"``),
``checkpoints/step-XXXXXXX/`` (DCP, see :mod:`pgocc.training.checkpoint`), ``model.safetensors`` (the export for
``pgocc infer --checkpoint``), ``tb/`` (TensorBoard, when installed).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from pgocc.commands._common import experiment_from_args
from pgocc.commands.train import HELP, add_arguments
from pgocc.config import ExperimentConfig, check_cpu_run
from pgocc.data.batch import Batch
from pgocc.errors import ConfigError, DataError, PgoccError, report
from pgocc.model.checks import Checks, ModelCheckError
from pgocc.model.criterion import FeatureTargets
from pgocc.model.types import Prediction


class TrainingStoppedError(PgoccError, RuntimeError):
    """A check failed during training (non-finite loss term or head output); the message names step and tensor."""


# ---------------------------------------------------------------------------------------------------------------
# Process group, device, seeds


def init_distributed() -> tuple[int, int, torch.device]:
    """(rank, world size, device); joins the process group when torchrun's RANK/WORLD_SIZE are set."""
    cuda = torch.cuda.is_available()
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ and not dist.is_initialized():
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    world = dist.get_world_size() if dist.is_initialized() else 1
    device = torch.device("cuda", torch.cuda.current_device()) if cuda else torch.device("cpu")
    return rank, world, device


def check_run_config(cfg: ExperimentConfig, world: int, device: torch.device) -> int:
    """Refuse what only the launch reveals; returns the micro-batches per optimizer step."""
    from pgocc import ops

    ops.check_device(cfg.kernels, device.type)
    if device.type == "cpu":
        check_cpu_run(cfg)
    if cfg.train.autocast == "bf16" and device.type != "cuda":
        raise ConfigError(f"train.autocast: 'bf16' needs a CUDA device; this run is on {device.type} "
                          "(use train.autocast=none)")
    if cfg.train.cuda_graph and device.type != "cuda":
        raise ConfigError(f"train.cuda_graph: CUDA graphs need a CUDA device; this run is on {device.type} "
                          "(use train.cuda_graph=false)")
    if cfg.train.cuda_graph and world > 1:
        raise ConfigError(f"train.cuda_graph: the step is captured for one process; this run has {world} (FSDP2 "
                          "and DDP communicate from hooks that the graph does not capture): use "
                          "train.cuda_graph=false")
    accum = cfg.train.grad_accum_steps
    if cfg.train.global_batch_size:
        per_step = world * cfg.data.batch_size
        if cfg.train.global_batch_size % per_step:
            raise ConfigError(f"train.global_batch_size: {cfg.train.global_batch_size} is not a multiple of "
                              f"{world} process(es) × data.batch_size={cfg.data.batch_size}")
        accum = cfg.train.global_batch_size // per_step
    return accum


# ---------------------------------------------------------------------------------------------------------------
# Data


def _loader(dataset: torch.utils.data.Dataset, cfg: ExperimentConfig, sampler: torch.utils.data.Sampler
            ) -> torch.utils.data.DataLoader:
    from pgocc.data.dataset import make_loader

    # Its own generator: creating an iterator must not draw from the global RNG (a resumed run creates one at a
    # point where the uninterrupted run did not). The items carry their own seeds (pgocc.training.data).
    return make_loader(dataset, cfg.data, shuffle=False, sampler=sampler, generator=torch.Generator())


def train_batches(dataset: torch.utils.data.Dataset, cfg: ExperimentConfig, position: Any, rank: int, world: int
                  ) -> Iterator[Batch]:
    """Batches of this rank forever, epoch after epoch, from ``position`` (advanced as batches are taken)."""
    from pgocc.training.data import SeededItems, ShardedOrder

    items = SeededItems(dataset)
    while True:
        sampler = ShardedOrder(len(dataset), seed=cfg.train.seed, epoch=position.epoch, rank=rank, world=world,
                               batch_size=cfg.data.batch_size, start_batch=position.batches)
        for batch in _loader(items, cfg, sampler):
            position.batches += 1
            yield batch
        position.epoch, position.batches = position.epoch + 1, 0


def val_batches(dataset: torch.utils.data.Dataset, cfg: ExperimentConfig, num: int, rank: int, world: int
                ) -> Iterator[tuple[Batch, bool]]:
    """(batch of 1, counted) for this rank's share of the first ``num`` samples, padded with uncounted repeats so
    that every rank runs the same number of forwards."""
    num = min(num, len(dataset))
    mine = list(range(rank, num, world))
    per_rank = -(-num // world)
    padded = mine + [0] * (per_rank - len(mine))
    data = dataclasses.replace(cfg.data, batch_size=1, num_workers=min(cfg.data.num_workers, per_rank))
    from pgocc.data.dataset import make_loader

    loader = make_loader(torch.utils.data.Subset(dataset, padded), data, shuffle=False, generator=torch.Generator())
    for k, batch in enumerate(loader):
        yield batch, k < len(mine)


# ---------------------------------------------------------------------------------------------------------------
# One step


@dataclasses.dataclass
class StepOutput:
    """The device-side results of one optimizer step (nothing read on the host)."""

    total: torch.Tensor
    """0-d mean weighted total over the micro-batches."""
    terms: torch.Tensor
    """[K] mean of each unweighted term (names: ``term_names``)."""
    term_names: list[str]
    checks: list[Checks]
    """Every micro-batch's checks, in order."""
    ok: torch.Tensor
    """0-d bool: every check of every micro-batch passed."""
    prediction: Prediction
    """The last micro-batch's prediction (for the Gaussian statistics of a logging step)."""
    grad_norm: torch.Tensor | None = None
    """0-d global gradient norm before clipping (set by :func:`update_parameters`)."""


class MicroBatch(NamedTuple):
    """A micro-batch ready for the forward (:func:`prepare`)."""

    batch: Batch
    """Its input images photometrically distorted (when the run distorts)."""
    targets: FeatureTargets
    """The feature loss's targets of the batch."""


def _precision(device_type: str, autocast: str) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type, dtype=torch.bfloat16) if autocast == "bf16" else contextlib.nullcontext()


def prepare(criterion: nn.Module, micro_batches: list[Batch], *, autocast: str = "none",
            distortion: bool = False) -> list[MicroBatch]:
    """The part of a step that reads the host, before any forward: the photometric distortion (its parameters are
    drawn on the host) and the feature targets (the exact PCA's ``eigh`` reads its error flag on the host: there
    the host waits only for the work queued so far, not for a forward). A CUDA graph of the step
    (:class:`pgocc.training.graphed_step.GraphedTrainingStep`) starts from what this returns. Every micro-batch's
    targets are held until the step ends: [B, N, H_r, W_r, pca_dims], 177 MB per sample in float32 at the default
    sizes."""
    from pgocc.training.photometric import photometric_distortion

    prepared = []
    for batch in micro_batches:
        if distortion:
            batch = dataclasses.replace(batch, images=photometric_distortion(batch.images))
        with _precision(batch.images.device.type, autocast):
            prepared.append(MicroBatch(batch, criterion.feature_targets(batch)))
    return prepared


def forward_backward(module: nn.Module, criterion: nn.Module, micro_batches: list[MicroBatch], *,
                     autocast: str = "none") -> StepOutput:
    """Forward and backward of each micro-batch, gradients accumulated as the mean over the micro-batches (so
    ``n`` micro-batches of ``b`` samples give the gradient of one batch of ``n·b``). Reads nothing on the host."""
    n = len(micro_batches)
    total = terms = None
    checks: list[Checks] = []
    names: list[str] = []
    prediction = None
    for i, (batch, targets) in enumerate(micro_batches):
        _set_gradient_sync(module, i == n - 1)
        with _precision(batch.images.device.type, autocast):
            prediction = module(batch)
            out = criterion(prediction, batch, targets)
        (out.total / n).backward()
        names = list(out.terms)
        stacked = torch.stack([t.detach().float() for t in out.terms.values()])
        total = out.total.detach() / n if total is None else total + out.total.detach() / n
        terms = stacked / n if terms is None else terms + stacked / n
        checks.append(out.checks)
    assert total is not None and terms is not None and prediction is not None
    ok = torch.stack([c.ok.to(total.device) for c in checks]).all()
    return StepOutput(total=total, terms=terms, term_names=names, checks=checks, ok=ok, prediction=prediction)


def _set_gradient_sync(module: nn.Module, sync: bool) -> None:
    """Reduce gradients only after the last micro-batch (FSDP2 ``set_requires_gradient_sync``; DDP ``no_sync``)."""
    if hasattr(module, "set_requires_gradient_sync"):
        module.set_requires_gradient_sync(sync)
    elif isinstance(module, nn.parallel.DistributedDataParallel):
        module.require_backward_grad_sync = sync


def clip_gradients(params: list[nn.Parameter], max_norm: float) -> torch.Tensor:
    """Scale the gradients so that their global L2 norm is at most ``max_norm`` (0: no clipping); returns the norm
    before clipping (0-d, on the device; the full norm under FSDP2's sharded gradients)."""
    grads = [p.grad for p in params if p.grad is not None]
    norm = torch.nn.utils.get_total_norm(grads, foreach=True)
    if hasattr(norm, "full_tensor"):  # DTensor: the shards' partial norms reduced over the ranks
        norm = norm.full_tensor()
    if max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm, foreach=True)
    return norm


def update_parameters(params: list[nn.Parameter], optimizer: torch.optim.Optimizer, step: StepOutput,
                      grad_clip_norm: float) -> None:
    """Clip, then AdamW (a no-op on the device unless ``step.ok``); sets ``step.grad_norm``. Reads nothing on the
    host."""
    from pgocc.training.optim import gate_step

    step.grad_norm = clip_gradients(params, grad_clip_norm)
    gate_step(optimizer, step.ok)
    optimizer.step()


def optimizer_step(params: list[nn.Parameter], optimizer: torch.optim.Optimizer,
                   scheduler: torch.optim.lr_scheduler.LRScheduler, step: StepOutput, grad_clip_norm: float) -> None:
    """:func:`update_parameters`, schedule, zero the gradients."""
    update_parameters(params, optimizer, step, grad_clip_norm)
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)


def first_failure(checks: list[list[Checks]], first_step: int) -> str | None:
    """'step N: <message>' of the first failed check of consecutive steps from ``first_step`` (host reads)."""
    for k, step_checks in enumerate(checks):
        for c in step_checks:
            failure = c.first_failure()
            if failure is not None:
                return f"step {first_step + k}: {failure}"
    return None


def gaussian_stats(prediction: Prediction, opacity_threshold: float) -> dict[str, torch.Tensor]:
    """Per stage: mean opacity, fraction above the readout threshold, mean and median scale, candidate count."""
    stats: dict[str, torch.Tensor] = {}
    for s, g in enumerate(prediction.stages):
        op, sc = g.opacities.detach().float(), g.scales.detach().float()
        stats[f"opacity_mean_{s}"] = op.mean()
        stats[f"opacity_above_threshold_{s}"] = (op > opacity_threshold).float().mean()
        stats[f"scale_mean_{s}"] = sc.mean()
        stats[f"scale_median_{s}"] = sc.median()
        stats[f"candidates_{s}"] = prediction.num_candidates[:, s].float().mean()
    return stats


def peak_memory_gib(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


# ---------------------------------------------------------------------------------------------------------------


def _run_dir(out: Path | None, run_root: str, rank: int) -> Path:
    if out is None:
        base = Path(run_root) / time.strftime("train-%Y%m%d-%H%M%S")
        out = base
        for i in range(2, 1000):
            if not out.exists():
                break
            out = base.with_name(f"{base.name}-{i}")
    if dist.is_initialized():
        holder = [str(out)]
        dist.broadcast_object_list(holder, src=0)
        out = Path(holder[0])
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    return out


class MetricsLog:
    """metrics.jsonl (and TensorBoard when it imports) on rank 0."""

    def __init__(self, run_dir: Path, enabled: bool) -> None:
        self.enabled = enabled
        self.path = run_dir / "metrics.jsonl"
        self.tb = None
        if enabled:
            with contextlib.suppress(ImportError):
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(run_dir / "tb"))

    def write(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            prefix = "val/" if record.get("split") == "val" else "train/"
            for k, v in record.items():
                if isinstance(v, int | float) and not isinstance(v, bool) and k != "step":
                    self.tb.add_scalar(prefix + k, v, record["step"])
            self.tb.flush()


def run(args: argparse.Namespace) -> int:
    """Train as the arguments say; raises PgoccError subclasses for bad input."""
    if not torch.cuda.is_available():
        os.environ.setdefault("TRITON_INTERPRET", "1")  # before any Triton kernel module is imported
    rank, world, device = init_distributed()
    try:
        return _train(args, rank, world, device)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _train(args: argparse.Namespace, rank: int, world: int, device: torch.device) -> int:
    from tqdm import tqdm

    from pgocc import ops
    from pgocc.config import write_config
    from pgocc.data.dataset import build_dataset
    from pgocc.data.index import check_tables
    from pgocc.data.occ3d import GRID_SHAPE
    from pgocc.eval.loop import evaluate, prompt_table
    from pgocc.model import PGOcc, PGOccLoss, Readout
    from pgocc.training.checkpoint import (
        export_model,
        full_model_state,
        load_checkpoint,
        resolve_resume,
        save_checkpoint,
        seed_everything,
    )
    from pgocc.training.data import DataPosition
    from pgocc.training.graphed_step import GraphedTrainingStep
    from pgocc.training.optim import build_optimizer
    from pgocc.training.parallelize import parallelize

    # ---- config ------------------------------------------------------------------------------------------------
    cfg = experiment_from_args(args)
    if args.dataroot is not None:
        cfg.data.dataroot = str(args.dataroot)
    accum = check_run_config(cfg, world, device)
    tcfg = cfg.train
    dataroot = Path(cfg.data.dataroot)
    if not dataroot.is_dir():
        raise DataError(f"{dataroot}: dataset root not found (--dataroot / data.dataroot); write a synthetic one with "
                        f"`pgocc make-synthetic --out {dataroot}`")
    # The tables first: in a folder that is not a dataset they are what is missing, not the labels or prototypes.
    check_tables(dataroot, cfg.data.version)
    val_root = Path(cfg.data.val_dataroot or cfg.data.dataroot)
    if tcfg.val_samples > 0:
        if not val_root.is_dir():
            raise DataError(f"{val_root}: validation dataset root not found (data.val_dataroot)")
        check_tables(val_root, cfg.data.version)
        labels_dir = val_root / cfg.data.labels_dir
        if not cfg.data.with_labels or not labels_dir.is_dir():
            raise DataError(f"{labels_dir}: no Occ3D labels, but validation needs them (train.val_samples="
                            f"{tcfg.val_samples}); set train.val_samples=0 to train without validation")
        if cfg.model.grid_dims != GRID_SHAPE:
            raise ConfigError(f"model.pc_range: the readout grid {cfg.model.grid_dims} differs from the Occ3D labels' "
                              f"{GRID_SHAPE}; set train.val_samples=0 to train without validation")
    if args.resume == "auto" and args.out is None:
        raise ConfigError("--resume auto: needs --out RUN_DIR (the run whose newest checkpoint to continue)")
    cfg.debug.apply()

    # ---- seed, model, loss -------------------------------------------------------------------------------------
    seed_everything(tcfg.seed)  # the same on every rank: identical initial weights
    model = PGOcc(cfg.model, cfg.kernels, deterministic=cfg.debug.deterministic).to(device)
    criterion = PGOccLoss(cfg.model, cfg.loss, cfg.kernels, deterministic=cfg.debug.deterministic).to(device)
    readout = Readout(cfg.model, cfg.kernels, deterministic=cfg.debug.deterministic).to(device)
    model.train()
    num_params = sum(p.numel() for p in model.parameters())

    # ---- parallelize, optimiser --------------------------------------------------------------------------------
    module = parallelize(model, tcfg, device)
    optimizer, scheduler = build_optimizer(model, tcfg)
    params = [p for p in model.parameters() if p.requires_grad]
    graphed = (GraphedTrainingStep(module, criterion, optimizer, params, autocast=tcfg.autocast,
                                   grad_clip_norm=tcfg.grad_clip_norm) if tcfg.cuda_graph else None)
    seed_everything(tcfg.seed + rank)  # per-rank streams: dropout, photometric distortion

    # ---- data ----------------------------------------------------------------------------------------------------
    train_set = build_dataset(dataclasses.replace(cfg.data, with_labels=False), cfg.data.train_split,
                              num_frames=cfg.model.num_frames, feature_dim=cfg.model.ov_dims, mode="train")
    if len(train_set) == 0:
        raise DataError(f"{dataroot}: split {cfg.data.train_split!r} has no samples (data.train_split)")
    val_set = text = column_labels = None
    if tcfg.val_samples > 0:
        val_set = build_dataset(dataclasses.replace(cfg.data, dataroot=str(val_root)), cfg.data.val_split,
                                num_frames=cfg.model.num_frames, feature_dim=cfg.model.ov_dims, mode="test",
                                with_render=False)
        if len(val_set) == 0:
            raise DataError(f"{val_root}: split {cfg.data.val_split!r} has no samples (data.val_split)")
        text, column_labels = prompt_table(val_root, cfg.model.ov_dims)
        text = text.to(device)
    position = DataPosition()

    # ---- run directory, resume ---------------------------------------------------------------------------------
    run_dir = _run_dir(args.out, tcfg.run_root, rank)
    ckpt_root = run_dir / "checkpoints"
    start_step = 0
    resume = resolve_resume(args.resume, ckpt_root) if args.resume else None
    if resume is not None:
        extra = load_checkpoint(resume, model, optimizer, cfg)
        start_step = int(extra["step"])
        position = DataPosition(**extra["data"])
        scheduler.load_state_dict(extra["scheduler"])
    if rank == 0:
        write_config(cfg, run_dir)
        (run_dir / "kernels.json").write_text(json.dumps(ops.kernel_table(cfg.kernels), indent=2) + "\n")
    log = MetricsLog(run_dir, rank == 0)
    batches = train_batches(train_set, cfg, position, rank, world)
    samples_per_step = world * accum * cfg.data.batch_size
    if rank == 0:
        print(f"pgocc train: {num_params / 1e6:.2f} M parameters, {world} process(es) on {device.type}, "
              f"{samples_per_step} sample(s) per step, {len(train_set)} training samples; run dir {run_dir}"
              + (f"; resumed from {resume} at step {start_step}" if resume else ""), file=sys.stderr)
        if resume is not None and "resharded_from" in extra:
            print(f"pgocc train: the checkpoint was written by {extra['resharded_from']} process(es), this run has "
                  f"{world}: model and optimiser resharded, data from epoch {position.epoch} batch "
                  f"{position.batches}, RNG streams seeded afresh (the continuation is not bit-identical)",
                  file=sys.stderr)

    # ---- loop ----------------------------------------------------------------------------------------------------
    last_good = resume
    window: list[StepOutput] = []
    window_checks: list[list[Checks]] = []
    window_start, window_time = start_step + 1, time.perf_counter()
    bar = tqdm(total=tcfg.num_steps, initial=start_step, desc="train", unit="step", file=sys.stderr,
               disable=rank != 0)

    def read_checks() -> None:
        """The host read of every check since the last one; stops the run at the first failure."""
        failure = first_failure(window_checks, window_start) if window_checks else None
        if failure is not None:
            raise TrainingStoppedError(f"{failure}; the run stopped, the last good checkpoint is "
                                  f"{last_good if last_good else 'none (no checkpoint written yet)'}")

    try:
        for step in range(start_step + 1, tcfg.num_steps + 1):
            lr = scheduler.get_last_lr()[0]
            micro = prepare(criterion, [next(batches).to(device, non_blocking=True) for _ in range(accum)],
                            autocast=tcfg.autocast, distortion=tcfg.photometric_distortion)
            if graphed is not None:
                out = graphed(micro)
                scheduler.step()
            else:
                out = forward_backward(module, criterion, micro, autocast=tcfg.autocast)
                optimizer_step(params, optimizer, scheduler, out, tcfg.grad_clip_norm)
            out.prediction = out.prediction if step % tcfg.log_every == 0 or step == tcfg.num_steps else None
            window.append(out)
            window_checks.append(out.checks)
            bar.update(1)

            if step % tcfg.log_every == 0 or step == tcfg.num_steps:
                read_checks()
                values = torch.stack([torch.stack([o.total for o in window]).mean()]
                                     + list(torch.stack([o.terms for o in window]).mean(0)))
                if dist.is_initialized():
                    dist.all_reduce(values, op=dist.ReduceOp.AVG if device.type == "cuda" else dist.ReduceOp.SUM)
                    if device.type != "cuda":  # gloo has no AVG
                        values = values / world
                pred = window[-1].prediction
                assert pred is not None
                stats = gaussian_stats(pred, cfg.model.opacity_threshold)
                host = torch.cat([values, torch.stack([window[-1].grad_norm]).float(),
                                  torch.stack(list(stats.values()))]).tolist()
                elapsed = time.perf_counter() - window_time
                n = len(window)
                record: dict[str, Any] = {"step": step, "lr": lr, "loss": host[0]}
                record.update(zip(out.term_names, host[1:1 + len(out.term_names)], strict=True))
                k = 1 + len(out.term_names)
                record["grad_norm"] = host[k]
                record["step_time"] = elapsed / n
                record["samples_per_s"] = n * samples_per_step / elapsed
                record["peak_memory_gib"] = peak_memory_gib(device)
                record.update(zip(stats, host[k + 1:], strict=True))
                log.write(record)
                bar.set_postfix(loss=f"{host[0]:.4g}", lr=f"{lr:.3g}", samples_s=f"{record['samples_per_s']:.2f}")
                window, window_checks = [], []
                window_start, window_time = step + 1, time.perf_counter()

            t0 = time.perf_counter()  # checkpoint and validation time is not step time
            if (tcfg.checkpoint_every and step % tcfg.checkpoint_every == 0) or step == tcfg.num_steps:
                read_checks()
                extra = {"step": step, "data": position.state_dict(), "scheduler": scheduler.state_dict()}
                last_good = save_checkpoint(ckpt_root, step, model, optimizer, extra, cfg, tcfg.keep_checkpoints)

            if val_set is not None and ((tcfg.val_every and step % tcfg.val_every == 0) or step == tcfg.num_steps):
                read_checks()
                scores = evaluate(module, readout, val_batches(val_set, cfg, tcfg.val_samples, rank, world), text,
                                  column_labels, device)
                log.write({"step": step, "split": "val", "seconds": time.perf_counter() - t0, **scores.as_dict()})
            window_time += time.perf_counter() - t0
            if args.stop_after is not None and step >= args.stop_after and step < tcfg.num_steps:
                if rank == 0:
                    print(f"pgocc train: stopped after step {step} (--stop-after)", file=sys.stderr)
                return 0
    except ModelCheckError as exc:  # an exception inside a forward after a check had failed
        raise TrainingStoppedError(f"step {step}: {exc}; the run stopped, the last good checkpoint is "
                              f"{last_good if last_good else 'none'}") from None
    finally:
        bar.close()

    # ---- export ------------------------------------------------------------------------------------------------
    state = full_model_state(model)
    if rank == 0:
        path = export_model(state, cfg, run_dir / "model.safetensors", fp16=args.export_fp16)
        print(f"pgocc train: {tcfg.num_steps} steps done; wrote {path} (pgocc infer --checkpoint {path}) and "
              f"{run_dir / 'metrics.jsonl'}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pgocc.train", description=HELP,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except PgoccError as exc:
        return report("train", exc)


if __name__ == "__main__":
    sys.exit(main())

