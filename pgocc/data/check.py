"""``pgocc check-data``: validate a dataset tree before hours are spent on it (docs/data.md §6).

Two passes over the keyframes of a split:

1. **Presence and footprint** (every keyframe): every camera frame the index uses (keyframe images and sweeps) exists,
   and so do the depth and feature files of each keyframe image and the Occ3D labels of each keyframe; their sizes
   add up to the disk footprint.
2. **Contents** (a seeded sample of the keyframes, or all of them): each JPEG's header gives the size the
   ``sample_data`` table states, depth and features read and validate exactly as the loader reads them
   (:mod:`pgocc.data.targets`), with one feature dimension D across the tree and one h × w per sample, and the
   labels validate (:func:`~pgocc.data.occ3d.load_labels`).

The tables themselves are checked by building the index (:func:`~pgocc.data.index.build_index`, which also needs
all six cameras at every keyframe and checks an info pickle against the tables); if that fails, nothing else is
checked. Problems are collected by kind, each message naming its file.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pgocc.data.index import DatasetIndex, build_index
from pgocc.data.jpeg import image_size
from pgocc.data.layout import CAMERAS, data_folder, target_stem
from pgocc.data.occ3d import load_labels
from pgocc.data.targets import DEPTH, FEATURES, check_depth, check_feature_shape, check_finite, read_target, target_file
from pgocc.errors import DataError

PROBLEM_KINDS: tuple[str, ...] = (
    "tables", "missing image", "bad image", "missing depth", "bad depth", "missing features", "bad features",
    "missing labels", "bad labels",
)
"""The kinds of problem, in the order the summary lists them."""


@dataclass(frozen=True, slots=True)
class DataTree:
    """Where a dataset's parts lie (as :class:`~pgocc.config.DataConfig` names them)."""

    dataroot: Path
    version: str
    split: str
    depth_dir: str = "depth"
    feature_dir: str = "features"
    labels_dir: str = "gts"
    infos: str = ""
    """Info pickle of ``split`` (relative to the dataroot unless absolute); empty: none."""
    with_labels: bool = True
    feature_dim: int | None = None
    """Expected D of the feature maps; None: the first map's D, which all others must share."""


@dataclass(slots=True)
class DataCheck:
    """What ``check_data`` found."""

    tree: DataTree
    scenes: int = 0
    keyframes: int = 0
    frames: int = 0
    """Camera frames the index uses (keyframe images and sweeps)."""
    checked: int = 0
    """Keyframes whose files' contents were read."""
    sweeps_per_keyframe: Counter = field(default_factory=Counter)
    """Number of sweep rows → keyframes with that many."""
    sweep_rows_missing_camera: int = 0
    footprint: dict[str, int] = field(default_factory=lambda: dict.fromkeys(("images", "depth", "features",
                                                                             "labels"), 0))
    """Bytes on disk per part."""
    feature_shape: tuple[int, ...] | None = None
    problems: dict[str, list[str]] = field(default_factory=lambda: {k: [] for k in PROBLEM_KINDS})

    @property
    def ok(self) -> bool:
        return not any(self.problems.values())

    def add(self, kind: str, message: str) -> None:
        self.problems[kind].append(message)

    def summary(self, first: int = 3) -> str:
        """A few lines: what the tree holds, its footprint, and the first ``first`` problems of each kind."""
        t = self.tree
        lines = [f"{t.dataroot} ({t.version}, split {t.split}{', infos ' + t.infos if t.infos else ''})",
                 f"  scenes {self.scenes}, keyframes {self.keyframes} × {len(CAMERAS)} cameras, camera frames "
                 f"{self.frames}"]
        if self.sweeps_per_keyframe:
            counts = ", ".join(f"{n}: {k}" for n, k in sorted(self.sweeps_per_keyframe.items()))
            lines.append(f"  sweeps per keyframe (sweeps: keyframes) {counts}; sweep rows missing a camera: "
                         f"{self.sweep_rows_missing_camera}")
        if self.feature_shape is not None:
            lines.append(f"  feature maps [D, h, w] = {list(self.feature_shape)}")
        lines.append("  disk: " + ", ".join(f"{k} {_size(v)}" for k, v in self.footprint.items())
                     + f" (total {_size(sum(self.footprint.values()))})")
        lines.append(f"  contents read for {self.checked} of {self.keyframes} keyframes")
        if self.ok:
            lines.append("  no problems found")
        for kind in PROBLEM_KINDS:
            found = self.problems[kind]
            if found:
                lines.append(f"  {kind}: {len(found)} problem{'s' if len(found) > 1 else ''}")
                lines.extend(f"    {m}" for m in found[:first])
                if len(found) > first:
                    lines.append(f"    … and {len(found) - first} more")
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.2f} TB"


def _file_size(path: Path) -> int | None:
    try:
        return path.stat().st_size
    except OSError:
        return None


