"""The converter checked against the original's state-dict names, written here from the authors' source code.

``tests/test_convert.py`` writes the released names from docs/model.md §9.1, the section the converter was written
from. This module writes them again, independently, from the module structure of the original code:
github.com/yanchi-3dv/PG-Occ at commit e28470c1 (``models/sparse_gaussians_decoder.py`` was also read at 705a66ea;
same modules), plus the mmdet / mmcv / mmdet3d modules it builds. Its requirements.txt pins mmcv-full 1.6.0,
mmdet 2.28.2 and mmdet3d 1.0.0rc6; the library files were read at the versions the search index holds, and the
attribute names used below are the same in all of them. Every group of names cites the file and class it comes
from. The shapes are derived from the original's constructor arguments (its ``configs/pgocc.py`` and the literals
in its ``models/*.py``), not from this project's config. Names only are taken from the original, no code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from configs.released import released
from configs.tiny import tiny
from pgocc.config import KernelConfig, ModelConfig
from pgocc.model import PGOcc
from pgocc.model.state_keys import RELEASED_BUFFERS, convert_released, released_to_ours
from tests.test_convert import released_names

HEAD = "pts_bbox_head."
"""models/pgocc.py, class PGOcc (an mmdet3d MVXTwoStageDetector, mmdet3d/models/detectors/mvx_two_stage.py):
the configured parts are the attributes img_backbone, img_neck and pts_bbox_head; PGOcc's own additions
(grid_mask = models/utils.py GridMask, color_aug = GpuPhotoMetricDistortion) hold no tensors."""
DEC = HEAD + "transformer.gaussians_decoder."
"""models/pgocc_head.py PGOccHead.transformer = models/pgocc_transformer.py PGOccTransformer, whose only module is
gaussians_decoder = models/sparse_gaussians_decoder.py SparseGaussiansDecoder."""

Shape = tuple[int, ...]


@dataclass(frozen=True)
class OriginalSizes:
    """The original's constructor arguments (configs/pgocc.py unless noted)."""

    embed_dims: int = 256                                   # _dim_
    num_points: int = 4                                     # _num_points_
    num_groups: int = 4                                     # _num_groups_
    num_frames: int = 8                                     # _num_frames_
    num_queries: tuple[int, ...] = (4000, 1000, 1000)       # _num_queries_; one decoder stage each (coarse,
    #                                                         medium, fine: SparseGaussiansDecoder.layers_scales)
    num_levels: int = 4                                     # transformer num_levels=4; FPN num_outs=4
    resnet_blocks: tuple[int, ...] = (3, 4, 6, 3)           # img_backbone depth=50: mmdet ResNet.arch_settings[50]
    fpn_in_channels: tuple[int, ...] = (256, 512, 1024, 2048)  # img_neck in_channels
    num_heads: int = 8        # SparseGaussiansDecoderLayer builds SparseBEVSelfAttention(num_heads=8)
    ov_out: int = 512         # SparseGaussiansDecoder.ov_heads: last Linear(embed_dims * 4, 512)
    gaussian_out: int = 11    # SparseGaussiansDecoder.gau_pred_heads: last Linear(embed_dims * 4, 11)
    stem_channels: int = 64   # mmdet ResNet defaults stem_channels=64, base_channels=64 (not set in the config)


BN_TENSORS = ("weight", "bias", "running_mean", "running_var")
"""torch BatchNorm2d (mmcv registers 'BN2d' as nn.BatchNorm2d) stores these, plus the scalar num_batches_tracked."""


def _batch_norm(names: dict[str, Shape], prefix: str, channels: int) -> None:
    for t in BN_TENSORS:
        names[f"{prefix}.{t}"] = (channels,)
    names[f"{prefix}.num_batches_tracked"] = ()


def _linear(names: dict[str, Shape], prefix: str, n_in: int, n_out: int) -> None:
    names[f"{prefix}.weight"] = (n_out, n_in)
    names[f"{prefix}.bias"] = (n_out,)


def _layer_norm(names: dict[str, Shape], prefix: str, channels: int) -> None:
    names[f"{prefix}.weight"] = (channels,)
    names[f"{prefix}.bias"] = (channels,)


