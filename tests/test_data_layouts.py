"""The original's data layout read as it is on disk: folders beside the dataroot, the original's file names, shapes
and dtypes, and mmdet3d info pickles (sample order and sweeps; every disagreement with the tables refused)."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from pgocc.config import DataConfig
from pgocc.data import Batch, build_dataset, build_index
from pgocc.data.layout import CAMERAS
from pgocc.errors import DataError
from tests.data_fixtures import TINY_SPEC, clone_world, original_world, tiny_world  # noqa: F401

VERSION = TINY_SPEC.version


def _tables(root: Path) -> dict[str, list[dict]]:
    return {name: json.loads((root / VERSION / f"{name}.json").read_text())
            for name in ("sample", "sample_data", "scene")}


def _keyframe_images(root: Path) -> list[str]:
    return [r["filename"] for r in _tables(root)["sample_data"] if r["is_key_frame"] and "/CAM_" in r["filename"]]


def _original_config(out: Path, **kw: object) -> DataConfig:
    return DataConfig(dataroot=str(out / "nuscenes"), version=VERSION, depth_dir="../nuscenes_metric3d",
                      feature_dir="../nuscenes_featup", train_infos="nuscenes_infos_train_sweep.pkl",
                      val_infos="nuscenes_infos_val_sweep.pkl", **kw)


# ---- the original's files ------------------------------------------------------------------------------------------


def test_original_layout_has_the_original_names_shapes_and_values(tiny_world: Path, original_world: Path) -> None:  # noqa: F811
    """Every keyframe image has nuscenes_featup/<image basename>.npy float32 [D, H/16, W/16] and
    nuscenes_metric3d/<image basename>.npy float32 [H, W], beside the dataroot, equal to the pgocc layout's float16
    files."""
    images = _keyframe_images(original_world / "nuscenes")
    assert len(images) == TINY_SPEC.scenes * TINY_SPEC.keyframes * len(CAMERAS)
    for filename in images:
        name = Path(filename).name.replace(".jpg", ".npy")  # n015-…__CAM_FRONT__<µs>.jpg → …<µs>.npy
        feats = np.load(original_world / "nuscenes_featup" / name)
        depth = np.load(original_world / "nuscenes_metric3d" / name)
        assert feats.dtype == np.float32 and feats.shape == (384, TINY_SPEC.height // 16, TINY_SPEC.width // 16)
        assert depth.dtype == np.float32 and depth.shape == (TINY_SPEC.height, TINY_SPEC.width)
        np.testing.assert_array_equal(feats, np.load(tiny_world / "features" / name).astype(np.float32))
        np.testing.assert_array_equal(depth, np.load(tiny_world / "depth" / name).astype(np.float32))
    assert not (original_world / "nuscenes" / "depth").exists()


def _assert_same_batch(a: Batch, b: Batch) -> None:
    for name in Batch.__slots__:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, torch.Tensor):
            assert x.dtype == y.dtype and torch.equal(x, y), name
        else:
            assert x == y, name


@pytest.mark.parametrize("mode", ["test", "train"])
def test_both_layouts_give_the_same_batches(tiny_world: Path, original_world: Path, mode: str) -> None:  # noqa: F811
    """The original's layout (float32 targets beside the dataroot, info pickles) and pgocc's (float16 in the
    dataroot, tables only) go through the same code to the same batches, sample by sample."""
    mine = build_dataset(DataConfig(dataroot=str(tiny_world), version=VERSION), "train", num_frames=3,
                         feature_dim=384, mode=mode)
    theirs = build_dataset(_original_config(original_world), "train", num_frames=3, feature_dim=384, mode=mode)
    assert sorted(mine.index.sample_token) == sorted(theirs.index.sample_token)
    for i, token in enumerate(mine.index.sample_token):
        j = int(np.flatnonzero(theirs.index.sample_token == token)[0])
        torch.manual_seed(i)
        a = mine[i]
        torch.manual_seed(i)
        b = theirs[j]
        _assert_same_batch(a, b)


def test_target_folders_may_be_absolute(original_world: Path) -> None:  # noqa: F811
    relative = build_dataset(_original_config(original_world), "val", num_frames=1, feature_dim=384, mode="test")
    absolute = DataConfig(dataroot=str(original_world / "nuscenes"), version=VERSION,
                          depth_dir=str(original_world / "nuscenes_metric3d"),
                          feature_dir=str(original_world / "nuscenes_featup"),
                          labels_dir=str(original_world / "nuscenes" / "gts"),
                          val_infos=str(original_world / "nuscenes" / "nuscenes_infos_val_sweep.pkl"))
    _assert_same_batch(relative[0], build_dataset(absolute, "val", num_frames=1, feature_dim=384, mode="test")[0])


def test_npz_targets_in_float16_read_as_the_npy_ones(original_world: Path, tmp_path: Path) -> None:  # noqa: F811
    """Features as float16 .npz (array 'features'), depth as .npz with one unnamed array: the same batches."""
    out = clone_world(original_world, tmp_path / "out")
    for path in sorted((out / "nuscenes_featup").iterdir()):
        array = np.load(path)
        path.unlink()
        np.savez(path.with_suffix(".npz"), features=array.astype(np.float16))
    for path in sorted((out / "nuscenes_metric3d").iterdir()):
        array = np.load(path)
        path.unlink()
        np.savez_compressed(path.with_suffix(".npz"), array)
    assert not list((out / "nuscenes_featup").glob("*.npy"))
    npy = build_dataset(_original_config(original_world), "val", num_frames=2, feature_dim=384, mode="test")
    npz = build_dataset(_original_config(out), "val", num_frames=2, feature_dim=384, mode="test")
    for i in range(len(npy)):
        _assert_same_batch(npy[i], npz[i])


# ---- info pickles ------------------------------------------------------------------------------------------------


def _hand_built_infos(root: Path, order: str = "reversed") -> list[dict]:
    """Info entries of every keyframe, built here from the JSON tables: each camera's sweeps are the frames reached
    through sample_data's ``prev`` links before the previous keyframe (none at a scene's first keyframe)."""
    t = _tables(root)
    sd = {r["token"]: r for r in t["sample_data"]}
    scene = {r["token"]: r["name"] for r in t["scene"]}
    entries = []
    for sample in t["sample"]:
        keys = {r["filename"].split("/")[1]: r for r in t["sample_data"]
                if r["sample_token"] == sample["token"] and r["is_key_frame"]}
        per_cam = {}
        for cam in CAMERAS:
            chain, tok = [], keys[cam]["prev"] if sample["prev"] else ""
            while tok and not sd[tok]["is_key_frame"]:
                chain.append(sd[tok]["filename"])
                tok = sd[tok]["prev"]
            per_cam[cam] = chain
        sweeps = [{cam: {"data_path": f"/data/sets/nuscenes/{per_cam[cam][j]}",
                         "sensor2ego_rotation": np.eye(3)} for cam in CAMERAS if j < len(per_cam[cam])}
                  for j in range(max(len(c) for c in per_cam.values()))]
        entries.append({"token": sample["token"], "timestamp": sample["timestamp"],
                        "scene_name": scene[sample["scene_token"]],
                        "cams": {cam: {"data_path": f"./data/nuscenes/{keys[cam]['filename']}",
                                       "cam_intrinsic": np.eye(3, dtype=np.float64)} for cam in CAMERAS},
                        "sweeps": sweeps})
    return entries[::-1] if order == "reversed" else entries


def _write(path: Path, entries: object, version: str = VERSION) -> Path:
    path.write_bytes(pickle.dumps({"infos": entries, "metadata": {"version": version}}))
    return path


def test_info_pickle_orders_the_devkit_index(tiny_world: Path, tmp_path: Path) -> None:  # noqa: F811
    """A pickle hand-built from the tables, in reverse order: the index holds the pickle's order and, sample by
    sample, the same images, sweeps, previous keyframe and history as the tables' index."""
    entries = _hand_built_infos(tiny_world)
    tables = build_index(tiny_world, VERSION, "all")
    ordered = build_index(tiny_world, VERSION, "all", infos=_write(tmp_path / "infos.pkl", entries))
    assert list(ordered.sample_token) == [e["token"] for e in entries]
    assert list(tables.sample_token) != list(ordered.sample_token)
    for j, token in enumerate(ordered.sample_token):
        i = int(np.flatnonzero(tables.sample_token == token)[0])
        assert list(tables.frame_path[tables.cams[i]]) == list(ordered.frame_path[ordered.cams[j]])
        mine = tables.sweeps[tables.sweep_start[i]:tables.sweep_start[i + 1]]
        theirs = ordered.sweeps[ordered.sweep_start[j]:ordered.sweep_start[j + 1]]
        assert [list(tables.frame_path[r]) for r in mine] == [list(ordered.frame_path[r]) for r in theirs]
        assert tables.history[i] == ordered.history[j]
        prev_i, prev_j = tables.prev_sample[i], ordered.prev_sample[j]
        assert (prev_i < 0 and prev_j < 0) or tables.sample_token[prev_i] == ordered.sample_token[prev_j]
        np.testing.assert_array_equal(tables.ego2global[i], ordered.ego2global[j])


