"""Occ3D mIoU / geometric IoU (pgocc.eval.metrics) against confusion matrices and IoUs worked out by hand, with the
original's absent-class rule (a class without ground-truth voxels is NaN and skipped, even where predicted)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pgocc.eval.metrics import EVAL_CLASSES, OCCUPIED_CLASSES, OccupancyMIoU, confusion_matrix, per_class_iou

CAR, ROAD, OTHERS, OTHER_FLAT, MANMADE, FREE = 4, 11, 0, 12, 15, 17


def test_eval_classes_drop_others_other_flat_and_free() -> None:
    assert EVAL_CLASSES == (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16)
    assert OCCUPIED_CLASSES == tuple(range(17))


def test_confusion_matrix_counts_rows_gt_columns_pred_inside_the_mask() -> None:
    gt = np.array([CAR, CAR, CAR, ROAD, ROAD, FREE, FREE, CAR], np.uint8)
    pred = np.array([CAR, ROAD, FREE, ROAD, ROAD, CAR, FREE, FREE], np.uint8)
    mask = np.array([1, 1, 1, 1, 1, 1, 1, 0], bool)  # the last voxel (a missed car) is not seen by any camera
    c = confusion_matrix(pred, gt, mask)
    expected = np.zeros((18, 18), np.int64)
    expected[CAR, CAR] = 1
    expected[CAR, ROAD] = 1
    expected[CAR, FREE] = 1
    expected[ROAD, ROAD] = 2
    expected[FREE, CAR] = 1
    expected[FREE, FREE] = 1
    np.testing.assert_array_equal(c, expected)
    assert confusion_matrix(pred, gt)[CAR, FREE] == 2  # without a mask the unseen voxel counts


def test_scores_of_one_sample_by_hand() -> None:
    # A 2×2×2 scene. gt: 3 car, 2 road, 3 free; pred gets 2 cars right, calls one car road, one road free,
    # and hallucinates a car in free space. mask keeps every voxel.
    gt = np.array([CAR, CAR, CAR, ROAD, ROAD, FREE, FREE, FREE], np.uint8).reshape(2, 2, 2)
    pred = np.array([CAR, CAR, ROAD, ROAD, FREE, CAR, FREE, FREE], np.uint8).reshape(2, 2, 2)
    m = OccupancyMIoU()
    m.update(pred, gt, np.ones_like(gt, bool))
    s = m.compute()
    # car: TP 2, FP 1 (the free voxel), FN 1 (called road) -> 2/4. road: TP 1, FP 1, FN 1 -> 1/3.
    assert s.per_class_iou[CAR] == pytest.approx(0.5)
    assert s.per_class_iou[ROAD] == pytest.approx(1 / 3)
    # free: TP 2, FP 1 (road called free), FN 1 (free called car) -> 2/4; it is not averaged.
    assert s.per_class_iou[FREE] == pytest.approx(0.5)
    assert math.isnan(s.per_class_iou[MANMADE])  # neither in gt nor predicted
    assert s.miou == pytest.approx((0.5 + 1 / 3) / 2)
    # occupied: gt 5, pred 5, both occupied 4 (2 car, car->road, road->road) -> 4 / (5 + 5 - 4)
    assert s.geometric_iou == pytest.approx(4 / 6)
    assert (s.voxels, s.samples) == (8, 1)


def test_predicted_class_absent_from_gt_is_nan_and_skipped_and_others_count_only_in_the_17_class_miou() -> None:
    gt = np.array([CAR, CAR, OTHERS, OTHER_FLAT, FREE, ROAD], np.uint8).reshape(-1, 1, 1)
    pred = np.array([CAR, CAR, OTHERS, FREE, MANMADE, FREE], np.uint8).reshape(-1, 1, 1)
    m = OccupancyMIoU()
    m.update(pred, gt, None)
    s = m.compute()
    assert s.per_class_iou[OTHERS] == 1.0 and s.per_class_iou[OTHER_FLAT] == 0.0
    assert math.isnan(s.per_class_iou[MANMADE])  # predicted once, never in gt: the original's rule gives NaN
    assert s.per_class_iou[ROAD] == 0.0          # in gt, never predicted: 0, and it is averaged
    assert s.miou == pytest.approx((1.0 + 0.0) / 2)              # car, road
    assert s.miou_17 == pytest.approx((1.0 + 0.0 + 1.0 + 0.0) / 4)  # car, road, others, other_flat
    # occupied: gt 5, pred 4, both 3 (car, car, others) -> 3 / (5 + 4 - 3)
    assert s.geometric_iou == pytest.approx(3 / 6)


def test_per_class_iou_of_a_confusion_matrix_by_hand() -> None:
    c = np.zeros((18, 18), np.int64)
    c[CAR, CAR], c[CAR, FREE], c[FREE, CAR], c[FREE, FREE] = 6, 2, 1, 10   # car: 6 / (6 + 2 + 1)
    c[FREE, ROAD] = 3                                                       # road: predicted only -> NaN
    iou = per_class_iou(c)
    assert iou[CAR] == pytest.approx(6 / 9)
    assert iou[FREE] == pytest.approx(10 / (10 + 2 + 4))
    assert math.isnan(iou[ROAD]) and math.isnan(iou[MANMADE])
    # the transposed matrix (rows prediction) would make road present and car 6 / 9 still: the rows matter
    assert not math.isnan(per_class_iou(c.T)[ROAD])


def test_empty_mask_counts_nothing() -> None:
    m = OccupancyMIoU()
    gt = np.full((2, 2, 4), CAR, np.uint8)
    m.update(gt, gt, np.zeros_like(gt, bool))
    s = m.compute()
    assert s.voxels == 0 and np.isnan(s.per_class_iou).all()
    assert math.isnan(s.miou) and math.isnan(s.miou_17) and math.isnan(s.geometric_iou)


def test_geometric_iou_is_nan_when_the_ground_truth_has_no_occupied_voxel() -> None:
    m = OccupancyMIoU()
    m.update(np.full((3, 1, 1), CAR, np.uint8), np.full((3, 1, 1), FREE, np.uint8), None)
    s = m.compute()
    assert math.isnan(s.geometric_iou) and math.isnan(s.miou)


def test_accumulates_over_samples_before_dividing() -> None:
    # Sample 1: 1 car voxel right. Sample 2: 3 car voxels missed. Pooled: 1 / 4, not the mean of 1 and 0.
    m = OccupancyMIoU()
    m.update(np.full((1, 1, 1), CAR), np.full((1, 1, 1), CAR), np.ones((1, 1, 1), bool))
    m.update(np.full((3, 1, 1), FREE), np.full((3, 1, 1), CAR), np.ones((3, 1, 1), bool))
    s = m.compute()
    assert s.per_class_iou[CAR] == pytest.approx(0.25)
    assert s.miou == pytest.approx(0.25)
    assert s.samples == 2
    np.testing.assert_array_equal(m.confusion.sum(), 4)


def test_all_free_gives_nan_and_json_null() -> None:
    m = OccupancyMIoU()
    m.update(np.full((6, 1, 1), FREE, np.uint8), np.full((6, 1, 1), FREE, np.uint8), np.ones((6, 1, 1), bool))
    s = m.compute()
    assert math.isnan(s.miou) and math.isnan(s.geometric_iou)
    d = s.as_dict()
    assert d["miou"] is None and d["geometric_iou"] is None and d["per_class_iou"]["free"] == 1.0


def test_matches_a_brute_force_definition_on_random_labels(seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt = rng.integers(0, 18, (20, 20, 4))
    pred = rng.choice([1, 4, 11, 15, 17], (20, 20, 4))
    mask = rng.random((20, 20, 4)) < 0.7
    m = OccupancyMIoU()
    m.update(pred, gt, mask)
    s = m.compute()
    g, p = gt[mask], pred[mask]
    for c in range(18):
        tp, union = np.sum((g == c) & (p == c)), np.sum((g == c) | (p == c))
        expected = tp / union if np.any(g == c) else math.nan
        assert s.per_class_iou[c] == pytest.approx(expected, nan_ok=True)
    occ_g, occ_p = g < 17, p < 17
    assert s.geometric_iou == pytest.approx(np.sum(occ_g & occ_p) / np.sum(occ_g | occ_p))


def test_bad_inputs_raise_one_line_naming_the_argument() -> None:
    def message(*args: object) -> str:
        with pytest.raises(ValueError) as info:
            confusion_matrix(*args)
        return str(info.value)

    z3 = np.zeros(3, np.uint8)
    assert message(z3, np.zeros(4, np.uint8)) == \
        "confusion_matrix: pred (3,), gt (4,) and mask None must have one shape"
    assert message(z3, z3, np.ones(4, bool)) == "confusion_matrix: pred (3,), gt (3,) and mask (4,) must have one shape"
    assert message(np.full(3, 18), z3) == "confusion_matrix: pred labels must be in 0..17, got 18..18"
    # below the range only (the low end is checked on its own, not only together with the high end)
    assert message(np.array([-1, 0, 5]), z3) == "confusion_matrix: pred labels must be in 0..17, got -1..5"
    assert message(z3, np.array([0, 19, 2])) == "confusion_matrix: gt labels must be in 0..17, got 0..19"
    with pytest.raises(ValueError) as info:
        OccupancyMIoU().update(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), None)
    assert str(info.value) == "OccupancyMIoU.update: expected [X, Y, Z] labels, got shape (2, 2)"


def test_as_dict_names_every_score() -> None:
    # Layers 0..3: car (right), car (predicted road), road (right), free (right); 4 voxels, 1 sample.
    gt = np.array([CAR, CAR, ROAD, FREE], np.uint8).reshape(1, 1, 4)
    pred = np.array([CAR, ROAD, ROAD, FREE], np.uint8).reshape(1, 1, 4)
    d = _scores(pred, gt).as_dict()
    assert set(d) == {"miou", "miou_17", "geometric_iou", "geometric_iou_above_ground", "per_class_iou",
                      "eval_classes", "voxels", "samples"}
    assert d["per_class_iou"]["car"] == pytest.approx(1 / 2) and d["per_class_iou"]["driveable_surface"] == 0.5
    assert d["miou"] == pytest.approx(0.5) and d["miou_17"] == pytest.approx(0.5)
    assert d["geometric_iou"] == pytest.approx(1.0)
    assert d["geometric_iou_above_ground"] is None   # layer 3 (above the ground layer 2) is free: NaN -> None
    assert d["voxels"] == 4 and d["samples"] == 1
    assert d["eval_classes"] == ["barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle",
                                 "pedestrian", "traffic_cone", "trailer", "truck", "driveable_surface", "sidewalk",
                                 "terrain", "manmade", "vegetation"]


def _scores(pred: np.ndarray, gt: np.ndarray):  # noqa: ANN202
    m = OccupancyMIoU()
    m.update(pred, gt, np.ones_like(gt, bool))
    return m.compute()


def test_geometric_iou_above_ground_accumulates_over_samples() -> None:
    # Sample 1: a car right above the ground (layer 3). Sample 2: a car missed there. Pooled above ground: 1 / 2.
    gt = np.array([FREE, FREE, ROAD, CAR], np.uint8).reshape(1, 1, 4)
    m = OccupancyMIoU()
    m.update(gt.copy(), gt, np.ones_like(gt, bool))
    missed = gt.copy()
    missed[0, 0, 3] = FREE
    m.update(missed, gt, np.ones_like(gt, bool))
    assert m.compute().geometric_iou_above_ground == pytest.approx(1 / 2)


def test_geometric_iou_above_ground_counts_only_the_layers_above_the_ground_layer() -> None:
    # One column of 6 layers, the ground layer is index 2. Ground truth: road at 2, a car at 3 and 4, free above.
    # Prediction: road at 2 (right), car at 3 (right), free at 4 (missed), car at 5 (hallucinated), and a car
    # below the ground at 1 (not counted above ground, counted by the plain geometric IoU).
    gt = np.array([FREE, FREE, ROAD, CAR, CAR, FREE], np.uint8).reshape(1, 1, 6)
    pred = np.array([FREE, CAR, ROAD, CAR, FREE, CAR], np.uint8).reshape(1, 1, 6)
    m = OccupancyMIoU()
    m.update(pred, gt, np.ones_like(gt, bool))
    s = m.compute()
    assert s.geometric_iou_above_ground == pytest.approx(1 / 3)     # layers 3..5: TP 1, union 3
    assert s.geometric_iou == pytest.approx(2 / 5)                  # all layers: TP 2 (2, 3), union 5
    # the ground layer itself does not count: a wrong ground layer leaves the above-ground IoU unchanged
    pred[0, 0, 2] = FREE
    m2 = OccupancyMIoU()
    m2.update(pred, gt, np.ones_like(gt, bool))
    assert m2.compute().geometric_iou_above_ground == pytest.approx(1 / 3)
