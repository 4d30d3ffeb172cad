"""Write the synthetic world (:mod:`pgocc.synthetic.scene`) as a complete nuScenes-format dataset.

Output (``DIR``):

- ``<version>/*.json``: the 13 devkit tables with consistent tokens, one log, calibration set and scene per scene,
  one ego pose per sample_data, sample annotations of every object within 60 m of the ego at each keyframe;
  ``maps/<token>.png``;
- ``samples/<CAM>/<log>__<CAM>__<µs>.jpg`` (keyframes) and ``sweeps/<CAM>/…jpg`` (``sweeps`` camera frames between
  keyframes), ``samples/LIDAR_TOP/…pcd.bin`` (x, y, z, intensity, ring as float32, LiDAR frame);
- ``depth/<image stem>.npy``: float16 [H, W] metric depth (camera z; sky = 100 m), per keyframe image;
- ``features/<image stem>.npy``: float16 [D, H/16, W/16] vision-language features per keyframe image: the
  area-weighted text embedding of the kinds in each 16×16 cell plus Gaussian noise;
- ``gts/<scene>/<sample token>/labels.npz``: Occ3D ``semantics``, ``mask_lidar``, ``mask_camera`` (uint8);
- ``text_prototypes.npz``: the Occ3D prompts (docs/model.md §6.1) embedded by the same text encoder;
- ``splits.json`` (``train``/``val`` scene names) and ``world.json`` (the :class:`WorldSpec`).

In the original's layout (``layout="original"``, ``pgocc make-synthetic --layout original``) the dataroot is
``DIR/nuscenes`` and the targets lie beside it as the original keeps them: ``DIR/nuscenes_metric3d/<image stem>.npy``
(float32 [H, W]) and ``DIR/nuscenes_featup/<image stem>.npy`` (float32 [D, h, w]), holding the same values; the
dataroot also holds mmdet3d-style info pickles ``nuscenes_infos_{train,val}_sweep.pkl`` (sorted by timestamp, as
mmdet3d sorts them), built from the tables.

Depth and features exist for keyframe images only: the loader reads them for the current frame's cameras, never for
sweeps. Everything is a pure function of the :class:`WorldSpec`; images render in parallel worker processes, and
the result does not depend on their number. The dataset is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import json
import math
import multiprocessing
import os
import pickle
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from pgocc.data.geometry import matrix_to_quat
from pgocc.data.jpeg import encode_jpeg
from pgocc.data.layout import CAMERAS, LIDAR, SPLITS_FILE, TABLES, target_stem
from pgocc.errors import ConfigError, DataError
from pgocc.synthetic.kinds import KINDS, SKY
from pgocc.synthetic.labels import occupancy
from pgocc.synthetic.raycast import lidar_scan
from pgocc.synthetic.render import render_camera
from pgocc.synthetic.scene import Scene, make_scene

LABELS_DIR = "gts"


@dataclass(frozen=True, slots=True)
class WorldLayout:
    """Where a world's dataroot and per-image targets lie, and how the targets are stored."""

    dataroot: str
    """The dataroot relative to the output folder."""
    depth_dir: str
    """Depth folder relative to the dataroot (``data.depth_dir``)."""
    feature_dir: str
    """Feature folder relative to the dataroot (``data.feature_dir``)."""
    target_dtype: str
    """numpy dtype of the stored depth and features."""
    infos: bool
    """Write mmdet3d info pickles ``nuscenes_infos_<split>_sweep.pkl`` into the dataroot."""


LAYOUTS: dict[str, WorldLayout] = {
    "pgocc": WorldLayout(dataroot=".", depth_dir="depth", feature_dir="features", target_dtype="float16", infos=False),
    "original": WorldLayout(dataroot="nuscenes", depth_dir="../nuscenes_metric3d", feature_dir="../nuscenes_featup",
                            target_dtype="float32", infos=True),
}
"""pgocc's own layout (the DataConfig defaults) and the original's (``data/nuscenes`` + ``data/nuscenes_featup`` +
``data/nuscenes_metric3d``, float32, info pickles)."""


