"""Readout (docs/model.md §6): filters, class similarity, group-max merge, label remap, density threshold, grid
shift."""

from __future__ import annotations

import dataclasses
import math

import torch

from configs.tiny import tiny
from pgocc.model.readout import FREE_LABEL, Readout, keep_mask, merge_labels, occupancy_labels
from pgocc.model.types import Gaussians

# §6.1: the 21 prompt columns of the released text prototypes and the Occ3D label each votes for
OCC3D_COLUMNS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 14, 15, 15, 15, 15, 15, 16, 17]


def _gaussians(means, scales, opacities, quats=None, features=None) -> Gaussians:
    means = torch.tensor(means, dtype=torch.float32).unsqueeze(0)
    Q = means.shape[1]
    quats = torch.tensor([1.0, 0, 0, 0]).expand(1, Q, 4) if quats is None else torch.tensor(quats).unsqueeze(0)
    features = torch.zeros(1, Q, 4) if features is None else features
    return Gaussians(means, quats.float(), torch.tensor(scales, dtype=torch.float32).unsqueeze(0),
                     torch.tensor(opacities, dtype=torch.float32).unsqueeze(0), features)


def test_keep_mask_by_hand() -> None:
    c = math.cos(math.pi / 8)
    s = math.sin(math.pi / 8)
    g = _gaussians(
        means=[[0, 0, 0], [0, 0, 0], [50, 0, 0], [0, 0, 0], [0, 0, 0], [40, 40, 5.4]],
        scales=[[1, 1, 1], [1, 1, 1], [1, 1, 1], [0.01, 1, 1], [0.01, 1, 1], [1, 1, 1]],
        opacities=[0.9, 0.6, 0.9, 0.9, 0.9, 0.9],
        # the 5th is flat along its local x but rotated 45° about z: every world-axis variance is large
        quats=[[1, 0, 0, 0]] * 4 + [[c, 0, 0, s]] + [[1, 0, 0, 0]])
    keep = keep_mask(g, (-40, -40, -1), (40, 40, 5.4), opacity_threshold=0.6, min_variance=0.0025)
    # kept: plain; opacity not above 0.6: no; outside: no; world-x variance 1e-4: no; rotated: yes; on the corner: yes
    assert keep.tolist() == [[True, False, False, False, True, True]]


def test_merge_labels_group_max_and_remap() -> None:
    scores = torch.full((5, 21), -1.0)
    scores[0, 12] = 2.0                       # "terrain" column → 14
    scores[1, 13] = 2.0                       # "grass" column → 14 as well
    scores[2, 15], scores[2, 19] = 3.0, 2.9   # "wall" (manmade, 15) beats "vegetation" (16)
    scores[3, 20] = 1.0                       # "sky" → 17 (free)
    scores[4, 10] = scores[4, 11] = 0.5       # tie between road (11) and sidewalk (13): the smaller label
    assert merge_labels(scores, OCC3D_COLUMNS).tolist() == [14, 14, 15, 17, 11]
    assert merge_labels(scores[:, :3], [1, 1, 2]).tolist() == [1, 1, 1, 1, 1]


def test_merge_labels_with_unsorted_columns_ties_and_nan(seed: int) -> None:
    """Columns not ordered by label, scores on a coarse grid (many exact ties across labels) and some NaN: against a
    literal group max per label (NaN wins, as amax propagates it) and a first-maximum scan over ascending labels."""
    column_labels = [5, 2, 9, 5, 2, 7, 9, 2]
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 3, (400, 8), generator=g).float()
    scores[torch.rand(400, 8, generator=g) < 0.03] = float("nan")
    want = []
    for row in scores.tolist():
        best_label, best = None, None
        for lab in sorted(set(column_labels)):
            vals = [row[k] for k, c in enumerate(column_labels) if c == lab]
            group = float("nan") if any(math.isnan(v) for v in vals) else max(vals)
            if best is None or (not math.isnan(best) and (math.isnan(group) or group > best)):
                best_label, best = lab, group
        want.append(best_label)
    assert merge_labels(scores, column_labels).tolist() == want
    assert 2 in want and 5 in want and 9 in want             # every label wins somewhere


def test_occupancy_labels_density_threshold() -> None:
    density = torch.tensor([0.0, 0.04, 0.0401, 1.0])
    scores = torch.zeros(4, 21)
    scores[:, 3] = 1.0                        # car
    out = occupancy_labels(density, scores, OCC3D_COLUMNS, 0.04)
    assert out.dtype == torch.uint8 and out.tolist() == [FREE_LABEL, FREE_LABEL, 4, 4]


