"""The synthetic world: devkit compatibility, determinism, and ground truth that means what it says (depth is the
ray-cast distance, labels sit where the objects are, masks follow visibility, features carry the text embeddings)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import numpy as np
import pytest
from nuscenes.nuscenes import NuScenes

from pgocc.cli import main as cli_main
from pgocc.data.geometry import quat_to_matrix, rigid
from pgocc.data.layout import CAMERAS, LIDAR, TABLES, target_stem
from pgocc.data.occ3d import FREE, GRID_SHAPE, load_labels, voxel_index
from pgocc.errors import ConfigError, DataError
from pgocc.synthetic.kinds import KINDS
from pgocc.synthetic.raycast import MAX_DEPTH
from pgocc.synthetic.writer import WorldSpec, load_spec, make_synthetic, scene_model
from pgocc.text import PrototypeEncoder
from tests.data_fixtures import TINY_SPEC, tiny_world  # noqa: F401

VERSION = TINY_SPEC.version


@pytest.fixture(scope="module")
def nusc(tiny_world: Path) -> NuScenes:  # noqa: F811
    return NuScenes(version=VERSION, dataroot=str(tiny_world), verbose=False)


def _sd_matrices(nusc: NuScenes, sd_token: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(sensor→global [4, 4], K [3, 3] or empty, ego→global [4, 4]) of a sample_data, read from the tables."""
    sd = nusc.get("sample_data", sd_token)
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    e2g = rigid(np.asarray(pose["rotation"]), pose["translation"])
    return e2g @ rigid(np.asarray(cs["rotation"]), cs["translation"]), np.asarray(cs["camera_intrinsic"]), e2g


def test_devkit_opens_world_with_consistent_tables(tiny_world: Path, nusc: NuScenes) -> None:  # noqa: F811
    assert sorted(p.stem for p in (tiny_world / VERSION).glob("*.json")) == sorted(TABLES)
    assert len(nusc.scene) == TINY_SPEC.scenes
    assert len(nusc.sample) == TINY_SPEC.scenes * TINY_SPEC.keyframes
    per_camera = TINY_SPEC.keyframes + (TINY_SPEC.keyframes - 1) * TINY_SPEC.sweeps
    for scene in nusc.scene:
        sample = nusc.get("sample", scene["first_sample_token"])
        assert sample["prev"] == ""
        for channel in (*CAMERAS, LIDAR):
            assert channel in sample["data"]
        # Each camera's chain walks through all its keyframes and sweeps, in time order, inside the scene.
        for channel in CAMERAS:
            sd = nusc.get("sample_data", sample["data"][channel])
            stamps, keys = [], 0
            while True:
                stamps.append(sd["timestamp"])
                keys += sd["is_key_frame"]
                assert (tiny_world / sd["filename"]).is_file()
                assert (sd["width"], sd["height"]) == (TINY_SPEC.width, TINY_SPEC.height)
                if not sd["next"]:
                    break
                sd = nusc.get("sample_data", sd["next"])
            assert len(stamps) == per_camera and keys == TINY_SPEC.keyframes
            assert np.all(np.diff(stamps) > 0)
    # Cameras of one keyframe fire at different times, so each has its own ego pose.
    sample = nusc.sample[1]
    stamps = {nusc.get("sample_data", sample["data"][c])["timestamp"] for c in CAMERAS}
    assert len(stamps) == len(CAMERAS)
    _, boxes, k = nusc.get_sample_data(sample["data"]["CAM_FRONT"])
    assert k.shape == (3, 3) and len(nusc.sample_annotation) > 0
    assert {a["category_name"] for a in nusc.sample_annotation} <= {k.category for k in KINDS if k.category}


def test_calibration_matches_rig(tiny_world: Path, nusc: NuScenes) -> None:  # noqa: F811
    """Calibrations in the tables are the scene's rig (quaternions round-trip), cameras are level and ordered."""
    scene = scene_model(tiny_world, 0)
    sample = nusc.get("sample", nusc.scene[0]["first_sample_token"])
    yaws = []
    for n, channel in enumerate(CAMERAS):
        sd = nusc.get("sample_data", sample["data"][channel])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        np.testing.assert_allclose(rigid(np.asarray(cs["rotation"]), cs["translation"]), scene.cam2ego[n], atol=1e-9)
        np.testing.assert_allclose(cs["camera_intrinsic"], scene.intrinsics[n], atol=1e-9)
        optical_axis = quat_to_matrix(cs["rotation"])[:, 2]
        assert abs(optical_axis[2]) < 0.01  # level (±0.3° pitch jitter)
        yaws.append(math.degrees(math.atan2(optical_axis[1], optical_axis[0])))
    np.testing.assert_allclose(np.array(yaws), [0, -55, 55, 180 if yaws[3] > 0 else -180, 110, -110], atol=0.5)


