"""Depth metrics (pgocc.eval.depth) and retrieval AP (pgocc.eval.retrieval) against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pgocc.eval.depth import DEPTH_METRICS, DepthMetric, depth_errors
from pgocc.eval.retrieval import RetrievalAP, average_precision

CAR, ROAD, FREE = 4, 11, 17


def test_depth_errors_by_hand() -> None:
    gt = np.array([[2.0, 4.0], [0.0, 100.0]])      # 0 (no depth) and 100 (sky, beyond 80 m) are not counted
    pred = np.array([[3.0, 4.0], [5.0, 5.0]])
    e = dict(zip(DEPTH_METRICS, depth_errors(pred, gt), strict=True))
    assert e["abs_rel"] == pytest.approx((1 / 2 + 0) / 2)
    assert e["sq_rel"] == pytest.approx((1 / 2 + 0) / 2)
    assert e["rmse"] == pytest.approx(math.sqrt(0.5))
    assert e["rmse_log"] == pytest.approx(math.log(1.5) / math.sqrt(2))
    # ratios 1.5 and 1: 1.5 >= 1.25, 1.5 < 1.5625
    assert (e["delta_1.25"], e["delta_1.25^2"], e["delta_1.25^3"]) == (0.5, 1.0, 1.0)


def test_depth_prediction_is_clamped_and_empty_maps_give_nan() -> None:
    assert depth_errors(np.array([[0.0]]), np.array([[1.0]]))[0] == pytest.approx(0.9)   # 0 → 0.1
    assert np.isnan(depth_errors(np.ones((2, 2)), np.zeros((2, 2)))).all()


def test_depth_metric_averages_per_camera_then_over_cameras_and_resizes_the_prediction() -> None:
    m = DepthMetric(num_cams=2)
    gt = np.full((4, 6), 2.0)
    # camera 0: abs_rel 0.25 then 0.75; camera 1: 0.1 once, then no valid pixel (not counted)
    m.update(np.stack([np.full((2, 3), 2.5), np.full((2, 3), 2.2)]), [gt, gt])
    m.update(np.stack([np.full((2, 3), 3.5), np.full((2, 3), 1.0)]), [gt, np.zeros((4, 6))])
    s = m.compute()
    assert s.values["abs_rel"] == pytest.approx(((0.25 + 0.75) / 2 + 0.1) / 2)   # not the pooled (1.1 / 3)
    assert s.images == 3
    with pytest.raises(ValueError, match="2 cameras"):
        m.update(np.ones((1, 2, 2)), [gt])


def test_average_precision_on_toy_rankings() -> None:
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    assert average_precision(scores, np.array([1, 0, 1, 0], bool)) == pytest.approx((1 / 1 + 2 / 3) / 2)
    assert average_precision(scores, np.array([0, 0, 0, 1], bool)) == pytest.approx(1 / 4)
    assert average_precision(-scores, np.array([0, 0, 0, 1], bool)) == pytest.approx(1.0)  # a flipped sign shows
    # a tie is one threshold, whatever the order inside it: P = 1/2 at R = 1/2, then P = 2/3 at R = 1
    for relevant in ([0, 1, 1], [1, 0, 1]):
        ap = average_precision(np.array([0.5, 0.5, 0.2]), np.array(relevant, bool))
        assert ap == pytest.approx(0.5 * 0.5 + 0.5 * 2 / 3)
    assert math.isnan(average_precision(scores, np.zeros(4, bool)))


def test_retrieval_map_over_samples_and_queries() -> None:
    gt = np.array([CAR, ROAD, CAR, FREE], np.uint8).reshape(1, 1, 4)
    mask = np.array([1, 1, 1, 0], bool).reshape(1, 1, 4)       # the last voxel is not seen: not a candidate
    scores = np.array([[0.9, 0.1, 0.5, 1.0],                   # "car": both cars above the road -> AP 1
                       [0.9, 0.1, 0.5, 1.0]]).reshape(2, 1, 1, 4)  # "road": ranked last of three -> AP 1/3
    m = RetrievalAP(["car", "road"], [[CAR], [ROAD]])
    m.update(scores, gt, mask)
    m.update(scores, np.full_like(gt, FREE), mask)             # no relevant voxel: no AP for this sample
    s = m.compute()
    assert s.ap == pytest.approx({"car": 1.0, "road": 1 / 3})
    assert s.mean_ap == pytest.approx((1 + 1 / 3) / 2)
