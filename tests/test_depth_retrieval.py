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


# (predicted, true) depth pairs chosen so that every formula and boundary shows: differences other than ±1 (a square
# is not a cube), ratios exactly at 1.25, 1.25² and 1.25³ (strict '<'), one between 1.25² and 1.25³ and one above,
# a prediction beyond 80 m (clamped), and true depths at exactly 0.1 and 80 m (left out: strictly inside).
PAIRS = [(4.0, 2.0), (3.0, 4.0), (10.0, 10.0), (80.5, 79.0), (5.0, 4.0), (25.0, 16.0), (31.25, 16.0), (14.0, 8.0)]
EXCLUDED = [(5.0, 0.1), (5.0, 80.0)]


def test_depth_errors_every_formula_and_boundary() -> None:
    pred = np.array([[p for p, _ in PAIRS + EXCLUDED]])
    gt = np.array([[g for _, g in PAIRS + EXCLUDED]])
    e = dict(zip(DEPTH_METRICS, depth_errors(pred, gt), strict=True))
    pairs = [(min(p, 80.0), g) for p, g in PAIRS]
    n = len(pairs)
    assert e["abs_rel"] == pytest.approx(sum(abs(p - g) / g for p, g in pairs) / n)
    assert e["sq_rel"] == pytest.approx(sum((p - g) ** 2 / g for p, g in pairs) / n)
    assert e["rmse"] == pytest.approx(math.sqrt(sum((p - g) ** 2 for p, g in pairs) / n))
    assert e["rmse_log"] == pytest.approx(math.sqrt(sum(math.log(p / g) ** 2 for p, g in pairs) / n))
    # ratios 2, 4/3, 1, 80/79, 1.25, 1.5625, 1.953125, 1.75: below 1.25 two, below 1.5625 four, below 1.953125 six
    assert (e["delta_1.25"], e["delta_1.25^2"], e["delta_1.25^3"]) == (2 / 8, 4 / 8, 6 / 8)


def test_depth_bad_input_is_one_line() -> None:
    with pytest.raises(ValueError) as info:
        depth_errors(np.ones((2, 2, 2)), np.ones((2, 2, 2)))
    assert str(info.value) == "depth_errors: pred (2, 2, 2) and gt (2, 2, 2) must be one [H, W] shape"
    with pytest.raises(ValueError) as info:
        DepthMetric(num_cams=2).update(np.ones((1, 2, 3)), [np.ones((2, 3)), np.ones((2, 3))])
    assert str(info.value) == "DepthMetric.update: expected 2 cameras, got 1 predictions and 2 ground-truth maps"


def test_depth_metric_resizes_with_half_pixel_centres_and_skips_a_camera_without_depth() -> None:
    # [2, 4] → 4 columns with half-pixel centres is [2, 2.5, 3.5, 4] (corner-aligned would be [2, 2.67, 3.33, 4])
    m = DepthMetric(num_cams=2)
    gt = np.array([[2.0, 2.5, 3.5, 4.0]])
    m.update(np.array([[[2.0, 4.0]], [[9.0, 9.0]]]), [gt, np.zeros((1, 4))])   # camera 1 never has depth
    s = m.compute()
    assert s.values["abs_rel"] == pytest.approx(0.0, abs=1e-6)
    assert s.values["delta_1.25"] == 1.0
    d = s.as_dict()
    assert set(d) == {*DEPTH_METRICS, "images"} and d["images"] == 1 and d["rmse"] == pytest.approx(0.0, abs=1e-6)
    assert DepthMetric(num_cams=1).compute().as_dict() == {**dict.fromkeys(DEPTH_METRICS), "images": 0}


def test_average_precision_ties_below_the_top_and_bad_input() -> None:
    # ranks: 0.9 (not relevant), a tie at 0.5 (one relevant), 0.2 (relevant): P = 1/3 at R = 1/2, P = 1/2 at R = 1
    for relevant in ([0, 1, 0, 1], [0, 0, 1, 1]):
        ap = average_precision(np.array([0.9, 0.5, 0.5, 0.2]), np.array(relevant, bool))
        assert ap == pytest.approx(0.5 * (1 / 3) + 0.5 * (1 / 2))
    with pytest.raises(ValueError) as info:
        average_precision(np.ones(3), np.ones((3, 1), bool))
    assert str(info.value) == "average_precision: scores (3,) and relevant (3, 1) must be one [N] shape"


def test_retrieval_averages_ap_over_samples_and_reports_nan_without_relevant_voxels() -> None:
    gt = np.array([CAR, ROAD, CAR], np.uint8).reshape(1, 1, 3)
    mask = np.ones_like(gt, bool)
    m = RetrievalAP(["car"], [[CAR]])
    m.update(np.array([0.9, 0.1, 0.5]).reshape(1, 1, 1, 3), gt, mask)   # cars first: AP 1
    m.update(np.array([0.9, 0.5, 0.1]).reshape(1, 1, 1, 3), gt, mask)   # car, road, car: AP (1 + 2/3) / 2
    s = m.compute()
    assert s.ap["car"] == pytest.approx((1 + (1 + 2 / 3) / 2) / 2)
    assert s.as_dict() == {"map": pytest.approx(s.mean_ap), "ap": {"car": pytest.approx(s.ap["car"])}}
    empty = RetrievalAP(["car"], [[CAR]])
    empty.update(np.ones((1, 1, 1, 3)), np.full_like(gt, ROAD), mask)
    assert math.isnan(empty.compute().mean_ap) and empty.compute().as_dict() == {"map": None, "ap": {"car": None}}
    with pytest.raises(ValueError) as info:
        RetrievalAP(["car", "road"], [[CAR]])
    assert str(info.value) == "RetrievalAP: 2 queries but 1 class lists"
    with pytest.raises(ValueError) as info:
        m.update(np.ones((2, 1, 1, 3)), gt, mask)
    assert str(info.value) == ("RetrievalAP.update: expected scores [1, *(1, 1, 3)] and mask (1, 1, 3), "
                               "got (2, 1, 1, 3) and (1, 1, 3)")
