"""``pgocc convert-checkpoint``: the released names (docs/model.md §9.1) onto ours, tested on synthetic state dicts.

The released file is not available here, so a state dict with its names is written by hand from §9.1 (independently
of the converter's rules) with the shapes of the model being converted into.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from configs.released import released
from configs.tiny import tiny
from pgocc.cli import main
from pgocc.config import KernelConfig, ModelConfig
from pgocc.errors import CheckpointError
from pgocc.model import PGOcc
from pgocc.model.state_keys import RELEASED_BUFFERS, convert_released
from pgocc.training.checkpoint import load_exported

DEC = "pts_bbox_head.transformer.gaussians_decoder."


def released_names(cfg: ModelConfig) -> dict[str, tuple[int, ...]]:
    """Every learned tensor of the released model (§9.1) with its shape for ``cfg``'s sizes."""
    C, G, P, L, T = cfg.embed_dims, cfg.num_groups, cfg.num_points, cfg.num_levels, cfg.num_frames
    Cg, Hd, D = C // G, cfg.head_dims, cfg.ov_dims
    mix = G * (Cg * Cg + cfg.num_mix_points * T * P)
    names: dict[str, tuple[int, ...]] = {}
    w = cfg.backbone_width
    names["img_backbone.conv1.weight"] = (w, 3, 7, 7)
    for bn, ch in (("img_backbone.bn1", w),):
        for s in ("weight", "bias", "running_mean", "running_var"):
            names[f"{bn}.{s}"] = (ch,)
        names[f"{bn}.num_batches_tracked"] = ()
    in_ch = w
    for i, blocks in enumerate(cfg.backbone_layers):
        width = w * 2**i
        for k in range(blocks):
            pre = f"img_backbone.layer{i + 1}.{k}"
            cin = in_ch if k == 0 else width * 4
            for j, shape in ((1, (width, cin, 1, 1)), (2, (width, width, 3, 3)), (3, (width * 4, width, 1, 1))):
                names[f"{pre}.conv{j}.weight"] = shape
                for s in ("weight", "bias", "running_mean", "running_var"):
                    names[f"{pre}.bn{j}.{s}"] = (shape[0],)
                names[f"{pre}.bn{j}.num_batches_tracked"] = ()
            if k == 0:
                names[f"{pre}.downsample.0.weight"] = (width * 4, cin, 1, 1)
                for s in ("weight", "bias", "running_mean", "running_var"):
                    names[f"{pre}.downsample.1.{s}"] = (width * 4,)
                names[f"{pre}.downsample.1.num_batches_tracked"] = ()
        in_ch = width * 4
    for lvl in range(L):
        names[f"img_neck.lateral_convs.{lvl}.conv.weight"] = (C, w * 4 * 2**lvl, 1, 1)
        names[f"img_neck.lateral_convs.{lvl}.conv.bias"] = (C,)
        names[f"img_neck.fpn_convs.{lvl}.conv.weight"] = (C, C, 3, 3)
        names[f"img_neck.fpn_convs.{lvl}.conv.bias"] = (C,)
    names[DEC + "query_embeds.weight"] = (sum(cfg.num_queries), C)
    for s in range(len(cfg.num_queries)):
        lay = f"{DEC}decoder_layers.{s}."
        for i, shape in ((0, (C, 3)), (1, (C,)), (3, (C, C)), (4, (C,))):
            names[f"{lay}position_encoder.{i}.weight"] = shape
            names[f"{lay}position_encoder.{i}.bias"] = (C,)
        names[f"{lay}self_attn.attention.attn.in_proj_weight"] = (3 * C, C)
        names[f"{lay}self_attn.attention.attn.in_proj_bias"] = (3 * C,)
        names[f"{lay}self_attn.attention.attn.out_proj.weight"] = (C, C)
        names[f"{lay}self_attn.attention.attn.out_proj.bias"] = (C,)
        names[f"{lay}self_attn.gen_tau.weight"] = (cfg.num_heads, C)
        names[f"{lay}self_attn.gen_tau.bias"] = (cfg.num_heads,)
        for n in (1, 2, 3):
            names[f"{lay}norm{n}.weight"] = names[f"{lay}norm{n}.bias"] = (C,)
        for name, rows in (("sampling.sampling_offset", G * P * 3), ("sampling.scale_weights", G * P * L),
                           ("mixing.parameter_generator", mix)):
            names[f"{lay}{name}.weight"], names[f"{lay}{name}.bias"] = (rows, C), (rows,)
        names[f"{lay}mixing.out_proj.weight"] = (C, G * cfg.num_mix_points * Cg)
        names[f"{lay}mixing.out_proj.bias"] = (C,)
        names[f"{lay}ffn.layers.0.0.weight"], names[f"{lay}ffn.layers.0.0.bias"] = (cfg.ffn_dims, C), (cfg.ffn_dims,)
        names[f"{lay}ffn.layers.1.weight"], names[f"{lay}ffn.layers.1.bias"] = (C, cfg.ffn_dims), (C,)
        for i, shape in ((0, (Hd, C)), (2, (11, Hd))):
            names[f"{DEC}gau_pred_heads.{s}.{i}.weight"], names[f"{DEC}gau_pred_heads.{s}.{i}.bias"] = shape, shape[:1]
        for i, shape in ((0, (Hd, C)), (1, (Hd, Hd)), (2, (D, Hd))):
            names[f"{DEC}ov_heads.{s}.{i}.0.weight"], names[f"{DEC}ov_heads.{s}.{i}.0.bias"] = shape, shape[:1]
    return names


