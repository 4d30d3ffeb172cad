"""Config system: typed overrides, validation with dotted paths, experiment loading, provenance dump."""

from __future__ import annotations

import importlib
import inspect
import json
from pathlib import Path

import pytest

from pgocc.config import ExperimentConfig, apply_overrides, describe, load_experiment, write_config
from pgocc.errors import ConfigError


def test_override_parses_types() -> None:
    cfg = apply_overrides(ExperimentConfig(), ["train.num_steps=200", "debug.deterministic=true",
                                               "model.num_queries=40,10,10", "model.fidelity=released"])
    assert cfg.train.num_steps == 200 and isinstance(cfg.train.num_steps, int)
    assert cfg.debug.deterministic is True
    assert cfg.model.num_queries == (40, 10, 10)
    assert cfg.model.fidelity == "released"


@pytest.mark.parametrize(("override", "pattern"), [
    ("train.num_stepz=3", r"train\.num_stepz: unknown key; valid keys here: num_steps"),
    ("trian.num_steps=3", r"trian: unknown key; valid keys here: model, kernels"),
    ("train.num_steps=abc", r"train\.num_steps: expected an integer"),
    ("train.num_steps=0", r"train\.num_steps: must be > 0"),
    ("model.fidelity=both", r"model\.fidelity: expected one of paper, released"),
    ("kernels.fps=warp", r"kernels\.fps: unknown implementation 'warp'; available: reference"),
    ("train=3", r"train: is a section"),
    ("train.num_steps", r"--set: expected 'section\.field=value'"),
    ("model.embed_dims=250", r"model\.embed_dims: must be a positive multiple of model\.num_groups=4"),
])
def test_bad_override_names_the_path(override: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        apply_overrides(ExperimentConfig(), [override])


def _shipped_experiments() -> list[str]:
    """'configs.<module>:<function>' of every public function in configs/*.py, found by reading the folder."""
    specs = []
    for path in sorted((Path(__file__).parents[1] / "configs").glob("*.py")):
        module = importlib.import_module(f"configs.{path.stem}")
        specs += [f"configs.{path.stem}:{name}" for name, fn in vars(module).items()
                  if inspect.isfunction(fn) and fn.__module__ == module.__name__ and not name.startswith("_")]
    return specs


def test_every_shipped_experiment_loads_and_validates() -> None:
    specs = _shipped_experiments()
    assert {"configs.base:base", "configs.small:small", "configs.small:small_cpu"} <= set(specs)
    for spec in specs:
        assert isinstance(load_experiment(spec), ExperimentConfig), spec
    assert load_experiment("configs.released:released").model.fidelity == "released"


def test_min_variance_zero_turns_the_filter_off_and_negative_is_refused() -> None:
    cfg = apply_overrides(load_experiment("configs.tiny:tiny"), ["model.min_variance=0"])
    cfg.validate()
    with pytest.raises(ConfigError, match=r"model.min_variance: must be >= 0"):
        apply_overrides(cfg, ["model.min_variance=-0.1"]).validate()


@pytest.mark.parametrize(("spec", "pattern"), [
    ("configs.base", "expected 'module:function'"),
    ("configs.nope:base", "cannot import module 'configs.nope'"),
    ("configs.base:nope", "has no experiment function 'nope'"),
])
def test_bad_experiment_spec(spec: str, pattern: str) -> None:
    with pytest.raises(ConfigError, match=pattern):
        load_experiment(spec)


def test_every_field_is_documented() -> None:
    for path, _value, doc in describe(ExperimentConfig()):
        assert doc, f"{path} has no attribute docstring"


def test_write_config_roundtrip(tmp_path) -> None:
    cfg = load_experiment("configs.tiny:tiny")
    path = write_config(cfg, tmp_path / "run")
    data = json.loads(path.read_text())
    assert data["train"]["num_steps"] == cfg.train.num_steps
    assert data["kernels"]["fps"] == cfg.kernels.fps
