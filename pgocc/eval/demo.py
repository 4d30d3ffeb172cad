"""The demo (``pgocc demo``, ``make demo``): the shipped model at work on a world it has never seen.

    1. a small held-out synthetic world (written once, reused after)
    2. the checkpoint (pgocc/assets/demo.safetensors by default) on its first samples: occupancy, text queries
       (one of them a synonym no training prompt used), pictures, scores (pgocc.eval.infer)
    3. the same model untrained (its seeded random initialisation) and a label-only ground-plane guess on the same
       samples: what the trained numbers are worth
    4. the training curves from the metrics.jsonl beside the checkpoint (``<name>.metrics.jsonl``), when it belongs
       to it (its last step is the checkpoint's train.num_steps)
    5. report.md: metrics table, what each query found, the pictures

Swapping the checkpoint (and its metrics.jsonl) is all it takes to demo another model of the same world format.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pgocc.data.occ3d import OCC3D_CLASSES, load_labels
from pgocc.errors import DataError
from pgocc.eval.baselines import ground_plane_labels
from pgocc.eval.infer import InferOptions, InferResult, build_model, resolve_experiment, run_inference
from pgocc.eval.predictions import EvalScores, label_files, write_json, write_prediction
from pgocc.synthetic.writer import WorldSpec

WORLD = WorldSpec(seed=0, scenes=1, keyframes=3, sweeps=2, width=352, height=198)
"""The held-out world: seed 0 (the shipped checkpoint trained on seed 1 and validated on seed 2, Makefile
demo-checkpoint), one scene, the half resolution the checkpoint was trained at."""

QUERIES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("car", (OCC3D_CLASSES.index("car"),)),
    ("automobile", (OCC3D_CLASSES.index("car"),)),
    ("tree", (OCC3D_CLASSES.index("vegetation"),)),
)
"""(text, the Occ3D labels it names). "car" is a training prompt; "automobile" and "tree" are not (the world's
features were made from the prompts of docs/model.md §6.1), so they test the open vocabulary."""

SAMPLES = 2
"""Samples scored: the scene's first keyframes."""


@dataclass
class DemoResult:
    """Where the demo wrote things, and its headline numbers."""

    report: Path
    curves: Path | None
    """The training-curves picture (None when the checkpoint has no metrics.jsonl of its own beside it)."""
    trained: InferResult
    untrained: InferResult
    seconds: float


def ensure_world(path: Path, spec: WorldSpec) -> bool:
    """Write the world ``spec`` at ``path`` unless a world is there already (a world is written under a temporary
    name and renamed, so its presence means it is whole); True if it was written now. DataError if ``path`` holds
    a world of another spec."""
    from pgocc.synthetic.writer import load_spec, make_synthetic

    if (path / "world.json").is_file():
        found = load_spec(path)
        if found != spec:
            raise DataError(f"{path}: holds another synthetic world ({found}); the demo needs {spec} (delete the "
                            "folder or pass another --world)")
        return False
    make_synthetic(path, spec, progress=True)
    return True


@dataclass(frozen=True, slots=True)
class QueryFinding:
    """What a query's most similar voxels are, over the demo's samples."""

    voxels: int
    """n: the camera-visible voxels of the classes the query names (the number of top voxels looked at)."""
    shares: dict[str, float]
    """True label → its share among the n camera-visible voxels most similar to the query, largest first."""
    chance: float
    """The named classes' share of all camera-visible voxels (what a random ranking would find)."""


def _query_findings(result: InferResult, labels_root: Path, queries: Sequence[tuple[str, tuple[int, ...]]]
                    ) -> dict[str, QueryFinding]:
    """Per query, the true labels of its n most similar camera-visible voxels, n being the number of
    camera-visible voxels of the classes it names, summed over the samples."""
    labels = label_files(labels_root)
    counts = {q: np.zeros(len(OCC3D_CLASSES), np.int64) for q, _ in queries}
    named = dict.fromkeys(counts, 0)
    visible = 0
    for volumes in sorted(result.run_dir.glob("samples/*/*/queries.npz")):
        gt, _, mask = load_labels(labels[volumes.parent.name])
        with np.load(volumes) as z:
            similarity = z["similarity"].astype(np.float32)
        g = gt[mask]
        visible += g.size
        for k, (q, classes) in enumerate(queries):
            n = int(np.isin(g, classes).sum())
            named[q] += n
            if n:
                top = np.argsort(-similarity[k][mask], kind="stable")[:n]
                counts[q] += np.bincount(g[top], minlength=len(OCC3D_CLASSES))
    out = {}
    for q, c in counts.items():
        total = int(c.sum())
        shares = {OCC3D_CLASSES[i]: float(c[i] / total) for i in np.argsort(-c, kind="stable") if c[i]}
        out[q] = QueryFinding(voxels=total, shares=shares, chance=named[q] / visible if visible else float("nan"))
    return out


