"""The label-only baselines against hand-built label volumes."""

from __future__ import annotations

import numpy as np
import pytest

from pgocc.data.occ3d import FREE, GROUND_LAYER
from pgocc.eval.baselines import HeightPrior, ground_plane_labels

CAR, ROAD, MANMADE = 4, 11, 15


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
    prior.update(second, np.ones_like(second, bool))
    labels = prior.labels((2, 5, 3))
    np.testing.assert_array_equal(labels[0, 0], [ROAD, CAR, FREE])
    assert (labels == labels[:1, :1]).all()


def test_height_prior_refuses_another_number_of_layers() -> None:
    with pytest.raises(ValueError, match="expected labels and mask"):
        HeightPrior(3).update(np.zeros((2, 2, 4), np.uint8), np.ones((2, 2, 4), bool))
    with pytest.raises(ValueError, match="fitted on 3 layers"):
        HeightPrior(3).labels((2, 2, 4))
