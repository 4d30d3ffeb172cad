"""The real loader on the synthetic world: shapes, geometry checked against the world's ground truth, temporal
sampling, collation, and every bad-input case of the issue."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import torch
from PIL import Image

from pgocc.config import DataConfig
from pgocc.data import Batch, DataFallbackWarning, OccDataset, build_dataset, build_index, collate, make_loader, notices
from pgocc.data import jpeg as jpeg_module
from pgocc.data.geometry import ImageTransform, invert_rigid, matrix_to_quat, quat_to_matrix, render_intrinsics, rigid
from pgocc.data.layout import CAMERAS, target_stem
from pgocc.errors import DataError
from pgocc.synthetic.render import render_camera
from pgocc.synthetic.writer import scene_model
from tests.data_fixtures import TINY_SPEC, clone_world, replace_file, tiny_world  # noqa: F401

VERSION = TINY_SPEC.version
N = len(CAMERAS)


@pytest.fixture(scope="module")
def index(tiny_world: Path):  # noqa: ANN201, F811
    return build_index(tiny_world, VERSION, "all")


def _dataset(index, **kw) -> OccDataset:  # noqa: ANN001
    return OccDataset(index, **{"num_frames": 3, "mode": "train", "feature_dim": 384, **kw})


def _sample(index, scene: str, k: int) -> int:  # noqa: ANN001
    """Index of the k-th keyframe of ``scene``."""
    return int(np.flatnonzero(index.scene_name == scene)[k])


# ---- geometry helpers -----------------------------------------------------------------------------------------


def test_quaternions_and_transforms_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(20):
        q = rng.standard_normal(4)
        q /= np.linalg.norm(q)
        r = quat_to_matrix(q)
        np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
        assert np.linalg.det(r) == pytest.approx(1.0)
        np.testing.assert_allclose(matrix_to_quat(r), q * np.sign(q[0]), atol=1e-9)
        m = rigid(q, rng.standard_normal(3))
        np.testing.assert_allclose(invert_rigid(m) @ m, np.eye(4), atol=1e-12)


def test_image_transform_matches_the_specification_and_scales() -> None:
    nus = ImageTransform.fit((900, 1600), (256, 704), where="x")
    np.testing.assert_allclose(nus.matrix, [[0.44, 0, 0, 0], [0, 0.44, -140, 0], [0, 0, 1, 0], [0, 0, 0, 1]])
    assert nus.resized_size == (396, 704) and nus.crop_top == 140
    quarter = ImageTransform.fit((225, 400), (256, 704), where="x")
    assert quarter.scale == pytest.approx(1.76) and quarter.resized_size == (396, 704) and quarter.crop_top == 140
    with pytest.raises(DataError, match="wide.jpg.*aspect ratio"):
        ImageTransform.fit((100, 1600), (256, 704), where="wide.jpg")
    k = np.array([[1266.0, 0, 816.0], [0, 1266.0, 491.0], [0, 0, 1]])
    np.testing.assert_allclose(render_intrinsics(k, (900, 1600), (180, 320)),
                               [[253.2, 0, 163.2], [0, 253.2, 98.2], [0, 0, 1]])


# ---- the batch ----------------------------------------------------------------------------------------------


def test_batch_fields_shapes_and_devices(index) -> None:  # noqa: ANN001
    ds = _dataset(index, num_frames=3)
    a, b = ds[1], ds[4]
    batch = collate([a, b])
    t = 3 * N
    expected = {
        "images": ((2, t, 3, 256, 704), torch.uint8), "lidar2img": ((2, t, 4, 4), torch.float32),
        "ego2img": ((2, t, 4, 4), torch.float32), "ego2lidar": ((2, 4, 4), torch.float32),
        "cam2ego": ((2, N, 4, 4), torch.float32), "render_k": ((2, N, 3, 3), torch.float32),
        "depth": ((2, N, 1, 180, 320), torch.float32), "features": ((2, N, 384, 14, 25), torch.float32),
        "render_gt": ((2, 3 * N, 180, 320, 3), torch.uint8), "t0_2_x_geo": ((2, 2 * N, 4, 4), torch.float32),
        "timestamps": ((2, t), torch.int64), "semantics": ((2, 200, 200, 16), torch.uint8),
        "mask_camera": ((2, 200, 200, 16), torch.bool), "mask_lidar": ((2, 200, 200, 16), torch.bool),
    }
    for name, (shape, dtype) in expected.items():
        value = getattr(batch, name)
        assert tuple(value.shape) == shape and value.dtype == dtype, name
    assert batch.batch_size == 2 and batch.num_frames == 3 and batch.num_cams == N
    assert batch.sample_tokens == [index.sample_token[1], index.sample_token[4]]
    assert len(batch.filenames) == 2 and len(batch.filenames[0]) == t
    assert all(f"__{CAMERAS[k % N]}__" in name for k, name in enumerate(batch.filenames[0]))
    torch.testing.assert_close(batch.images[1], b.images[0])
    moved = batch.to("meta")
    assert moved.images.device.type == "meta" and moved.semantics.dtype == torch.uint8
    assert moved.sample_tokens == batch.sample_tokens and batch.images.device.type == "cpu"
    without = _dataset(index, with_labels=False)[0]
    assert without.semantics is None and without.mask_camera is None
    with pytest.raises(ValueError, match="semantics"):
        collate([a, without])


def test_projection_finds_world_points_at_the_right_pixel(tiny_world: Path, index) -> None:  # noqa: ANN001, F811
    """Surface points of the world (ray-cast from the world model) projected through ``lidar2img`` land on their
    pixel of the network image, for the current and the past frames, and the image there shows that point."""
    ds = _dataset(index, num_frames=3, mode="test")
    i = _sample(index, "scene-0002", 2)
    batch = ds[i]
    model = scene_model(tiny_world, 1)
    e2g = index.ego2global[i]
    l2e = index.lidar2ego[i]
    tf = ImageTransform.fit((TINY_SPEC.height, TINY_SPEC.width), (256, 704), where="x")
    rng = np.random.default_rng(0)
    for k in range(3 * N):
        t_us, n = int(batch.timestamps[0, k]), k % N
        cam2global = model.ego2global(t_us) @ model.cam2ego[n]
        rgb, depth, _, hit = render_camera(model, cam2global, model.intrinsics[n], t_us)
        # Pixels inside the cropped network view, on objects or ground.
        v_lo = int(np.ceil(tf.crop_top / tf.scale))
        us = rng.integers(0, TINY_SPEC.width, 40)
        vs = rng.integers(v_lo, TINY_SPEC.height, 40)
        keep = hit[vs, us] >= -1
        us, vs = us[keep], vs[keep]
        rays = cam2global[:3, :3] @ np.linalg.solve(model.intrinsics[n], np.stack([us, vs, np.ones_like(us)]))
        world = cam2global[:3, 3:] + rays * depth[vs, us]
        lidar = np.linalg.inv(e2g @ l2e) @ np.vstack([world, np.ones(len(us))])
        p = batch.lidar2img[0, k].double().numpy() @ lidar
        u_net, v_net = p[0] / p[2], p[1] / p[2]
        np.testing.assert_allclose(u_net, tf.scale * us, atol=0.05)
        np.testing.assert_allclose(v_net, tf.scale * vs - tf.crop_top, atol=0.05)
        # The loaded image is the generated image resized and cropped (JPEG and resampling differences only).
        ref = Image.fromarray(np.ascontiguousarray(rgb[:, :, ::-1])).resize(
            (704, 256), Image.Resampling.BICUBIC, box=(0, tf.crop_top / tf.scale, TINY_SPEC.width,
                                                       (tf.crop_top + 256) / tf.scale))
        diff = np.abs(np.asarray(ref, np.float64) - batch.images[0, k].permute(1, 2, 0).numpy())
        assert diff.mean() < 4.0, k
    # ego2img and lidar2img agree; the past frames are the earlier keyframes, projected from the current ego frame.
    torch.testing.assert_close(batch.lidar2img[0], batch.ego2img[0] @ torch.from_numpy(l2e).float(),
                               rtol=1e-4, atol=1e-2)
    torch.testing.assert_close(batch.ego2lidar[0].double(), torch.from_numpy(np.linalg.inv(l2e)), atol=1e-6,
                               rtol=1e-6)
    assert batch.timestamps[0, 0] > batch.timestamps[0, N] > batch.timestamps[0, 2 * N]


def test_calibration_render_intrinsics_and_photometric_transforms(tiny_world: Path, index) -> None:  # noqa: ANN001, F811
    ds = _dataset(index, num_frames=1)
    model = scene_model(tiny_world, 0)
    i = _sample(index, "scene-0001", 1)
    batch = ds[i]
    torch.testing.assert_close(batch.cam2ego[0].double(), torch.from_numpy(model.cam2ego), atol=1e-6, rtol=1e-6)
    for n in range(N):
        k = render_intrinsics(model.intrinsics[n], (TINY_SPEC.height, TINY_SPEC.width), (180, 320))
        torch.testing.assert_close(batch.render_k[0, n].double(), torch.from_numpy(k), atol=1e-4, rtol=1e-6)
    # t0_2_x_geo maps a point from the current camera to the previous/next sweep camera (world-model poses).
    point = np.array([3.0, -1.0, 12.0, 1.0])
    for j, neighbours in enumerate((index.prev_cam[i], index.next_cam[i])):
        for n, f in enumerate(neighbours):
            cur = model.ego2global(int(batch.timestamps[0, n])) @ model.cam2ego[n]
            other = model.ego2global(int(index.frame_time[f])) @ model.cam2ego[n]
            expected = np.linalg.inv(other) @ cur @ point
            got = batch.t0_2_x_geo[0, j * N + n].double().numpy() @ point
            np.testing.assert_allclose(got, expected, atol=1e-4)
            assert int(index.frame_time[f]) != int(batch.timestamps[0, n])
    # render_gt: the current images at the render size.
    first = Image.open(tiny_world / batch.filenames[0][0]).convert("RGB")
    ref = np.asarray(first.resize((320, 180), Image.Resampling.LANCZOS))[:, :, ::-1]
    assert np.abs(ref.astype(float) - batch.render_gt[0, 0].numpy()).mean() < 2.0
    assert not torch.equal(batch.render_gt[0, 0], batch.render_gt[0, N])  # the previous sweep differs


def test_scene_ends_duplicate_current_images_with_identity(index) -> None:  # noqa: ANN001
    ds = _dataset(index, num_frames=1)
    first = ds[_sample(index, "scene-0002", 0)]
    last = ds[_sample(index, "scene-0002", TINY_SPEC.keyframes - 1)]
    eye = torch.eye(4).expand(N, 4, 4)
    torch.testing.assert_close(first.t0_2_x_geo[0, :N], eye)
    torch.testing.assert_close(first.render_gt[0, N:2 * N], first.render_gt[0, :N])
    assert not torch.equal(first.t0_2_x_geo[0, N:], eye)
    torch.testing.assert_close(last.t0_2_x_geo[0, N:], eye)
    torch.testing.assert_close(last.render_gt[0, 2 * N:], last.render_gt[0, :N])


def test_depth_and_features_are_the_files_resampled(tiny_world: Path, index) -> None:  # noqa: ANN001, F811
    ds = _dataset(index, num_frames=1)
    batch = ds[2]
    for n in range(N):
        stem = target_stem(batch.filenames[0][n])
        raw = np.load(tiny_world / "depth" / f"{stem}.npy").astype(np.float32)
        # docs/model.md §7.3: scipy.ndimage.zoom(order=1), corner-aligned.
        zoom = scipy.ndimage.zoom(raw, (180 / raw.shape[0], 320 / raw.shape[1]), order=1)
        np.testing.assert_allclose(batch.depth[0, n, 0].numpy(), zoom, rtol=1e-4, atol=1e-3)
        feats = np.load(tiny_world / "features" / f"{stem}.npy").astype(np.float32)
        np.testing.assert_array_equal(batch.features[0, n].numpy(), feats)


# ---- temporal sampling ---------------------------------------------------------------------------------------


def test_prev_list_order_and_scene_boundaries(index) -> None:  # noqa: ANN001
    ds = _dataset(index)
    i = _sample(index, "scene-0002", 2)
    assert index.history[i] == 2 * (TINY_SPEC.sweeps + 1)
    entries = ds.prev_list(i, 100)
    assert len(entries) == index.history[i]
    stamps = index.frame_time[entries]
    assert np.all(np.diff(stamps, axis=0) < 0) and np.all(stamps < index.frame_time[index.cams[i]])
    # The third entry (after two sweeps) is the previous keyframe; nothing comes from the other scene.
    np.testing.assert_array_equal(entries[TINY_SPEC.sweeps], index.cams[i - 1])
    assert all("synth-00011-0001__" in str(index.frame_path[f]) for f in entries.reshape(-1))
    first = _sample(index, "scene-0002", 0)
    assert index.history[first] == 0 and len(ds.prev_list(first, 10)) == 0


def test_train_stride_and_short_history(index) -> None:  # noqa: ANN001
    i = _sample(index, "scene-0001", 2)  # history 6
    entries = _dataset(index).prev_list(i, 6)
    # T − 1 = 2 past frames: m = 3, the stride is min(4, 3) = min(8, 3) = 3 → entries 2 and 5.
    np.testing.assert_array_equal(_dataset(index, num_frames=3).past_frames(i), entries[[2, 5]])
    # T − 1 = 1: m = 6 → stride k ∈ [4, 6], frame at entry k − 1; every allowed stride occurs.
    seen = {int(np.flatnonzero((entries == _dataset(index, num_frames=2).past_frames(i)[0]).all(1))[0])
            for _ in range(60)}
    assert seen == {3, 4, 5}
    # T − 1 = 7 ≥ history: all 6 entries, then the oldest repeated.
    past = _dataset(index, num_frames=8).past_frames(i)
    np.testing.assert_array_equal(past[:6], entries)
    np.testing.assert_array_equal(past[6], entries[5])
    # A scene's first keyframe has no history: every past frame is the keyframe itself.
    first = _sample(index, "scene-0001", 0)
    np.testing.assert_array_equal(_dataset(index, num_frames=4).past_frames(first), np.repeat(index.cams[first][None],
                                                                                            3, 0))


def test_test_mode_uses_previous_keyframes(index) -> None:  # noqa: ANN001
    i = _sample(index, "scene-0002", 2)
    past = _dataset(index, num_frames=5, mode="test").past_frames(i)
    expected = [index.cams[i - 1], index.cams[i - 2], index.cams[i - 2], index.cams[i - 2]]
    np.testing.assert_array_equal(past, np.stack(expected))


def test_loader_batches_with_workers(tiny_world: Path) -> None:  # noqa: F811
    cfg = DataConfig(dataroot=str(tiny_world), version=VERSION, batch_size=2, num_workers=2)
    ds = build_dataset(cfg, "train", num_frames=2, feature_dim=384, mode="train")
    assert sorted(set(ds.index.scene_name)) == json.loads((tiny_world / "splits.json").read_text())["train"]
    batches = list(make_loader(ds, cfg, shuffle=False))
    assert [b.batch_size for b in batches] == [2, 1]
    assert isinstance(batches[0], Batch) and batches[0].images.shape == (2, 2 * N, 3, 256, 704)
    assert [t for b in batches for t in b.sample_tokens] == list(ds.index.sample_token)
    with pytest.raises(DataError, match="no split 'nope'"):
        build_dataset(cfg, "nope", num_frames=2, feature_dim=384, mode="train")


# ---- bad input -----------------------------------------------------------------------------------------------


@pytest.fixture
def world_copy(tiny_world: Path, tmp_path: Path) -> Path:  # noqa: F811
    return clone_world(tiny_world, tmp_path / "copy")


def _stem_of(index, i: int, n: int) -> str:  # noqa: ANN001
    return target_stem(str(index.frame_path[index.cams[i, n]]))


def test_missing_table(world_copy: Path) -> None:
    replace_file(world_copy / VERSION / "sample_data.json", None)
    with pytest.raises(DataError, match=r"sample_data\.json: missing table"):
        build_index(world_copy, VERSION, "all")
    with pytest.raises(DataError, match="table folder not found"):
        build_index(world_copy, "v1.0-nothing", "all")


def test_missing_and_corrupt_images(world_copy: Path) -> None:
    index = build_index(world_copy, VERSION, "all")
    ds = _dataset(index, num_frames=1)
    path = world_copy / str(index.frame_path[index.cams[0, 2]])
    replace_file(path, None)
    with pytest.raises(DataError, match=f"{path.name}: image file not found"):
        ds[0]
    good = (world_copy / str(index.frame_path[index.cams[1, 0]])).read_bytes()
    for bad in (good[: len(good) // 2], b"this is not a jpeg", good[:2] + bytes(200)):
        path = world_copy / str(index.frame_path[index.cams[1, 0]])
        replace_file(path, bad)
        with pytest.raises(DataError, match=f"{path.name}: corrupt"):
            ds[1]
    # A readable image of another size than its sample_data record.
    path = world_copy / str(index.frame_path[index.cams[2, 1]])
    small = Image.open(path).resize((200, 112))
    path.unlink()
    small.save(path, format="JPEG")
    with pytest.raises(DataError, match=f"{path.name}: image is 200×112 but sample_data.json says 400×225"):
        ds[2]


@pytest.mark.parametrize("case", ["nan", "negative", "missing", "shape"])
def test_bad_depth(world_copy: Path, case: str) -> None:
    index = build_index(world_copy, VERSION, "all")
    path = world_copy / "depth" / f"{_stem_of(index, 0, 3)}.npy"
    depth = np.load(path).astype(np.float32)
    if case == "nan":
        depth[5, 7] = np.nan
    elif case == "negative":
        depth[5, 7] = -1.0
    elif case == "shape":
        depth = depth[None, None]
    replace_file(path, None)
    if case != "missing":
        np.save(path, depth)
    message = {"nan": "NaN", "negative": "negative", "missing": "depth file not found", "shape": r"float \[H, W\]"}
    with pytest.raises(DataError, match=f"{path.name}.*{message[case]}"):
        _dataset(index, num_frames=1)[0]


def test_depth_accepted_as_npz(world_copy: Path, index) -> None:  # noqa: ANN001
    path = world_copy / "depth" / f"{_stem_of(index, 0, 3)}.npy"
    depth = np.load(path)
    replace_file(path, None)
    np.savez(path.with_suffix(".npz"), depth=depth.astype(np.float32))
    out = _dataset(build_index(world_copy, VERSION, "all"), num_frames=1)[0]
    ref = _dataset(index, num_frames=1)[0]
    torch.testing.assert_close(out.depth, ref.depth)


@pytest.mark.parametrize("case", ["channels", "ndim", "mismatch", "nan", "missing"])
def test_bad_feature_maps(world_copy: Path, case: str) -> None:
    index = build_index(world_copy, VERSION, "all")
    path = world_copy / "features" / f"{_stem_of(index, 1, 4)}.npy"
    feats = np.load(path)
    bad = {"channels": feats[:100], "ndim": feats[0], "mismatch": feats[:, :-1], "nan": feats.copy()}.get(case)
    if case == "nan":
        bad[3, 2, 1] = np.nan
    replace_file(path, None)
    if bad is not None:
        np.save(path, bad)
    message = {"nan": "feature map contains NaN", "missing": "features file not found"}.get(
        case, r"feature map (must be float \[384, h, w\]|of shape .* differs)")
    with pytest.raises(DataError, match=rf"{path.name}: {message}"):
        _dataset(index, num_frames=1)[1]


@pytest.mark.parametrize("case", ["shape", "dtype", "missing_array", "missing_file", "range"])
def test_bad_labels(world_copy: Path, case: str) -> None:
    index = build_index(world_copy, VERSION, "all")
    path = world_copy / "gts" / str(index.scene_name[0]) / str(index.sample_token[0]) / "labels.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    if case == "shape":
        arrays["semantics"] = arrays["semantics"][:, :, :8]
    elif case == "dtype":
        arrays["mask_camera"] = arrays["mask_camera"].astype(np.float32)
    elif case == "missing_array":
        del arrays["mask_lidar"]
    elif case == "range":
        arrays["semantics"][0, 0, 0] = 40
    replace_file(path, None)
    if case != "missing_file":
        np.savez(path, **arrays)
    message = {"shape": r"semantics must have shape \(200, 200, 16\)", "dtype": "mask_camera must be uint8 or bool",
               "missing_array": "missing array 'mask_lidar'", "missing_file": "labels file not found",
               "range": "labels 0..17"}[case]
    with pytest.raises(DataError, match=f"labels.npz: .*{message}"):
        _dataset(index, num_frames=1)[0]


def _drop_sample_data(root: Path, predicate) -> None:  # noqa: ANN001
    """Remove the sample_data records matching ``predicate`` and relink their neighbours."""
    path = root / VERSION / "sample_data.json"
    rows = json.loads(path.read_text())
    by_token = {r["token"]: r for r in rows}
    for r in [r for r in rows if predicate(r)]:
        if r["prev"]:
            by_token[r["prev"]]["next"] = r["next"]
        if r["next"]:
            by_token[r["next"]]["prev"] = r["prev"]
        del by_token[r["token"]]
    replace_file(path, json.dumps(list(by_token.values())).encode())


def test_camera_missing_from_sweep_falls_back_once(world_copy: Path, index) -> None:  # noqa: ANN001
    i = _sample(index, "scene-0001", 2)
    dropped = int(index.sweeps[index.sweep_start[i] + 1, 3])  # CAM_BACK's older sweep before keyframe 2
    name = str(index.frame_path[dropped])
    _drop_sample_data(world_copy, lambda r: r["filename"] == name)
    damaged = build_index(world_copy, VERSION, "all")
    assert (damaged.sweeps[damaged.sweep_start[i]:damaged.sweep_start[i + 1], 3] == -1).sum() == 1
    notices._SEEN.discard("sweep-missing-camera")
    ds = _dataset(damaged)
    with pytest.warns(DataFallbackWarning, match="CAM_BACK.*missing from sweep 1"):
        entries = ds.prev_list(i, 10)
    # The newer frame of that camera stands in; other cameras keep their own sweep.
    assert entries[1, 3] == entries[0, 3] and entries[1, 0] != entries[0, 0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds.prev_list(i, 10)  # said once only


def test_camera_missing_from_keyframe(world_copy: Path, index) -> None:  # noqa: ANN001
    name = str(index.frame_path[index.cams[1, 5]])
    _drop_sample_data(world_copy, lambda r: r["filename"] == name)
    with pytest.raises(DataError, match=f"sample {index.sample_token[1]} of scene-0001 has no CAM_BACK_RIGHT"):
        build_index(world_copy, VERSION, "all")


def test_pillow_fallback_decodes_and_warns_once(tiny_world: Path, index, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001, F811
    path = tiny_world / str(index.frame_path[index.cams[0, 0]])
    ref, _ = jpeg_module.decode_scaled(path, (225, 400))

    def broken() -> None:
        raise OSError("libturbojpeg.so.0: cannot open shared object file")

    monkeypatch.setattr("turbojpeg.TurboJPEG", broken)
    monkeypatch.setattr(jpeg_module, "_TURBO", None)
    monkeypatch.setattr(notices, "_SEEN", set())
    with pytest.warns(DataFallbackWarning, match="Pillow"):
        img, full = jpeg_module.decode_scaled(path, (225, 400))
    assert full == (225, 400) and img.shape == ref.shape
    assert np.abs(img.astype(float) - ref).mean() < 1.0
    half, _ = jpeg_module.decode_scaled(path, (100, 180))
    assert half.shape == (113, 200, 3)
    with pytest.raises(DataError, match="corrupt"):
        bad = path.parent / "x.jpg"
        jpeg_module._header(b"garbage", bad)
