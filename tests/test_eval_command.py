"""``pgocc eval`` end to end on the tiny synthetic world: predictions made from its own labels (so every score is
known without the code under test), and every bad input naming its file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pgocc.cli import main
from pgocc.data.occ3d import load_labels
from tests.data_fixtures import tiny_world  # noqa: F401

CAR, FREE = 4, 17


def _labels(world: Path) -> dict[str, Path]:
    return {p.parent.name: p for p in sorted((world / "gts").glob("*/*/labels.npz"))}


def _write(folder: Path, token: str, pred: np.ndarray) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(folder / f"{token}.npz", pred=pred)
    return folder / f"{token}.npz"


def test_perfect_predictions_score_one_and_missed_cars_score_zero(tiny_world: Path, tmp_path: Path,  # noqa: F811
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    labels = _labels(tiny_world)
    token, path = next((t, p) for t, p in labels.items()
                       if (lambda g, m: ((g == CAR) & m).any())(*load_labels(p)[::2]))
    gt, _, camera = load_labels(path)
    _write(tmp_path / "perfect", token, gt)
    assert main(["eval", "--predictions", str(tmp_path / "perfect"), "--labels", str(tiny_world / "gts"),
                 "--dataroot", str(tiny_world)]) == 0
    out = capsys.readouterr().out
    scores = json.loads((tmp_path / "perfect" / "eval.json").read_text())
    assert scores["occupancy"]["miou"] == 1.0 and scores["occupancy"]["geometric_iou"] == 1.0
    assert scores["rays"]["rayiou"] == 1.0 and scores["rays"]["rays"] > 0
    assert scores["occupancy"]["voxels"] == int(camera.sum())
    assert "mIoU (15 classes) 100.0 %" in out and "RayIoU 100.0 %" in out and "the original's rule" in out

    missed = gt.copy()
    missed[missed == CAR] = FREE                         # every car voxel called free: car IoU 0, the rest 1
    _write(tmp_path / "missed", token, missed)
    assert main(["eval", "--predictions", str(tmp_path / "missed"), "--labels", str(tiny_world / "gts"),
                 "--out", str(tmp_path / "missed.json")]) == 0
    occ = json.loads((tmp_path / "missed.json").read_text())["occupancy"]
    assert occ["per_class_iou"]["car"] == 0.0
    present = [c for c, v in occ["per_class_iou"].items() if v is not None and c in occ["eval_classes"]]
    assert occ["miou"] == pytest.approx((len(present) - 1) / len(present))
    assert json.loads((tmp_path / "missed.json").read_text())["rays"] is None   # no --dataroot: no RayIoU


@pytest.mark.parametrize(("what", "message"), [
    ("shape", "pred must be uint8 [200, 200, 16], got uint8 [200, 200, 8]"),
    ("dtype", "pred must be uint8 [200, 200, 16], got int64"),
    ("key", "no array 'pred'"),
    ("garbage", "not a readable .npz prediction"),
    ("range", "holds label 18"),
    ("token", "no labels for sample token 'not-a-token'"),
])
def test_bad_prediction_files_name_the_file(tiny_world: Path, tmp_path: Path, what: str, message: str,  # noqa: F811
                                            capsys: pytest.CaptureFixture[str]) -> None:
    token = next(iter(_labels(tiny_world)))
    folder = tmp_path / "preds"
    folder.mkdir()
    path = folder / f"{token}.npz"
    if what == "shape":
        np.savez(path, pred=np.zeros((200, 200, 8), np.uint8))
    elif what == "dtype":
        np.savez(path, pred=np.zeros((200, 200, 16), np.int64))
    elif what == "key":
        np.savez(path, labels=np.zeros((200, 200, 16), np.uint8))
    elif what == "garbage":
        path.write_bytes(b"not an npz")
    elif what == "range":
        np.savez(path, pred=np.full((200, 200, 16), 18, np.uint8))
    else:
        path = folder / "not-a-token.npz"
        np.savez(path, pred=np.zeros((200, 200, 16), np.uint8))
    assert main(["eval", "--predictions", str(folder), "--labels", str(tiny_world / "gts")]) == 2
    err = capsys.readouterr().err
    last = err.strip().splitlines()[-1]      # after the progress bar
    assert "Traceback" not in err and last.startswith(f"pgocc eval: error: {path}: ") and message in last
    assert not (folder / "eval.json").exists()


def test_missing_folders_and_empty_predictions(tiny_world: Path, tmp_path: Path,  # noqa: F811
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", "--predictions", str(tmp_path / "none"), "--labels", str(tiny_world / "gts")]) == 2
    assert "none: predictions folder not found (--predictions)" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["eval", "--predictions", str(tmp_path / "empty"), "--labels", str(tiny_world / "gts")]) == 2
    assert "empty: no <sample token>.npz prediction files" in capsys.readouterr().err
    _write(tmp_path / "one", "tok", np.zeros((200, 200, 16), np.uint8))
    assert main(["eval", "--predictions", str(tmp_path / "one"), "--labels", str(tmp_path / "nolabels")]) == 2
    assert "nolabels: Occ3D labels root not found (--labels)" in capsys.readouterr().err
