"""Online inference as a car runs it (docs/performance.md §1): the ``online`` loader decodes only the current images,
the model takes the past frames' features from its FeatureCache, and the result equals offline inference (every
image decoded and run through the backbone) on the tiny synthetic world, sample by sample in scene order."""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from configs.tiny import tiny
from pgocc.data import OccDataset, build_index
from pgocc.data.layout import CAMERAS
from pgocc.model import FeatureCache, PGOcc, PGOccLoss
from tests.data_fixtures import TINY_SPEC, decoded_jpegs, tiny_world  # noqa: F401

N = len(CAMERAS)
T = 3
"""Frames per sample: the third keyframe of a scene takes both past frames from the cache."""
SIZES = {"input_size": (96, 176), "render_size": (45, 80)}
"""Small network and render sizes keep the reference kernels fast on CPU."""


@pytest.fixture(scope="module")
def datasets(tiny_world: Path) -> tuple[OccDataset, OccDataset]:  # noqa: F811
    index = build_index(tiny_world, TINY_SPEC.version, "all")
    test, online = (OccDataset(index, num_frames=T, mode=mode, feature_dim=384, **SIZES)
                    for mode in ("test", "online"))
    return test, online


def test_online_loader_decodes_the_current_images_only(datasets: tuple[OccDataset, OccDataset],
                                                       decoded_jpegs: list[Path]) -> None:  # noqa: F811
    test, online = datasets
    decoded = decoded_jpegs
    ix = online.index
    for i in range(len(online)):
        decoded.clear()
        got = online[i]
        # exactly the sample's six current JPEGs, each once
        assert Counter(decoded) == Counter(ix.dataroot / str(ix.frame_path[f]) for f in ix.cams[i])
        want = test[i]
        assert got.images.shape == (1, N, 3, *SIZES["input_size"]) and got.features is None
        assert torch.equal(got.images, want.images[:, :N])
        assert torch.equal(got.render_gt, want.render_gt[:, :N])
        assert got.filenames == want.filenames and got.num_frames == T
        for name in ("ego2img", "lidar2img", "ego2lidar", "cam2ego", "render_k", "depth", "t0_2_x_geo",
                     "source_valid", "timestamps", "semantics", "mask_camera", "mask_lidar"):
            assert torch.equal(getattr(got, name), getattr(want, name)), name
    # the test-mode loader decodes every frame (and the neighbouring sweeps): the counter sees more
    decoded.clear()
    test[len(test) - 1]
    assert len(decoded) > N