def test_info_pickle_defines_the_sweeps(tiny_world: Path, tmp_path: Path) -> None:  # noqa: F811
    """A pickle that keeps only the nearest sweep (and drops CAM_BACK's) gives exactly those sweeps."""
    entries = _hand_built_infos(tiny_world, order="tables")
    for e in entries:
        e["sweeps"] = e["sweeps"][:1]
        for sweep in e["sweeps"]:
            sweep.pop("CAM_BACK")
    index = build_index(tiny_world, VERSION, "all", infos=_write(tmp_path / "infos.pkl", entries))
    for s, e in enumerate(entries):
        rows = index.sweeps[index.sweep_start[s]:index.sweep_start[s + 1]]
        assert len(rows) == len(e["sweeps"])
        for row, sweep in zip(rows, e["sweeps"], strict=True):
            for n, cam in enumerate(CAMERAS):
                if cam == "CAM_BACK":
                    assert row[n] == -1
                else:
                    assert sweep[cam]["data_path"].endswith(str(index.frame_path[row[n]]))
        first = index.prev_sample[s] < 0
        assert index.history[s] == (len(rows) if first else index.history[index.prev_sample[s]] + 1 + len(rows))


def _damage(entries: list[dict], how: str) -> tuple[object, str]:
    """Apply damage ``how`` to hand-built entries (tables order); returns what to pickle and the expected message."""
    e = entries[1]  # the second keyframe of the first scene: it has sweeps and a previous keyframe
    if how == "camera":
        e["cams"]["CAM_FRONT"], e["cams"]["CAM_BACK"] = e["cams"]["CAM_BACK"], e["cams"]["CAM_FRONT"]
        return entries, r"entry 1 .*cams\[CAM_FRONT\] is samples/CAM_BACK/"
    if how == "timestamp":
        e["timestamp"] += 1
        return entries, "entry 1 .*timestamp is"
    if how == "scene":
        e["scene_name"] = "scene-9999"
        return entries, "entry 1 .*scene_name is 'scene-9999'"
    if how == "missing":
        return entries[:1] + entries[2:], f"has no entry for sample {e['token']}"
    if how == "extra":
        return entries + [dict(e, token="f" * 32)], "entry 6 holds sample f{32}, which is not a keyframe"
    if how == "duplicate":
        return entries + [e], "entries 1 and 6 both hold sample"
    if how == "foreign_sweep":
        e["sweeps"][0]["CAM_FRONT"] = entries[2]["sweeps"][0]["CAM_FRONT"]  # a sweep of the next keyframe
        return entries, r"entry 1 .*sweeps\[0\]\[CAM_FRONT\] is sweeps/CAM_FRONT/.*does not list"
    if how == "sweep_order":
        e["sweeps"] = e["sweeps"][::-1]
        return entries, "not nearest first"
    if how == "no_cams":
        del e["cams"]
        return entries, r"entry 1: expected token, timestamp, cams"
    if how == "lidar_sweeps":  # mmdet3d's own infos: LiDAR sweeps, not the original's camera sweeps
        e["sweeps"] = [{"data_path": "./data/nuscenes/sweeps/LIDAR_TOP/x.pcd.bin", "type": "lidar"}]
        return entries, r"entry 1: sweeps\[0\] names a LiDAR sweep"
    if how == "version":
        return entries, "metadata says version 'v1.0-trainval'"
    if how == "not_infos":
        return {"something": 1}, "expected {'infos'"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["camera", "timestamp", "scene", "missing", "extra", "duplicate", "foreign_sweep",
                                 "sweep_order", "no_cams", "lidar_sweeps", "version", "not_infos"])
