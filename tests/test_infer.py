"""``pgocc infer`` end to end on the tiny synthetic world (tests/data_fixtures.py) with configs.tiny:tiny.

The model runs at a reduced render size and query count (``SETS``) to keep the CPU time low; the readout grid stays
the Occ3D 200 × 200 × 16 so that the mIoU path runs against the world's labels.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pgocc import ops
from pgocc.cli import main
from pgocc.config import apply_overrides, load_experiment
from pgocc.data.occ3d import load_labels
from pgocc.eval.metrics import OccupancyMIoU
from pgocc.model import PGOcc
from pgocc.vis import OCC3D_COLORS, top_labels
from tests.data_fixtures import clone_world, decoded_jpegs, tiny_world  # noqa: F401

SETS = ["data.render_size=45,80", "model.num_queries=24,8,8", "data.num_workers=0"]
QUERIES = ["car", "a parked car"]


def _args(*extra: str, sets: list[str] = SETS) -> list[str]:
    out = ["infer", "--config", "configs.tiny:tiny"]
    for s in sets:
        out += ["--set", s]
    return out + list(extra)


def _model(sets: list[str] = SETS) -> PGOcc:
    cfg = apply_overrides(load_experiment("configs.tiny:tiny"), sets)
    return PGOcc(cfg.model, cfg.kernels)


def opaque_state(sets: list[str] = SETS) -> dict[str, torch.Tensor]:
    """State dict of configs.tiny (with ``sets``) whose Gaussian heads output fixed, opaque, 0.3 m Gaussians at their
    FPS points, so the readout has occupied voxels (a random model's Gaussians mostly fail the opacity filter).

    The other weights are seeded here: module fixtures call this before the per-test seeding, and with weights drawn
    from whatever state earlier tests left, tests/test_readout_study.py's float16 dump once moved this tiny model's
    mIoU by 8.6 % against its 1 % tolerance."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        state = _model(sets).state_dict()
    for s in range(3):
        state[f"gaussian_heads.{s}.2.weight"].zero_()
        # raw = (Δ = 0 | quaternion 1, 0, 0, 0 | scale 6.4·σ(−3) ≈ 0.3 m | opacity σ(4) ≈ 0.98)
        state[f"gaussian_heads.{s}.2.bias"].copy_(torch.tensor([0, 0, 0, 1, 0, 0, 0, -3, -3, -3, 4.0]))
    return state


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """:func:`opaque_state` saved as a plain state dict."""
    state = opaque_state()
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(state, path)
    return path


@pytest.fixture(scope="module")
def run(tiny_world: Path, checkpoint: Path, tmp_path_factory: pytest.TempPathFactory  # noqa: F811
        ) -> tuple[Path, str, str]:
    """One labelled run over the first 2 val samples, with two queries and pictures; (run dir, stdout, stderr)."""
    out = tmp_path_factory.mktemp("infer") / "run"
    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        code = main(_args("--dataroot", str(tiny_world), "--checkpoint", str(checkpoint), "--num-samples", "2",
                          "--out", str(out), "--pictures", "1", "--no-rayiou",
                          *[a for q in QUERIES for a in ("--query", q)]))
    assert code == 0, stderr.getvalue()
    return out, stdout.getvalue(), stderr.getvalue()


def _sample_dirs(run_dir: Path) -> list[Path]:
    return sorted(p.parent for p in run_dir.glob("samples/*/*/queries.npz"))


def _pred(run_dir: Path, token: str) -> np.ndarray:
    with np.load(run_dir / "predictions" / f"{token}.npz") as z:
        return z["pred"]


def test_writes_predictions_and_query_volumes_per_sample(run: tuple[Path, str, str]) -> None:
    run_dir, _, _ = run
    dirs = _sample_dirs(run_dir)
    assert len(dirs) == 2
    assert sorted(p.stem for p in (run_dir / "predictions").glob("*.npz")) == sorted(d.name for d in dirs)
    for d in dirs:
        labels = _pred(run_dir, d.name)
        with np.load(d / "queries.npz") as z:
            similarity, queries = z["similarity"], z["queries"]
        assert labels.shape == (200, 200, 16) and labels.dtype == np.uint8
        # The readout predicts 1..11 and 13..17 (never others/other_flat, docs/model.md §6.1).
        assert set(np.unique(labels)) <= set(range(1, 12)) | set(range(13, 18))
        assert (labels != 17).any(), "the opaque checkpoint should occupy some voxels"
        assert similarity.shape == (2, 200, 200, 16) and similarity.dtype == np.float16
        assert np.isfinite(similarity).all() and (similarity != 0).any()
        assert list(queries) == QUERIES
        # Occupied voxels (density > 0.04) have a non-zero density-normalised similarity to every query.
        assert (similarity[:, labels != 17] != 0).all()


def test_metrics_match_the_labels_on_disk(run: tuple[Path, str, str], tiny_world: Path) -> None:  # noqa: F811
    run_dir, stdout, _ = run
    summary = json.loads((run_dir / "summary.json").read_text())
    metric = OccupancyMIoU()
    for d in _sample_dirs(run_dir):
        scene, token = d.parent.name, d.name
        gt, _, camera = load_labels(tiny_world / "gts" / scene / token / "labels.npz")
        metric.update(_pred(run_dir, token), gt, camera)
    expected = metric.compute().as_dict()
    got = summary["metrics"]["occupancy"]
    assert json.loads((run_dir / "eval.json").read_text()) == summary["metrics"]
    assert got["samples"] == 2 and got["voxels"] == expected["voxels"] > 0
    assert got["geometric_iou"] == pytest.approx(expected["geometric_iou"])
    assert got["miou"] == pytest.approx(expected["miou"], nan_ok=True)
    assert got["per_class_iou"] == pytest.approx(expected["per_class_iou"], nan_ok=True)
    assert summary["metrics"]["rays"] is None                                  # --no-rayiou
    assert f"geometric IoU {100 * expected['geometric_iou']:5.1f} %" in stdout
    # the tiny world is exact (no depth noise): the rendered depth is scored against it
    assert summary["depth"]["images"] == 2 * 6 and 0 <= summary["depth"]["delta_1.25"] <= 1


def test_run_directory_files_and_summary(run: tuple[Path, str, str], checkpoint: Path) -> None:
    run_dir, stdout, stderr = run
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"]["num_queries"] == [24, 8, 8] and config["data"]["render_size"] == [45, 80]
    cfg = load_experiment("configs.tiny:tiny")
    assert json.loads((run_dir / "kernels.json").read_text()) == ops.kernel_table(cfg.kernels)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["samples"] == 2 and summary["weights"] == str(checkpoint) and summary["queries"] == QUERIES
    assert summary["seconds_per_sample"] > 0 and summary["split"] == "val"
    for name in summary["files"]:
        assert (run_dir / name).is_file(), name
    assert not list(run_dir.rglob(".*.tmp")), "temporary files left behind"
    assert "2 sample(s)" in stdout and "predictions/<token>.npz" in stdout and "RANDOMLY" not in stderr
    assert "infer: 100%" in stderr  # the progress bar


def test_pictures_of_the_first_sample_show_its_labels(run: tuple[Path, str, str]) -> None:
    run_dir, _, _ = run
    first, second = _sample_dirs(run_dir)
    drawn = [d for d in (first, second) if (d / "bev.png").exists()]
    assert len(drawn) == 1, "--pictures 1 draws exactly one sample"
    d = drawn[0]
    names = sorted(p.name for p in d.glob("*.png"))
    assert names == ["bev.png", "cameras.png", "query_0_car.png", "query_1_a-parked-car.png", "voxels.png"]
    for name in names:
        with Image.open(d / name) as im:
            im.verify()
        with Image.open(d / name) as im:
            assert im.format == "PNG" and im.size[0] > 300 and im.size[1] > 300
    top = top_labels(_pred(run_dir, d.name))
    pixels = np.asarray(Image.open(d / "bev.png").convert("RGB")).reshape(-1, 3)
    for label in np.unique(top[top != 17]):
        assert (pixels == OCC3D_COLORS[label]).all(1).any(), f"class {label} is not drawn in bev.png"


def test_without_labels_or_checkpoint_default_run_dir(tiny_world: Path, tmp_path: Path,  # noqa: F811
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    world = clone_world(tiny_world, tmp_path / "world")
    shutil.rmtree(world / "gts")  # removes the clone's symlinks, not the shared world's files
    # A small grid keeps this run cheap; without labels it need not be Occ3D's.
    sets = [*SETS, "model.pc_range=-6.4,-6.4,-1,6.4,6.4,5.4", f"train.run_root={tmp_path / 'runs'}"]
    assert main(_args("--dataroot", str(world), "--num-samples", "1", "--query", "tree", sets=sets)) == 0
    out, err = capsys.readouterr()
    assert err.count("RANDOMLY INITIALISED") == 1 and "no mIoU" in err
    assert "metrics: none" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("infer-")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["metrics"] is None and summary["weights"].startswith("random initialisation")
    (d,) = _sample_dirs(run_dir)
    assert _pred(run_dir, d.name).shape == (32, 32, 16) and not (run_dir / "eval.json").exists()
    with np.load(d / "queries.npz") as z:
        assert z["similarity"].shape == (1, 32, 32, 16)
    assert (d / "bev.png").is_file() and (d / "query_0_tree.png").is_file()


def test_missing_dataroot_is_a_data_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args("--dataroot", str(tmp_path / "nowhere"))) == 2
    err = capsys.readouterr().err
    assert "nowhere: dataset root not found" in err and "make-synthetic" in err


def test_missing_prototypes_is_a_data_error(tiny_world: Path, tmp_path: Path,  # noqa: F811
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(_args("--dataroot", str(tiny_world), "--prototypes", str(tmp_path / "protos.npz"))) == 2
    assert "protos.npz: Occ3D prompt prototypes not found; pass --prototypes" in capsys.readouterr().err


def test_checkpoint_that_does_not_match_lists_the_differences(tiny_world: Path, checkpoint: Path,  # noqa: F811
                                                              tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    state = torch.load(checkpoint, weights_only=True)
    del state["query_embeds.weight"]
    state["bogus.weight"] = torch.zeros(1)
    state["ov_heads.2.4.bias"] = torch.zeros(7)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    assert main(_args("--dataroot", str(tiny_world), "--checkpoint", str(bad))) == 2
    err = capsys.readouterr().err
    assert "bad.pt: does not match the model of --config configs.tiny:tiny" in err
    assert "missing (1):\n    query_embeds.weight" in err and "unexpected (1):\n    bogus.weight" in err
    assert "ov_heads.2.4.bias: file (7,) vs model (384,)" in err


@pytest.mark.parametrize("content", [b"not a checkpoint", None])
def test_unreadable_or_missing_checkpoint(tiny_world: Path, tmp_path: Path, content: bytes | None,  # noqa: F811
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.pt"
    if content is not None:
        path.write_bytes(content)
    assert main(_args("--dataroot", str(tiny_world), "--checkpoint", str(path))) == 2
    err = capsys.readouterr().err
    assert ("cannot read the checkpoint" if content else "checkpoint file not found") in err


def test_online_decodes_the_current_images_only_and_gives_the_same_labels(
        run: tuple[Path, str, str], tiny_world: Path, checkpoint: Path, tmp_path: Path,  # noqa: F811
        decoded_jpegs: list[Path]) -> None:  # noqa: F811
    """``--online`` reads the 6 current JPEGs of each sample (configs.tiny has 2 frames: the test-mode loader decodes
    12 per sample) and gives the labels of the test-mode run, up to float32 rounding of batched convolutions."""
    decoded = decoded_jpegs
    out = tmp_path / "online"
    assert main(_args("--dataroot", str(tiny_world), "--checkpoint", str(checkpoint), "--num-samples", "2",
                      "--out", str(out), "--pictures", "0", "--no-eval", "--online")) == 0
    assert len(decoded) == 2 * 6 and len(set(decoded)) == 12
    tokens = sorted(p.stem for p in (run[0] / "predictions").glob("*.npz"))
    assert sorted(p.stem for p in (out / "predictions").glob("*.npz")) == tokens
    for token in tokens:
        offline, online = _pred(run[0], token), _pred(out, token)
        assert (offline != 17).sum() > 100
        assert (offline == online).mean() > 0.9999


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (runs in bench/run_gpu.sh)")
def test_cuda_graph_replays_give_the_eager_online_labels(tiny_world: Path, checkpoint: Path,  # noqa: F811
                                                         tmp_path: Path) -> None:
    """``--online --cuda-graph`` over the whole val split (a replay per frame), every op on
    Triton (the reference ops read values on the host and cannot be captured), against the eager online run."""
    triton = [f"kernels.{op}=triton" for op in ("aniso_sample", "st_fusion", "gs_raster", "gs2vox", "fps",
                                                 "dist_attention")]
    runs = {}
    for graph in (False, True):
        out = tmp_path / f"graph-{graph}"
        assert main(_args("--dataroot", str(tiny_world), "--checkpoint", str(checkpoint), "--out", str(out),
                          "--pictures", "1", "--no-eval", "--online", *(["--cuda-graph"] if graph else []),
                          sets=SETS + triton)) == 0
        runs[graph] = out
    summary = json.loads((runs[True] / "summary.json").read_text())
    assert summary["cuda_graph_replays"] == summary["samples"] >= 2
    tokens = sorted(p.stem for p in (runs[False] / "predictions").glob("*.npz"))
    assert len(tokens) == summary["samples"]
    for token in tokens:
        assert np.array_equal(_pred(runs[True], token), _pred(runs[False], token)), token


def test_bad_arguments(tiny_world: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert main(_args("--dataroot", str(tiny_world), "--num-samples", "0")) == 2
    assert "--num-samples: must be >= 1" in capsys.readouterr().err
    assert main(_args("--dataroot", str(tiny_world), "--query", "x", "--text-encoder", "bogus")) == 2
    assert "--text-encoder: text encoder: expected 'minilm', 'hash', 'clip" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert main(_args("--dataroot", str(tiny_world), "--autocast", "bf16")) == 2
        assert "--autocast: 'bf16' needs a CUDA device; this run is on cpu" in capsys.readouterr().err
        assert main(_args("--dataroot", str(tiny_world), "--online", "--cuda-graph")) == 2
        assert "--cuda-graph: replays online frames on a CUDA device; needs --online and CUDA (this run: online, on " \
               "cpu)" in capsys.readouterr().err
    assert main(_args("--dataroot", str(tiny_world), "--cuda-graph")) == 2
    assert "needs --online and CUDA (this run: not online" in capsys.readouterr().err
