"""Training checkpoints with torch.distributed.checkpoint (DCP), and the model export for inference.

Checkpoint ``<run>/checkpoints/step-XXXXXXX/`` (written as ``step-XXXXXXX.tmp`` and renamed once every rank wrote):

    .metadata, __<rank>_0.distcp   DCP: model and optimiser state (``get_state_dict``: sharded under FSDP2, loaded
                                   into any sharding by ``set_state_dict``)
    rank-<r>.pt                    per rank: step, data position, schedule state, and every RNG state (torch CPU,
                                   CUDA, numpy, Python random), which differ per rank
    config.json                    the resolved ExperimentConfig; a resume under another config is refused

A resume on as many processes as wrote the checkpoint continues bit-identically. On another number of processes
(:func:`reshard_position`) the model and optimiser are resharded by DCP, the step and schedule are rank 0's, the data
continues from the same global sample of the epoch's order, and the RNG streams are seeded afresh from (seed, step,
rank): the continuation follows the same curve but is not bit-identical.

Export ``<file>.safetensors``: the full model state dict (optionally float16 storage) with the resolved config JSON in
the file's metadata (key ``pgocc_config``); :func:`load_exported` returns both, so that ``pgocc infer --checkpoint``
rebuilds the model the weights belong to.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch import nn
from torch.distributed.checkpoint.api import CheckpointException
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_state_dict,
    set_state_dict,
)

from pgocc.config import ExperimentConfig, config_diff, config_from_json, format_diff, to_dict
from pgocc.errors import CheckpointError, ConfigError
from pgocc.torch_files import load_torch_file

STEP_DIR = re.compile(r"^step-(\d{7})$")
CONFIG_KEY = "pgocc_config"
RESUME_FREE_FIELDS: frozenset[str] = frozenset({
    "train.run_root", "train.log_every", "train.checkpoint_every", "train.keep_checkpoints", "train.val_every",
    "train.val_samples", "train.compile", "train.cuda_graph", "data.dataroot", "data.num_workers"})
"""Fields a resumed run may set differently from its checkpoint (where results go, how often things happen)."""


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def _rank() -> int:
    return dist.get_rank() if _distributed() else 0


def _world() -> int:
    return dist.get_world_size() if _distributed() else 1


def _barrier() -> None:
    if _distributed():
        dist.barrier()


# ---------------------------------------------------------------------------------------------------------------
# RNG state (plain tensors and tuples, so the per-rank file loads with weights_only=True)


def rng_state() -> dict[str, Any]:
    """Every generator's state of this process."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    name, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _py(obj: Any) -> Any:
    """``random.getstate()`` holds nested tuples: weights_only loads them as tuples already; lists → tuples."""
    return tuple(_py(x) for x in obj) if isinstance(obj, list | tuple) else obj


# ---------------------------------------------------------------------------------------------------------------
# Save / find / load


def step_dir(root: Path, step: int) -> Path:
    return root / f"step-{step:07d}"


def complete_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root`` (renamed from .tmp, with DCP metadata), oldest first."""
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and STEP_DIR.match(p.name) and (p / ".metadata").is_file()]
    return sorted(found, key=lambda p: p.name)


def save_checkpoint(root: Path, step: int, model: nn.Module, optimizer: torch.optim.Optimizer,
                    extra: dict[str, Any], cfg: ExperimentConfig, keep: int) -> Path:
    """Write checkpoint ``step`` under ``root`` from every rank (collective), then keep the newest ``keep``.

    ``extra``: this rank's step, data position and schedule state; the RNG states are added here."""
    final, tmp = step_dir(root, step), root / f"step-{step:07d}.tmp"
    if _rank() == 0:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir(parents=True)
    _barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=str(tmp))
    torch.save({**extra, "world_size": _world(), "rng": rng_state()}, tmp / f"rank-{_rank()}.pt")
    if _rank() == 0:
        (tmp / "config.json").write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    _barrier()
    if _rank() == 0:
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
        for old in complete_checkpoints(root)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    _barrier()
    return final


def resolve_resume(spec: str, checkpoints: Path) -> Path | None:
    """``--resume``: 'auto' → the newest complete checkpoint under ``checkpoints`` (None if there is none); a
    checkpoint directory; or a run directory (its newest checkpoint)."""
    if spec == "auto":
        found = complete_checkpoints(checkpoints)
        return found[-1] if found else None
    path = Path(spec)
    if path.is_dir() and not STEP_DIR.match(path.name):
        found = complete_checkpoints(path / "checkpoints") or complete_checkpoints(path)
        if not found:
            raise CheckpointError(f"{path}: no complete checkpoint (step-XXXXXXX/ with .metadata) found (--resume)")
        return found[-1]
    if not path.is_dir():
        raise CheckpointError(f"{path}: checkpoint not found (--resume)")
    if not (path / ".metadata").is_file():
        raise CheckpointError(f"{path}: incomplete or corrupt checkpoint: no DCP .metadata (--resume)")
    return path


