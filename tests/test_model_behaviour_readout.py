"""Readout label rules on hand-placed Gaussians (docs/model.md §6.3), with densities computed here in closed form:
the group max (not the sum) decides the label, the free threshold falls where o·exp(−r²/2σ²) crosses it, and the
opacity and variance filters remove Gaussians that would otherwise change a label."""

from __future__ import annotations

import dataclasses
import math

import torch

from configs.tiny import tiny
from pgocc.model.readout import FREE_LABEL, Readout
from pgocc.model.types import Gaussians
from tests.test_readout import OCC3D_COLUMNS

THRESHOLD = 0.046
"""A non-default free threshold (default 0.04) between the densities 3 and 2 voxels away from the Gaussian."""


def test_group_max_free_threshold_and_filters_on_hand_placed_gaussians() -> None:
    cfg = dataclasses.replace(tiny().model, pc_range=(-4.0, -4.0, -1.0, 4.0, 4.0, 2.2), shifted_voxel_grid=False,
                              density_threshold=THRESHOLD)
    readout = Readout(cfg, tiny().kernels)
    # voxel centres (−3.8 + 0.4 i, −3.8 + 0.4 j, −0.8 + 0.4 k): voxel (10, 10, 4) is at (0.2, 0.2, 0.8)
    centre = [0.2, 0.2, 0.8]
    scores = torch.full((21,), -1.0)
    scores[14:19] = 1.0                          # the five manmade columns (label 15): sum 5, max 1
    scores[19] = 1.5                             # vegetation (16): max 1.5 wins the group max
    car = torch.full((21,), -1.0)
    car[3] = 50.0
    means = torch.tensor([centre, [0.2 + 1.6, 0.2, 0.8], [0.2, 0.2 + 1.6, 0.8]])
    scales = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5], [0.04, 1.0, 1.0]])
    # 2nd: opacity 0.58 (not above 0.6); 3rd: world-x variance 0.0016 (not above 0.0025); both strongly 'car'
    opac = torch.tensor([0.8, 0.58, 0.9])
    g = Gaussians(means[None], torch.tensor([1.0, 0, 0, 0]).expand(1, 3, 4), scales[None], opac[None],
                  torch.stack([scores, car, car])[None])
    density, _ = readout.similarity(g, torch.eye(21))
    labels = readout(g, torch.eye(21), OCC3D_COLUMNS)
    for k in range(5):
        # o·(exp(−r²/2σ²) − exp(−r_cut²/2)) (the gs2vox contract's continuous cut-off at model.voxel_cutoff)
        expected = 0.8 * (math.exp(-((0.4 * k) ** 2) / (2 * 0.25)) - math.exp(-cfg.voxel_cutoff**2 / 2))
        assert abs(float(density[0, 10 + k, 10, 4]) - expected) < 1e-6, k
        assert abs(float(density[0, 10, 10 + k, 4]) - expected) < 1e-6, k
        want = 16 if expected > THRESHOLD else FREE_LABEL
        assert int(labels[0, 10 + k, 10, 4]) == want and int(labels[0, 10, 10 + k, 4]) == want, k