def original_backbone(s: OriginalSizes) -> dict[str, Shape]:
    """img_backbone: mmdet/models/backbones/resnet.py ResNet (depth 50, style 'pytorch', no deep stem, no DCN)."""
    names: dict[str, Shape] = {}
    # ResNet._make_stem_layer: conv1 (7x7, no bias) and the norm named by build_norm_layer(postfix=1), which
    # mmcv/cnn/bricks/norm.py infer_abbr turns into "bn1" for a BatchNorm.
    names["img_backbone.conv1.weight"] = (s.stem_channels, 3, 7, 7)
    _batch_norm(names, "img_backbone.bn1", s.stem_channels)
    inplanes = s.stem_channels
    for i, blocks in enumerate(s.resnet_blocks):
        planes = s.stem_channels * 2**i                     # ResNet.__init__: base_channels * 2**i
        for k in range(blocks):
            # add_module(f"layer{i + 1}", ResLayer) — mmdet/models/utils/res_layer.py ResLayer is an nn.Sequential
            # of Bottleneck blocks (resnet.py Bottleneck: conv1 1x1, conv2 3x3, conv3 1x1 (expansion 4), each
            # without bias and followed by bn1/bn2/bn3).
            block = f"img_backbone.layer{i + 1}.{k}"
            cin = inplanes if k == 0 else planes * 4
            names[f"{block}.conv1.weight"] = (planes, cin, 1, 1)
            names[f"{block}.conv2.weight"] = (planes, planes, 3, 3)
            names[f"{block}.conv3.weight"] = (planes * 4, planes, 1, 1)
            for j, channels in ((1, planes), (2, planes), (3, planes * 4)):
                _batch_norm(names, f"{block}.bn{j}", channels)
            if k == 0:
                # ResLayer: the first block gets downsample = Sequential(conv 1x1 no bias, norm) whenever the
                # stride is not 1 or inplanes != planes * 4, which holds for the first block of every stage.
                names[f"{block}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                _batch_norm(names, f"{block}.downsample.1", planes * 4)
        inplanes = planes * 4
    return names


def original_neck(s: OriginalSizes) -> dict[str, Shape]:
    """img_neck: mmdet/models/necks/fpn.py FPN (start_level 0, no extra convs, no norm)."""
    names: dict[str, Shape] = {}
    C = s.embed_dims
    # FPN.lateral_convs / FPN.fpn_convs: ModuleLists of mmcv/cnn/bricks/conv_module.py ConvModule, whose
    # convolution is the attribute "conv"; bias='auto' keeps a bias as norm_cfg is None.
    for i, cin in enumerate(s.fpn_in_channels[: s.num_levels]):
        names[f"img_neck.lateral_convs.{i}.conv.weight"] = (C, cin, 1, 1)
        names[f"img_neck.lateral_convs.{i}.conv.bias"] = (C,)
        names[f"img_neck.fpn_convs.{i}.conv.weight"] = (C, C, 3, 3)
        names[f"img_neck.fpn_convs.{i}.conv.bias"] = (C,)
    return names


def original_decoder(s: OriginalSizes) -> dict[str, Shape]:
    """pts_bbox_head.transformer.gaussians_decoder: models/sparse_gaussians_decoder.py SparseGaussiansDecoder."""
    names: dict[str, Shape] = {}
    C, G, P, T, L = s.embed_dims, s.num_groups, s.num_points, s.num_frames, s.num_levels
    # SparseGaussiansDecoder.query_embeds: nn.Embedding(sum of the three query counts, embed_dims).
    names[DEC + "query_embeds.weight"] = (sum(s.num_queries), C)
    for stage in range(len(s.num_queries)):
        # SparseGaussiansDecoder.decoder_layers: ModuleList of SparseGaussiansDecoderLayer (same file).
        lay = f"{DEC}decoder_layers.{stage}."
        # SparseGaussiansDecoderLayer.position_encoder: Sequential(Linear(3, C), LayerNorm, ReLU, Linear(C, C),
        # LayerNorm, ReLU): tensors at indices 0, 1, 3, 4.
        _linear(names, lay + "position_encoder.0", 3, C)
        _layer_norm(names, lay + "position_encoder.1", C)
        _linear(names, lay + "position_encoder.3", C, C)
        _layer_norm(names, lay + "position_encoder.4", C)
        # .self_attn = models/sparsebev_transformer.py SparseBEVSelfAttention: .attention = mmcv
        # (mmcv/cnn/bricks/transformer.py) MultiheadAttention, which wraps torch's nn.MultiheadAttention as
        # .attn (packed in_proj_weight / in_proj_bias, out_proj Linear); .gen_tau = Linear(C, num_heads)
        # (scale_adaptive=True).
        names[lay + "self_attn.attention.attn.in_proj_weight"] = (3 * C, C)
        names[lay + "self_attn.attention.attn.in_proj_bias"] = (3 * C,)
        _linear(names, lay + "self_attn.attention.attn.out_proj", C, C)
        _linear(names, lay + "self_attn.gen_tau", C, s.num_heads)
        # SparseGaussiansDecoderLayer.norm1 (with self_attn), norm2, norm3: LayerNorm(C).
        for n in (1, 2, 3):
            _layer_norm(names, f"{lay}norm{n}", C)
        # .sampling = sparsebev_transformer.py SparseBEVSampling: sampling_offset Linear(C, G * P * 3),
        # scale_weights Linear(C, G * P * L).
        _linear(names, lay + "sampling.sampling_offset", C, G * P * 3)
        _linear(names, lay + "sampling.scale_weights", C, G * P * L)
        # .mixing = sparsebev_transformer.py AdaptiveMixing(in_dim=C, in_points=P * T, n_groups=G,
        # out_points=P * T * G): parameter_generator Linear(C, G * (Cg * Cg + in_points * out_points)),
        # out_proj Linear(Cg * out_points * G, C), with Cg = C // G.
        Cg, p_in, p_out = C // G, P * T, P * T * G
        _linear(names, lay + "mixing.parameter_generator", C, G * (Cg * Cg + p_in * p_out))
        _linear(names, lay + "mixing.out_proj", Cg * p_out * G, C)
        # .ffn = mmcv FFN(C, feedforward_channels=C * 2) with num_fcs=2: layers = Sequential(Sequential(Linear,
        # ReLU, Dropout), Linear, Dropout).
        _linear(names, lay + "ffn.layers.0.0", C, 2 * C)
        _linear(names, lay + "ffn.layers.1", 2 * C, C)
        # SparseGaussiansDecoder.gau_pred_heads: Sequential(Linear(C, 4C), ReLU, Linear(4C, 11)) per stage.
        _linear(names, f"{DEC}gau_pred_heads.{stage}.0", C, 4 * C)
        _linear(names, f"{DEC}gau_pred_heads.{stage}.2", 4 * C, s.gaussian_out)
        # SparseGaussiansDecoder.ov_heads (render_conf use_ov=True): ModuleList of three Sequentials, each
        # starting with its Linear: (C -> 4C, ReLU), (4C -> 4C, ReLU), (4C -> 512).
        for j, (n_in, n_out) in enumerate(((C, 4 * C), (4 * C, 4 * C), (4 * C, s.ov_out))):
            _linear(names, f"{DEC}ov_heads.{stage}.{j}.0", n_in, n_out)
    return names


def original_learned(s: OriginalSizes) -> dict[str, Shape]:
    """Every tensor of the original's state dict that has a counterpart here, with its shape."""
    return original_backbone(s) | original_neck(s) | original_decoder(s)


ORIGINAL_GRIDS = (
    # models/loss_utils.py BackprojectDepth holds id_coords, ones and pix_coords as nn.Parameter(requires_grad=
    # False), so they are in the state dict; PGOccHead.backproject_depth (models/pgocc_head.py) and
    # SparseGaussiansDecoder.backproject_depth each hold one. PGOccHead.project_3d (Project3D) holds no tensor.
    *(f"{HEAD}backproject_depth.{t}" for t in ("id_coords", "ones", "pix_coords")),
    *(f"{DEC}backproject_depth.{t}" for t in ("id_coords", "ones", "pix_coords")),
    # PGOccHead.voxelizer = models/gaussian_voxelizer.py GaussianVoxelizer: register_buffer vol_range, grid_coords.
    f"{HEAD}voxelizer.vol_range",
    f"{HEAD}voxelizer.grid_coords",
)
"""The non-learned tensors of the original's state dict. Not here: PGOccHead.text_proto_embeds and
SparseGaussiansDecoder.unit_quaternion are plain tensor attributes, which a state dict does not hold."""

_OURS = (
    # (original component sequence, ours): applied to the original name from left to right, whole dotted
    # components only. Written from our modules (pgocc/model/): the backbone keeps mmdet's names, the neck holds
    # bare convolutions, the decoder stages are ``layers``, the FFN names its Linears, the OV head is one
    # Sequential with ReLUs at the odd indices.
    ("img_backbone", "backbone"),
    ("img_neck", "neck"),
    ("pts_bbox_head.transformer.gaussians_decoder.decoder_layers", "layers"),
    ("pts_bbox_head.transformer.gaussians_decoder.gau_pred_heads", "gaussian_heads"),
    ("pts_bbox_head.transformer.gaussians_decoder", ""),
    ("position_encoder", "pos_encoder"),
    ("attention.attn.in_proj_weight", "in_proj.weight"),
    ("attention.attn.in_proj_bias", "in_proj.bias"),
    ("attention.attn.out_proj", "out_proj"),
    ("ffn.layers.0.0", "ffn.fc1"),
    ("ffn.layers.1", "ffn.fc2"),
)


def expected_ours(original: str) -> str:
    """Our name of the original's tensor ``original``, derived independently of pgocc/model/state_keys.py."""
    parts = original.split(".")
    if parts[0] == "img_neck":
        parts.remove("conv")                          # ConvModule's .conv: ours is the Conv2d itself
    for old, new in _OURS:
        seq, rep = old.split("."), new.split(".") if new else []
        for i in range(len(parts) - len(seq) + 1):
            if parts[i:i + len(seq)] == seq:
                parts[i:i + len(seq)] = rep
                break
    if parts[0] == "ov_heads":                        # ov_heads.s.j.0 -> ov_heads.s.(2j)
        parts[2:4] = [str(2 * int(parts[2]))]
    return ".".join(parts)


def _meta_model_state(cfg: ModelConfig) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        model = PGOcc(cfg, KernelConfig())            # kernels hold no parameters
    return model.state_dict()


def _original_state(s: OriginalSizes) -> dict[str, torch.Tensor]:
    state = {k: torch.empty(shape, device="meta") for k, shape in original_learned(s).items()}
    for k in ORIGINAL_GRIDS:
        state[k] = torch.empty(0, device="meta")      # values and shapes are not read: the converter drops them
    return state


def test_original_sizes_are_the_released_configs() -> None:
    """The released config (configs/released.py) has the original's sizes, so that the shapes below apply to it."""
    s, m = OriginalSizes(), released().model
    assert (m.embed_dims, m.num_points, m.num_groups, m.num_frames, m.num_levels, m.num_heads) == (
        s.embed_dims, s.num_points, s.num_groups, s.num_frames, s.num_levels, s.num_heads)
    assert m.num_queries == s.num_queries and m.backbone_layers == s.resnet_blocks
    assert (m.ffn_dims, m.head_dims, m.ov_dims) == (2 * s.embed_dims, 4 * s.embed_dims, s.ov_out)
    assert m.num_mix_points == s.num_points * s.num_frames * s.num_groups
    assert m.backbone_width == s.stem_channels


def test_original_names_convert_and_load_strictly_into_the_released_model() -> None:
    """Every tensor of a state dict with the original's names and shapes is mapped, and the result loads strictly."""
    original = _original_state(OriginalSizes())
    with torch.device("meta"):
        model = PGOcc(released().model, KernelConfig())
    own = model.state_dict()
    converted = convert_released(original, own)      # raises on an unknown, missing or mis-shaped key
    assert set(converted) == set(own)
    model.load_state_dict(converted, strict=True, assign=True)
    learned = original_learned(OriginalSizes())
    targets = [released_to_ours(k) for k in learned]
    assert None not in targets and len(set(targets)) == len(learned)   # one-to-one, nothing merged
    assert all(released_to_ours(k) is None for k in ORIGINAL_GRIDS)


def test_every_original_tensor_lands_on_the_expected_name() -> None:
    """Same shapes do not tell norm1 from norm2 or stage 0 from stage 1: check where each tensor goes."""
    original = _original_state(OriginalSizes())
    converted = convert_released(original, _meta_model_state(released().model))
    wrong = [f"{k} -> expected {expected_ours(k)}" for k in original_learned(OriginalSizes())
             if converted.get(expected_ours(k)) is not original[k]]
    assert not wrong, "\n".join(wrong[:20])


def test_original_names_equal_the_hand_written_section_9_1_list() -> None:
    """tests/test_convert.py's released_names (from docs/model.md §9.1) has exactly the original's names; with the
    released sizes, also exactly its shapes."""
    cfg = released().model
    assert released_names(cfg) == original_learned(OriginalSizes())
    small = tiny().model
    sizes = OriginalSizes(num_queries=small.num_queries, resnet_blocks=small.backbone_layers)
    assert set(released_names(small)) == set(original_learned(sizes))


def test_dropped_tensors_are_the_originals_grids() -> None:
    assert set(RELEASED_BUFFERS) == set(ORIGINAL_GRIDS)


def test_original_counts() -> None:
    """Counts by hand, from the original's structure: ResNet-50 has 53 convolutions (1 stem + 16 blocks x 3 + 4
    downsamples) and as many BatchNorms (5 tensors each); the FPN 2 x 4 convolutions with bias; a decoder stage
    4 + 4 (position encoder) + 4 (attention) + 2 (tau) + 6 (norms) + 4 (sampling) + 4 (mixing) + 4 (FFN) tensors,
    each stage's heads 4 + 6, and the query table 1."""
    s = OriginalSizes()
    assert len(original_backbone(s)) == 53 + 53 * 5
    assert len(original_neck(s)) == 16
    assert len(original_decoder(s)) == 1 + 3 * (32 + 10)
    learned = sum(torch.Size(shape).numel() for k, shape in original_learned(s).items()
                  if not k.rsplit(".", 1)[-1].startswith(("running_", "num_batches")))
    assert 86e6 < learned < 88e6                      # docs/model.md §9: ≈ 87 M parameters
