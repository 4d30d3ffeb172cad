"""Apply activation checkpointing, torch.compile and data parallelism to a built :class:`~pgocc.model.PGOcc`.

    activation checkpointing  already in the model (``model.checkpoint_activations``: every trainable bottleneck,
                              the decoder's attention, sampling and mixing, non-reentrant, as the original); nothing
                              is added here
    torch.compile (train.compile)
        compiled per block with ``module.compile()`` (in place: parameter names and state dicts are unchanged):
        every backbone bottleneck, the FPN, each decoder layer's position encoder and FFN, the Gaussian and
        open-vocabulary heads — plain convolutions, linears, norms and activations with static shapes
        eager: the decoder's self-attention, sampling and AdaptiveMixing, the FPS, the renderer and the losses.
        They call the registry's ops, whose implementations read sizes on the host (the reference fps reads the
        candidate counts, the Triton launchers compute grids and tile-intersection counts from tensor values) and
        whose Triton kernels are wrapped in autograd Functions that dynamo cannot trace; a full-graph compile of
        the model would break the graph at each of them, so only the blocks between them are compiled.
    data parallelism (more than one process)
        train.fsdp: FSDP2 ``fully_shard`` per decoder layer (``model.layers[i]``), per backbone stage (the
        bottlenecks of ``model.backbone.layer{1..4}`` as one group each), then the root; with autocast bf16 on CUDA
        the parameters are gathered in bf16 and gradients reduced in float32
        otherwise: DDP (the whole gradient all-reduced after backward)
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from pgocc.config import TrainConfig


def compile_blocks(model: nn.Module, names: tuple[str, ...] | None = None) -> list[str]:
    """``module.compile()`` the compilable blocks (see the module docstring), or only those whose qualified name
    starts with one of ``names``; returns the qualified names compiled."""
    blocks: list[tuple[str, nn.Module]] = []
    backbone = model.backbone  # type: ignore[attr-defined]
    for i in range(len(backbone.out_channels)):
        blocks += [(f"backbone.layer{i + 1}.{k}", b) for k, b in enumerate(getattr(backbone, f"layer{i + 1}"))]
    blocks.append(("neck", model.neck))  # type: ignore[attr-defined]
    for s, layer in enumerate(model.layers):  # type: ignore[attr-defined]
        blocks += [(f"layers.{s}.pos_encoder", layer.pos_encoder), (f"layers.{s}.ffn", layer.ffn)]
    for s, head in enumerate(model.gaussian_heads):  # type: ignore[attr-defined]
        blocks.append((f"gaussian_heads.{s}", head))
    for s, head in enumerate(model.ov_heads):  # type: ignore[attr-defined]
        blocks.append((f"ov_heads.{s}", head))
    done = []
    for name, block in blocks:
        if names is None or any(name == n or name.startswith(n + ".") for n in names):
            block.compile(dynamic=False)
            done.append(name)
    return done


def is_compiled(module: nn.Module) -> bool:
    """True once ``module.compile()`` ran on it."""
    return getattr(module, "_compiled_call_impl", None) is not None


def apply_fsdp(model: nn.Module, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """FSDP2 over every process of the default group (see the module docstring); returns ``model`` (in place)."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    mesh = init_device_mesh(device.type, (dist.get_world_size(),))
    mp = MixedPrecisionPolicy()
    if cfg.autocast == "bf16" and device.type == "cuda":
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    backbone = model.backbone  # type: ignore[attr-defined]
    for i in range(len(backbone.out_channels)):
        # ResNet.forward calls the bottlenecks one by one (to checkpoint each), never the stage Sequential, so the
        # stage is sharded as one group of its blocks (the pre-forward hook is on each block).
        stage = list(getattr(backbone, f"layer{i + 1}"))
        fully_shard(stage, mesh=mesh, mp_policy=mp)
    for layer in model.layers:  # type: ignore[attr-defined]
        fully_shard(layer, mesh=mesh, mp_policy=mp)
    fully_shard(model, mesh=mesh, mp_policy=mp)
    return model


def parallelize(model: nn.Module, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """Compile (train.compile), then shard (FSDP2) or replicate (DDP) when more than one process runs; returns the
    module to call (the model itself except under DDP). Parameter names stay those of the built model."""
    if cfg.compile:
        compile_blocks(model)
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return model
    if cfg.fsdp:
        return apply_fsdp(model, cfg, device)
    return nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