@pytest.mark.parametrize("mode", ["test", "online"])
def test_without_render_images_nothing_else_changes(datasets: tuple[OccDataset, OccDataset], mode: str,
                                                    decoded_jpegs: list[Path],  # noqa: F811
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """``with_render=False`` (inference without pictures): no render image is made (no LANCZOS resize, and in test
    mode no neighbouring sweep decoded), ``render_gt`` is None, every other field is the same."""
    from PIL import Image

    full = datasets[0] if mode == "test" else datasets[1]
    lean = OccDataset(full.index, num_frames=T, mode=mode, feature_dim=384, with_render=False, **SIZES)
    resized = []                                       # the resampling filter of every resize
    resize = Image.Image.resize
    monkeypatch.setattr(Image.Image, "resize",
                        lambda im, size, *a, **k: resized.append(a[:1]) or resize(im, size, *a, **k))
    ix = full.index
    i = len(full) - 1                                  # a scene's last keyframe: it has previous sweeps
    decoded_jpegs.clear()
    got = lean[i]
    frames = set(ix.cams[i]) if mode == "online" else {int(f) for f in [*ix.cams[i], *lean.past_frames(i).ravel()]}
    assert Counter(decoded_jpegs) == Counter(ix.dataroot / str(ix.frame_path[f]) for f in frames)
    assert (Image.Resampling.LANCZOS,) not in resized
    want = full[i]
    assert got.render_gt is None and want.render_gt is not None
    for name in ("images", "ego2img", "lidar2img", "ego2lidar", "cam2ego", "render_k", "depth", "t0_2_x_geo",
                 "source_valid", "timestamps", "semantics", "mask_camera", "mask_lidar"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name
    assert (got.features is None) == (mode == "online")
    with pytest.raises(ValueError, match=r"^OccDataset: mode 'train' needs the render images"):
        OccDataset(full.index, num_frames=T, mode="train", with_render=False, **SIZES)


def test_online_inference_with_the_cache_equals_offline_inference(datasets: tuple[OccDataset, OccDataset]
                                                                  ) -> None:
    torch.manual_seed(0)
    cfg = tiny()
    model = PGOcc(replace(cfg.model, num_frames=T), cfg.kernels).eval()
    test, online = datasets
    cache = FeatureCache(capacity=2 * T)
    with torch.no_grad():
        for i in range(len(online)):  # both scenes, in order: the second starts with the first's frames cached
            offline = model(test[i])
            live = model(online[i], cache=cache)
            offline.checks.raise_if_failed()
            live.checks.raise_if_failed()
            # The backbone sees the same uint8 images, batched differently (6 images instead of T·6), so float32
            # convolutions may round differently by a few ulps; the rest of the network is the same computation.
            for s, (a, b) in enumerate(zip(offline.stages, live.stages, strict=True)):
                for f in dataclasses.fields(a):
                    torch.testing.assert_close(getattr(b, f.name), getattr(a, f.name), rtol=1e-5, atol=1e-5,
                                               msg=lambda m, i=i, s=s, f=f.name: f"sample {i} stage {s} {f}: {m}")
            assert torch.equal(live.num_candidates, offline.num_candidates)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (runs in bench/run_gpu.sh)")
@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_graphed_online_frames_give_the_labels_of_eager_ones(datasets: tuple[OccDataset, OccDataset],
                                                             autocast: torch.dtype | None) -> None:
    """Both scenes in order, every op on Triton: the replayed graph (captured on the first frame, its cache slots
    planned before each replay) gives each frame the labels and final Gaussians of the eager online path."""
    from configs.base import base
    from pgocc.eval.graphed import GraphedFrames
    from pgocc.eval.loop import predict_labels
    from pgocc.model import Readout
    from tests.test_readout import OCC3D_COLUMNS

    torch.manual_seed(0)
    cfg = tiny()
    mcfg = replace(cfg.model, num_frames=T)
    kernels = base().kernels
    model, readout = PGOcc(mcfg, kernels).cuda().eval(), Readout(mcfg, kernels).cuda()
    text = torch.randn(len(OCC3D_COLUMNS), mcfg.ov_dims, device="cuda")
    graphed = GraphedFrames(model, readout, text, OCC3D_COLUMNS, FeatureCache(capacity=2 * T), autocast=autocast)
    eager_cache = FeatureCache(capacity=2 * T)
    _, online = datasets
    for i in range(len(online)):
        batch = online[i].to("cuda")
        want = predict_labels(model, readout, batch, text, OCC3D_COLUMNS, cache=eager_cache, autocast=autocast)
        got = graphed(batch)
        got.prediction.checks.raise_if_failed()
        assert torch.equal(got.labels, want.labels), f"sample {i}"
        torch.testing.assert_close(got.prediction.final.means, want.prediction.final.means)
    assert graphed.replays == len(online)


def test_online_batches_need_the_cache_in_scene_order(datasets: tuple[OccDataset, OccDataset]) -> None:
    cfg = tiny()
    model = PGOcc(replace(cfg.model, num_frames=T), cfg.kernels).eval()
    _, online = datasets
    third = online[2]  # the third keyframe of the first scene: its two past keyframes are not in a fresh cache
    with torch.no_grad(), pytest.raises(KeyError, match=r"frame 1 of sample 0\) is neither in the feature cache"):
        model(third, cache=FeatureCache())
    with torch.no_grad(), pytest.raises(ValueError, match="images of 1 of its 3 frames"):
        model(third)
    with pytest.raises(ValueError, match="online loader"):
        PGOccLoss(replace(cfg.model, num_frames=T), cfg.loss, cfg.kernels)(model(online[0], cache=FeatureCache()),
                                                                           online[0])
