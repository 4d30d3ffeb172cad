"""bench/dump_gaussians.py + bench/readout_study.py against ``pgocc infer``: the study's scores of the model's own
readout, and of the voxel-mean readout, must be those of ``pgocc infer`` on the same samples (a wrong unpacking of
the camera mask, a label misaligned with its voxel, another grid origin or a readout the project does not have would
each change them by far more than the 1 % the dump's float16 storage allows)."""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import pytest

from bench import dump_gaussians, readout_study
from pgocc.cli import main
from pgocc.config import apply_overrides, load_experiment
from pgocc.training.checkpoint import export_model
from tests.data_fixtures import tiny_world  # noqa: F401
from tests.test_infer import SETS, opaque_state


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """configs.tiny with Gaussian heads that output opaque 0.3-m Gaussians at their FPS points (so that the readout
    has occupied voxels), exported with its config."""
    cfg = apply_overrides(load_experiment("configs.tiny:tiny"), SETS)
    return export_model(opaque_state(SETS), cfg, tmp_path_factory.mktemp("export") / "model.safetensors")


def _infer(world: Path, checkpoint: Path, out: Path, *sets: str) -> dict[str, float]:
    args = ["infer", "--checkpoint", str(checkpoint), "--dataroot", str(world), "--set", "data.val_split=all",
            "--num-samples", "2", "--pictures", "0", "--no-rayiou", "--out", str(out)]
    for s in sets:
        args += ["--set", s]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(args) == 0
    return json.loads((out / "summary.json").read_text())["metrics"]["occupancy"]


def test_study_scores_equal_those_of_infer(tiny_world: Path, exported: Path, tmp_path: Path,  # noqa: F811
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    dump, report = tmp_path / "dump.npz", tmp_path / "study.json"
    monkeypatch.setattr(sys, "argv", ["dump_gaussians", "--checkpoint", str(exported), "--dataroot", str(tiny_world),
                                      "--num-samples", "2", "--out", str(dump), "--set", "data.num_workers=0"])
    dump_gaussians.main()
    monkeypatch.setattr(sys, "argv", ["readout_study", str(dump), "--json", str(report)])
    with contextlib.redirect_stdout(io.StringIO()):
        readout_study.main()
    study = json.loads(report.read_text())
    cfg = load_experiment("configs.tiny:tiny").model
    row = f"opacity>{cfg.opacity_threshold:g} | var>{cfg.min_variance:g} | density>{cfg.density_threshold:g}"
    for name, sets in (("centre", ()), ("voxel mean", ("model.voxel_average=true",))):
        want = _infer(tiny_world, exported, tmp_path / name.replace(" ", "_"), *sets)
        got = study[f"{name} | {row}"]
        assert want["geometric_iou"] > 0, "the test model should occupy voxels"
        # The dump stores scales, rotations and similarities in float16: a voxel at the density threshold may flip.
        for key in ("miou", "geometric_iou", "geometric_iou_above_ground"):
            assert got[key] == pytest.approx(want[key], rel=0.01), (name, key)
