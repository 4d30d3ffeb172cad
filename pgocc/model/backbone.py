"""Image backbone (ResNet, mmdet "pytorch" style) + FPN and weight loading.

docs/model.md §1.2. Parameter names follow mmdet/torchvision (``conv1``, ``bn1``, ``layer{1-4}.{k}.conv{1,2,3}``,
``bn{1,2,3}``, ``downsample.{0,1}``) so that both checkpoint layouts load by prefix stripping alone.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from pgocc.errors import CheckpointError
from pgocc.model.state_keys import key_mismatch
from pgocc.torch_files import load_torch_file

EXPANSION = 4
"""Bottleneck output channels = 4 × its width."""


class Bottleneck(nn.Module):
    """1×1 → 3×3 (carries the stride: mmdet "pytorch" style, torchvision v1.5) → 1×1, BN after each, residual."""

    def __init__(self, in_ch: int, width: int, stride: int) -> None:
        super().__init__()
        out_ch = width * EXPANSION
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False),
                                            nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class ResNet(nn.Module):
    """ResNet with bottleneck blocks; returns the outputs of the four stages (strides 4, 8, 16, 32).

    ``frozen_stages`` = 1 freezes the stem and stage 1 (no gradient, BN statistics fixed); every BatchNorm stays in
    eval mode (running statistics frozen, affine parameters trainable), as mmdet's ``norm_eval=True``.
    """

    def __init__(self, layers: Sequence[int], width: int, frozen_stages: int, checkpoint_blocks: bool) -> None:
        super().__init__()
        self.frozen_stages = frozen_stages
        self.checkpoint_blocks = checkpoint_blocks
        self.conv1 = nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        in_ch = width
        self.out_channels: list[int] = []
        for i, num_blocks in enumerate(layers):
            w = width * 2**i
            blocks = [Bottleneck(in_ch if k == 0 else w * EXPANSION, w, (1 if i == 0 else 2) if k == 0 else 1)
                      for k in range(num_blocks)]
            self.add_module(f"layer{i + 1}", nn.Sequential(*blocks))
            in_ch = w * EXPANSION
            self.out_channels.append(in_ch)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # mmdet's ResNet initialisation when trained from scratch (BatchNorm keeps weight 1, bias 0).
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        self._freeze()

    def _frozen_modules(self) -> list[nn.Module]:
        mods: list[nn.Module] = [self.conv1, self.bn1] if self.frozen_stages >= 0 else []
        mods += [getattr(self, f"layer{i}") for i in range(1, self.frozen_stages + 1)]
        return mods

    def _freeze(self) -> None:
        for m in self._frozen_modules():
            for p in m.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> ResNet:
        super().train(mode)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eval()
        return self

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """x [B', 3, H, W] normalised RGB → 4 maps [B', C_i, H/s_i, W/s_i], s = 4, 8, 16, 32."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.max_pool2d(x, 3, stride=2, padding=1)
        outs = []
        for i in range(len(self.out_channels)):
            for block in getattr(self, f"layer{i + 1}"):
                # Non-reentrant checkpointing keeps the parameter gradients of a block whose input needs none.
                if self.checkpoint_blocks and self.training and torch.is_grad_enabled() and i >= self.frozen_stages:
                    x = checkpoint(block, x, use_reentrant=False)
                else:
                    x = block(x)
            outs.append(x)
        return outs


class FPN(nn.Module):
    """mmdet FPN: 1×1 laterals → top-down nearest upsampling to the finer size → 3×3 convs; no norm, no activation."""

    def __init__(self, in_channels: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.lateral_convs = nn.ModuleList(nn.Conv2d(c, out_channels, 1) for c in in_channels)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in in_channels)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                # mmdet's FPN initialises its convs Xavier-uniform with zero bias.
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats, strict=True)]
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + F.interpolate(laterals[i], size=laterals[i - 1].shape[-2:],
                                                              mode="nearest")
        return [conv(lat) for conv, lat in zip(self.fpn_convs, laterals, strict=True)]


def load_resnet_weights(resnet: ResNet, path: str | Path) -> None:
    """Load ResNet weights from a local file in torchvision or mmdet key layout (no network).

    Accepts a bare state dict or one wrapped under ``state_dict``/``model``. In a detector file (keys containing
    ``backbone.``, e.g. mmdet's ``backbone.*`` or the released ``img_backbone.*``) only the backbone is read and
    everything up to ``backbone.`` is stripped; otherwise ``module.`` is stripped and the classifier (``fc.*``) is
    ignored. Every backbone parameter and buffer must be present with its shape.

    Raises:
        CheckpointError: unreadable file, or missing / unexpected / mis-shaped keys (all listed).
    """
    raw = load_torch_file(Path(path), "ResNet weights", "model.backbone_weights")
    for wrapper in ("state_dict", "model"):
        if isinstance(raw, dict) and wrapper in raw and isinstance(raw[wrapper], dict):
            raw = raw[wrapper]
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a state dict, got {type(raw).__name__}")
    # A detector file (mmdet, or the released PG-Occ one) holds the backbone under "...backbone." next to other
    # modules; a classification file (torchvision) holds it at the top level next to "fc.".
    detector = any("backbone." in k for k in raw)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for key, value in raw.items():
        if detector:
            if "backbone." not in key:
                continue
            key = key.split("backbone.", 1)[1]
        key = key.removeprefix("module.")
        if not key.startswith("fc."):
            state[key] = value
    own = resnet.state_dict()
    # BatchNorm's num_batches_tracked is absent from older torchvision files and never read in eval-mode BN.
    required = {k for k in own if not k.endswith("num_batches_tracked")}
    problem = key_mismatch(own, state, required=required)
    if problem:
        raise CheckpointError(f"{path}: ResNet weights do not match the backbone (model.backbone_layers, "
                              f"model.backbone_width)\n{problem}")
    resnet.load_state_dict(state, strict=False)
