"""A compact index of samples, camera frames, calibrations and poses, built from the nuscenes-devkit tables.

The index is plain numpy (no devkit objects, no per-frame Python objects), so DataLoader workers share it cheaply.

Per sample (keyframe) s, in scene order then time:
- ``cams[s, n]``: the keyframe image of camera n; ``prev_cam``/``next_cam``: that camera's frame immediately
  before/after it (a sweep or a keyframe of the same scene; −1 at the scene's first/last keyframe, whose frames
  outside the scene are not used);
- ``sweeps[sweep_start[s]:sweep_start[s + 1], n]``: the camera sweeps since the previous keyframe, nearest first,
  one row per sweep position (−1 where a camera has fewer sweeps than the others);
- ``prev_sample[s]``: the previous keyframe of the same scene (−1 for a scene's first);
- ``history[s]``: length of the sample's "prev list" (docs/model.md §7.1): its sweeps, then the previous keyframe,
  its sweeps, … back to the scene start.
Per frame f: image path (relative to the dataroot), timestamp, (H, W), calibration and ego-pose rows.

With an info pickle (:mod:`pgocc.data.infos`) the samples follow the pickle's order and each keyframe's sweeps are
the pickle's; the pickle must name exactly the split's samples, and every keyframe image, timestamp, scene and sweep
it names must be the tables' (a sweep: one of that camera's frames since the previous keyframe, nearest first).
Any disagreement raises DataError naming the pickle entry; nothing is resolved silently.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pgocc.data.geometry import rigid
from pgocc.data.infos import InfoSample, read_infos
from pgocc.data.layout import CAMERAS, LIDAR, SPLITS_FILE, TABLES
from pgocc.errors import DataError


@dataclass(slots=True)
class DatasetIndex:
    """Samples and frames of one split (shapes: S samples, F frames, C calibrations, P poses, N cameras)."""

    dataroot: Path
    version: str
    sample_token: np.ndarray
    """[S] str."""
    scene_name: np.ndarray
    """[S] str."""
    timestamp: np.ndarray
    """[S] int64 µs of the LiDAR keyframe."""
    lidar2ego: np.ndarray
    """[S, 4, 4] float64."""
    ego2global: np.ndarray
    """[S, 4, 4] float64 at the LiDAR keyframe time."""
    cams: np.ndarray
    """[S, N] int64 frame of each camera's keyframe image."""
    prev_cam: np.ndarray
    """[S, N] int64 frame just before the keyframe image (−1: none)."""
    next_cam: np.ndarray
    """[S, N] int64 frame just after the keyframe image (−1: none)."""
    sweep_start: np.ndarray
    """[S + 1] int64 offsets into ``sweeps``."""
    sweeps: np.ndarray
    """[Σ, N] int64 sweep frames since the previous keyframe, nearest first (−1: camera missing)."""
    prev_sample: np.ndarray
    """[S] int64 previous keyframe of the same scene (−1: none)."""
    history: np.ndarray
    """[S] int64 length of the prev list."""
    frame_path: np.ndarray
    """[F] str image path relative to the dataroot."""
    frame_time: np.ndarray
    """[F] int64 µs."""
    frame_size: np.ndarray
    """[F, 2] int64 (H, W) from the sample_data table."""
    frame_calib: np.ndarray
    """[F] int64 row of ``calib_*``."""
    frame_pose: np.ndarray
    """[F] int64 row of ``pose``."""
    calib_k: np.ndarray
    """[C, 3, 3] float64 intrinsics."""
    calib_cam2ego: np.ndarray
    """[C, 4, 4] float64 sensor → ego."""
    pose: np.ndarray
    """[P, 4, 4] float64 ego → global at a frame's timestamp."""

    def __len__(self) -> int:
        return len(self.sample_token)

    def cam2global(self, frames: np.ndarray) -> np.ndarray:
        """[..., 4, 4] camera → global of frame indices ``frames`` [...]."""
        return self.pose[self.frame_pose[frames]] @ self.calib_cam2ego[self.frame_calib[frames]]


