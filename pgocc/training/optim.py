"""AdamW with the original's parameter groups and its warm-up + cosine schedule (docs/model.md §9).

    groups: every trainable parameter, weight decay on all; lr × low_lr_multiplier where the name contains one of
            train.low_lr_patterns (backbone and sampling offsets: 0.1)
    lr_at(i) = lr · w(i) · c(i)            i = 0 … num_steps − 1 (the step about to be taken)
        w(i) = f + (1 − f) · i / W        for i < W (warm-up from f = warmup_start_factor), else 1
        c(i) = r + (1 − r) · ½ (1 + cos(π i / num_steps))          r = min_lr_ratio

The warm-up multiplies the cosine value, as mmcv's warm-up does on top of its regular schedule; the cosine is updated
every step here (the original updates it once per epoch).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from pgocc.config import TrainConfig


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate (multiplier 1) of optimizer step ``step`` (0-based)."""
    cosine = cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * step / cfg.num_steps))
    warm = 1.0
    if step < cfg.warmup_steps:
        warm = cfg.warmup_start_factor + (1.0 - cfg.warmup_start_factor) * step / cfg.warmup_steps
    return cfg.lr * warm * cosine


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict]:
    """Two AdamW groups of the trainable parameters: ``base`` (lr) and ``low`` (lr × low_lr_multiplier, names
    containing a low_lr_patterns entry); each carries ``names`` and ``lr_scale``. Empty groups are left out."""
    base: list[tuple[str, nn.Parameter]] = []
    low: list[tuple[str, nn.Parameter]] = []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (low if any(pat in name for pat in cfg.low_lr_patterns) else base).append((name, p))
    groups = []
    for label, members, scale in (("base", base, 1.0), ("low", low, cfg.low_lr_multiplier)):
        if members:
            groups.append({"params": [p for _, p in members], "names": [n for n, _ in members], "group": label,
                           "lr_scale": scale, "lr": cfg.lr * scale, "weight_decay": cfg.weight_decay})
    return groups


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> tuple[torch.optim.Optimizer,
                                                                  torch.optim.lr_scheduler.LambdaLR]:
    """AdamW (fused: a step can be skipped on the device through ``optimizer.found_inf``, see :func:`gate_step`)
    and the schedule of :func:`lr_at` (per group × its ``lr_scale``)."""
    groups = param_groups(model, cfg)
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=cfg.weight_decay,
                                  fused=True)
    # LambdaLR multiplies each group's initial lr (cfg.lr × lr_scale) by the factor.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, cfg) / cfg.lr)
    return optimizer, scheduler


def gate_step(optimizer: torch.optim.Optimizer, ok: torch.Tensor) -> None:
    """Make the next ``optimizer.step()`` a no-op on the device where ``ok`` (0-d bool) is false: the fused AdamW
    kernel skips the parameter and moment updates and undoes its step count when ``found_inf`` is 1, without a host
    sync (the same mechanism as the AMP grad scaler)."""
    device = optimizer.param_groups[0]["params"][0].device
    optimizer.found_inf = (~ok).to(device=device, dtype=torch.float32)  # type: ignore[attr-defined]
    optimizer.grad_scale = None  # type: ignore[attr-defined]
