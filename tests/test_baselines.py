"""The label-only baselines against hand-built label volumes."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from pgocc.data.occ3d import FREE, GROUND_LAYER
from pgocc.eval.baselines import HeightPrior, ground_plane_labels, lift_targets

CAR, ROAD, MANMADE = 4, 11, 15


def _exactly(message: str) -> str:
    """A pytest.raises pattern matching ``message`` and nothing around it."""
    return f"^{re.escape(message)}$"


def test_ground_plane_is_road_on_the_ground_layer_only() -> None:
    labels = ground_plane_labels((3, 2, 6))
    assert labels.dtype == np.uint8
    assert (labels[..., GROUND_LAYER] == ROAD).all()
    others = np.delete(labels, GROUND_LAYER, axis=2)
    assert (others == FREE).all()


def test_height_prior_takes_the_most_common_visible_label_of_each_layer() -> None:
    gt = np.full((4, 1, 3), FREE, np.uint8)
    gt[:, 0, 0] = [ROAD, ROAD, CAR, CAR]          # layer 0: a 2-2 tie between road and car ...
    gt[:, 0, 1] = [CAR, CAR, CAR, MANMADE]        # layer 1: car
    mask = np.ones_like(gt, bool)
    mask[3, 0, 0] = False                         # ... broken by the mask: one car is not visible -> road
    mask[:, 0, 2] = False                         # layer 2: nothing visible -> free
    prior = HeightPrior(3)
    prior.update(gt, mask)
    second = np.full((1, 1, 3), FREE, np.uint8)
    second[0, 0, 1] = MANMADE                     # one more sample: layer 1 still car (3 vs 2)
    second_mask = np.ones_like(second, bool)
    second_mask[0, 0, 2] = False                  # (its free voxel of layer 2 would count as visible free)
    prior.update(second, second_mask)
    labels = prior.labels((2, 5, 3))
    np.testing.assert_array_equal(labels[0, 0], [ROAD, CAR, FREE])
    assert (labels == labels[:1, :1]).all()


def test_height_prior_takes_a_layer_seen_once() -> None:
    gt = np.full((2, 1, 2), FREE, np.uint8)
    gt[0, 0, 0] = CAR
    mask = np.zeros_like(gt, bool)
    mask[0, 0, 0] = True                          # layer 0: one visible voxel; layer 1: none
    prior = HeightPrior(2)
    prior.update(gt, mask)
    np.testing.assert_array_equal(prior.labels((1, 1, 2))[0, 0], [CAR, FREE])


def test_height_prior_refuses_another_number_of_layers() -> None:
    with pytest.raises(ValueError, match=_exactly(
            "HeightPrior.update: expected labels and mask [X, Y, 3], got (2, 2, 4) and (2, 2, 4)")):
        HeightPrior(3).update(np.zeros((2, 2, 4), np.uint8), np.ones((2, 2, 4), bool))
    with pytest.raises(ValueError, match=_exactly(
            "HeightPrior.update: expected labels and mask [X, Y, 3], got (2, 2, 3) and (2, 1, 3)")):
        HeightPrior(3).update(np.zeros((2, 2, 3), np.uint8), np.ones((2, 1, 3), bool))
    with pytest.raises(ValueError, match=_exactly("HeightPrior.labels: fitted on 3 layers, asked for (2, 2, 4)")):
        HeightPrior(3).labels((2, 2, 4))


# lift_targets: a camera 1 m above the ego origin looking along +x at a wall 10.1 m away (voxel row x = 125), on an
# 8 × 16 pixel grid (f = 8, c = (8, 4)). Camera x (right) is ego −y, camera y (down) is ego −z, so pixel (u, v) lands
# at y = −(u − 8)·10.1/8, z = 1 − (v − 4)·10.1/8, pixels 1.26 m apart: one per voxel.
WALL = 10.1
CAM2EGO = torch.tensor([[0.0, 0, 1, 0], [-1, 0, 0, 0], [0, -1, 0, 1], [0, 0, 0, 1]])
K = torch.tensor([[8.0, 0, 8], [0, 8, 4], [0, 0, 1]])
PROMPT_LABELS = [CAR, ROAD, MANMADE]


def _wall_voxel(u: int, v: int) -> tuple[int, int, int] | None:
    y, z = -(u - 8) * WALL / 8, 1 - (v - 4) * WALL / 8
    i = (int(np.floor((WALL + 40) / 0.4)), int(np.floor((y + 40) / 0.4)), int(np.floor((z + 1) / 0.4)))
    return i if 0 <= i[2] < 16 else None


def test_lift_targets_puts_each_pixel_in_its_voxel_with_its_feature_cell() -> None:
    depth = torch.full((1, 8, 16), WALL)
    depth[0, 4, 15] = 0.0                                  # no depth: votes nowhere
    feats = torch.zeros(1, 3, 2, 4)                        # 2 × 4 cells of 4 × 4 pixels
    feats[0, 0, :, :2] = 1.0                               # left half (ego +y): car
    feats[0, 2, :, 2:] = 1.0                               # right half: manmade ...
    feats[0, :, 1, 3] = torch.tensor([0.0, 1.0, 0.0])      # ... but road in the bottom right cell
    out = lift_targets(depth, feats, K[None], CAM2EGO[None], torch.eye(3), PROMPT_LABELS)
    expected = np.full(out.labels.shape, FREE, np.uint8)
    for v in range(8):
        for u in range(16):
            voxel = _wall_voxel(u, v)
            if voxel is not None and (u, v) != (15, 4):
                expected[voxel] = CAR if u < 8 else ROAD if (v >= 4 and u >= 12) else MANMADE
    assert (expected != FREE).sum() == 16 * 5 - 1           # rows v = 1..5 inside the grid's height
    np.testing.assert_array_equal(out.labels, expected)
    np.testing.assert_array_equal(out.hits, (expected != FREE).astype(np.int64))


def test_lift_targets_sums_the_votes_of_all_pixels_in_a_voxel() -> None:
    # Two cameras at the same pose: one says car over road, the other manmade over road; summed, road wins.
    depth = torch.full((2, 8, 16), WALL)
    feats = torch.zeros(2, 3, 2, 4)
    feats[0] = torch.tensor([0.6, 0.5, 0.0])[:, None, None]
    feats[1] = torch.tensor([0.0, 0.5, 0.7])[:, None, None]
    out = lift_targets(depth, feats, K.expand(2, 3, 3), CAM2EGO.expand(2, 4, 4), torch.eye(3), PROMPT_LABELS)
    hit = out.hits > 0
    assert hit.sum() == 16 * 5 and (out.hits[hit] == 2).all()
    assert (out.labels[hit] == ROAD).all() and (out.labels[~hit] == FREE).all()


def test_lifted_targets_on_a_given_geometry() -> None:
    depth = torch.full((1, 8, 16), WALL)
    feats = torch.zeros(1, 3, 2, 4)
    feats[0, 0] = 1.0
    out = lift_targets(depth, feats, K[None], CAM2EGO[None], torch.eye(3), PROMPT_LABELS)
    occupied = np.zeros(out.labels.shape, bool)
    lit, dark = _wall_voxel(0, 4), (3, 3, 3)
    occupied[lit] = occupied[dark] = True
    labels = out.on_geometry(occupied)
    assert labels[lit] == CAR and labels[dark] == 0        # occupied but no pixel: "others", a sure miss
    assert (labels[~occupied] == FREE).all()               # the geometry is the given one, not the lifted one


def test_lift_targets_keeps_exactly_the_points_inside_the_grid() -> None:
    # One 1 × 1-pixel camera per point, looking along ego +z (identity rotation) from 0.5 m below it: the pixel's
    # point is the camera's position + (0, 0, 0.5). Two points in the grid's corner voxels, four just outside.
    inside = {(-39.9, -39.9, -0.9): (0, 0, 0), (39.9, 39.9, 5.3): (199, 199, 15)}
    outside = [(-40.1, 0.0, 0.0), (40.1, 0.0, 0.0), (0.0, -40.1, 0.0), (0.0, 0.0, 5.5)]
    points = torch.tensor([*inside, *outside])
    cam2ego = torch.eye(4).repeat(len(points), 1, 1)
    cam2ego[:, :3, 3] = points - torch.tensor([0.0, 0.0, 0.5])
    feats = torch.zeros(len(points), 3, 1, 1)
    feats[:, 1] = 1.0                                      # road everywhere
    out = lift_targets(torch.full((len(points), 1, 1), 0.5), feats, torch.eye(3).expand(len(points), 3, 3),
                       cam2ego, torch.eye(3), PROMPT_LABELS)
    expected = np.zeros(out.hits.shape, np.int64)
    for voxel in inside.values():
        expected[voxel] = 1
    np.testing.assert_array_equal(out.hits, expected)
    assert (out.labels[expected > 0] == ROAD).all()


@pytest.mark.parametrize("bad", ["features", "render_k", "cam2ego"])
def test_lift_targets_refuses_mismatched_shapes(bad: str) -> None:
    args = {"features": torch.zeros(2, 3, 2, 4), "render_k": K.expand(2, 3, 3), "cam2ego": CAM2EGO.expand(2, 4, 4)}
    args[bad] = args[bad][:1]
    shapes = {k: tuple(v.shape) for k, v in args.items()}
    with pytest.raises(ValueError, match=_exactly(
            f"lift_targets: expected features [2, D, h, w], render_k [2, 3, 3] and cam2ego [2, 4, 4] for depth "
            f"(2, 8, 16), got {shapes['features']}, {shapes['render_k']} and {shapes['cam2ego']}")):
        lift_targets(torch.ones(2, 8, 16), args["features"], args["render_k"], args["cam2ego"], torch.eye(3),
                     PROMPT_LABELS)
