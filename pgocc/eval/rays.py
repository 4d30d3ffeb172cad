"""RayIoU (docs/model.md §8.2): occupancy scored along LiDAR-like rays, as SparseOcc defines it, in plain PyTorch.

    rays: 39 pitch angles × 360 azimuths (1°) = 14,040 unit directions (:func:`lidar_ray_directions`), cast from
          up to 8 origins: the LiDAR positions of the scene's keyframes in the current ego frame, those with
          |x|, |y| < 39 m, evenly subsampled to 8 (:func:`keyframe_origins`)
    first hit: voxel traversal (Amanatides–Woo) through the grid from the origin; the ray stops in the first voxel
          whose label is not free (its distance = where the ray leaves that voxel), else in the last voxel inside
          the grid (label free, distance = where the ray leaves the grid) (:func:`first_hits`)
    scoring: rays whose ground-truth hit is not free; a ray counts for the ground-truth class of its hit and for the
          predicted class of its hit; TP at threshold τ when both classes agree and |d_pred − d_gt| < τ, for
          τ = 1, 2, 4 m; IoU_c,τ = TP / (GT_c + Pred_c − TP) over the 17 non-free labels
    RayIoU@τ = mean of IoU_c,τ over the classes, RayIoU = mean over classes and thresholds, NaN entries skipped.

Absent-class rule (SparseOcc's): IoU_c,τ is NaN only where no ray has class c in either ground truth or prediction;
a class predicted on some rays but absent from the ground truth scores 0 (unlike the mIoU of pgocc.eval.metrics).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pgocc.data.occ3d import FREE, GRID_MIN, VOXEL_SIZE

THRESHOLDS: tuple[float, ...] = (1.0, 2.0, 4.0)
"""Metres: depth-error thresholds of a true positive ray."""

ORIGIN_RANGE = 39.0
"""Metres: a keyframe's LiDAR is an origin only where |x| and |y| are below this in the current ego frame."""

MAX_ORIGINS = 8
"""Origins per sample, evenly subsampled when the scene has more."""

MAX_STEPS = 1000
"""Voxel steps after which a ray is abandoned (a 200 × 200 × 16 grid is crossed in at most 416)."""


def lidar_ray_directions() -> torch.Tensor:
    """[14040, 3] float64 unit directions in the ego frame, pitch-major: pitches −(π/2 − atan(k + 1)) for
    k = 0..9, then the last step repeated until the pitch exceeds 0.21 rad; azimuths 0°, 1°, …, 359°."""
    pitch = [-(math.pi / 2 - math.atan(k + 1)) for k in range(10)]
    while pitch[-1] < 0.21:
        pitch.append(2 * pitch[-1] - pitch[-2])
    p = torch.tensor(pitch, dtype=torch.float64)[:, None]
    a = torch.deg2rad(torch.arange(360, dtype=torch.float64))[None, :]
    return torch.stack([torch.cos(p) * torch.cos(a), torch.cos(p) * torch.sin(a), torch.sin(p).expand(-1, 360)],
                       -1).reshape(-1, 3)


def keyframe_origins(ego2global: np.ndarray, lidar2ego: np.ndarray, current: int) -> np.ndarray:
    """[T, 3] LiDAR positions of a scene's keyframes in the ego frame of keyframe ``current`` (T ≤ 8).

    Args:
        ego2global: [K, 4, 4] ego → global pose of each keyframe of the scene, in time order.
        lidar2ego: [K, 4, 4] LiDAR → ego calibration of each keyframe.
        current: index of the evaluated keyframe.
    """
    lidar_in_global = ego2global @ lidar2ego[:, :, 3:]                              # [K, 4, 1]
    origins = (np.linalg.inv(ego2global[current]) @ lidar_in_global)[:, :3, 0]      # [K, 3]
    origins = origins[(np.abs(origins[:, 0]) < ORIGIN_RANGE) & (np.abs(origins[:, 1]) < ORIGIN_RANGE)]
    if len(origins) > MAX_ORIGINS:
        origins = origins[np.round(np.linspace(0, len(origins) - 1, MAX_ORIGINS)).astype(np.int64)]
    return origins


@dataclass(frozen=True, slots=True)
class RayHits:
    """Where each ray stops (:func:`first_hits`); rays are origin-major: ray r of origin t is column t·R + r."""

    label: torch.Tensor
    """[G, T·R] int64 label of the stop voxel (free where the ray left the grid without a hit)."""
    distance: torch.Tensor
    """[G, T·R] float64 metres from the origin to where the ray leaves the stop voxel (−1 for a ray abandoned after
    MAX_STEPS, which a grid the size of Occ3D's never needs)."""


OUTSIDE = -1
"""Label of the one-voxel border padded around a grid: a ray that reaches it has left the grid."""