def _presence(report: DataCheck, index: DatasetIndex, s: int, folders: dict[str, Path]) -> None:
    """Pass 1 for keyframe ``s``: its targets and labels exist (images are counted once per frame elsewhere; a
    missing folder is reported once, not per file)."""
    for f in index.cams[s]:
        stem = target_stem(str(index.frame_path[f]))
        for part, what in (("depth", "depth"), ("features", "features")):
            if not folders[part].is_dir():
                continue
            path = target_file(folders[part], stem)
            if path is None:
                report.add(f"missing {what}", f"{folders[part] / stem}.npy: {what} file not found (nor .npz)")
            else:
                report.footprint[part] += path.stat().st_size
    if report.tree.with_labels:
        path = folders["labels"] / str(index.scene_name[s]) / str(index.sample_token[s]) / "labels.npz"
        size = _file_size(path)
        if size is None:
            report.add("missing labels", f"{path}: Occ3D labels file not found")
        else:
            report.footprint["labels"] += size


def _contents(report: DataCheck, index: DatasetIndex, s: int, folders: dict[str, Path]) -> None:
    """Pass 2 for keyframe ``s``: read and validate its images' headers, targets and labels."""
    rows = index.sweeps[index.sweep_start[s]:index.sweep_start[s + 1]]
    for f in np.unique(np.concatenate([index.cams[s], rows.reshape(-1)])):
        if f < 0:
            continue
        path = index.dataroot / str(index.frame_path[f])
        if not path.is_file():
            continue  # reported by the presence pass
        try:
            size = image_size(path)
        except DataError as exc:
            report.add("bad image", str(exc))
            continue
        expected = (int(index.frame_size[f, 0]), int(index.frame_size[f, 1]))
        if size != expected:
            report.add("bad image", f"{path}: image is {size[1]}×{size[0]} but sample_data.json says "
                                    f"{expected[1]}×{expected[0]}")
    hw: tuple[int, ...] | None = None
    tree = report.tree
    for f in index.cams[s]:
        stem = target_stem(str(index.frame_path[f]))
        if target_file(folders["depth"], stem) is not None:
            try:
                depth, path = read_target(folders["depth"], stem, DEPTH)
                check_depth(depth, path)
            except DataError as exc:
                report.add("bad depth", str(exc))
        if target_file(folders["features"], stem) is not None:
            try:
                feats, path = read_target(folders["features"], stem, FEATURES)
                dim = tree.feature_dim if tree.feature_dim is not None else \
                    (report.feature_shape[0] if report.feature_shape else None)
                check_feature_shape(feats, path, dim)
                check_finite(feats, path, "feature map")
                if hw is not None and feats.shape[1:] != hw:
                    raise DataError(f"{path}: feature map of shape {feats.shape} differs from the sample's other "
                                    f"cameras' h × w {hw}")
                hw = feats.shape[1:]
                report.feature_shape = report.feature_shape or feats.shape
            except DataError as exc:
                report.add("bad features", str(exc))
    if tree.with_labels:
        path = folders["labels"] / str(index.scene_name[s]) / str(index.sample_token[s]) / "labels.npz"
        if path.is_file():
            try:
                load_labels(path)
            except DataError as exc:
                report.add("bad labels", str(exc))


def check_data(tree: DataTree, *, fraction: float, seed: int = 0, progress: bool = True) -> DataCheck:
    """Check ``tree`` (module docstring), reading the contents of ``ceil(fraction · keyframes)`` keyframes drawn
    with ``seed`` (all of them for ``fraction`` = 1)."""
    from tqdm import tqdm

    if not 0 < fraction <= 1:
        raise ValueError(f"check_data: fraction must be in (0, 1], got {fraction}")
    report = DataCheck(tree)
    try:
        infos = data_folder(tree.dataroot, tree.infos) if tree.infos else None
        index = build_index(tree.dataroot, tree.version, tree.split, infos=infos)
    except DataError as exc:
        report.add("tables", str(exc))
        return report
    folders = {"depth": data_folder(tree.dataroot, tree.depth_dir),
               "features": data_folder(tree.dataroot, tree.feature_dir),
               "labels": data_folder(tree.dataroot, tree.labels_dir)}
    report.scenes = len(set(index.scene_name.tolist()))
    report.keyframes = len(index)
    report.sweeps_per_keyframe = Counter(np.diff(index.sweep_start).tolist())
    report.sweep_rows_missing_camera = int((index.sweeps < 0).any(axis=1).sum())

    used = np.unique(np.concatenate([index.cams.reshape(-1), index.sweeps.reshape(-1), index.prev_cam.reshape(-1),
                                     index.next_cam.reshape(-1)]))
    used = used[used >= 0]
    report.frames = len(used)
    for f in tqdm(used, desc="images", unit="file", disable=not progress, leave=False):
        path = tree.dataroot / str(index.frame_path[f])
        size = _file_size(path)
        if size is None:
            report.add("missing image", f"{path}: image file not found (sample_data.json lists it)")
        else:
            report.footprint["images"] += size
    for part, option in (("depth", "depth_dir"), ("features", "feature_dir")):
        if not folders[part].is_dir():
            report.add(f"missing {part}", f"{folders[part]}: {part} folder not found (data.{option})")
    for s in tqdm(range(len(index)), desc="targets", unit="keyframe", disable=not progress, leave=False):
        _presence(report, index, s, folders)

    count = len(index) if fraction >= 1 else min(len(index), math.ceil(fraction * len(index)))
    chosen = np.sort(np.random.default_rng(seed).choice(len(index), size=count, replace=False))
    for s in tqdm(chosen, desc="contents", unit="keyframe", disable=not progress):
        _contents(report, index, int(s), folders)
    report.checked = count
    return report