def _small_cfg(shifted: bool):
    return dataclasses.replace(tiny().model, pc_range=(-4.0, -4.0, -1.0, 4.0, 4.0, 2.2), shifted_voxel_grid=shifted)


def _scene() -> tuple[Gaussians, torch.Tensor]:
    """A 'car' Gaussian and a 'vegetation' Gaussian, and 4-d prototypes [21, 4] whose columns 3 and 19 match them."""
    protos = torch.zeros(21, 4)
    protos[3, 0] = 1.0                        # car
    protos[19, 1] = 1.0                       # vegetation
    feats = torch.tensor([[[5.0, 0, 0, 0], [0, 5.0, 0, 0], [0, 0, 9.0, 0]]])
    g = _gaussians(means=[[-2.0, -2.0, 0.0], [2.0, 1.2, 1.0], [0.0, 0.0, 0.0]],
                   scales=[[0.5, 0.5, 0.5], [0.6, 0.3, 0.4], [0.5, 0.5, 0.5]],
                   opacities=[0.9, 0.95, 0.3], features=feats)      # the third is filtered out (opacity 0.3)
    return g, protos


def test_readout_labels_a_small_scene() -> None:
    cfg = _small_cfg(shifted=False)
    readout = Readout(cfg, tiny().kernels)
    g, protos = _scene()
    labels = readout(g, protos, OCC3D_COLUMNS)
    assert labels.shape == (1, 20, 20, 8) and labels.dtype == torch.uint8
    # voxel centres −3.8 + 0.4 i, −0.8 + 0.4 k: the car Gaussian's centre (−2, −2, 0) lies in voxel (4/5, 4/5, 2)
    assert int(labels[0, 4, 4, 2]) == 4 and int(labels[0, 5, 5, 2]) == 4
    assert int(labels[0, 15, 13, 4]) == 16
    assert int(labels[0, 0, 19, 7]) == FREE_LABEL and int(labels[0, 10, 10, 2]) == FREE_LABEL
    # the filtered Gaussian is absent: the same labels as without it
    g2 = Gaussians(g.means[:, :2], g.quats[:, :2], g.scales[:, :2], g.opacities[:, :2], g.features[:, :2])
    assert torch.equal(labels, readout(g2, protos, OCC3D_COLUMNS))


def test_shifted_voxel_grid_reads_the_field_one_voxel_lower() -> None:
    g, protos = _scene()
    plain = Readout(_small_cfg(shifted=False), tiny().kernels)
    shifted = Readout(_small_cfg(shifted=True), tiny().kernels)
    d0, f0 = plain.similarity(g, protos)
    d1, f1 = shifted.similarity(g, protos)
    # label (i, j, k) of the released grid is read at the centre of Occ3D voxel (i−1, j−1, k−1)
    assert torch.allclose(d1[:, 1:, 1:, 1:], d0[:, :-1, :-1, :-1], atol=1e-6)
    # the field is a ratio: compare where the density is not vanishing (coordinates round differently)
    solid = d0[:, :-1, :-1, :-1] > 1e-3
    assert torch.allclose(f1[:, 1:, 1:, 1:][solid], f0[:, :-1, :-1, :-1][solid], atol=1e-4)
    assert not torch.allclose(d1, d0)


def test_similarity_at_points_matches_the_grid() -> None:
    cfg = _small_cfg(shifted=False)
    readout = Readout(cfg, tiny().kernels)
    g, protos = _scene()
    density, field = readout.similarity(g, protos)
    idx = [(4, 4, 2), (15, 13, 4), (0, 0, 0)]
    centres = torch.tensor([[-4.0 + 0.4 * (i + 0.5), -4.0 + 0.4 * (j + 0.5), -1.0 + 0.4 * (k + 0.5)]
                            for i, j, k in idx]).unsqueeze(0)
    pd, pf = readout.similarity(g, protos, centres)
    assert pd.shape == (1, 3) and pf.shape == (1, 3, 21)
    for m, (i, j, k) in enumerate(idx):
        assert torch.allclose(pd[0, m], density[0, i, j, k], atol=1e-6)
        assert torch.allclose(pf[0, m], field[0, i, j, k], atol=1e-5)
