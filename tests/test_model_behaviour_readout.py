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


def test_voxel_average_keeps_a_thin_surface_in_the_voxel_it_crosses() -> None:
    """A horizontal Gaussian 2 cm thick, 0.15 m above the centre of voxel layer 4 (inside that voxel, which spans
    ±0.2 m): read at the centres it vanishes (o·exp(−½·7.5²)); averaged over the voxel it is widened to
    sqrt(0.02² + 0.4²/12) m and dimmed by 0.02 / that, so layer 4 is occupied with its label and layer 5 (0.25 m
    away) stays free. Dropping the dimming would fill layer 5; not wiring the switch would leave layer 4 free. (The
    smallest-variance filter is off: at its default it drops a Gaussian 2 cm thick before any readout.)"""
    cfg = dataclasses.replace(tiny().model, pc_range=(-4.0, -4.0, -1.0, 4.0, 4.0, 2.2), shifted_voxel_grid=False,
                              opacity_threshold=0.3, min_variance=0.0)
    car = torch.full((21,), -1.0)
    car[3] = 5.0
    g = Gaussians(torch.tensor([[[0.2, 0.2, 0.95]]]), torch.tensor([[[1.0, 0, 0, 0]]]),
                  torch.tensor([[[2.0, 2.0, 0.02]]]), torch.tensor([[0.9]]), car[None, None])
    wide = math.sqrt(0.02**2 + 0.4**2 / 12)
    peak = 0.9 * (0.02 / wide) * (2.0 / math.sqrt(4.0 + 0.4**2 / 12)) ** 2
    for average, expected in ((False, {4: 0.9 * math.exp(-0.5 * 7.5**2), 5: 0.9 * math.exp(-0.5 * 12.5**2)}),
                              (True, {4: peak * math.exp(-0.5 * (0.15 / wide) ** 2),
                                      5: peak * math.exp(-0.5 * (0.25 / wide) ** 2)})):
        readout = Readout(dataclasses.replace(cfg, voxel_average=average), tiny().kernels)
        density, _ = readout.similarity(g, torch.eye(21))
        labels = readout(g, torch.eye(21), OCC3D_COLUMNS)
        for k, want in expected.items():
            assert abs(float(density[0, 10, 10, k]) - want) < 1e-5, (average, k)
        assert int(labels[0, 10, 10, 4]) == (4 if average else FREE_LABEL)
        assert int(labels[0, 10, 10, 5]) == FREE_LABEL


def test_voxel_average_keeps_each_gaussians_integral() -> None:
    """The widened, dimmed Gaussian holds the same mass as the original (summed here on a fine grid, not from the
    closed form), for a rotated, anisotropic Gaussian; one much larger than a voxel is barely changed."""
    from pgocc.model.geometry import quat_to_rotmat
    from pgocc.model.readout import voxel_average

    quat = torch.nn.functional.normalize(torch.tensor([0.9, 0.2, -0.3, 0.25], dtype=torch.float64), dim=0)
    rot = quat_to_rotmat(quat)
    scales = torch.tensor([0.05, 0.3, 0.12], dtype=torch.float64)
    wide, opacity = voxel_average(scales, torch.tensor(0.7, dtype=torch.float64), 0.4)
    axis = torch.arange(-2.0, 2.0, 0.02, dtype=torch.float64)
    pts = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)

    def mass(s: torch.Tensor, o: torch.Tensor) -> float:
        local = pts @ rot / s
        return float(o * torch.exp(-0.5 * local.square().sum(-1)).sum() * 0.02**3)

    assert abs(mass(wide, opacity) / mass(scales, torch.tensor(0.7, dtype=torch.float64)) - 1) < 1e-3
    big, big_opacity = voxel_average(torch.tensor([3.0, 4.0, 5.0]), torch.tensor(0.8), 0.4)
    assert torch.allclose(big, torch.tensor([3.0, 4.0, 5.0]), rtol=2e-3) and abs(float(big_opacity) - 0.8) < 4e-3