def check_tables(dataroot: Path, version: str) -> None:
    """Raise DataError naming the first missing table file of ``dataroot/version``."""
    table_root = dataroot / version
    if not table_root.is_dir():
        raise DataError(f"{table_root}: nuScenes table folder not found (dataroot={dataroot}, version={version})")
    for name in TABLES:
        if not (table_root / f"{name}.json").is_file():
            raise DataError(f"{table_root / f'{name}.json'}: missing table; nuscenes-devkit needs all of "
                            f"{', '.join(TABLES)}")


def split_scenes(dataroot: Path, version: str, split: str) -> list[str]:
    """Scene names of ``split``: from ``dataroot/splits.json`` if present, else the devkit's official splits."""
    path = dataroot / SPLITS_FILE
    if path.is_file():
        try:
            splits = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}: not valid JSON ({exc})") from exc
        source = str(path)
    else:
        from nuscenes.utils.splits import create_splits_scenes

        splits, source = create_splits_scenes(verbose=False), f"nuscenes-devkit splits for {version}"
    if split == "all":
        return sorted({name for names in splits.values() for name in names})
    if split not in splits:
        raise DataError(f"{source}: no split {split!r}; available: {', '.join(sorted(splits))}, all")
    return list(splits[split])


def _info_sweeps(entry: InfoSample, chains: list[list[int]], frame_path: list[str], where: str) -> list[list[int]]:
    """Per camera, the frames of the sweeps ``entry`` names (nearest first; −1 where a sweep lacks the camera),
    checked against the tables' ``chains`` (per camera: its frames since the previous keyframe, nearest first)."""
    out: list[list[int]] = []
    for n, cam in enumerate(CAMERAS):
        position = {frame_path[f]: j for j, f in enumerate(chains[n])}
        frames, last = [], -1
        for j, sweep in enumerate(entry.sweeps):
            if cam not in sweep:
                frames.append(-1)
                continue
            j_table = position.get(sweep[cam])
            if j_table is None:
                raise DataError(f"{where}: sweeps[{j}][{cam}] is {sweep[cam]}, which sample_data.json does not list "
                                f"among {cam}'s {len(chains[n])} frames since the previous keyframe")
            if j_table <= last:
                raise DataError(f"{where}: sweeps of {cam} are not nearest first ({sweep[cam]} at position {j})")
            frames.append(chains[n][j_table])
            last = j_table
        out.append(frames)
    return out


def _reorder(index: DatasetIndex, order: np.ndarray) -> DatasetIndex:
    """``index`` with its samples in ``order`` [S] (a permutation); frames, calibrations and poses unchanged."""
    new_of_old = np.empty_like(order)
    new_of_old[order] = np.arange(len(order))
    sweeps = [index.sweeps[index.sweep_start[s]:index.sweep_start[s + 1]] for s in order]
    counts = np.array([len(r) for r in sweeps], np.int64)
    prev = index.prev_sample[order]
    return dataclasses.replace(
        index, sample_token=index.sample_token[order], scene_name=index.scene_name[order],
        timestamp=index.timestamp[order], lidar2ego=index.lidar2ego[order], ego2global=index.ego2global[order],
        cams=index.cams[order], prev_cam=index.prev_cam[order], next_cam=index.next_cam[order],
        sweep_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        sweeps=np.concatenate(sweeps).reshape(-1, index.sweeps.shape[1]).astype(np.int64),
        prev_sample=np.where(prev >= 0, new_of_old[np.maximum(prev, 0)], -1), history=index.history[order])


