"""State-dict bookkeeping: reading a state-dict file safely, comparing its keys with a model's, and the released
checkpoint's names.

The authors' release (docs/model.md §9.1) names modules after mmdet3d's detector structure; :func:`released_to_ours`
maps each of its learned tensors onto this project's :class:`~pgocc.model.pgocc.PGOcc` names and lists the
non-learned tensors it stores that have no counterpart here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from pgocc.errors import CheckpointError
from pgocc.torch_files import load_torch_file

RELEASED_DECODER = "pts_bbox_head.transformer.gaussians_decoder."
"""Prefix of the released decoder, query table and heads."""

RELEASED_BUFFERS = (
    "pts_bbox_head.backproject_depth.id_coords",
    "pts_bbox_head.backproject_depth.ones",
    "pts_bbox_head.backproject_depth.pix_coords",
    RELEASED_DECODER + "backproject_depth.id_coords",
    RELEASED_DECODER + "backproject_depth.ones",
    RELEASED_DECODER + "backproject_depth.pix_coords",
    "pts_bbox_head.voxelizer.vol_range",
    "pts_bbox_head.voxelizer.grid_coords",
)
"""Non-learned tensors the released checkpoint stores (pixel grids, voxel grid); recomputed here, so dropped."""

# (released pattern, our name as a format string of the groups or a function of them). Decoder patterns are matched
# against the key without RELEASED_DECODER.
Rule = tuple[str, str | Callable[[tuple[str, ...]], str]]
_BACKBONE: list[Rule] = [(r"img_backbone\.(.+)", "backbone.{0}")]
_NECK: list[Rule] = [(r"img_neck\.(lateral_convs|fpn_convs)\.(\d+)\.conv\.(weight|bias)", "neck.{0}.{1}.{2}")]
_DECODER: list[Rule] = [
    (r"query_embeds\.weight", "query_embeds.weight"),
    (r"decoder_layers\.(\d+)\.position_encoder\.([0134])\.(weight|bias)", "layers.{0}.pos_encoder.{1}.{2}"),
    (r"decoder_layers\.(\d+)\.self_attn\.attention\.attn\.in_proj_(weight|bias)", "layers.{0}.self_attn.in_proj.{1}"),
    (r"decoder_layers\.(\d+)\.self_attn\.attention\.attn\.out_proj\.(weight|bias)",
     "layers.{0}.self_attn.out_proj.{1}"),
    (r"decoder_layers\.(\d+)\.self_attn\.gen_tau\.(weight|bias)", "layers.{0}.self_attn.gen_tau.{1}"),
    (r"decoder_layers\.(\d+)\.norm([123])\.(weight|bias)", "layers.{0}.norm{1}.{2}"),
    (r"decoder_layers\.(\d+)\.sampling\.(sampling_offset|scale_weights)\.(weight|bias)", "layers.{0}.sampling.{1}.{2}"),
    (r"decoder_layers\.(\d+)\.mixing\.(parameter_generator|out_proj)\.(weight|bias)", "layers.{0}.mixing.{1}.{2}"),
    (r"decoder_layers\.(\d+)\.ffn\.layers\.0\.0\.(weight|bias)", "layers.{0}.ffn.fc1.{1}"),
    (r"decoder_layers\.(\d+)\.ffn\.layers\.1\.(weight|bias)", "layers.{0}.ffn.fc2.{1}"),
    (r"gau_pred_heads\.(\d+)\.([02])\.(weight|bias)", "gaussian_heads.{0}.{1}.{2}"),
    # The released OV head is three blocks each starting with its Linear; ours is one Sequential with ReLUs between.
    (r"ov_heads\.(\d+)\.([012])\.0\.(weight|bias)", lambda g: f"ov_heads.{g[0]}.{2 * int(g[1])}.{g[2]}"),
]


def released_to_ours(key: str) -> str | None:
    """Our name of the released checkpoint's tensor ``key``; None when the key is not a learned tensor we know."""
    rules = _BACKBONE + _NECK
    name = key
    if key.startswith(RELEASED_DECODER):
        rules, name = _DECODER, key[len(RELEASED_DECODER):]
    for pattern, template in rules:
        m = re.fullmatch(pattern, name)
        if m:
            return template(m.groups()) if callable(template) else template.format(*m.groups())
    return None


def convert_released(released: Mapping[str, torch.Tensor], own: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the released checkpoint's tensors to ours and check them against the model's state dict.

    The stored pixel/voxel grids (:data:`RELEASED_BUFFERS`) are dropped; BatchNorm ``num_batches_tracked``
    counters absent from the file are added as 0 (eval-mode BN never reads them).

    Args:
        released: the released state dict (``state_dict`` already unwrapped).
        own: our model's state dict (shapes only are read: a meta-device model will do).

    Returns:
        our state dict, loadable with ``load_state_dict(strict=True)``.

    Raises:
        CheckpointError: listing every missing, unexpected (unknown released names included) and mis-shaped key.
    """
    converted: dict[str, torch.Tensor] = {}
    source: dict[str, str] = {}
    unknown = []
    for key, value in released.items():
        if key in RELEASED_BUFFERS:
            continue
        name = released_to_ours(key)
        if name is None:
            unknown.append(key)
            continue
        converted[name] = value
        source[name] = key
    for key in own:
        if key.endswith("num_batches_tracked") and key not in converted:
            converted[key] = torch.zeros((), dtype=torch.long)
    problem = key_mismatch(own, converted, source=source) + _listing("unknown released keys", sorted(unknown))
    if problem:
        raise CheckpointError(f"the released checkpoint does not match the model\n{problem}")
    return converted


def key_mismatch(own: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], *,
                 required: set[str] | None = None, source: Mapping[str, str] | None = None) -> str:
    """Describe how ``given`` differs from ``own`` (missing, unexpected, wrong shape); "" when it matches.

    Args:
        own: the model's state dict.
        given: the tensors to load.
        required: keys of ``own`` that must be present (default: all).
        source: original file name of a key of ``given``, shown beside it.
    """
    required = set(own) if required is None else required
    source = source or {}

    def named(k: str) -> str:
        return f"{k} (file: {source[k]})" if k in source else k

    missing = sorted(required - set(given))
    unexpected = sorted(named(k) for k in set(given) - set(own))
    shapes = sorted(f"{named(k)}: file {tuple(given[k].shape)} vs model {tuple(own[k].shape)}"
                    for k in set(own) & set(given) if tuple(given[k].shape) != tuple(own[k].shape))
    return _listing("missing", missing) + _listing("unexpected", unexpected) + _listing("wrong shape", shapes)


def _listing(title: str, names: list[str], limit: int = 40) -> str:
    if not names:
        return ""
    shown = "\n    ".join(names[:limit])
    more = f"\n    ... and {len(names) - limit} more" if len(names) > limit else ""
    return f"  {title} ({len(names)}):\n    {shown}{more}\n"


def read_state_dict(path: Path, argument: str) -> dict[str, torch.Tensor]:
    """The state dict of the ``torch.save`` file ``path``: a dict of tensors, or one stored under ``'state_dict'``.

    Read by :func:`~pgocc.torch_files.load_torch_file` (tensors and plain containers only). Raises CheckpointError
    naming ``path`` and ``argument`` (the command-line argument it came from) for a missing, foreign, corrupt or
    truncated file, or one whose content is not a state dict.
    """
    raw = load_torch_file(path, "checkpoint file", argument)
    if isinstance(raw, dict) and isinstance(raw.get("state_dict"), dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in raw.items()):
        raise CheckpointError(f"{path}: expected a state dict of tensors (optionally under 'state_dict') ({argument})")
    return raw