def infos_name(split: str) -> str:
    """File name of the info pickle of ``split`` in the original's layout."""
    return f"nuscenes_infos_{split}_sweep.pkl"

FEATURE_STRIDE = 16
"""Image pixels per feature cell (the 1/16 resolution of MaskCLIP features)."""
ANNOTATION_RANGE = 60.0
"""Metres: objects closer than this to the ego at a keyframe get a sample_annotation."""


@dataclass(frozen=True, slots=True)
class WorldSpec:
    """Everything that determines a synthetic world."""

    seed: int = 0
    """Seed of every random choice."""
    scenes: int = 2
    """Number of scenes (one log each)."""
    keyframes: int = 8
    """Keyframes per scene (2 Hz)."""
    sweeps: int = 5
    """Camera sweeps between consecutive keyframes (cameras at 500 ms / (sweeps + 1))."""
    width: int = 704
    """Image width in pixels (the default is nuScenes' 1600 × 0.44, so the loader's resize is the identity)."""
    height: int = 396
    """Image height in pixels."""
    depth_noise: float = 0.0
    """Standard deviation of multiplicative log-normal noise on the foundation depth (0 = exact ray-cast depth)."""
    feature_noise: float = 0.02
    """Standard deviation of Gaussian noise added to each feature channel (embeddings are unit-norm)."""
    text_encoder: str = "minilm"
    """Text encoder of the feature maps: 'minilm' (384-d, open-vocabulary), 'hash' (384-d, no semantics) or a
    prototype file (.npz) holding the embeddings of the Occ3D prompts, e.g. another world's text_prototypes.npz
    (for machines without the MiniLM package: the world then has that file's embeddings)."""
    version: str = "v1.0-synthetic"
    """nuScenes version name (the table folder)."""

    def validate(self) -> None:
        checks = {
            "--seed": (self.seed >= 0, "must be >= 0"),
            "--scenes": (self.scenes >= 1, "must be >= 1"),
            "--keyframes": (self.keyframes >= 2, "must be >= 2"),
            "--sweeps": (self.sweeps >= 0, "must be >= 0"),
            "--width": (self.width >= 2 * FEATURE_STRIDE, f"must be >= {2 * FEATURE_STRIDE}"),
            "--height": (self.height >= 2 * FEATURE_STRIDE, f"must be >= {2 * FEATURE_STRIDE}"),
            "--depth-noise": (self.depth_noise >= 0, "must be >= 0"),
            "--feature-noise": (self.feature_noise >= 0, "must be >= 0"),
            "--text-encoder": (self.text_encoder in ("minilm", "hash") or (
                self.text_encoder.endswith(".npz") and Path(self.text_encoder).is_file()),
                "must be 'minilm', 'hash' or an existing .npz prototype file holding the Occ3D prompts"),
            "--version": (bool(self.version) and "/" not in self.version, "must be a plain folder name"),
        }
        for name, (ok, message) in checks.items():
            if not ok:
                raise ConfigError(f"{name}: {message}, got {getattr(self, name[2:].replace('-', '_'))!r}")


def _token(*parts: object) -> str:
    return hashlib.md5("/".join(map(str, parts)).encode()).hexdigest()


@functools.lru_cache(maxsize=4)
def _scene(spec: WorldSpec, index: int) -> Scene:
    return make_scene(spec.seed, index, num_keyframes=spec.keyframes, sweeps=spec.sweeps,
                      image_size=(spec.height, spec.width))


def _log_name(spec: WorldSpec, index: int) -> str:
    return f"synth-{spec.seed:05d}-{index:04d}"


def _image_name(spec: WorldSpec, scene: Scene, cam: int, t_us: int, keyframe: bool) -> str:
    folder = "samples" if keyframe else "sweeps"
    return f"{folder}/{CAMERAS[cam]}/{_log_name(spec, scene.index)}__{CAMERAS[cam]}__{t_us}.jpg"


def _lidar_name(spec: WorldSpec, scene: Scene, t_us: int) -> str:
    return f"samples/{LIDAR}/{_log_name(spec, scene.index)}__{LIDAR}__{t_us}.pcd.bin"


