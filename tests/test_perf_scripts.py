"""CPU dry runs of the GPU performance scripts (bench/breakdown.py, bench/ablation.py) on the tiny config at tiny
sizes: every stage gets its profiler range and the ranges come off afterwards; both scripts write their reports.
No timing is asserted (timings are benchmarks)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from bench import ablation, breakdown, cuda_graph, launch_counts
from bench.perf import build_inference, online_frame, synthetic_batch, training_step
from pgocc import ops
from pgocc.config import ExperimentConfig, apply_overrides, load_experiment
from tests.data_fixtures import TINY_SPEC, tiny_world  # noqa: F401

SMALL = ["data.input_size=32,64", "data.render_size=12,20", "model.voxel_size=3.2"]
"""Tiny images and renders, a 25 × 25 × 2 readout grid: a frame takes well under a second on the CPU."""
CPU = torch.device("cpu")


@pytest.fixture
def cfg() -> ExperimentConfig:
    return apply_overrides(load_experiment("configs.tiny:tiny"), SMALL)


def test_breakdown_ranges_cover_every_stage_and_come_off(cfg: ExperimentConfig) -> None:
    batch = synthetic_batch(cfg, CPU)
    model, readout = build_inference(cfg, CPU)
    fps, render = model._fps, model.renderer.depth
    frame = online_frame(cfg, model, readout, batch)
    stages, ranges, total = breakdown.profile_stages(frame, model, readout, None, CPU, calls=1)
    decoder = {f"s{s} {part}" for s in range(3) for part in ("attention", "sampling", "mixing", "ffn", "heads")}
    assert set(ranges) == {"backbone", "fps", "densify render", "readout"} | decoder
    assert all(ms > 0 for ms in ranges.values())
    assert set(stages) == set(breakdown.FLOORS_MS) - set(breakdown.TRAINING_ONLY)
    assert sum(stages.values()) == pytest.approx(total, rel=1e-6)  # "backward and other" is the rest
    # the ranges are gone: the original callables are back, no hook is left on any module
    assert model._fps is fps and model.renderer.depth == render and "depth" not in vars(model.renderer)
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in [*model.modules(), readout])

    model, criterion, step = training_step(cfg, CPU, batch)
    stages, ranges, _ = breakdown.profile_stages(step, model, None, criterion, CPU, calls=1)
    assert {"loss render", "losses", "optimizer", "densify render", "backbone"} <= set(ranges)
    assert stages["losses"] == pytest.approx(ranges["losses"] - ranges["loss render"])
    assert "readout" not in stages and not criterion.renderer.__dict__.get("features_and_depth")
    assert "feature_targets" not in vars(criterion)


def test_breakdown_writes_its_report(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--config", "configs.tiny:tiny", "--device", "cpu", "--precision", "fp32",
            "--budget", "0", "--calls", "1"] + [a for s in SMALL for a in ("--set", s)]
    assert breakdown.main(args) == 0
    report = json.loads((tmp_path / "breakdown.json").read_text())
    assert set(report["runs"]) == {"online inference, fp32", "training step, fp32"}
    md = (tmp_path / "breakdown.md").read_text()
    assert "Launch and sync counts need CUDA" in md and "Largest gap to a floor" in md
    counts = report["runs"]["online inference, fp32"]["fps_candidates"]
    cfg = apply_overrides(load_experiment("configs.tiny:tiny"), SMALL)
    assert len(counts) == len(cfg.model.num_queries) and counts[0] >= sum(cfg.model.num_queries)
    assert f"FPS candidates per stage (stage 0, then each densification mask): {counts}" in md
    assert (tmp_path / "breakdown.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_ablation_variants_and_report(tmp_path: Path) -> None:
    table = ablation.variants()
    assert set(table) == {"triton", "reference", "gsplat"} | {f"ref:{op}" for op in ops.OPS}
    for op in ops.OPS:  # a swap changes exactly its op
        changed = {o for o in ops.OPS if getattr(table[f"ref:{op}"], o) != getattr(table["triton"], o)}
        assert changed == {op} and getattr(table[f"ref:{op}"], op) == "reference"
    assert table["gsplat"].gs_raster == "gsplat"
    args = ["--out", str(tmp_path), "--config", "configs.tiny:tiny", "--device", "cpu", "--variants",
            "reference,gsplat", "--budget", "0"] + [a for s in SMALL for a in ("--set", s)]
    assert ablation.main(args) == 0
    rows = json.loads((tmp_path / "ablation.json").read_text())["rows"]
    assert set(rows) == {"reference", "reference, bf16", "gsplat"}
    assert rows["reference"]["infer"]["ms"] > 0 and rows["reference"]["train"]["calls"] >= 1
    assert "cuda only" in rows["gsplat"]["infer"]["error"]  # a failing variant is reported, the run goes on
    assert "| reference | " in (tmp_path / "ablation.md").read_text()


def test_cuda_graph_script_refuses_a_machine_without_a_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("sys.argv", ["cuda_graph.py", "--out", str(tmp_path)])
    with pytest.raises(SystemExit, match="needs a CUDA GPU"):
        cuda_graph.main()
    assert not any(tmp_path.iterdir())


def test_end_to_end_runs_the_online_loader_through_the_infer_path(tiny_world: Path) -> None:  # noqa: F811
    cfg = apply_overrides(load_experiment("configs.tiny:tiny"), [*SMALL, "data.num_workers=0"])
    cfg.data.version = TINY_SPEC.version
    row = breakdown.end_to_end(cfg, tiny_world, CPU, bf16=False, graph=False)
    assert row["frames"] == TINY_SPEC.scenes * TINY_SPEC.keyframes and row["path"] == "eager"
    assert row["frame_ms"] > 0 and row["loader_ms_per_sample_one_process"] > 0


def test_launch_counter_counts_kernels_not_views_and_names_syncs() -> None:
    counter = launch_counts.DispatchCounter()
    x = torch.arange(12.0).view(3, 4).requires_grad_()
    with counter:
        with counter.stage("a"):
            y = (x * 2).t().reshape(12)            # mul: 1; t, reshape of a contiguous result: views
        z = y.sum()                                 # outside a stage: "other"
        mask = y.detach() > 3
        y.detach()[mask]                            # a boolean-mask index: a sync on CUDA
        z.backward()                                # autograd: "backward"
        x.detach().max().item()                     # a host read: a sync
    c = counter.counts
    assert c.launches[("a", "mul")] == 1 and c.launches[("other", "sum")] == 1
    assert not any(op in ("t", "view", "reshape", "_reshape_alias", "detach") for _, op in c.launches)
    assert sum(n for (stage, _), n in c.launches.items() if stage == "backward") >= 1
    syncs = " ".join(c.syncs)
    assert "index" in syncs and "_local_scalar_dense" in syncs and sum(c.syncs.values()) == 2
    assert all(site.startswith("outside the repository") or "tests/" not in site for site in c.sites)


def test_launch_counts_script_counts_every_stage(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path), "--config", "configs.tiny:tiny"] + [a for s in SMALL for a in ("--set", s)]
    assert launch_counts.main(args) == 0
    runs = json.loads((tmp_path / "launch_counts.json").read_text())["runs"]
    frame, step = runs["online frame"], runs["training step"]
    assert {"backbone", "fps", "densify render", "readout", "s0 attention", "s2 mixing"} <= set(frame["by_stage"])
    assert {"backward", "losses", "loss render"} <= set(step["by_stage"]) and "readout" not in step["by_stage"]
    assert sum(frame["by_stage"].values()) == frame["launches"] > 0 and step["launches"] > frame["launches"]
    assert "| stage | launches |" in (tmp_path / "launch_counts.md").read_text()


def test_loop_times_skips_the_first_windows_and_validation(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from bench import loop_times

    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": 10, "step_time": 0.9, "samples_per_s": 1.1, "peak_memory_gib": 7.0, "loss": 5.0},
               {"step": 20, "step_time": 0.2, "samples_per_s": 5.0, "peak_memory_gib": 7.5, "loss": 4.0},
               {"step": 20, "split": "val", "seconds": 30.0},
               {"step": 30, "step_time": 0.3, "samples_per_s": 3.3, "peak_memory_gib": 7.2, "loss": 3.0}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert loop_times.main([f"graphed, bf16={run}"]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert row == "| graphed, bf16 | 20–30 | 250.0 | 200.0–300.0 | 4.15 | 7.50 | 3 |"
    with pytest.raises(SystemExit, match="metrics.jsonl: not found"):
        loop_times.main([f"x={tmp_path / 'missing'}"])