def build_index(dataroot: str | os.PathLike[str], version: str, split: str,
                infos: str | os.PathLike[str] | None = None) -> DatasetIndex:
    """Index the scenes of ``split`` of the nuScenes-format dataset at ``dataroot`` (opened with the devkit); with
    ``infos`` (an info pickle) in its sample order and with its sweeps (module docstring)."""
    dataroot = Path(dataroot)
    entries = read_infos(Path(infos), version) if infos else None
    by_token: dict[str, int] = {}
    for i, entry in enumerate(entries or []):
        if entry.token in by_token:
            raise DataError(f"{infos}: entries {by_token[entry.token]} and {i} both hold sample {entry.token}")
        by_token[entry.token] = i
    check_tables(dataroot, version)
    from nuscenes.nuscenes import NuScenes

    try:
        nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    except (KeyError, AssertionError, json.JSONDecodeError) as exc:
        raise DataError(f"{dataroot / version}: nuscenes-devkit cannot open the tables ({type(exc).__name__}: {exc})") \
            from exc
    wanted = split_scenes(dataroot, version, split)
    by_name = {sc["name"]: sc for sc in nusc.scene}
    missing = [n for n in wanted if n not in by_name]
    if missing:
        raise DataError(f"{dataroot / version / 'scene.json'}: split {split!r} names scenes not in the table: "
                        f"{missing[:5]}")

    calib_rows: dict[str, int] = {}
    calib_k: list[np.ndarray] = []
    calib_c2e: list[np.ndarray] = []
    pose_rows: dict[str, int] = {}
    poses: list[np.ndarray] = []
    frame_rows: dict[str, int] = {}
    f_path: list[str] = []
    f_time: list[int] = []
    f_size: list[tuple[int, int]] = []
    f_calib: list[int] = []
    f_pose: list[int] = []

    def pose_row(token: str) -> int:
        if token not in pose_rows:
            rec = nusc.get("ego_pose", token)
            pose_rows[token] = len(poses)
            poses.append(rigid(np.asarray(rec["rotation"]), rec["translation"]))
        return pose_rows[token]

    def frame(sd_token: str) -> int:
        if sd_token in frame_rows:
            return frame_rows[sd_token]
        sd = nusc.get("sample_data", sd_token)
        cs_token = sd["calibrated_sensor_token"]
        if cs_token not in calib_rows:
            cs = nusc.get("calibrated_sensor", cs_token)
            k = np.asarray(cs["camera_intrinsic"], dtype=np.float64)
            if k.shape != (3, 3):
                raise DataError(f"{dataroot / version / 'calibrated_sensor.json'}: record {cs_token} of "
                                f"{sd['channel']} needs a 3×3 camera_intrinsic, got shape {k.shape}")
            calib_rows[cs_token] = len(calib_k)
            calib_k.append(k)
            calib_c2e.append(rigid(np.asarray(cs["rotation"]), cs["translation"]))
        frame_rows[sd_token] = len(f_path)
        f_path.append(sd["filename"])
        f_time.append(int(sd["timestamp"]))
        f_size.append((int(sd["height"]), int(sd["width"])))
        f_calib.append(calib_rows[cs_token])
        f_pose.append(pose_row(sd["ego_pose_token"]))
        return frame_rows[sd_token]

    tokens, scenes, stamps, l2e, e2g = [], [], [], [], []
    cams, prev_cam, next_cam, prev_sample, history = [], [], [], [], []
    sweep_rows: list[list[int]] = []
    sweep_start = [0]
    for name in wanted:
        scene = by_name[name]
        token, first, hist = scene["first_sample_token"], True, 0
        while token:
            sample = nusc.get("sample", token)
            where = f"{dataroot / version / 'sample.json'}: sample {token} of {name}"
            for channel in (LIDAR, *CAMERAS):
                if channel not in sample["data"]:
                    raise DataError(f"{where} has no {channel} keyframe in sample_data.json")
            lidar = nusc.get("sample_data", sample["data"][LIDAR])
            cs = nusc.get("calibrated_sensor", lidar["calibrated_sensor_token"])
            l2e.append(rigid(np.asarray(cs["rotation"]), cs["translation"]))
            e2g.append(poses[pose_row(lidar["ego_pose_token"])])
            row_cams, row_prev, row_next, per_cam = [], [], [], []
            for channel in CAMERAS:
                sd = nusc.get("sample_data", sample["data"][channel])
                row_cams.append(frame(sd["token"]))
                # A scene starts at its first keyframe: frames recorded before it are not part of the scene
                # (the specification's infos give the first keyframe no sweeps and no previous image).
                row_prev.append(frame(sd["prev"]) if sd["prev"] and not first else -1)
                row_next.append(frame(sd["next"]) if sd["next"] and sample["next"] else -1)
                chain, prev = [], sd["prev"] if not first else ""
                while prev:
                    rec = nusc.get("sample_data", prev)
                    if rec["is_key_frame"]:
                        break
                    chain.append(frame(prev))
                    prev = rec["prev"]
                per_cam.append(chain)
            if entries is not None:
                if token not in by_token:
                    raise DataError(f"{infos}: has no entry for sample {token} of scene {name} (split {split!r} "
                                    "of the tables); the info pickle must hold exactly the split's samples")
                entry = entries[by_token[token]]
                where_info = f"{infos}: entry {by_token[token]} (sample {token})"
                for label, theirs, ours in (("scene_name", entry.scene_name, name),
                                            ("timestamp", entry.timestamp, int(sample["timestamp"]))):
                    if theirs is not None and theirs != ours:
                        raise DataError(f"{where_info}: {label} is {theirs!r} but the tables say {ours!r}")
                for channel, f in zip(CAMERAS, row_cams, strict=True):
                    if entry.cams.get(channel) != f_path[f]:
                        raise DataError(f"{where_info}: cams[{channel}] is {entry.cams.get(channel)} but "
                                        f"sample_data.json's keyframe image is {f_path[f]}")
                per_cam = _info_sweeps(entry, per_cam, f_path, where_info)
            depth = max(len(c) for c in per_cam)
            sweep_rows.extend([[c[j] if j < len(c) else -1 for c in per_cam] for j in range(depth)])
            sweep_start.append(sweep_start[-1] + depth)
            tokens.append(token)
            scenes.append(name)
            stamps.append(int(sample["timestamp"]))
            cams.append(row_cams)
            prev_cam.append(row_prev)
            next_cam.append(row_next)
            prev_sample.append(-1 if first else len(tokens) - 2)
            hist = depth if first else hist + 1 + depth
            history.append(hist)
            first, token = False, sample["next"]

    n = len(CAMERAS)
    index = DatasetIndex(
        dataroot=dataroot, version=version, sample_token=np.array(tokens), scene_name=np.array(scenes),
        timestamp=np.array(stamps, np.int64), lidar2ego=np.array(l2e).reshape(-1, 4, 4),
        ego2global=np.array(e2g).reshape(-1, 4, 4), cams=np.array(cams, np.int64).reshape(-1, n),
        prev_cam=np.array(prev_cam, np.int64).reshape(-1, n), next_cam=np.array(next_cam, np.int64).reshape(-1, n),
        sweep_start=np.array(sweep_start, np.int64), sweeps=np.array(sweep_rows, np.int64).reshape(-1, n),
        prev_sample=np.array(prev_sample, np.int64), history=np.array(history, np.int64),
        frame_path=np.array(f_path), frame_time=np.array(f_time, np.int64),
        frame_size=np.array(f_size, np.int64).reshape(-1, 2), frame_calib=np.array(f_calib, np.int64),
        frame_pose=np.array(f_pose, np.int64), calib_k=np.array(calib_k).reshape(-1, 3, 3),
        calib_cam2ego=np.array(calib_c2e).reshape(-1, 4, 4), pose=np.array(poses).reshape(-1, 4, 4),
    )
    if entries is None:
        return index
    row_of = {t: r for r, t in enumerate(tokens)}
    for i, entry in enumerate(entries):
        if entry.token not in row_of:
            raise DataError(f"{infos}: entry {i} holds sample {entry.token}, which is not a keyframe of split "
                            f"{split!r} in the tables of {dataroot / version}")
    return _reorder(index, np.array([row_of[e.token] for e in entries], np.int64))