def _sample_token(spec: WorldSpec, scene: int, k: int) -> str:
    return _token(spec.seed, "sample", scene, k)


def feature_map(kinds: np.ndarray, kind_embeds: np.ndarray, noise: float, rng: np.random.Generator) -> np.ndarray:
    """[D, H//16, W//16] float16 features of a kind map [H, W]: per 16×16 cell the area-weighted kind embeddings
    (``kind_embeds`` [kinds, D]) plus N(0, noise²) per channel."""
    h, w = kinds.shape[0] // FEATURE_STRIDE, kinds.shape[1] // FEATURE_STRIDE
    cells = kinds[: h * FEATURE_STRIDE, : w * FEATURE_STRIDE].reshape(h, FEATURE_STRIDE, w, FEATURE_STRIDE)
    cell_id = np.arange(h * w).reshape(h, 1, w, 1)
    counts = np.bincount((cell_id * len(KINDS) + cells).reshape(-1), minlength=h * w * len(KINDS))
    fractions = counts.reshape(h * w, len(KINDS)) / float(FEATURE_STRIDE * FEATURE_STRIDE)
    feats = fractions @ kind_embeds + noise * rng.standard_normal((h * w, kind_embeds.shape[1]))
    return feats.T.reshape(-1, h, w).astype(np.float16)


def _render_keyframe(spec: WorldSpec, scene_index: int, k: int, kind_embeds: np.ndarray, root: str,
                     layout: WorldLayout) -> dict[int, int]:
    """Render keyframe ``k`` of a scene (its 6 images with depth and features, the sweeps up to the next keyframe,
    the LiDAR scan, the Occ3D labels) into the dataroot ``root`` laid out as ``layout``; returns LiDAR points per
    instance."""
    scene = _scene(spec, scene_index)
    out = Path(root)
    rng = np.random.default_rng([spec.seed, scene_index, k, 0xF00D])
    cameras = []
    for n in range(len(CAMERAS)):
        t_us = scene.camera_time(k, 0, n)
        cam2global = scene.ego2global(t_us) @ scene.cam2ego[n]
        rgb, depth, kinds, _ = render_camera(scene, cam2global, scene.intrinsics[n], t_us)
        name = _image_name(spec, scene, n, t_us, keyframe=True)
        encode_jpeg(rgb, out / name)
        cameras.append((cam2global, scene.intrinsics[n], depth))
        stored = depth
        if spec.depth_noise > 0:
            stored = np.where(kinds == SKY, depth, depth * np.exp(spec.depth_noise * rng.standard_normal(depth.shape)))
        # float16 first in either layout, so that both hold the same values.
        np.save(out / layout.depth_dir / f"{target_stem(name)}.npy",
                stored.astype(np.float16).astype(layout.target_dtype))
        np.save(out / layout.feature_dir / f"{target_stem(name)}.npy",
                feature_map(kinds, kind_embeds, spec.feature_noise, rng).astype(layout.target_dtype))
    if k + 1 < spec.keyframes:
        for j in range(1, spec.sweeps + 1):
            for n in range(len(CAMERAS)):
                t_us = scene.camera_time(k, j, n)
                cam2global = scene.ego2global(t_us) @ scene.cam2ego[n]
                rgb = render_camera(scene, cam2global, scene.intrinsics[n], t_us)[0]
                encode_jpeg(rgb, out / _image_name(spec, scene, n, t_us, keyframe=False))

    t_key = scene.keyframe_time(k)
    lidar2global = scene.ego2global(t_key) @ scene.lidar2ego
    ranges, dirs, hit = lidar_scan(scene, lidar2global, t_key)
    ok = np.isfinite(ranges)
    points = np.zeros((int(ok.sum()), 5), np.float32)
    points[:, :3] = dirs[ok] * ranges[ok][:, None]
    points[:, 3] = np.where(hit[ok] >= 0, 60.0, 15.0)  # intensity: objects brighter than the ground
    points[:, 4] = np.broadcast_to(np.arange(ranges.shape[0])[:, None], ranges.shape)[ok]
    points.tofile(out / _lidar_name(spec, scene, t_key))
    boxes_hit = hit[ok & (hit >= 0)]
    per_instance = np.bincount(scene.boxes.instance[boxes_hit], minlength=len(scene.instances.kind))

    semantics, mask_lidar, mask_camera = occupancy(scene, scene.ego2global(t_key), t_key, cameras,
                                                   (lidar2global, ranges))
    label_dir = out / LABELS_DIR / scene.name / _sample_token(spec, scene_index, k)
    label_dir.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(label_dir / "labels.npz", semantics=semantics, mask_lidar=mask_lidar, mask_camera=mask_camera)
    return {int(i): int(c) for i, c in enumerate(per_instance) if c}