def _ground_plane(result: InferResult, labels_root: Path, world: Path, version: str, out: Path) -> EvalScores:
    """The ground-plane guess (driveable surface on the ground layer, free elsewhere) scored on the samples of
    ``result`` (with RayIoU when ``result`` has it)."""
    from pgocc.data.occ3d import GRID_SHAPE
    from pgocc.eval.predictions import scene_origins, score_predictions

    out.mkdir(parents=True, exist_ok=True)
    files = [write_prediction(out, p.stem, ground_plane_labels(GRID_SHAPE))
             for p in sorted((result.run_dir / "predictions").glob("*.npz"))]
    origins = None
    if result.scores is not None and result.scores.rays is not None:
        from pgocc.data.index import build_index

        ix = build_index(world, version, "all")
        origins = scene_origins(ix.scene_name, ix.ego2global, ix.lidar2ego, ix.sample_token)
    return score_predictions(files, label_files(labels_root), origins,
                             progress=lambda it: tqdm(it, total=len(files), desc="demo: ground plane", unit="sample",
                                                      file=sys.stderr))


def _pct(x: float | None) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{100 * x:.1f} %"


def _report(out: Path, checkpoint: Path, world: Path, seed: int, readout_kernel: str, trained: InferResult,
            untrained: InferResult,
            ground: EvalScores, findings: dict[str, QueryFinding], curves: Path | None,
            curves_note: str, seconds: float) -> Path:
    """report.md: metrics beside the baselines, what the queries found, the pictures."""
    rows: list[tuple[str, str, str, str]] = []

    def occ(r: EvalScores | None, key: str) -> str:
        return "—" if r is None else _pct(getattr(r.occupancy, key))

    def ray(r: EvalScores | None) -> str:
        return "—" if r is None or r.rays is None else _pct(r.rays.rayiou)

    t, u = trained.scores, untrained.scores
    for name, key in (("mIoU, 15 classes", "miou"), ("mIoU, 17 classes", "miou_17"),
                      ("geometric IoU", "geometric_iou"), ("geometric IoU above the ground layer",
                                                           "geometric_iou_above_ground")):
        rows.append((name, occ(t, key), occ(u, key), occ(ground, key)))
    rows.append(("RayIoU (1, 2, 4 m)", ray(t), ray(u), ray(ground)))
    for name, key in (("depth abs_rel (lower is better)", "abs_rel"), ("depth δ < 1.25", "delta_1.25")):
        def depth(r: InferResult, key: str = key) -> str:
            if r.depth is None:
                return "—"
            v = r.depth.values[key]
            return f"{v:.3f}" if key == "abs_rel" else _pct(v)
        rows.append((name, depth(trained), depth(untrained), "—"))
    for q, _ in QUERIES:
        rows.append((f"retrieval AP {q!r}",
                     "—" if trained.retrieval is None else _pct(trained.retrieval.ap[q]),
                     "—" if untrained.retrieval is None else _pct(untrained.retrieval.ap[q]), "—"))

    def rel(p: Path) -> str:
        return str(p.relative_to(out))

    lines = [
        "# pgocc demo", "",
        f"The model `{checkpoint}` on {trained.samples} samples of `{world}`, a synthetic world of seed {seed} "
        "(the shipped checkpoint was trained on seed 1 and validated on seed 2). Beside it: the same model untrained "
        "(seeded random weights) and a label-only guess (driveable surface on the ground layer, free elsewhere). "
        f"Ran in {seconds:.0f} s ({trained.seconds_per_sample:.1f} s per sample for the trained model; readout kernel "
        f"gs2vox={readout_kernel}).", "",
        "| metric | trained | untrained | ground plane |", "|---|---|---|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows], "",
        "Rules: the mIoUs average IoU over camera-visible voxels of the classes present in the ground truth (a class "
        "absent from it is skipped, the original's rule); RayIoU is SparseOcc's (LiDAR-like rays from the scene's "
        "keyframe origins, first hit within 1/2/4 m); depth is the rendered depth against the world's exact depth; "
        "retrieval AP ranks the camera-visible voxels by similarity to the text. All per-class numbers: "
        f"`{rel(trained.run_dir / 'eval.json')}`.", "",
        "## What the queries found", "",
        "For each text, the camera-visible voxels most similar to it, as many as there are voxels of the class it "
        "names; the share of each true class among them, and the share a random ranking would find (that class's "
        "share of all visible voxels):", "",
    ]
    for q, classes in QUERIES:
        f = findings[q]
        named = ", ".join(OCC3D_CLASSES[c] for c in classes)
        found = ", ".join(f"{c} {_pct(s)}" for c, s in list(f.shares.items())[:4]) or "nothing (no such voxel)"
        note = "a training prompt" if q == "car" else "never a training prompt"
        hit = sum(f.shares.get(OCC3D_CLASSES[c], 0.0) for c in classes)
        lines.append(f"- **{q!r}** ({note}; names {named}): of its top {f.voxels} voxels {_pct(hit)} are {named} "
                     f"(random: {_pct(f.chance)}); all: {found}")
    lines += ["", "## Pictures", ""]
    for p in trained.pictures:
        lines += [f"### {rel(p)}", "", f"![{p.stem}]({rel(p)})", ""]
    lines += ["### training curves", ""]
    lines += [f"![training curves]({rel(curves)})", ""] if curves is not None else [curves_note, ""]
    path = out / "report.md"
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(path)
    return path


