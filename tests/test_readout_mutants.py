"""Readout rules the other readout tests left open, each against a value written here from docs/model.md §6.3 (not
read from the code): the free label is 17, the smallest-variance filter keeps variances strictly above the
threshold, the grid box of the mean filter ends at the grid's upper face (``origin + dims·size``, one voxel lower
with ``shifted_voxel_grid``), and ``merge_labels``'s message. Mutation testing (tests/README.md) found these gaps.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from configs.tiny import tiny
from pgocc.model.readout import Readout, keep_mask, merge_labels, occupancy_labels
from pgocc.model.types import Gaussians
from tests.test_readout import OCC3D_COLUMNS

PC_RANGE = (-4.0, -4.0, -1.0, 4.0, 4.0, 2.2)
"""A 20 × 20 × 8 grid of 0.4-m voxels; its upper face is x = 4.0 (3.6 with ``shifted_voxel_grid``)."""


def _one_each(means: list[list[float]], scales: list[list[float]], opacities: list[float]) -> Gaussians:
    """One sample of axis-aligned Gaussians with 2-channel features (1, 0)."""
    q = len(means)
    return Gaussians(torch.tensor([means]), torch.tensor([1.0, 0, 0, 0]).expand(1, q, 4), torch.tensor([scales]),
                     torch.tensor([opacities]), torch.tensor([1.0, 0.0]).expand(1, q, 2))


def test_free_label_is_occ3d_17() -> None:
    """Occ3D's free label is 17 (§6.3), written here as a literal: the other tests compare with ``FREE_LABEL``
    itself, so a wrong constant passed them."""
    scores = torch.zeros(3, 21)
    scores[:, 3] = 1.0                                                               # car (label 4)
    out = occupancy_labels(torch.tensor([0.0, 0.01, 0.5]), scores, OCC3D_COLUMNS, 0.04)
    assert out.tolist() == [17, 17, 4]
    cfg = dataclasses.replace(tiny().model, pc_range=PC_RANGE, shifted_voxel_grid=False)
    empty = _one_each([[0.0, 0.0, 0.0]], [[0.5, 0.5, 0.5]], [0.0])
    labels = Readout(cfg, tiny().kernels)(empty, torch.eye(21, 2), OCC3D_COLUMNS)
    assert labels.shape == (1, 20, 20, 8) and bool((labels == 17).all())


def test_min_variance_filter_is_strict() -> None:
    """A world-axis variance equal to ``min_variance`` is not above it: rejected (0.5² = 0.25 exactly, identity
    rotation, so diag Σ is exact); 0.5 → 0.5001 is kept. Catches ``>=`` for ``>``."""
    g = _one_each([[0.0, 0.0, 0.0]] * 3, [[1.0, 0.5, 1.0], [1.0, 0.5001, 1.0], [0.5, 0.5, 0.5]], [0.9, 0.9, 0.9])
    keep = keep_mask(g, (-1.0, -1.0, -1.0), (1.0, 1.0, 1.0), opacity_threshold=0.6, min_variance=0.25)
    assert keep.tolist() == [[False, True, False]]


@pytest.mark.parametrize("shifted", [False, True])
def test_mean_filter_ends_at_the_grids_upper_face(shifted: bool) -> None:
    """Three Gaussians whose supports all reach the last x layer (centre x = 3.8, or 3.4 when shifted), 3.2 m apart
    in y (beyond each other's 5σ cut-off) on voxel centres in y and z: one centred on the upper face (kept: the box
    is inclusive), one 0.1 m past it (dropped), and one at x = 3.7 (inside the plain grid, past the shifted one's
    face at 3.6). The density on the last layer is the closed form o·(exp(−d²/2σ²) − exp(−r²/2)), d = the x offset,
    of the kept ones, and 0 at the dropped one. Catches an upper face at ``origin + dims / size`` (46 m: the Gaussian
    past the face is kept) or at ``origin − dims·size``."""
    cfg = dataclasses.replace(tiny().model, pc_range=PC_RANGE, shifted_voxel_grid=shifted, min_variance=0.0)
    readout = Readout(cfg, tiny().kernels)
    face = 3.6 if shifted else 4.0
    # the shift is one voxel, so the centres are the same lattice −3.8 + 0.4 i (x, y), −0.8 + 0.4 k (z) either way
    means = [[face, -3.0, 0.4], [face + 0.1, 0.2, 0.4], [3.7, 3.4, 0.4]]
    kept = [True, False, not shifted]
    g = _one_each(means, [[0.5, 0.5, 0.5]] * 3, [0.9] * 3)
    density, _ = readout.similarity(g, torch.eye(2))
    shift = 1 if shifted else 0
    tail = math.exp(-0.5 * cfg.voxel_cutoff**2)
    for (x, y, _), keep in zip(means, kept, strict=True):
        j, k = round((y + 3.8) / 0.4) + shift, 3 + shift                             # voxel indices of (y, 0.4)
        want = 0.9 * (math.exp(-0.5 * (x - (face - 0.2)) ** 2 / 0.25) - tail) if keep else 0.0
        assert abs(float(density[0, 19, j, k]) - want) < 1e-6, (x, keep, float(density[0, 19, j, k]), want)


def test_merge_labels_message_word_for_word() -> None:
    """The column-count error names both counts; with scores [2, 3, 5] the score columns are the last axis (5),
    not the second (3) or the second last."""
    with pytest.raises(ValueError) as err:
        merge_labels(torch.zeros(2, 3, 5), [1, 2, 3, 4])
    assert str(err.value) == "merge_labels: 4 column labels for 5 score columns"