def test_info_pickle_disagreements_are_refused(tiny_world: Path, tmp_path: Path, how: str) -> None:  # noqa: F811
    data, message = _damage(_hand_built_infos(tiny_world, order="tables"), how)
    path = tmp_path / "nuscenes_infos_all_sweep.pkl"
    if isinstance(data, list):
        _write(path, data, version="v1.0-trainval" if how == "version" else VERSION)
    else:
        path.write_bytes(pickle.dumps(data))
    with pytest.raises(DataError, match=message) as info:
        build_index(tiny_world, VERSION, "all", infos=path)
    assert str(path) in str(info.value)


def test_info_pickle_may_not_run_code(tiny_world: Path, tmp_path: Path) -> None:  # noqa: F811
    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"infos": [Payload()]}))
    with pytest.raises(DataError, match="refusing to load posix.system|refusing to load os.system"):
        build_index(tiny_world, VERSION, "all", infos=path)
    with pytest.raises(DataError, match="info pickle not found"):
        build_index(tiny_world, VERSION, "all", infos=tmp_path / "absent.pkl")


def test_the_original_worlds_pickles_are_sorted_by_time_and_cover_their_splits(original_world: Path) -> None:  # noqa: F811
    root = original_world / "nuscenes"
    splits = json.loads((root / "splits.json").read_text())
    t = _tables(root)
    scene = {r["token"]: r["name"] for r in t["scene"]}
    for split, names in splits.items():
        entries = pickle.loads((root / f"nuscenes_infos_{split}_sweep.pkl").read_bytes())["infos"]
        stamps = [e["timestamp"] for e in entries]
        assert stamps == sorted(stamps)
        assert {e["token"] for e in entries} == {s["token"] for s in t["sample"] if scene[s["scene_token"]] in names}
