"""Fidelity switches: configs.base resolves every switch to the paper, configs.released to the released code, and
each switch changes what it should and nothing else (same weights, same batch, same seeds)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from configs.base import base
from configs.released import released
from pgocc.config import FIDELITY_SWITCHES, apply_overrides
from pgocc.model import PGOcc, PGOccLoss, Prediction
from pgocc.model.losses import pca_basis
from tests.test_model import make_batch, tiny_cfg

MODEL_SWITCHES = ("anisotropic_sampling", "delta_scale_by_origin", "roi_at_stage0", "transposed_level_weights")
LOSS_SWITCHES = ("automask_per_source", "randomized_pca")
READOUT_SWITCHES = ("shifted_voxel_grid",)


def test_every_switch_is_covered_here() -> None:
    assert set(FIDELITY_SWITCHES) == set(MODEL_SWITCHES + LOSS_SWITCHES + READOUT_SWITCHES)


def test_base_is_paper_and_released_sets_every_switch() -> None:
    paper, rel = base().model, released().model
    assert paper.fidelity == "paper" and rel.fidelity == "released"
    for name, (paper_value, released_value) in FIDELITY_SWITCHES.items():
        assert getattr(paper, name) is None and paper.switch(name) is paper_value
        assert getattr(rel, name) is released_value, f"configs.released must set {name} explicitly"
        assert paper_value is not released_value


def test_fidelity_sets_unset_switches_and_fields_override_it() -> None:
    cfg = apply_overrides(base(), ["model.fidelity=released"])
    assert all(cfg.model.switch(n) is v for n, (_, v) in FIDELITY_SWITCHES.items())
    cfg = apply_overrides(base(), ["model.fidelity=released", "model.anisotropic_sampling=true"])
    assert cfg.model.switch("anisotropic_sampling") is True and cfg.model.switch("roi_at_stage0") is False
    cfg = apply_overrides(cfg, ["model.anisotropic_sampling=none"])
    assert cfg.model.switch("anisotropic_sampling") is False


def _pair(name: str, batch_size: int = 1) -> tuple[Prediction, Prediction, PGOcc, PGOcc]:
    """Predictions of two models with identical weights that differ only in switch ``name`` (off, on)."""
    cfg = tiny_cfg()
    models = []
    for value in (False, True):
        m = dataclasses.replace(cfg.model, **{n: v for n, (v, _) in FIDELITY_SWITCHES.items()})
        setattr(m, name, value)
        models.append(PGOcc(m, cfg.kernels).eval())
    models[1].load_state_dict(models[0].state_dict())
    batch = make_batch(B=batch_size, T=cfg.model.num_frames, D=cfg.model.ov_dims)
    with torch.no_grad():
        return models[0](batch), models[1](batch), models[0], models[1]


def _same(a: Prediction, b: Prediction, stage: int) -> bool:
    ga, gb = a.stages[stage], b.stages[stage]
    return all(torch.equal(getattr(ga, f), getattr(gb, f))
               for f in ("means", "quats", "scales", "opacities", "features"))


def test_anisotropic_sampling_changes_only_stages_after_the_first() -> None:
    off, on, _, _ = _pair("anisotropic_sampling")
    assert _same(off, on, 0)
    assert not _same(off, on, 1) and not _same(off, on, 2)


def test_anisotropic_sampling_frames() -> None:
    cfg = tiny_cfg()
    prev_quats = torch.nn.functional.normalize(torch.randn(2, 3, 4), dim=-1)
    prev = type("G", (), {"quats": prev_quats, "scales": torch.rand(2, 3, 3)})()
    box = torch.tensor([1.6, 1.6, 1.6, 0.8, 0.8])
    for value in (False, True):
        model = PGOcc(dataclasses.replace(cfg.model, anisotropic_sampling=value), cfg.kernels)
        quats, scales = model._sampling_frames(prev, box, 2, 3)
        assert quats.shape == (2, 5, 4) and scales.shape == (2, 5, 3)
        assert torch.equal(quats[:, 3:], torch.tensor([1.0, 0, 0, 0]).expand(2, 2, 4))
        assert torch.equal(scales[:, 3:], torch.full((2, 2, 3), 0.8))
        if value:
            assert torch.equal(quats[:, :3], prev.quats) and torch.equal(scales[:, :3], prev.scales)
        else:
            assert torch.equal(quats[:, :3], torch.tensor([1.0, 0, 0, 0]).expand(2, 3, 4))
            assert torch.equal(scales[:, :3], torch.full((2, 3, 3), 1.6))
        # stage 0 has no previous Gaussians: always the isotropic box
        q0, s0 = model._sampling_frames(None, box[:3], 2, 0)
        assert torch.equal(s0, torch.full((2, 3, 3), 1.6)) and torch.equal(q0[..., 0], torch.ones(2, 3))


def test_delta_scale_by_origin_halves_the_medium_update_and_nothing_else() -> None:
    off, on, _, _ = _pair("delta_scale_by_origin")
    cfg = tiny_cfg().model
    q0, q1 = cfg.num_queries[0], sum(cfg.num_queries[:2])
    assert _same(off, on, 0)
    a, b = off.stages[1], on.stages[1]
    for f in ("quats", "scales", "opacities", "features"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    assert torch.equal(a.means[:, :q0], b.means[:, :q0])
    # same input centres and Δ: means differ by Δ/2 on the queries added by stage 1, |Δ| < max_delta
    half_delta = a.means[:, q0:q1] - b.means[:, q0:q1]
    assert float(half_delta.abs().max()) <= cfg.max_delta / 2 and float(half_delta.abs().min()) > 0
    assert not _same(off, on, 2)


def test_roi_at_stage0_restricts_the_initial_candidates() -> None:
    off, on, _, _ = _pair("roi_at_stage0")
    cfg = tiny_cfg().model
    batch = make_batch(T=cfg.num_frames, D=cfg.ov_dims)
    depth = batch.depth[:, :, 0]
    valid = int((depth.clamp(max=cfg.init_depth_max) > 0).sum())
    assert int(off.num_candidates[0, 0]) == valid
    assert 0 < int(on.num_candidates[0, 0]) < valid                  # the sky (51.2 m) lies outside pc_range
    assert not _same(off, on, 0)
    lo, hi = torch.tensor(cfg.pc_range[:3]), torch.tensor(cfg.pc_range[3:])

    def within(means: torch.Tensor) -> bool:                        # centres = FPS point + Δ, |Δ| < max_delta
        return bool(((lo - cfg.max_delta < means) & (means < hi + cfg.max_delta)).all())

    assert within(on.stages[0].means) and not within(off.stages[0].means)


def test_transposed_level_weights_reaches_the_sampling_op_and_changes_the_features() -> None:
    off, on, m_off, m_on = _pair("transposed_level_weights")
    assert [layer.sampling.transposed_level_weights for layer in m_off.layers] == [False] * 3
    assert [layer.sampling.transposed_level_weights for layer in m_on.layers] == [True] * 3
    assert not _same(off, on, 0)


@pytest.fixture(scope="module")
def loss_setup() -> tuple:
    cfg = tiny_cfg()
    model = PGOcc(cfg.model, cfg.kernels).eval()
    batch = make_batch(T=cfg.model.num_frames, D=cfg.model.ov_dims)
    with torch.no_grad():
        pred = model(batch)
    return cfg, pred, batch


def _loss_terms(cfg, pred, batch, **switches) -> dict[str, torch.Tensor]:
    m = dataclasses.replace(cfg.model, **{**{n: v for n, (v, _) in FIDELITY_SWITCHES.items()}, **switches})
    torch.manual_seed(0)
    with torch.no_grad():
        return PGOccLoss(m, cfg.loss, cfg.kernels)(pred, batch).terms


def test_automask_per_source_changes_only_the_warping_terms(loss_setup: tuple) -> None:
    a = _loss_terms(*loss_setup, automask_per_source=False)
    b = _loss_terms(*loss_setup, automask_per_source=True)
    for key in a:
        if key.startswith("warp"):
            # the joint minimum over 4 errors is never above the mean of the two per-source minima
            assert float(a[key]) < float(b[key])
        else:
            assert torch.equal(a[key], b[key]), key


def test_randomized_pca_changes_only_the_feature_terms(loss_setup: tuple) -> None:
    a = _loss_terms(*loss_setup, randomized_pca=False)
    b = _loss_terms(*loss_setup, randomized_pca=True)
    for key in a:
        if key.startswith("feat"):
            assert not torch.equal(a[key], b[key]) and torch.allclose(a[key], b[key], rtol=0.2), key
        elif key.startswith("warp"):
            # the randomised PCA draws from the generator first, so the 1e-5 identity-error noise differs
            assert torch.allclose(a[key], b[key], atol=1e-4), key
        else:
            assert torch.equal(a[key], b[key]), key
    feats = loss_setup[2].features
    torch.manual_seed(1)
    r1 = pca_basis(feats, 8, randomized=True)
    torch.manual_seed(2)
    r2 = pca_basis(feats, 8, randomized=True)
    assert not torch.equal(r1, r2)                                    # re-drawn (non-deterministic)
    assert torch.equal(pca_basis(feats, 8, randomized=False), pca_basis(feats, 8, randomized=False))