def first_hits(labels: torch.Tensor, origins: torch.Tensor, directions: torch.Tensor, *,
               grid_min: tuple[float, float, float] = GRID_MIN, voxel_size: float = VOXEL_SIZE) -> RayHits:
    """Cast every direction from every origin through each label grid; stop at the first non-free voxel.

    Args:
        labels: [G, X, Y, Z] integer labels (17 = free) of G grids sharing the rays (e.g. ground truth and
            prediction), axis i of a grid along ego axis i; the rays are cast on its device.
        origins: [T, 3] ray origins inside the grid, metres in the grids' frame.
        directions: [R, 3] unit directions.
        grid_min: metres of voxel (0, 0, 0)'s lower corner.
        voxel_size: voxel edge, metres.

    Returns:
        hits whose fields are [G, T·R].
    """
    if labels.ndim != 4:
        raise ValueError(f"first_hits: labels must be [G, X, Y, Z], got {tuple(labels.shape)}")
    grids, dims = labels.shape[0], labels.shape[1:]
    device = labels.device
    o = (origins.to(device, torch.float64) - torch.tensor(grid_min, dtype=torch.float64, device=device)) / voxel_size
    start = torch.floor(o).to(torch.int64)
    if ((start < 0) | (start >= torch.tensor(dims, device=device))).any():
        raise ValueError(f"first_hits: every origin must lie inside the grid, got {origins.tolist()}")
    # The grids with a border of OUTSIDE voxels, flattened: a step is one index increment per axis.
    padded = torch.nn.functional.pad(labels.to(torch.int64), (1, 1, 1, 1, 1, 1), value=OUTSIDE).reshape(-1)
    stride = ((dims[1] + 2) * (dims[2] + 2), dims[2] + 2, 1)
    per_grid_voxels = (dims[0] + 2) * stride[0]

    d = directions.to(device, torch.float64)
    num_origins, num_dirs = o.shape[0], d.shape[0]
    per_grid = num_origins * num_dirs
    num = grids * per_grid
    o = o[None, :, None, :].expand(grids, -1, num_dirs, -1).reshape(num, 3)
    v = torch.floor(o).to(torch.int64)
    d = d[None, None, :, :].expand(grids, num_origins, -1, -1).reshape(num, 3)
    step = torch.where(d >= 0, 1, -1)
    # Per axis: ray length to the next plane, ray length per voxel (inf along an axis the ray does not move on), and
    # the flat-index increment of a step.
    t_x, t_y, t_z = (torch.where(d[:, i] != 0, (v[:, i] + (step[:, i] > 0) - o[:, i]) / d[:, i], torch.inf)
                     for i in range(3))
    dt_x, dt_y, dt_z = (torch.where(d[:, i] != 0, step[:, i] / d[:, i], torch.inf) for i in range(3))
    s_x, s_y, s_z = (step[:, i] * stride[i] for i in range(3))
    ray = torch.arange(num, device=device)
    flat = (ray // per_grid) * per_grid_voxels + ((v + 1) * torch.tensor(stride, device=device)).sum(-1)
    last_exit = torch.zeros(num, dtype=torch.float64, device=device)

    label = torch.full((num,), FREE, dtype=torch.int64, device=device)
    distance = torch.full((num,), -1.0, dtype=torch.float64, device=device)
    alive = torch.ones(num, dtype=torch.bool, device=device)
    for i in range(MAX_STEPS):
        # (stopped rays keep stepping until the next compaction, possibly out of the array: clamped, never read)
        value = padded[flat.clamp(0, padded.numel() - 1)]
        stop = alive & (value != FREE)
        if bool(stop.any()):
            stopped = ray[stop]
            hit = value[stop] != OUTSIDE
            # A hit ends where the ray leaves that voxel; leaving the grid ends where it left the last voxel inside.
            exit_t = torch.minimum(torch.minimum(t_x[stop], t_y[stop]), t_z[stop])
            distance[stopped] = torch.where(hit, exit_t, last_exit[stop]) * voxel_size
            label[stopped] = torch.where(hit, value[stop], FREE)
            alive &= ~stop
        if i % 8 == 7:   # drop the stopped rays
            keep = alive.nonzero()[:, 0]
            if keep.numel() == 0:
                break
            ray, flat, last_exit, alive = ray[keep], flat[keep], last_exit[keep], alive[keep]
            t_x, t_y, t_z, dt_x, dt_y, dt_z = (a[keep] for a in (t_x, t_y, t_z, dt_x, dt_y, dt_z))
            s_x, s_y, s_z = s_x[keep], s_y[keep], s_z[keep]
        # Step into the next voxel along the axis whose plane comes first, ties broken as the original's
        # traversal: y over x, z over both.
        x_first = (t_x < t_y) & (t_x < t_z)
        y_first = ~(t_x < t_y) & (t_y < t_z)
        z_first = ~(x_first | y_first)
        last_exit = torch.where(x_first, t_x, torch.where(y_first, t_y, t_z))
        flat = flat + torch.where(x_first, s_x, torch.where(y_first, s_y, s_z))
        t_x = torch.where(x_first, t_x + dt_x, t_x)
        t_y = torch.where(y_first, t_y + dt_y, t_y)
        t_z = torch.where(z_first, t_z + dt_z, t_z)
    return RayHits(label=label.reshape(grids, per_grid), distance=distance.reshape(grids, per_grid))


@dataclass(frozen=True, slots=True)
class RayScores:
    """What :meth:`RayIoU.compute` reports (fractions in [0, 1])."""

    per_class_iou: np.ndarray
    """[len(THRESHOLDS), 17] IoU of each non-free label at each threshold (NaN where no ray has the class)."""
    rayiou_at: tuple[float, ...]
    """RayIoU@τ for each τ of :data:`THRESHOLDS`: mean over the classes, NaN skipped."""
    rayiou: float
    """Mean over classes and thresholds, NaN skipped."""
    rays: int
    """Rays scored (those whose ground-truth hit is not free)."""
    samples: int

    def as_dict(self) -> dict[str, object]:
        """JSON-able: NaN becomes None."""
        from pgocc.data.occ3d import OCC3D_CLASSES

        def num(x: float) -> float | None:
            return None if np.isnan(x) else float(x)

        out: dict[str, object] = {"rayiou": num(self.rayiou)}
        for tau, value in zip(THRESHOLDS, self.rayiou_at, strict=True):
            out[f"rayiou@{tau:g}"] = num(value)
        out["per_class_rayiou"] = {OCC3D_CLASSES[c]: [num(x) for x in self.per_class_iou[:, c]]
                                   for c in range(FREE)}
        out["rays"], out["samples"] = self.rays, self.samples
        return out


class RayIoU:
    """Accumulates ray counts over samples; its arrays and ``samples`` are sums (all-reduce combines processes)."""

    def __init__(self, directions: torch.Tensor | None = None, device: torch.device | str = "cpu") -> None:
        """``directions``: [R, 3] unit ray directions; None: :func:`lidar_ray_directions`. ``device``: where the rays
        are cast (a GPU takes a fraction of a CPU's seconds per sample)."""
        self.directions = lidar_ray_directions() if directions is None else directions
        self.device = torch.device(device)
        self.gt_rays = np.zeros(FREE + 1, np.int64)
        """[18] scored rays whose ground-truth hit has each label."""
        self.pred_rays = np.zeros(FREE + 1, np.int64)
        """[18] scored rays whose predicted hit has each label."""
        self.true_rays = np.zeros((len(THRESHOLDS), FREE + 1), np.int64)
        """[3, 18] scored rays with the same label in both and a depth error below each threshold."""
        self.samples = 0

    def update(self, pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray,
               origins: torch.Tensor | np.ndarray) -> None:
        """Add one sample: [X, Y, Z] predicted and ground-truth labels and its [T, 3] origins (metres, ego frame)."""
        pred, gt, origins = (torch.as_tensor(a) for a in (pred, gt, origins))
        if pred.shape != gt.shape or pred.ndim != 3:
            raise ValueError(f"RayIoU.update: pred {tuple(pred.shape)} and gt {tuple(gt.shape)} must be one "
                             "[X, Y, Z] shape")
        if origins.ndim != 2 or origins.shape[1] != 3 or origins.shape[0] == 0:
            raise ValueError(f"RayIoU.update: origins must be [T >= 1, 3], got {tuple(origins.shape)}")
        grids = torch.stack([gt.to(torch.int64), pred.to(torch.int64)]).to(self.device)
        hits = first_hits(grids, origins, self.directions)
        keep = hits.label[0] != FREE
        gl, pl = hits.label[0, keep].cpu().numpy(), hits.label[1, keep].cpu().numpy()
        error = (hits.distance[1, keep] - hits.distance[0, keep]).abs().cpu().numpy()
        self.gt_rays += np.bincount(gl, minlength=FREE + 1)
        self.pred_rays += np.bincount(pl, minlength=FREE + 1)
        for j, tau in enumerate(THRESHOLDS):
            self.true_rays[j] += np.bincount(gl[(gl == pl) & (error < tau)], minlength=FREE + 1)
        self.samples += 1

    def compute(self) -> RayScores:
        tp = self.true_rays[:, :FREE].astype(np.float64)
        union = (self.gt_rays[:FREE] + self.pred_rays[:FREE])[None, :] - tp
        iou = np.divide(tp, union, out=np.full(tp.shape, np.nan), where=union > 0)

        def mean(a: np.ndarray) -> float:
            return float("nan") if np.isnan(a).all() else float(np.nanmean(a))

        return RayScores(per_class_iou=iou, rayiou_at=tuple(mean(row) for row in iou), rayiou=mean(iou),
                         rays=int(self.gt_rays.sum()), samples=self.samples)
