"""Backbone (ResNet, mmdet "pytorch" style) + FPN: structure, freezing, BN eval, checkpointing, weight loading,
feature cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pgocc.errors import CheckpointError
from pgocc.model.backbone import FPN, ResNet, load_resnet_weights


def test_resnet50_structure() -> None:
    net = ResNet((3, 4, 6, 3), 64, frozen_stages=1, checkpoint_blocks=True)
    assert sum(p.numel() for p in net.parameters()) == 23_508_032        # torchvision resnet50 without fc
    assert net.out_channels == [256, 512, 1024, 2048]
    # stride in the 3×3 conv of each stage's first block ("pytorch" style), not in the 1×1
    for i in (2, 3, 4):
        block = getattr(net, f"layer{i}")[0]
        assert block.conv1.stride == (1, 1) and block.conv2.stride == (2, 2) and block.downsample[0].stride == (2, 2)
    fpn = FPN(net.out_channels, 256)
    assert sum(p.numel() for p in fpn.parameters()) == 3_344_384
    with torch.no_grad():
        outs = fpn(net.eval()(torch.randn(1, 3, 64, 96)))
    assert [tuple(o.shape) for o in outs] == [(1, 256, 16, 24), (1, 256, 8, 12), (1, 256, 4, 6), (1, 256, 2, 3)]


def test_frozen_stem_and_stage1_and_bn_eval() -> None:
    net = ResNet((1, 1, 1, 1), 8, frozen_stages=1, checkpoint_blocks=False).train()
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith(("conv1", "bn1", "layer1")) for n in frozen)
    assert all(p.requires_grad for n, p in net.named_parameters() if n.startswith(("layer2", "layer3", "layer4")))
    assert all(not m.training for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    before = {k: v.clone() for k, v in net.state_dict().items() if "running" in k}
    net(torch.randn(2, 3, 32, 32)).__getitem__(-1).sum().backward()
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items() if "running" in k)
    # BN affine parameters of unfrozen stages still learn
    assert net.layer2[0].bn1.weight.grad is not None


def test_checkpointing_changes_no_value_or_gradient() -> None:
    torch.manual_seed(0)
    a = ResNet((1, 2, 1, 1), 8, frozen_stages=1, checkpoint_blocks=True).train()
    b = ResNet((1, 2, 1, 1), 8, frozen_stages=1, checkpoint_blocks=False).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 32, 64)
    outs_a, outs_b = a(x), b(x)
    sum(o.square().sum() for o in outs_a).backward()
    sum(o.square().sum() for o in outs_b).backward()
    for oa, ob in zip(outs_a, outs_b, strict=True):
        assert torch.allclose(oa, ob)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        assert (pa.grad is None) == (pb.grad is None), n
        if pa.grad is not None:
            assert torch.allclose(pa.grad, pb.grad, rtol=1e-5, atol=1e-6), n


def test_fpn_top_down_by_hand() -> None:
    fpn = FPN([4, 6], 3)
    c2, c3 = torch.randn(1, 4, 4, 6), torch.randn(1, 6, 2, 3)
    out = fpn([c2, c3])
    lat2 = F.conv2d(c2, fpn.lateral_convs[0].weight, fpn.lateral_convs[0].bias)
    lat3 = F.conv2d(c3, fpn.lateral_convs[1].weight, fpn.lateral_convs[1].bias)
    top = lat2 + lat3.repeat_interleave(2, -1).repeat_interleave(2, -2)        # nearest ×2
    assert torch.allclose(out[0], F.conv2d(top, fpn.fpn_convs[0].weight, fpn.fpn_convs[0].bias, padding=1),
                          atol=1e-6)
    assert torch.allclose(out[1], F.conv2d(lat3, fpn.fpn_convs[1].weight, fpn.fpn_convs[1].bias, padding=1),
                          atol=1e-6)


def _tiny() -> ResNet:
    return ResNet((1, 1, 1, 1), 8, frozen_stages=1, checkpoint_blocks=False)


@pytest.mark.parametrize("layout", ["torchvision", "mmdet", "released"])
def test_load_weights_in_each_layout(tmp_path: Path, layout: str) -> None:
    src = _tiny()
    for p in src.parameters():
        p.data.normal_()
    state = src.state_dict()
    if layout == "torchvision":
        # older torchvision files carry no num_batches_tracked; they do carry the classifier
        blob = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        blob["fc.weight"], blob["fc.bias"] = torch.randn(10, 256), torch.randn(10)
    elif layout == "mmdet":
        blob = {"meta": {}, "state_dict": {**{f"backbone.{k}": v for k, v in state.items()},
                                           "neck.lateral_convs.0.conv.weight": torch.randn(3, 3)}}
    else:
        blob = {**{f"img_backbone.{k}": v for k, v in state.items()}, "img_neck.fpn_convs.0.conv.bias": torch.zeros(3)}
    path = tmp_path / "w.pth"
    torch.save(blob, path)
    dst = _tiny()
    load_resnet_weights(dst, path)
    for k, v in dst.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            assert torch.equal(v, state[k]), k


def test_load_weights_lists_missing_unexpected_and_shapes(tmp_path: Path) -> None:
    state = _tiny().state_dict()
    del state["layer2.0.conv1.weight"]
    state["layer9.0.conv1.weight"] = torch.zeros(1)
    state["layer3.0.bn1.weight"] = torch.zeros(5)
    path = tmp_path / "bad.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_resnet_weights(_tiny(), path)
    msg = str(err.value)
    assert "missing (1)" in msg and "layer2.0.conv1.weight" in msg
    assert "unexpected (1)" in msg and "layer9.0.conv1.weight" in msg
    assert "wrong shape (1)" in msg and "layer3.0.bn1.weight: file (5,) vs model (32,)" in msg
    with pytest.raises(CheckpointError, match="ResNet weights not found"):
        load_resnet_weights(_tiny(), tmp_path / "absent.pth")
