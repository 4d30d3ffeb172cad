"""``pgocc check-data`` on a good and on a damaged tiny world: each damage reported under its kind, naming its file;
exit status 0 only for a clean tree."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pgocc.cli import main
from pgocc.data.check import DataTree, check_data
from tests.data_fixtures import TINY_SPEC, clone_world, original_world, replace_file, tiny_world  # noqa: F401

VERSION = TINY_SPEC.version


def _sample_data(root: Path) -> list[dict]:
    return json.loads((root / VERSION / "sample_data.json").read_text())


def _bytes_under(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def test_good_world_passes_with_its_counts_and_footprint(tiny_world: Path) -> None:  # noqa: F811
    report = check_data(DataTree(tiny_world, VERSION, "all"), fraction=1.0, progress=False)
    assert report.ok, report.summary()
    records = _sample_data(tiny_world)
    cameras = [r for r in records if "/CAM_" in r["filename"]]
    keyframes = TINY_SPEC.scenes * TINY_SPEC.keyframes
    assert (report.scenes, report.keyframes, report.checked) == (TINY_SPEC.scenes, keyframes, keyframes)
    assert report.frames == len(cameras)  # every camera frame of the world is used by some keyframe
    # sweeps: none at each scene's first keyframe, TINY_SPEC.sweeps at the others
    assert dict(report.sweeps_per_keyframe) == {0: TINY_SPEC.scenes, TINY_SPEC.sweeps: keyframes - TINY_SPEC.scenes}
    assert report.footprint["images"] == sum((tiny_world / r["filename"]).stat().st_size for r in cameras)
    assert report.footprint["depth"] == _bytes_under(tiny_world / "depth")
    assert report.footprint["features"] == _bytes_under(tiny_world / "features")
    assert report.footprint["labels"] == _bytes_under(tiny_world / "gts")
    assert report.feature_shape == (384, TINY_SPEC.height // 16, TINY_SPEC.width // 16)


def test_cli_on_the_original_layout_exits_0(original_world: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    code = main(["check-data", "--dataroot", str(original_world / "nuscenes"), "--version", VERSION, "--split",
                 "train", "--depth-dir", "../nuscenes_metric3d", "--feature-dir", "../nuscenes_featup", "--infos",
                 "nuscenes_infos_train_sweep.pkl", "--sample-fraction", "0.5"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "no problems found" in out and "contents read for 2 of 3 keyframes" in out


def _jpeg(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), (90, 120, 30)).save(buf, format="JPEG")
    return buf.getvalue()


def _npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.fixture(scope="module")
def damaged(tiny_world: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[str]]]:  # noqa: F811
    """A clone of the tiny world with one damage of each kind; returns it and, per problem kind, the damaged
    files (relative to the root)."""
    root = clone_world(tiny_world, tmp_path_factory.mktemp("damaged") / "world")
    records = _sample_data(root)
    keys = [r for r in records if r["is_key_frame"] and "/CAM_" in r["filename"]]
    sweeps = [r for r in records if not r["is_key_frame"] and "/CAM_" in r["filename"]]
    stem = [Path(r["filename"]).stem for r in keys]
    h, w = TINY_SPEC.height, TINY_SPEC.width
    damage = {
        "missing image": (sweeps[0]["filename"], None),
        "bad image": (keys[1]["filename"], _jpeg(w // 2, h // 2)),  # another size than sample_data.json says
        "missing depth": (f"depth/{stem[2]}.npy", None),
        "bad depth": (f"depth/{stem[3]}.npy", _npy(np.full((h, w), np.nan, np.float16))),
        "missing features": (f"features/{stem[4]}.npy", None),
        "bad features": (f"features/{stem[5]}.npy", _npy(np.zeros((100, h // 16, w // 16), np.float16))),
    }
    labels = sorted((root / "gts").rglob("labels.npz"))
    damage["missing labels"] = (str(labels[0].relative_to(root)), None)
    damage["bad labels"] = (str(labels[1].relative_to(root)), _npy(np.zeros(3)))
    for relative, data in damage.values():
        replace_file(root / relative, data)
    corrupt = sweeps[1]["filename"]
    replace_file(root / corrupt, b"not a jpeg at all")
    expected = {kind: [relative] for kind, (relative, _) in damage.items()}
    expected["bad image"].append(corrupt)
    return root, expected


def test_each_damage_is_reported_and_named(damaged: tuple[Path, dict[str, list[str]]]) -> None:
    root, expected = damaged
    report = check_data(DataTree(root, VERSION, "all"), fraction=1.0, progress=False)
    assert not report.ok
    for kind, messages in report.problems.items():
        files = sorted(expected.get(kind, []))
        assert len(messages) == len(files), (kind, messages)
        for relative in files:
            assert any(str(root / relative) in m for m in messages), (kind, relative, messages)
    assert "sample_data.json says 400×225" in " ".join(report.problems["bad image"])
    assert "NaN" in report.problems["bad depth"][0]
    assert "[384, h, w]" in report.problems["bad features"][0]


def test_cli_summarises_the_damage_and_exits_1(damaged: tuple[Path, dict[str, list[str]]],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    root, expected = damaged
    assert main(["check-data", "--dataroot", str(root), "--version", VERSION, "--full", "--show", "1"]) == 1
    out = capsys.readouterr().out
    for kind in expected:
        assert f"{kind}: " in out
    assert "bad image: 2 problems" in out and "… and 1 more" in out


def test_sampling_reads_only_part_but_presence_is_always_checked(damaged: tuple[Path, dict[str, list[str]]]
                                                                 ) -> None:
    root, _ = damaged
    report = check_data(DataTree(root, VERSION, "all"), fraction=0.2, seed=3, progress=False)
    assert report.checked == 2  # ceil(0.2 · 6)
    for kind in ("missing image", "missing depth", "missing features", "missing labels"):
        assert len(report.problems[kind]) == 1, kind


def test_broken_tables_and_missing_folders(tiny_world: Path, tmp_path: Path) -> None:  # noqa: F811
    root = clone_world(tiny_world, tmp_path / "world")
    report = check_data(DataTree(root, VERSION, "all", depth_dir="nowhere"), fraction=1.0, progress=False)
    assert report.problems["missing depth"] == [f"{root / 'nowhere'}: depth folder not found (data.depth_dir)"]
    replace_file(root / VERSION / "scene.json", None)
    report = check_data(DataTree(root, VERSION, "all"), fraction=1.0, progress=False)
    assert len(report.problems["tables"]) == 1 and "scene.json" in report.problems["tables"][0]
    assert report.keyframes == 0