Tables = dict[str, list[dict]]
"""Devkit table name → rows."""


def _vocabulary_rows(t: Tables) -> None:
    """The rows every world shares: categories, attributes, visibility levels, sensors."""
    categories = sorted({k.category for k in KINDS if k.category})
    for i, name in enumerate(categories):
        t["category"].append({"token": _token("category", name), "name": name, "description": name, "index": i})
    attributes = ("vehicle.moving", "vehicle.parked", "pedestrian.moving", "pedestrian.standing")
    for name in attributes:
        t["attribute"].append({"token": _token("attribute", name), "name": name, "description": name})
    for level, name in enumerate(("v0-40", "v40-60", "v60-80", "v80-100"), 1):
        t["visibility"].append({"token": str(level), "level": name, "description": f"visibility {name}"})
    channels = [(c, "camera") for c in CAMERAS] + [(LIDAR, "lidar")]
    for channel, modality in channels:
        t["sensor"].append({"token": _token("sensor", channel), "channel": channel, "modality": modality})


def _calibration_rows(t: Tables, spec: WorldSpec, si: int, scene: Scene) -> dict[str, str]:
    """The calibrated_sensor rows of scene ``si``; returns channel → calibration token."""
    calib = {}
    for n, channel in enumerate(CAMERAS):
        calib[channel] = _token(spec.seed, "calib", si, channel)
        m = scene.cam2ego[n]
        t["calibrated_sensor"].append({
            "token": calib[channel], "sensor_token": _token("sensor", channel),
            "translation": m[:3, 3].tolist(), "rotation": matrix_to_quat(m[:3, :3]).tolist(),
            "camera_intrinsic": scene.intrinsics[n].tolist()})
    calib[LIDAR] = _token(spec.seed, "calib", si, LIDAR)
    t["calibrated_sensor"].append({
        "token": calib[LIDAR], "sensor_token": _token("sensor", LIDAR),
        "translation": scene.lidar2ego[:3, 3].tolist(),
        "rotation": matrix_to_quat(scene.lidar2ego[:3, :3]).tolist(), "camera_intrinsic": []})
    return calib


def _sample_rows(t: Tables, spec: WorldSpec, si: int, scene: Scene, log_token: str) -> list[str]:
    """The sample rows and the scene row of scene ``si``; returns the sample tokens in keyframe order."""
    samples = [_sample_token(spec, si, k) for k in range(spec.keyframes)]
    for k, token in enumerate(samples):
        t["sample"].append({"token": token, "timestamp": scene.keyframe_time(k),
                            "scene_token": _token(spec.seed, "scene", si), "prev": samples[k - 1] if k else "",
                            "next": samples[k + 1] if k + 1 < spec.keyframes else ""})
    t["scene"].append({"token": _token(spec.seed, "scene", si), "log_token": log_token,
                       "nbr_samples": spec.keyframes, "first_sample_token": samples[0],
                       "last_sample_token": samples[-1], "name": scene.name,
                       "description": f"synthetic street, seed {spec.seed}"})
    return samples


