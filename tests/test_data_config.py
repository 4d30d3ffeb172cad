"""The ``data`` config section: defaults, documentation, validation with dotted paths, typed overrides."""

from __future__ import annotations

import pytest

from pgocc.config import DataConfig, ExperimentConfig, apply_overrides, field_docs
from pgocc.errors import ConfigError


def test_defaults_are_valid_and_documented() -> None:
    cfg = ExperimentConfig()
    cfg.validate()
    assert cfg.data.input_size == (256, 704) and cfg.data.render_size == (180, 320)
    docs = field_docs(DataConfig)
    assert set(docs) == {f for f in DataConfig.__dataclass_fields__} and all(docs.values())


@pytest.mark.parametrize(("override", "path"), [
    ("data.batch_size=0", "data.batch_size"),
    ("data.num_workers=-1", "data.num_workers"),
    ("data.train_stride=5,4", "data.train_stride"),
    ("data.input_size=0,704", "data.input_size"),
    ("data.dataroot=", "data.dataroot"),
])
def test_bad_values_name_their_path(override: str, path: str) -> None:
    with pytest.raises(ConfigError, match=f"^{path}:"):
        apply_overrides(ExperimentConfig(), [override])


def test_overrides_parse_types() -> None:
    cfg = apply_overrides(ExperimentConfig(), ["data.render_size=90,160", "data.with_labels=false",
                                               "data.dataroot=/data/nuscenes"])
    assert cfg.data.render_size == (90, 160) and cfg.data.with_labels is False
    assert cfg.data.dataroot == "/data/nuscenes"