def synthetic_released(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=g) if shape else torch.tensor(7)
             for k, shape in released_names(cfg).items()}
    for key in RELEASED_BUFFERS:
        state[key] = torch.zeros(3)
    return state


def test_default_config_shapes_match_section_9_1() -> None:
    cfg = released().model
    names = released_names(cfg)
    assert names[DEC + "query_embeds.weight"] == (6000, 256)
    assert names[DEC + "decoder_layers.0.mixing.parameter_generator.weight"] == (32768, 256)
    assert names[DEC + "decoder_layers.0.mixing.out_proj.weight"] == (256, 32768)
    assert names[DEC + "decoder_layers.0.sampling.scale_weights.weight"] == (64, 256)
    with torch.device("meta"):
        model = PGOcc(cfg, KernelConfig())              # kernels hold no parameters: any choice has these names
    own = model.state_dict()
    converted = convert_released({k: torch.empty(s, device="meta") for k, s in names.items()}, own)
    assert set(converted) == set(own)
    params = sum(p.numel() for p in model.parameters())
    assert 86e6 < params < 88e6                      # docs/model.md §9: ≈ 87 M


def test_convert_maps_every_tensor_and_loads_strictly() -> None:
    cfg = tiny().model
    src = synthetic_released(cfg)
    model = PGOcc(cfg, tiny().kernels)
    converted = convert_released(src, model.state_dict())
    model.load_state_dict(converted, strict=True)
    own = model.state_dict()
    assert torch.equal(own["backbone.layer2.0.downsample.0.weight"], src["img_backbone.layer2.0.downsample.0.weight"])
    assert torch.equal(own["neck.fpn_convs.3.bias"], src["img_neck.fpn_convs.3.conv.bias"])
    assert torch.equal(own["layers.1.self_attn.in_proj.weight"],
                       src[DEC + "decoder_layers.1.self_attn.attention.attn.in_proj_weight"])
    assert torch.equal(own["layers.2.ffn.fc1.weight"], src[DEC + "decoder_layers.2.ffn.layers.0.0.weight"])
    assert torch.equal(own["ov_heads.0.4.weight"], src[DEC + "ov_heads.0.2.0.weight"])
    assert torch.equal(own["gaussian_heads.1.2.bias"], src[DEC + "gau_pred_heads.1.2.bias"])


def test_convert_lists_missing_unexpected_and_shapes() -> None:
    cfg = tiny().model
    src = synthetic_released(cfg)
    del src[DEC + "decoder_layers.1.norm2.weight"]
    src[DEC + "decoder_layers.7.norm1.weight"] = torch.zeros(32)
    src["pts_bbox_head.something_new"] = torch.zeros(1)
    src[DEC + "query_embeds.weight"] = torch.zeros(5, 32)
    with torch.device("meta"):
        own = PGOcc(cfg, tiny().kernels).state_dict()
    with pytest.raises(CheckpointError) as err:
        convert_released(src, own)
    msg = str(err.value)
    assert "missing (1):\n    layers.1.norm2.weight" in msg
    assert "layers.7.norm1.weight (file: " + DEC + "decoder_layers.7.norm1.weight)" in msg
    assert "unknown released keys (1):\n    pts_bbox_head.something_new" in msg
    assert "query_embeds.weight (file: " + DEC + "query_embeds.weight): file (5, 32) vs model (80, 32)" in msg


def test_cli_converts_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The output is an export whose embedded config is the one converted into (here tiny in released fidelity), so
    ``pgocc infer --checkpoint OUT`` rebuilds that model without --config."""
    cfg = tiny().model
    src_path, out_path = tmp_path / "released.pth", tmp_path / "ours.safetensors"
    torch.save({"meta": {}, "state_dict": synthetic_released(cfg)}, src_path)
    argv = ["convert-checkpoint", str(src_path), "--out", str(out_path), "--config", "configs.tiny:tiny"]
    assert main([*argv, "--set", "model.fidelity=released"]) == 0
    assert f"stored grids dropped) -> {out_path}" in capsys.readouterr().out
    embedded, state = load_exported(out_path)
    assert embedded.model.fidelity == "released"
    assert dataclasses.replace(embedded.model, fidelity="paper") == cfg
    PGOcc(embedded.model, embedded.kernels).load_state_dict(state, strict=True)
    assert main(["convert-checkpoint", str(src_path), "--out", str(tmp_path / "ours.pth"),
                 "--config", "configs.tiny:tiny"]) == 2
    assert "--out" in capsys.readouterr().err and not (tmp_path / "ours.pth").exists()
    bad = synthetic_released(cfg)
    del bad["img_backbone.conv1.weight"]
    torch.save(bad, src_path)
    assert main(["convert-checkpoint", str(src_path), "--out", str(out_path), "--config", "configs.tiny:tiny"]) == 2
    err = capsys.readouterr().err
    assert "released.pth" in err and "missing (1):\n    backbone.conv1.weight" in err