def _sample_data_rows(t: Tables, spec: WorldSpec, si: int, scene: Scene, samples: list[str],
                      calib: dict[str, str]) -> None:
    """The sample_data rows of every sensor of scene ``si``, chained in time order, each with its ego pose."""
    # Every sensor's frames in time order: (channel, keyframe, µs, is keyframe, filename, (H, W)).
    streams = [[(channel, k, scene.camera_time(k, j, n), j == 0,
                 _image_name(spec, scene, n, scene.camera_time(k, j, n), j == 0), (spec.height, spec.width))
                for k in range(spec.keyframes) for j in range(spec.sweeps + 1 if k + 1 < spec.keyframes else 1)]
               for n, channel in enumerate(CAMERAS)]
    streams.append([(LIDAR, k, scene.keyframe_time(k), True, _lidar_name(spec, scene, scene.keyframe_time(k)),
                     (0, 0)) for k in range(spec.keyframes)])
    for stream in streams:
        chain: list[dict] = []
        for channel, k, t_us, key, filename, size in stream:
            pose = scene.ego2global(t_us)
            pose_token = _token(spec.seed, "ego_pose", si, channel, t_us)
            t["ego_pose"].append({"token": pose_token, "timestamp": t_us, "translation": pose[:3, 3].tolist(),
                                  "rotation": matrix_to_quat(pose[:3, :3]).tolist()})
            rec = {"token": _token(spec.seed, "sample_data", si, channel, t_us), "sample_token": samples[k],
                   "ego_pose_token": pose_token, "calibrated_sensor_token": calib[channel], "timestamp": t_us,
                   "fileformat": "jpg" if channel != LIDAR else "pcd", "is_key_frame": key, "height": size[0],
                   "width": size[1], "filename": filename, "prev": chain[-1]["token"] if chain else "",
                   "next": ""}
            if chain:
                chain[-1]["next"] = rec["token"]
            chain.append(rec)
            t["sample_data"].append(rec)


def _annotation(spec: WorldSpec, si: int, scene: Scene, i: int, k: int, sample: str, centre: np.ndarray,
                points: int) -> dict:
    """The sample_annotation row of instance ``i`` at keyframe ``k`` (``points``: its LiDAR points)."""
    kind = KINDS[scene.instances.kind[i]]
    moving = bool(np.linalg.norm(scene.instances.velocity[i]) > 0)
    prefix = "pedestrian" if kind.name == "pedestrian" else "vehicle"
    attr = f"{prefix}.{'moving' if moving else ('standing' if prefix == 'pedestrian' else 'parked')}"
    width, length, height = (float(v) for v in scene.instances.size[i])
    yaw = float(scene.instances.yaw[i])
    return {"token": _token(spec.seed, "ann", si, i, k), "sample_token": sample,
            "instance_token": _token(spec.seed, "instance", si, i),
            "visibility_token": "4" if points else "1", "attribute_tokens": [_token("attribute", attr)],
            "translation": centre.tolist(), "size": [width, length, height],
            "rotation": [math.cos(yaw / 2), 0.0, 0.0, math.sin(yaw / 2)], "prev": "", "next": "",
            "num_lidar_pts": points, "num_radar_pts": 0}


def _annotation_rows(t: Tables, spec: WorldSpec, si: int, scene: Scene, samples: list[str],
                     lidar_counts: dict[tuple[int, int], dict[int, int]]) -> None:
    """The sample_annotation and instance rows of the objects nuScenes annotates, near the ego at each keyframe."""
    annotated: dict[int, list[dict]] = {}
    for k in range(spec.keyframes):
        t_us = scene.keyframe_time(k)
        ego = scene.ego2global(t_us)[:3, 3]
        centres = scene.instance_poses(t_us)
        for i in np.flatnonzero(np.linalg.norm(centres[:, :2] - ego[:2], axis=1) < ANNOTATION_RANGE):
            if KINDS[scene.instances.kind[i]].category is None:
                continue
            points = lidar_counts[(si, k)].get(int(i), 0)
            annotated.setdefault(int(i), []).append(
                _annotation(spec, si, scene, int(i), k, samples[k], centres[i], points))
    for i, anns in annotated.items():
        for a, b in zip(anns, anns[1:], strict=False):
            a["next"], b["prev"] = b["token"], a["token"]
        t["sample_annotation"].extend(anns)
        t["instance"].append({"token": _token(spec.seed, "instance", si, i),
                              "category_token": _token("category", KINDS[scene.instances.kind[i]].category),
                              "nbr_annotations": len(anns), "first_annotation_token": anns[0]["token"],
                              "last_annotation_token": anns[-1]["token"]})