def check_config(path: Path, cfg: ExperimentConfig) -> None:
    """Refuse a checkpoint written under another config, listing every differing field on one line."""
    try:
        saved = config_from_json((path / "config.json").read_text())
    except (OSError, ConfigError) as exc:
        raise CheckpointError(f"{path}: corrupt checkpoint: cannot read its config.json ({exc})") from None
    diff = config_diff(saved, cfg, ignore=RESUME_FREE_FIELDS)
    if diff:
        raise CheckpointError(f"{path}: written by another config; differences: "
                              f"{format_diff(diff, 'checkpoint', 'this run')}")


def load_checkpoint(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, cfg: ExperimentConfig
                    ) -> dict[str, Any]:
    """Load ``path`` into ``model`` and ``optimizer`` (collective), restore this rank's RNG states, and return its
    extra state (step, data position, schedule). On another process count than the one that wrote it, the extra state
    is rank 0's with the data position resharded, ``resharded_from`` set, and the RNG streams seeded afresh (module
    docstring). Raises CheckpointError for another config, a missing or inconsistent rank file, or unreadable files."""
    check_config(path, cfg)
    first = _rank_file(path, 0)
    written = first.get("world_size")
    if not isinstance(written, int) or written < 1:
        raise CheckpointError(f"{path / 'rank-0.pt'}: corrupt checkpoint: no process count (world_size)")
    if written == _world():
        extra = first if _rank() == 0 else _rank_file(path, _rank())
        if extra.get("world_size") != written:
            raise CheckpointError(f"{path / f'rank-{_rank()}.pt'}: corrupt checkpoint: written by "
                                  f"{extra.get('world_size')} processes, rank-0.pt by {written}")
    else:
        extra = {**first, "data": reshard_position(first["data"], written, _world(), cfg.data.batch_size),
                 "resharded_from": written}
    model_sd, optim_sd = get_state_dict(model, optimizer)
    state = {"model": model_sd, "optim": optim_sd}
    try:
        dcp.load(state, checkpoint_id=str(path))
    except (Exception, CheckpointException) as exc:  # CheckpointException (a BaseException) wraps reader errors
        last = str(exc).strip().splitlines()
        raise CheckpointError(f"{path}: corrupt checkpoint: cannot load the model/optimiser state "
                              f"({type(exc).__name__}: {last[-1].strip() if last else ''})") from None
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    if "resharded_from" in extra:
        seed_everything(cfg.train.seed * 1_000_003 + int(extra["step"]) * 4099 + _rank())
    else:
        rng = extra["rng"]
        rng["python"] = _py(rng["python"])
        set_rng_state(rng)
    return extra


def _rank_file(path: Path, rank: int) -> dict[str, Any]:
    """The ``rank-<rank>.pt`` file of checkpoint ``path``."""
    file = path / f"rank-{rank}.pt"
    if not file.is_file():
        raise CheckpointError(f"{file}: missing; a complete checkpoint has one rank file per process that wrote it")
    return load_torch_file(file, "checkpoint's rank file", "--resume")


def reshard_position(data: dict[str, int], written: int, world: int, batch_size: int) -> dict[str, int]:
    """The data position of a checkpoint written by ``written`` processes, for ``world`` processes.

    Every rank consumed ``batches`` batches of ``batch_size`` from the epoch's order, rank r the positions r, r + n,
    … (pgocc.training.data): together the first ``batches · written · batch_size`` positions. The new ranks start at
    the batch holding that global position; when it is not a multiple of ``world · batch_size`` the few samples
    before it in that batch are seen a second time.
    """
    consumed = data["batches"] * written * batch_size
    return {"epoch": data["epoch"], "batches": consumed // (world * batch_size)}


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and Python's random from one integer."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# ---------------------------------------------------------------------------------------------------------------
# Export for inference


def full_model_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model state dict on the CPU (gathered from every rank under FSDP2; collective)."""
    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def export_model(state: dict[str, torch.Tensor], cfg: ExperimentConfig, path: Path, *, fp16: bool = False) -> Path:
    """Write ``state`` (float16 storage of the floating tensors if ``fp16``) and the resolved config as a
    ``.safetensors`` file, under a temporary name then renamed."""
    from safetensors.torch import save_file

    tensors = {k: (v.half() if fp16 and v.is_floating_point() else v).contiguous() for k, v in state.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata={CONFIG_KEY: json.dumps(to_dict(cfg)), "format": "pt",
                                           "dtype": "float16" if fp16 else "float32"})
    tmp.replace(path)
    return path


def load_exported(path: Path) -> tuple[ExperimentConfig, dict[str, torch.Tensor]]:
    """(embedded config, float32 state dict) of an :func:`export_model` file; CheckpointError if it is missing,
    unreadable or has no embedded config."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: exported model not found")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    except Exception as exc:  # safetensors raises SafetensorError / OSError for a damaged header or body
        raise CheckpointError(f"{path}: corrupt .safetensors file ({type(exc).__name__}: {exc})") from None
    if CONFIG_KEY not in meta:
        raise CheckpointError(f"{path}: no embedded pgocc config (metadata key {CONFIG_KEY!r}); pass --config")
    try:
        cfg = config_from_json(meta[CONFIG_KEY])
    except ConfigError as exc:
        raise CheckpointError(f"{path}: embedded config is invalid ({exc})") from None
    state = {k: v.float() if v.dtype == torch.float16 else v for k, v in state.items()}
    return cfg, state
