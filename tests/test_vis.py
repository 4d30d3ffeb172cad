"""Pictures (pgocc.vis): the top-most-label reduction, the bird's-eye orientation, and readable PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pgocc.vis import OCC3D_COLORS, bev_picture, camera_picture, query_picture, top_labels, voxel_picture
from pgocc.vis.bev import _extent, _view
from pgocc.vis.cameras import feature_pca

CAR, ROAD, MANMADE, FREE = 4, 11, 15, 17


def _rgb(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.format == "PNG"
        return np.asarray(im.convert("RGB"))


def test_top_labels_by_hand() -> None:
    labels = np.full((2, 2, 4), FREE, np.uint8)
    labels[0, 0, 0] = ROAD
    labels[0, 0, 2] = CAR                       # the highest occupied voxel wins, not the most frequent
    labels[0, 1, 3] = MANMADE
    labels[0, 1, 0] = ROAD
    labels[1, 0, 1] = CAR                        # [1, 1] stays free
    np.testing.assert_array_equal(top_labels(labels), [[CAR, MANMADE], [CAR, FREE]])
    mask = np.ones_like(labels, bool)
    mask[0, 1, 3] = False                        # hide the manmade voxel: the road below shows
    mask[1, 0, :] = False
    np.testing.assert_array_equal(top_labels(labels, mask), [[CAR, ROAD], [FREE, FREE]])


def test_view_puts_forward_up_and_left_on_the_left() -> None:
    a = np.zeros((200, 200), np.uint8)
    a[175, 175] = 1                              # x = +30 m (forward), y = +30 m (left)
    v = _view(a)
    r, c = np.argwhere(v == 1)[0]
    assert r < 100 and c < 100                   # top-left quadrant
    left, right, bottom, top = _extent(a.shape, (-40.0, -40.0), 0.4)
    assert (left, right, bottom, top) == (40.0, -40.0, -40.0, 40.0)
    # The centre of displayed pixel (r, c) in axis coordinates is the voxel's centre.
    y = left + (c + 0.5) * (right - left) / v.shape[1]
    x = top - (r + 0.5) * (top - bottom) / v.shape[0]
    assert (x, y) == pytest.approx((-40 + 0.4 * 175.5, -40 + 0.4 * 175.5))


def test_bev_picture_draws_classes_where_they_are(tmp_path: Path) -> None:
    pred = np.full((200, 200, 16), FREE, np.uint8)
    pred[170:180, 170:180, 3] = CAR              # front-left of the ego
    pred[20:30, 20:30, 5] = MANMADE              # back-right
    rgb = _rgb(bev_picture(tmp_path / "bev.png", pred, title="by hand"))
    plot = rgb[: int(0.85 * rgb.shape[0])]      # above the legend, whose patches carry the same colours
    centres = {}
    for label in (CAR, MANMADE):
        rows, cols = np.nonzero((plot == OCC3D_COLORS[label]).all(-1))
        assert rows.size > 50, f"class {label} not drawn"
        centres[label] = (rows.mean(), cols.mean())
    assert centres[CAR][0] < centres[MANMADE][0] and centres[CAR][1] < centres[MANMADE][1]


def test_bev_picture_with_ground_truth_greys_unseen_columns(tmp_path: Path) -> None:
    pred = np.full((200, 200, 16), FREE, np.uint8)
    gt = pred.copy()
    gt[:, :, 2] = ROAD
    mask = np.zeros_like(gt, bool)
    mask[50:150, 50:150] = True
    rgb = _rgb(bev_picture(tmp_path / "bev.png", pred, gt, mask))
    assert (rgb == OCC3D_COLORS[ROAD]).all(-1).any()
    assert (rgb == (200, 200, 200)).all(-1).any()  # columns no camera sees
    assert rgb.shape[1] > rgb.shape[0]              # two panels side by side


def test_query_picture_colours_only_occupied_columns(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    similarity = rng.random((200, 200, 16)).astype(np.float16)
    occupied = np.zeros((200, 200, 16), bool)
    occupied[100:140, 100:140, 2] = True
    rgb = _rgb(query_picture(tmp_path / "q.png", "a parked car", similarity, occupied))
    grey = (rgb == (200, 200, 200)).all(-1).sum()
    assert grey > 0.2 * rgb.shape[0] * rgb.shape[1]  # most of the map is unoccupied
    empty = _rgb(query_picture(tmp_path / "q0.png", "tree", similarity, np.zeros_like(occupied)))
    assert empty.shape == rgb.shape


def test_camera_picture(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (6, 45, 80, 3), dtype=np.uint8)
    depth = rng.random((6, 45, 80)).astype(np.float32) * 40
    depth[:, :10] = 0
    features = rng.standard_normal((6, 45, 80, 8)).astype(np.float32)
    rgb = _rgb(camera_picture(tmp_path / "cams.png", images, rendered=depth, foundation=depth + 1, features=features,
                              title="by hand"))
    assert rgb.shape[0] > 300 and rgb.shape[1] > 600
    assert not list(tmp_path.glob(".*.tmp"))
    camera_picture(tmp_path / "none.png", images, rendered=np.zeros((6, 45, 80)))  # nothing rendered: a picture
    with pytest.raises(ValueError, match="images must be uint8"):
        camera_picture(tmp_path / "bad.png", images.astype(np.float32), rendered=depth)
    with pytest.raises(ValueError, match="rendered depth must be"):
        camera_picture(tmp_path / "bad.png", images, rendered=depth[:5])
    with pytest.raises(ValueError, match="features must be"):
        camera_picture(tmp_path / "bad.png", images, rendered=depth, features=features[..., 0])


def test_feature_pca_separates_two_features_and_leaves_empty_pixels_black() -> None:
    f = np.zeros((1, 2, 3, 4))
    f[0, 0, :] = [1.0, 0, 0, 0]
    f[0, 1, :2] = [0, 0, 5.0, 0]                  # two distinct features; pixel (1, 2) renders nothing
    rgb = feature_pca(f)
    assert rgb.shape == (1, 2, 3, 3) and (rgb[0, 1, 2] == 0).all()
    assert not np.allclose(rgb[0, 0, 0], rgb[0, 1, 0])         # different features, different colours
    np.testing.assert_allclose(rgb[0, 0, 0], rgb[0, 0, 2])      # one feature, one colour


def test_every_class_colour_stands_out_from_free_space() -> None:
    free = OCC3D_COLORS[FREE].astype(int)
    for c in range(FREE):
        assert np.abs(OCC3D_COLORS[c].astype(int) - free).sum() > 100, f"class {c} is hard to tell from free"


def test_voxel_picture_draws_the_classes_it_is_given(tmp_path: Path) -> None:
    pred = np.full((200, 200, 16), FREE, np.uint8)
    pred[110:115, 95:100, 3:6] = CAR              # 4 m ahead
    gt = pred.copy()
    gt[80:85, 95:100, 3:8] = MANMADE              # behind the ego, seen
    mask = np.ones_like(gt, bool)
    mask[80:85] = False                           # ... or not: then it is not drawn
    rgb = _rgb(voxel_picture(tmp_path / "v.png", pred, gt, np.ones_like(gt, bool)))
    plot = rgb[: int(0.85 * rgb.shape[0])]
    for label in (CAR, MANMADE):
        assert (plot == OCC3D_COLORS[label]).all(-1).sum() > 20, f"class {label} not drawn"
    rgb = _rgb(voxel_picture(tmp_path / "hidden.png", pred, gt, mask))
    assert (rgb[: int(0.85 * rgb.shape[0])] == OCC3D_COLORS[MANMADE]).all(-1).sum() == 0