def _tables(spec: WorldSpec, lidar_counts: dict[tuple[int, int], dict[int, int]]) -> Tables:
    """The 13 devkit tables of the world (``lidar_counts[(scene, k)]``: LiDAR points per instance)."""
    t: Tables = {name: [] for name in TABLES}
    _vocabulary_rows(t)
    for si in range(spec.scenes):
        scene = _scene(spec, si)
        log_token = _token(spec.seed, "log", si)
        t["log"].append({"token": log_token, "logfile": _log_name(spec, si), "vehicle": "synth",
                         "date_captured": "2018-08-01", "location": "synthetic-street"})
        calib = _calibration_rows(t, spec, si, scene)
        samples = _sample_rows(t, spec, si, scene, log_token)
        _sample_data_rows(t, spec, si, scene, samples, calib)
        _annotation_rows(t, spec, si, scene, samples, lidar_counts)
    map_token = _token(spec.seed, "map")
    t["map"].append({"token": map_token, "log_tokens": [r["token"] for r in t["log"]], "category": "semantic_prior",
                     "filename": f"maps/{map_token}.png"})
    return t


def _infos(tables: Tables, scenes: list[str]) -> list[dict]:
    """mmdet3d-style info entries (the fields docs/data.md §1.1 lists) of the keyframes of ``scenes``, sorted by
    timestamp; ``data_path`` carries the original's ``./data/nuscenes/`` prefix."""
    sd = {r["token"]: r for r in tables["sample_data"]}
    scene_of = {r["token"]: r["name"] for r in tables["scene"]}
    by_sample: dict[str, dict[str, dict]] = {}
    for r in sd.values():
        if r["is_key_frame"]:
            by_sample.setdefault(r["sample_token"], {})[r["filename"].split("/")[1]] = r

    def cam(r: dict) -> dict:
        return {"data_path": f"./data/nuscenes/{r['filename']}", "timestamp": r["timestamp"]}

    entries = []
    for sample in tables["sample"]:
        if scene_of[sample["scene_token"]] not in scenes:
            continue
        keys = by_sample[sample["token"]]
        sweeps: list[dict] = []
        for channel in CAMERAS:
            prev, j = keys[channel]["prev"] if sample["prev"] else "", 0
            while prev and not sd[prev]["is_key_frame"]:
                if j == len(sweeps):
                    sweeps.append({})
                sweeps[j][channel] = cam(sd[prev])
                prev, j = sd[prev]["prev"], j + 1
        entries.append({"token": sample["token"], "timestamp": sample["timestamp"],
                        "scene_name": scene_of[sample["scene_token"]],
                        "lidar_path": f"./data/nuscenes/{keys[LIDAR]['filename']}",
                        "cams": {channel: cam(keys[channel]) for channel in CAMERAS}, "sweeps": sweeps})
    return sorted(entries, key=lambda e: e["timestamp"])


def _render_keyframes(spec: WorldSpec, kind_embeds: np.ndarray, root: Path, where: WorldLayout, jobs: int | None,
                      progress: bool) -> dict[tuple[int, int], dict[int, int]]:
    """Render every keyframe into ``root`` with ``jobs`` processes (None or 0: one per CPU core); returns the LiDAR
    points per instance of each (scene, keyframe)."""
    tasks = [(si, k) for si in range(spec.scenes) for k in range(spec.keyframes)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, len(tasks)))
    bar = tqdm(total=len(tasks), desc="make-synthetic", unit="keyframe", file=sys.stderr, disable=not progress)
    counts = []
    if jobs == 1:
        for si, k in tasks:
            counts.append(_render_keyframe(spec, si, k, kind_embeds, str(root), where))
            bar.update(1)
    else:
        # spawn: the parent may hold torch/tokenizer threads (the text encoder), which fork does not survive.
        with concurrent.futures.ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            # map yields in task order as the results come in, so the bar advances while the pool works.
            for count in pool.map(_render_keyframe, *zip(*[(spec, si, k, kind_embeds, str(root), where)
                                                           for si, k in tasks], strict=True)):
                counts.append(count)
                bar.update(1)
    bar.close()
    return dict(zip(tasks, counts, strict=True))


