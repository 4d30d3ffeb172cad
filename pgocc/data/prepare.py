"""``pgocc prepare-targets``: write the depth and feature targets of a split's keyframe images from teacher models.

For every keyframe image of the index (``index.cams``) and every teacher (:mod:`pgocc.data.teachers`), the target
``<folder>/<image stem>.npy`` is written unless a target for that image already exists (``.npy`` or ``.npz``): a run
killed at any point resumes where it stopped. Each file is written atomically
(:func:`~pgocc.data.targets.write_target`), so a kill leaves only whole files and temporary ones, which the next run
deletes. Images are decoded in DataLoader
workers and batched per image size; every output is checked (shape, finite after the cast to the storage dtype,
depth >= 0) before anything of it is written, and a bad one raises DataError naming the file it was meant for.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pgocc.data.index import DatasetIndex
from pgocc.data.jpeg import decode_scaled
from pgocc.data.layout import target_stem
from pgocc.data.targets import remove_partial, target_file, write_target
from pgocc.data.teachers import Teacher
from pgocc.errors import DataError


@dataclass(frozen=True, slots=True)
class TargetJob:
    """One teacher and the folder its targets go to."""

    teacher: Teacher
    folder: Path


@dataclass(frozen=True, slots=True)
class PrepareSummary:
    images: int
    """Keyframe images of the split."""
    written: dict[str, int]
    """Files written per teacher kind."""
    skipped: dict[str, int]
    """Targets that already existed per teacher kind."""
    stale_removed: int
    """Temporary files of an interrupted run deleted."""
    seconds: float
    """Wall time of the teacher and writing loop."""


class _Images(torch.utils.data.Dataset):
    """Keyframe images as (frame, RGB uint8 [3, H, W], intrinsics [3, 3] float32)."""

    def __init__(self, index: DatasetIndex, frames: np.ndarray) -> None:
        self.index = index
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, torch.Tensor]:
        f = int(self.frames[i])
        path = self.index.dataroot / str(self.index.frame_path[f])
        size = (int(self.index.frame_size[f, 0]), int(self.index.frame_size[f, 1]))
        bgr, full = decode_scaled(path, size)
        if full != size or bgr.shape[:2] != size:
            raise DataError(f"{path}: image is {full[1]}×{full[0]} but sample_data.json says {size[1]}×{size[0]}")
        rgb = torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1)))
        k = torch.from_numpy(self.index.calib_k[self.index.frame_calib[f]].astype(np.float32))
        return f, rgb, k


def _checked(job: TargetJob, out: torch.Tensor, paths: list[Path], size: tuple[int, int], dtype: torch.dtype
             ) -> list[np.ndarray]:
    """The per-image arrays of teacher output ``out`` in ``dtype``; raises DataError naming the file of the first
    image whose output is wrong."""
    kind = job.teacher.kind
    expected = (len(paths), *job.teacher.output_shape(size))
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != expected:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise DataError(f"{paths[0]}: the {kind} teacher returned {got} for a batch of {len(paths)} images of "
                        f"{size[1]}×{size[0]}; expected {expected}; nothing written for this batch")
    stored = out.to(dtype)
    bad = ~torch.isfinite(stored).flatten(1).all(dim=1)
    if kind == "depth":
        bad |= (stored < 0).flatten(1).any(dim=1)
    if bool(bad.any()):
        i = int(bad.nonzero()[0, 0])
        what = "NaN, infinite or negative values" if kind == "depth" else "NaN or infinite values"
        raise DataError(f"{paths[i]}: the {kind} teacher's output for this image has {what} (in {dtype}); "
                        "nothing written for it")
    return list(stored.cpu().numpy())


def prepare_targets(index: DatasetIndex, jobs: list[TargetJob], *, batch_size: int, dtype: torch.dtype,
                    device: torch.device, autocast: torch.dtype | None = None, num_workers: int = 0,
                    progress: bool = True) -> PrepareSummary:
    """Write the missing targets of ``jobs`` for every keyframe image of ``index`` (module docstring), storing them
    as ``dtype``; with ``autocast`` (e.g. torch.bfloat16) the teachers run under ``torch.autocast`` in that dtype."""
    from tqdm import tqdm

    if batch_size < 1:
        raise ValueError(f"prepare_targets: batch_size must be >= 1, got {batch_size}")
    for job in jobs:
        job.folder.mkdir(parents=True, exist_ok=True)
    stale = sum(remove_partial(job.folder) for job in jobs)
    frames = np.unique(index.cams.reshape(-1))
    stems = {int(f): target_stem(str(index.frame_path[f])) for f in frames}
    missing = {job.teacher.kind: {f for f in stems if target_file(job.folder, stems[f]) is None} for job in jobs}
    todo = np.array(sorted(set().union(*missing.values())), np.int64)
    written = dict.fromkeys(missing, 0)
    loader = torch.utils.data.DataLoader(_Images(index, todo), batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=list)
    start = time.perf_counter()
    pending: list[Future] = []
    with ThreadPoolExecutor(max_workers=2) as writer, \
            tqdm(total=len(todo), desc="prepare-targets", unit="image", disable=not progress) as bar:
        for items in loader:
            by_size: dict[tuple[int, int], list[tuple[int, torch.Tensor, torch.Tensor]]] = {}
            for item in items:
                by_size.setdefault(tuple(item[1].shape[-2:]), []).append(item)
            for size, group in by_size.items():
                images = torch.stack([g[1] for g in group]).to(device).float().div_(255)
                intrinsics = torch.stack([g[2] for g in group]).to(device)
                for job in jobs:
                    rows = [i for i, g in enumerate(group) if g[0] in missing[job.teacher.kind]]
                    if not rows:
                        continue
                    paths = [job.folder / f"{stems[group[i][0]]}.npy" for i in rows]
                    with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
                        out = job.teacher(images[rows], intrinsics[rows])
                    for path, array in zip(paths, _checked(job, out, paths, size, dtype), strict=True):
                        pending.append(writer.submit(write_target, path, array))
                    written[job.teacher.kind] += len(rows)
            # Re-raise failed writes; wait for the oldest while too many are queued (bounds the memory they hold).
            for done in [p for p in pending if p.done()]:
                done.result()
            pending = [p for p in pending if not p.done()]
            while len(pending) > 4 * batch_size * len(jobs):
                pending.pop(0).result()
            bar.update(len(items))
        for p in pending:
            p.result()
    skipped = {kind: len(stems) - len(m) for kind, m in missing.items()}
    return PrepareSummary(images=len(stems), written=written, skipped=skipped, stale_removed=stale,
                          seconds=time.perf_counter() - start)