def _curves(checkpoint: Path, num_steps: int, out: Path) -> tuple[Path | None, str]:
    """The training-curves picture of ``<checkpoint stem>.metrics.jsonl`` if it belongs to the checkpoint, and a
    note saying why there is none otherwise."""
    from pgocc.vis.curves import curves_picture, read_metrics

    log = checkpoint.with_name(f"{checkpoint.stem}.metrics.jsonl")
    if not log.is_file():
        return None, f"No training curves: `{log}` (the checkpoint's metrics.jsonl) is not there."
    train, _ = read_metrics(log)
    if train[-1]["step"] != num_steps:
        return None, (f"No training curves: `{log}` ends at step {train[-1]['step']} but the checkpoint was trained "
                      f"for {num_steps} steps, so it belongs to another run.")
    return curves_picture(out / "training_curves.png", {"training": log}), ""


def run_demo(world: Path, checkpoint: Path, out: Path, device: torch.device, *,
             overrides: Sequence[str] = ()) -> DemoResult:
    """The whole demo (module docstring) on the world :data:`WORLD` at ``world``, :data:`SAMPLES` samples;
    ``overrides`` (``--set``) e.g. shrink the model's work in tests."""
    start = time.perf_counter()
    spec = WORLD
    ensure_world(world, spec)
    exp = resolve_experiment(checkpoint, None, list(overrides), device, default="")
    cfg = exp.cfg
    if device.type == "cpu":
        # The readout's dense reference gs2vox costs ~35 s a sample on a CPU core; "boxed" gives the same labels.
        cfg.kernels = dataclasses.replace(cfg.kernels, gs2vox="boxed")
    cfg.data.dataroot = str(world)
    cfg.data.val_split = "all"
    labels_root = world / cfg.data.labels_dir
    options = InferOptions(num_samples=SAMPLES, queries=[q for q, _ in QUERIES],
                           query_classes=[c for _, c in QUERIES], pictures=1)
    model, readout, weights = build_model(cfg, device, checkpoint, exp.state, exp.config)
    trained = run_inference(cfg, model, readout, weights, dataclasses.replace(options, out=out / "trained"), device,
                            log_prefix="demo: trained model")
    model, readout, weights = build_model(cfg, device)
    untrained = run_inference(cfg, model, readout, weights,
                              dataclasses.replace(options, out=out / "untrained", pictures=0), device,
                              log_prefix="demo: untrained model")
    ground = _ground_plane(trained, labels_root, world, cfg.data.version, out / "ground_plane" / "predictions")
    write_json(out / "ground_plane" / "eval.json", ground.as_dict())
    findings = _query_findings(trained, labels_root, QUERIES)
    curves, note = _curves(checkpoint, cfg.train.num_steps, out)
    seconds = time.perf_counter() - start
    report = _report(out, checkpoint, world, spec.seed, cfg.kernels.gs2vox, trained, untrained, ground, findings,
                     curves, note, seconds)
    return DemoResult(report=report, curves=curves, trained=trained, untrained=untrained, seconds=seconds)

