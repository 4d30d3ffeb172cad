"""RayIoU (pgocc.eval.rays) on hand-built grids where every ray's first hit is worked out by hand.

Grid: the Occ3D 200 × 200 × 16 grid (0.4 m voxels from (−40, −40, −1) m). Origin (0.2, 0.2, 1.2) m is the centre of
voxel (100, 100, 5), i.e. 100.5 / 100.5 / 5.5 in voxel units; a ray stops where it *leaves* its first non-free voxel.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from pgocc.eval.rays import RayIoU, first_hits, keyframe_origins, lidar_ray_directions

CAR, ROAD, MANMADE, VEGETATION, FREE = 4, 11, 15, 16, 17
ORIGIN = torch.tensor([[0.2, 0.2, 1.2]], dtype=torch.float64)


def _grid() -> torch.Tensor:
    return torch.full((200, 200, 16), FREE, dtype=torch.int64)


def _dirs(*rows: tuple[float, float, float]) -> torch.Tensor:
    d = torch.tensor(rows, dtype=torch.float64)
    return d / d.norm(dim=-1, keepdim=True)


def test_first_hits_along_each_axis_and_obliquely() -> None:
    g = _grid()
    g[110, :, 3:] = CAR              # a wall ahead: leaves voxel 110 at x = 111 -> 10.5 voxels
    g[:, 95, 3:] = MANMADE           # a wall on the right: leaves voxel 95 at its lower face y = 95 -> 5.5 voxels
    g[:, :, 2] = ROAD                # the ground layer: leaves it at z = 2 -> 3.5 voxels
    g[106, 107, 5] = VEGETATION      # hit by the (0.6, 0.8, 0) ray (worked out below)
    hits = first_hits(g[None], ORIGIN, _dirs((1, 0, 0), (0, -1, 0), (0, 0, -1), (0, 0, 1), (0.6, 0.8, 0)))
    # (0.6, 0.8, 0): enters column x = 106 at t = 5.5 / 0.6 = 9.17 (y = 107.83, voxel (106, 107)); leaves it through
    # the y = 108 plane at t = 7.5 / 0.8 = 9.375 (the x = 107 plane would be t = 10.83).
    assert hits.label[0].tolist() == [CAR, MANMADE, ROAD, FREE, VEGETATION]
    expected = [10.5 * 0.4, 5.5 * 0.4, 3.5 * 0.4, (16 - 5.5) * 0.4, 9.375 * 0.4]  # +z escapes at the top, free
    np.testing.assert_allclose(hits.distance[0].numpy(), expected, rtol=0, atol=1e-9)


def test_origin_inside_an_occupied_voxel_stops_at_once_and_origins_are_offset_by_the_grid_corner() -> None:
    g = _grid()
    g[100, 100, 5] = CAR
    g[120, 100, 5] = MANMADE
    origins = torch.tensor([[0.2, 0.2, 1.2], [4.2, 0.2, 1.2]], dtype=torch.float64)  # voxel 100, then 110
    hits = first_hits(g[None], origins, _dirs((1, 0, 0), (-1, 0, 0)))
    # origin 0: in the car voxel both ways (0.5 voxel); origin 1 (x = 110.5): the wall at 120 ahead (leaves at 121),
    # behind it the car at 100 (leaves at its lower face 100).
    assert hits.label[0].tolist() == [CAR, CAR, MANMADE, CAR]
    np.testing.assert_allclose(hits.distance[0].numpy(), [0.2, 0.2, 10.5 * 0.4, 10.5 * 0.4], atol=1e-9)


def test_a_ray_that_escapes_sideways_reports_the_grid_exit() -> None:
    hits = first_hits(_grid()[None], ORIGIN, _dirs((0, 1, 0)))
    assert hits.label[0].tolist() == [FREE]
    assert hits.distance[0, 0].item() == pytest.approx((200 - 100.5) * 0.4)


def test_lidar_ray_pattern() -> None:
    d = lidar_ray_directions()
    assert d.shape == (39 * 360, 3)
    np.testing.assert_allclose(d.norm(dim=-1).numpy(), 1.0, atol=1e-12)
    pitch = torch.asin(d[::360, 2]).numpy()
    assert pitch[0] == pytest.approx(-math.pi / 4)                       # −(π/2 − atan 1)
    assert pitch[9] == pytest.approx(-(math.pi / 2 - math.atan(10)))
    assert pitch[-1] >= 0.21 > pitch[-2]
    assert np.allclose(np.diff(pitch[9:]), pitch[10] - pitch[9])         # constant step after the tenth
    np.testing.assert_allclose(d[90].numpy(), [0.0, math.cos(pitch[0]), math.sin(pitch[0])], atol=1e-12)  # 90°


def _pose(yaw_deg: float, t: tuple[float, float, float]) -> np.ndarray:
    c, s = math.cos(math.radians(yaw_deg)), math.sin(math.radians(yaw_deg))
    m = np.eye(4)
    m[:2, :2] = [[c, -s], [s, c]]
    m[:3, 3] = t
    return m


def test_keyframe_origins_in_the_current_ego_frame() -> None:
    lidar2ego = np.stack([_pose(-90, (0.94, 0.0, 1.84))] * 3)
    ego2global = np.stack([_pose(0, (0, 0, 0)), _pose(90, (0, 10, 0)), _pose(90, (0, 50, 0))])
    origins = keyframe_origins(ego2global, lidar2ego, current=1)
    # keyframe 0's LiDAR is at global (0.94, 0, 1.84); in keyframe 1's ego frame (turned 90° left, at (0, 10)):
    # R^T (p − t) = R^T (0.94, −10) = (−10, −0.94). Keyframe 2's is 40 m ahead: dropped (|x| >= 39).
    np.testing.assert_allclose(origins, [[-10.0, -0.94, 1.84], [0.94, 0.0, 1.84]], atol=1e-12)


def test_keyframe_origins_are_subsampled_evenly_to_eight() -> None:
    lidar2ego = np.stack([np.eye(4)] * 20)
    ego2global = np.stack([_pose(0, (float(k), 0, 0)) for k in range(20)])
    origins = keyframe_origins(ego2global, lidar2ego, current=0)
    np.testing.assert_allclose(origins[:, 0], [0, 3, 5, 8, 11, 14, 16, 19])   # round(linspace(0, 19, 8))


def test_rayiou_counts_by_hand() -> None:
    gt, pred = _grid(), _grid()
    gt[:, :, 2] = ROAD
    pred[:, :, 2] = ROAD
    gt[110, :, 3:] = CAR             # +x: gt car at 10.5 voxels (4.2 m)
    pred[113, :, 3:] = CAR           # +x: pred car at 13.5 voxels (5.4 m): error 1.2 m
    gt[90, :, 3:] = MANMADE          # −x: gt manmade at 4.2 m
    pred[90, :, 3:] = VEGETATION     # −x: pred vegetation at the same place: wrong class
    pred[100, 105, 5] = CAR          # +y: gt free: the ray is not scored
    metric = RayIoU(_dirs((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, 0, -1)))
    metric.update(pred, gt, ORIGIN)
    s = metric.compute()
    assert s.rays == 3 and s.samples == 1
    # gt rays: car 1, manmade 1, road 1; pred rays (of those): car 1, vegetation 1, road 1.
    # TP@1: road; TP@2 and TP@4: road and car. Vegetation predicted but absent from gt: 0, not NaN.
    iou = s.per_class_iou
    assert iou[:, ROAD].tolist() == [1.0, 1.0, 1.0]
    assert iou[:, CAR].tolist() == [0.0, 1.0, 1.0]
    assert iou[:, MANMADE].tolist() == [0.0, 0.0, 0.0] and iou[:, VEGETATION].tolist() == [0.0, 0.0, 0.0]
    assert np.isnan(iou[:, 1]).all()                                       # barrier: no ray at all
    assert s.rayiou_at == pytest.approx((0.25, 0.5, 0.5))
    assert s.rayiou == pytest.approx((0.25 + 0.5 + 0.5) / 3)


def test_rayiou_of_a_perfect_prediction_is_one_and_bad_input_raises() -> None:
    gt = _grid()
    gt[:, :, 2] = ROAD
    gt[120, 90:110, 3:8] = CAR
    metric = RayIoU(lidar_ray_directions()[::7])
    metric.update(gt, gt, ORIGIN)
    assert metric.compute().rayiou == 1.0
    with pytest.raises(ValueError, match="origins"):
        metric.update(gt, gt, torch.zeros(0, 3))
    with pytest.raises(ValueError, match="one"):
        metric.update(gt[:10], gt, ORIGIN)
    with pytest.raises(ValueError, match="inside the grid"):
        metric.update(gt, gt, torch.tensor([[45.0, 0.0, 1.0]]))