def _write_index_files(spec: WorldSpec, root: Path, where: WorldLayout,
                       lidar_counts: dict[tuple[int, int], dict[int, int]]) -> None:
    """The devkit tables, the map, ``splits.json``, the info pickles (where the layout has them) and ``world.json``."""
    tables = _tables(spec, lidar_counts)
    for name, rows in tables.items():
        (root / spec.version / f"{name}.json").write_text(json.dumps(rows))
    from PIL import Image

    Image.fromarray(np.zeros((64, 64), np.uint8)).save(root / tables["map"][0]["filename"])
    names = [_scene(spec, si).name for si in range(spec.scenes)]
    n_val = max(1, spec.scenes // 5) if spec.scenes > 1 else 0
    splits = {"train": names[: len(names) - n_val], "val": names[len(names) - n_val:] if n_val else names}
    (root / SPLITS_FILE).write_text(json.dumps(splits, indent=1))
    if where.infos:
        for split, scenes in splits.items():
            with open(root / infos_name(split), "wb") as f:
                pickle.dump({"infos": _infos(tables, scenes), "metadata": {"version": spec.version}}, f)
    (root / "world.json").write_text(json.dumps(dataclasses.asdict(spec), indent=1))


def make_synthetic(out: Path, spec: WorldSpec, *, jobs: int | None = None, layout: str = "pgocc",
                   progress: bool = False) -> dict[str, float]:
    """Write the world ``spec`` to ``out`` (which must not exist or be empty) using ``jobs`` processes, in the layout
    ``layout`` (a key of :data:`LAYOUTS`); ``progress`` shows a bar over the keyframes on stderr.

    Returns counts and the elapsed seconds.
    """
    spec.validate()
    if layout not in LAYOUTS:
        raise ConfigError(f"--layout: must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    where = LAYOUTS[layout]
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not an empty folder; choose a new --out")
    start = time.perf_counter()
    from pgocc.text import OCC3D_PROMPTS, save_prototypes, text_encoder

    encoder = text_encoder(spec.text_encoder)
    kind_embeds = encoder.encode([k.prompt for k in KINDS]).double().numpy()

    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    root = tmp / where.dataroot
    try:
        for sub in [spec.version, "maps", where.depth_dir, where.feature_dir, LABELS_DIR] + \
                [f"{f}/{c}" for f in ("samples", "sweeps") for c in CAMERAS] + [f"samples/{LIDAR}"]:
            (root / sub).mkdir(parents=True, exist_ok=True)
        lidar_counts = _render_keyframes(spec, kind_embeds, root, where, jobs, progress)
        _write_index_files(spec, root, where, lidar_counts)
        save_prototypes(root / "text_prototypes.npz", OCC3D_PROMPTS, encoder.encode(list(OCC3D_PROMPTS)))
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    images = spec.scenes * len(CAMERAS) * (spec.keyframes + (spec.keyframes - 1) * spec.sweeps)
    return {"scenes": spec.scenes, "samples": spec.scenes * spec.keyframes, "images": images,
            "seconds": time.perf_counter() - start}


def load_spec(root: Path) -> WorldSpec:
    """The :class:`WorldSpec` a synthetic dataset at ``root`` was made from (``world.json``)."""
    path = Path(root) / "world.json"
    if not path.is_file():
        raise DataError(f"{path}: not found; {root} is not a synthetic world")
    return WorldSpec(**json.loads(path.read_text()))


def scene_model(root: Path, index: int) -> Scene:
    """The analytic model of scene ``index`` of the synthetic dataset at ``root`` (the ground truth)."""
    return _scene(load_spec(root), index)

