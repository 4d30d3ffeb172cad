"""``pgocc demo`` on a tiny held-out world with a tiny exported model: the whole pipeline (world written then
reused, trained and untrained runs, ground-plane baseline, queries, pictures, training curves, report.md)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from PIL import Image

from pgocc.cli import main
from pgocc.config import apply_overrides, load_experiment
from pgocc.eval import demo, rays
from pgocc.synthetic.writer import WorldSpec
from pgocc.training.checkpoint import export_model
from tests.test_infer import opaque_state

SETS = ["data.render_size=45,80", "model.num_queries=24,8,8", "data.num_workers=0", "train.num_steps=30"]
SPEC = WorldSpec(seed=5, scenes=1, keyframes=2, sweeps=1, width=320, height=180, text_encoder="hash")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported tiny model whose Gaussian heads output opaque 0.3 m Gaussians (so the readout has occupied
    voxels), with a metrics.jsonl beside it that ends at its train.num_steps."""
    cfg = apply_overrides(load_experiment("configs.tiny:tiny"), SETS)
    path = export_model(opaque_state(SETS), cfg, tmp_path_factory.mktemp("ckpt") / "model.safetensors")
    record = {"loss": 1.0, "depth_l1_2": 1.0, "depth_silog_2": 1.0, "feat_cos_2": 0.5, "warp_2": 0.1,
              "opacity_mean_2": 0.5, "opacity_above_threshold_2": 0.5, "scale_median_2": 0.3}
    lines = [json.dumps({"step": s, **record}) for s in (10, 20, 30)]
    lines.append(json.dumps({"step": 30, "split": "val", "miou": 0.1, "geometric_iou": 0.2,
                             "geometric_iou_above_ground": 0.1}))
    path.with_name("model.metrics.jsonl").write_text("\n".join(lines) + "\n")
    return path


def test_demo_end_to_end(checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(demo, "WORLD", SPEC)
    # every 20th LiDAR ray keeps RayIoU cheap here (tests/test_rays.py checks the rays themselves)
    monkeypatch.setattr(rays, "lidar_ray_directions", lambda full=rays.lidar_ray_directions: full()[::20])
    world, out = tmp_path / "world", tmp_path / "demo"
    assert main(["demo", "--world", str(world), "--checkpoint", str(checkpoint), "--out", str(out),
                 *[a for s in SETS for a in ("--set", s)]]) == 0
    stdout = capsys.readouterr().out
    assert (world / "world.json").is_file()
    report = (out / "report.md").read_text()
    assert f"report: {out / 'report.md'}" in stdout and "untrained" in stdout
    for query, _ in demo.QUERIES:
        assert f"retrieval AP {query!r}" in report and f"**{query!r}**" in report
    assert "| mIoU, 15 classes |" in report and "| RayIoU (1, 2, 4 m) |" in report
    # every picture the report shows exists and is a PNG; the training curves are among them
    shown = re.findall(r"!\[[^]]*\]\(([^)]+)\)", report)
    assert "training_curves.png" in shown and any(p.endswith("bev.png") for p in shown)
    assert any(p.endswith("cameras.png") for p in shown) and any("automobile" in p for p in shown)
    for rel in shown:
        with Image.open(out / rel) as im:
            assert im.format == "PNG"
    for run in ("trained", "untrained"):
        summary = json.loads((out / run / "summary.json").read_text())
        assert summary["samples"] == demo.SAMPLES and summary["metrics"]["rays"]["rays"] > 0
        assert summary["retrieval"]["ap"].keys() == {q for q, _ in demo.QUERIES}
    assert json.loads((out / "untrained" / "summary.json").read_text())["weights"].startswith("random")
    assert json.loads((out / "ground_plane" / "eval.json").read_text())["occupancy"]["samples"] == demo.SAMPLES

    # a second run reuses the world; a metrics.jsonl of another run gives no curves but a note
    stamp = (world / "world.json").stat().st_mtime_ns
    assert demo.ensure_world(world, SPEC) is False and (world / "world.json").stat().st_mtime_ns == stamp
    checkpoint.with_name("model.metrics.jsonl").write_text(json.dumps({"step": 7, "loss": 1.0, "depth_l1_2": 1.0})
                                                           + "\n")
    curves, note = demo._curves(checkpoint, 30, tmp_path)
    assert curves is None and "ends at step 7 but the checkpoint was trained for 30 steps" in note


def test_demo_refuses_another_world_and_a_state_dict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "w").mkdir()
    (tmp_path / "w" / "world.json").write_text(json.dumps({"seed": 99}))
    assert main(["demo", "--world", str(tmp_path / "w"), "--out", str(tmp_path / "o")]) == 2
    assert "holds another synthetic world" in capsys.readouterr().err
    assert main(["demo", "--checkpoint", str(tmp_path / "model.pt"), "--out", str(tmp_path / "o")]) == 2
    assert "model.pt: the demo needs an exported model (.safetensors" in capsys.readouterr().err