def test_world_is_deterministic_and_independent_of_jobs(tmp_path: Path) -> None:
    spec = WorldSpec(seed=3, scenes=1, keyframes=2, sweeps=1, width=96, height=64, text_encoder="hash")

    def digest(root: Path) -> dict[str, str]:
        return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}

    make_synthetic(tmp_path / "a", spec, jobs=1)
    make_synthetic(tmp_path / "b", spec, jobs=2)
    make_synthetic(tmp_path / "c", WorldSpec(**{**json.loads((tmp_path / "a" / "world.json").read_text()), "seed": 4}),
                   jobs=1)
    a, b, c = digest(tmp_path / "a"), digest(tmp_path / "b"), digest(tmp_path / "c")
    assert a == b
    jpegs = [name for name in a if name.endswith(".jpg")]
    assert jpegs and all(a[name] != c.get(name.replace("synth-00003", "synth-00004"), "") for name in jpegs)
    assert load_spec(tmp_path / "a") == spec
    assert not list(tmp_path.glob(".*partial*"))


def _ray_cast(scene, origin: np.ndarray, direction: np.ndarray, t_us: int) -> float:  # noqa: ANN001
    """Independent float64 first hit (parameter t along ``direction``) of one ray with the ground and the boxes."""
    best = math.inf
    if direction[2] < 0:
        best = -origin[2] / direction[2]
    centres, yaws = scene.box_poses(t_us)
    for c, yaw, half in zip(centres, yaws, scene.boxes.half, strict=True):
        r = np.array([[math.cos(yaw), math.sin(yaw), 0.0], [-math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
        o, d = r @ (origin - c), r @ direction
        with np.errstate(divide="ignore", invalid="ignore"):
            t1, t2 = (-half - o) / d, (half - o) / d
        t_in, t_out = np.nanmax(np.minimum(t1, t2)), np.nanmin(np.maximum(t1, t2))
        if t_in <= t_out and 0.05 < t_in < best:
            best = t_in
    return best if best < MAX_DEPTH else MAX_DEPTH


def test_depth_equals_ray_cast_distance(tiny_world: Path, nusc: NuScenes, seed: int) -> None:  # noqa: F811
    """Depth at a pixel = camera z of the first surface on the pixel's ray (camera model from the tables)."""
    rng = np.random.default_rng(seed)
    scene_index = 1
    scene = scene_model(tiny_world, scene_index)
    sample = nusc.get("sample", nusc.scene[scene_index]["first_sample_token"])
    for channel in ("CAM_FRONT", "CAM_BACK_LEFT"):
        sd = nusc.get("sample_data", sample["data"][channel])
        cam2global, k, _ = _sd_matrices(nusc, sd["token"])
        depth = np.load(tiny_world / "depth" / f"{target_stem(sd['filename'])}.npy")
        assert depth.shape == (TINY_SPEC.height, TINY_SPEC.width) and depth.dtype == np.float16
        for u, v in zip(rng.integers(0, TINY_SPEC.width, 60), rng.integers(0, TINY_SPEC.height, 60), strict=True):
            ray = cam2global[:3, :3] @ np.linalg.solve(k, [u, v, 1.0])  # camera z = 1: t is the depth
            expected = _ray_cast(scene, cam2global[:3, 3], ray, sd["timestamp"])
            assert float(depth[v, u]) == pytest.approx(expected, rel=2e-3), (channel, u, v)


def test_labels_put_objects_where_they_are(tiny_world: Path, nusc: NuScenes) -> None:  # noqa: F811
    """The voxel holding an annotated object's centre (from the tables) carries the object's class."""
    label_of = {k.category: k.label for k in KINDS if k.category}
    checked = 0
    for sample in nusc.sample:
        scene = nusc.get("scene", sample["scene_token"])
        sem, _, _ = load_labels(tiny_world / "gts" / scene["name"] / sample["token"] / "labels.npz")
        _, _, e2g = _sd_matrices(nusc, sample["data"][LIDAR])
        g2e = np.linalg.inv(e2g)
        for ann in (nusc.get("sample_annotation", t) for t in sample["anns"]):
            centre = g2e[:3, :3] @ np.asarray(ann["translation"]) + g2e[:3, 3]
            i, j, kk = voxel_index(centre)
            if 0 <= i < GRID_SHAPE[0] and 0 <= j < GRID_SHAPE[1] and 0 <= kk < GRID_SHAPE[2]:
                assert sem[i, j, kk] == label_of[ann["category_name"]], ann["category_name"]
                checked += 1
        # The ground layer (z = 0 lies in layer 2) is labelled, the layers below it are free.
        assert np.isin(sem[:, :, 2], [4, 1, 2, 3, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16]).all()
        assert (sem[:, :, 0] == FREE).all()
    assert checked >= 10


def test_masks_follow_visibility(tiny_world: Path, nusc: NuScenes) -> None:  # noqa: F811
    sample = nusc.get("sample", nusc.scene[0]["first_sample_token"])
    scene = nusc.get("scene", sample["scene_token"])
    sem, mask_lidar, mask_camera = load_labels(tiny_world / "gts" / scene["name"] / sample["token"] / "labels.npz")
    # Nothing below the ground can be seen.
    assert not mask_camera[:, :, :2].any() and not mask_lidar[:, :, :2].any()
    # Along the front camera's ray to the road ahead: free voxels before the surface are seen, the surface too.
    sd = nusc.get("sample_data", sample["data"]["CAM_FRONT"])
    cam2global, k, _ = _sd_matrices(nusc, sd["token"])
    _, _, e2g = _sd_matrices(nusc, sample["data"][LIDAR])
    depth = np.load(tiny_world / "depth" / f"{target_stem(sd['filename'])}.npy").astype(np.float64)
    u, v = TINY_SPEC.width // 2, int(TINY_SPEC.height * 0.8)  # looking down at the road a few metres ahead
    g2e = np.linalg.inv(e2g)
    ray = cam2global[:3, :3] @ np.linalg.solve(k, [u, v, 1.0])
    above_ground = 0
    for frac in np.linspace(0.4, 0.95, 12):
        p = g2e[:3, :3] @ (cam2global[:3, 3] + frac * depth[v, u] * ray) + g2e[:3, 3]
        if p[2] > 0.3:  # above the ground layer (z = 0 ± 0.2)
            idx = tuple(voxel_index(p))
            assert mask_camera[idx] and sem[idx] == FREE
            above_ground += 1
    assert above_ground >= 3
    surface = tuple(voxel_index(g2e[:3, :3] @ (cam2global[:3, 3] + depth[v, u] * ray) + g2e[:3, 3]))
    assert mask_camera[surface] and sem[surface] == 11  # driveable surface
    # Occupied voxels deep inside solid objects are hidden from every sensor.
    model = scene_model(tiny_world, 0)
    inner = [(c, h) for c, h, kind in zip(model.box_poses(sample["timestamp"])[0], model.boxes.half,
                                          model.boxes.kind, strict=True)
             if KINDS[kind].name == "building" and min(h[:2]) > 3.0]
    hidden = 0
    for c, _ in inner:
        idx = voxel_index(g2e[:3, :3] @ (c * [1, 1, 0] + [0, 0, 2.0]) + g2e[:3, 3])
        if (0 <= idx).all() and (idx < GRID_SHAPE).all():
            assert sem[tuple(idx)] == 15 and not mask_camera[tuple(idx)] and not mask_lidar[tuple(idx)]
            hidden += 1
    assert hidden >= 1
    assert 0.01 < mask_camera.mean() < 0.6 and 0.01 < mask_lidar.mean() < 0.6


def test_feature_maps_carry_text_embeddings(tiny_world: Path, nusc: NuScenes) -> None:  # noqa: F811
    """Cells of the front image: sky at the top, road at the bottom centre, found by the world's prototypes."""
    protos = PrototypeEncoder.from_file(tiny_world / "text_prototypes.npz")
    table = protos.encode(list(protos.prompts)).numpy()
    sample = nusc.get("sample", nusc.scene[0]["first_sample_token"])
    sd = nusc.get("sample_data", sample["data"]["CAM_FRONT"])
    feats = np.load(tiny_world / "features" / f"{target_stem(sd['filename'])}.npy").astype(np.float32)
    assert feats.shape == (384, TINY_SPEC.height // 16, TINY_SPEC.width // 16)
    for (row, col), prompt in (((0, feats.shape[2] // 2), "sky"), ((feats.shape[1] - 1, feats.shape[2] // 2), "road")):
        f = feats[:, row, col]
        scores = table @ (f / np.linalg.norm(f))
        assert protos.prompts[int(np.argmax(scores))] == prompt
        assert scores.max() > 0.8


def test_cli_make_synthetic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    assert cli_main(["make-synthetic", "--out", str(out), "--scenes", "1", "--keyframes", "2", "--sweeps", "0",
                     "--width", "64", "--height", "48", "--text-encoder", "hash", "--jobs", "1"]) == 0
    assert "1 scenes, 2 samples, 12 images" in capsys.readouterr().out
    NuScenes(version=VERSION, dataroot=str(out), verbose=False)
    # An existing non-empty folder and invalid sizes are refused with the argument named.
    assert cli_main(["make-synthetic", "--out", str(out), "--text-encoder", "hash"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["make-synthetic", "--out", str(tmp_path / "x"), "--keyframes", "1"]) == 2
    assert "--keyframes" in capsys.readouterr().err


def test_spec_validation_names_the_argument() -> None:
    with pytest.raises(ConfigError, match="--width"):
        WorldSpec(width=8).validate()
    with pytest.raises(ConfigError, match="--text-encoder"):
        WorldSpec(text_encoder="clip").validate()
    with pytest.raises(DataError, match="not a synthetic world"):
        load_spec(Path("/nonexistent"))
