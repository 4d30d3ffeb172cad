"""Typed experiment configuration.

Every section is a ``@dataclass(kw_only=True, slots=True)`` whose fields carry an attribute docstring on the line
below them (``pgocc show-config`` prints them). ``validate()`` checks each section and raises
:class:`~pgocc.errors.ConfigError` starting with the dotted path of the offending field. Experiments are functions in
``configs/`` that build on ``configs.base:base`` and state only their deltas; the only command-line overrides are the
narrow, typed ``--set section.field=value`` pairs of :func:`apply_overrides`.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import json
import textwrap
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pgocc.errors import ConfigError

Fidelity = Literal["paper", "released"]


def _require(cond: bool, path: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{path}: {message}")


@dataclass(kw_only=True, slots=True)
class KernelConfig:
    """Which implementation runs each hot path (``pgocc.ops.available(op)`` lists the names)."""

    aniso_sample: str = "reference"
    """Anisotropy-aware multi-point sampling across frames, cameras and pyramid levels."""
    st_fusion: str = "reference"
    """Spatio-temporal fusion: the AdaptiveMixing core (channel mix, LayerNorm, point mix, LayerNorm)."""
    gs_raster: str = "reference"
    """Gaussian splatting of features, expected depth and alpha into the cameras."""
    gs2vox: str = "reference"
    """Gaussian-to-voxel aggregation of density and features."""
    fps: str = "reference"
    """Farthest point sampling for query initialisation and densification."""
    dist_attention: str = "reference"
    """Distance-biased multi-head self-attention with the asymmetric stage mask."""

    def validate(self, path: str = "kernels") -> None:
        from pgocc import ops

        for op in ops.OPS:
            names = ops.available(op)
            impl = getattr(self, op)
            _require(impl in names, f"{path}.{op}", f"unknown implementation {impl!r}; available: {', '.join(names)}")


@dataclass(kw_only=True, slots=True)
class ModelConfig:
    """The PG-Occ network (ALGORITHM.md §1-§6)."""

    fidelity: Fidelity = "paper"
    """'paper' implements the paper; 'released' reproduces the authors' released code (configs.released sets every quirk)."""
    num_queries: tuple[int, ...] = (4000, 1000, 1000)
    """Gaussians added by each progressive stage (coarse, medium, fine); the stage count is their number."""
    embed_dims: int = 256
    """Query width C."""
    num_heads: int = 8
    """Self-attention heads."""
    num_groups: int = 4
    """Channel groups G of the sampling and AdaptiveMixing (C_g = embed_dims / num_groups)."""
    num_points: int = 4
    """Sampling points P per group and frame."""
    num_levels: int = 4
    """FPN levels L."""
    num_frames: int = 8
    """Frames T (current + past)."""
    ov_dims: int = 512
    """Width of the open-vocabulary (vision-language) feature of each Gaussian."""
    pc_range: tuple[float, float, float, float, float, float] = (-40.0, -40.0, -1.0, 40.0, 40.0, 5.4)
    """Region of interest (x_min, y_min, z_min, x_max, y_max, z_max) in metres, ego frame."""

    def validate(self, path: str = "model") -> None:
        _require(len(self.num_queries) >= 1 and all(q > 0 for q in self.num_queries), f"{path}.num_queries",
                 f"must be one or more positive counts, got {self.num_queries}")
        _require(self.embed_dims > 0 and self.embed_dims % self.num_groups == 0, f"{path}.embed_dims",
                 f"must be a positive multiple of model.num_groups={self.num_groups}, got {self.embed_dims}")
        _require(self.embed_dims % self.num_heads == 0, f"{path}.num_heads",
                 f"must divide model.embed_dims={self.embed_dims}, got {self.num_heads}")
        for name in ("num_heads", "num_groups", "num_points", "num_levels", "num_frames", "ov_dims"):
            _require(getattr(self, name) > 0, f"{path}.{name}", f"must be > 0, got {getattr(self, name)}")
        lo, hi = self.pc_range[:3], self.pc_range[3:]
        _require(all(a < b for a, b in zip(lo, hi, strict=True)), f"{path}.pc_range",
                 f"each minimum must be below its maximum, got {self.pc_range}")


@dataclass(kw_only=True, slots=True)
class TrainConfig:
    """The run: steps, seed and where results go."""

    num_steps: int = 24_000
    """Optimizer steps to run."""
    seed: int = 0
    """Seed of every random generator (torch, numpy, Python) at the start of the run."""
    run_root: str = "runs"
    """Folder under which each run gets its own directory (config.json, kernels.json, logs, checkpoints)."""

    def validate(self, path: str = "train") -> None:
        _require(self.num_steps > 0, f"{path}.num_steps", f"must be > 0, got {self.num_steps}")
        _require(self.seed >= 0, f"{path}.seed", f"must be >= 0, got {self.seed}")
        _require(bool(self.run_root), f"{path}.run_root", "must be a non-empty path")


@dataclass(kw_only=True, slots=True)
class DebugConfig:
    """Reproducibility switches."""

    deterministic: bool = False
    """Refuse non-deterministic kernel implementations (resolve raises) and set torch's deterministic flags."""

    def validate(self, path: str = "debug") -> None:
        del path


@dataclass(kw_only=True, slots=True)
class ExperimentConfig:
    """The whole experiment; ``configs/*.py`` functions return one."""

    model: ModelConfig = field(default_factory=ModelConfig)
    """The network."""
    kernels: KernelConfig = field(default_factory=KernelConfig)
    """The implementation of each hot path."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """The run."""
    debug: DebugConfig = field(default_factory=DebugConfig)
    """Reproducibility switches."""

    def validate(self) -> None:
        """Validate every section; raises ConfigError naming the dotted path of the first bad field."""
        for f in dataclasses.fields(self):
            getattr(self, f.name).validate(f.name)
        if self.debug.deterministic:
            from pgocc import ops

            for op in ops.OPS:
                impl = getattr(self.kernels, op)
                _require(ops.is_deterministic(op, impl), f"kernels.{op}",
                         f"implementation {impl!r} is not deterministic but debug.deterministic=true")


# ---------------------------------------------------------------------------------------------------------------
# Loading, overriding, dumping


def load_experiment(spec: str) -> ExperimentConfig:
    """Build the experiment named ``module:function`` (e.g. ``configs.tiny:tiny``) and validate it."""
    module_name, sep, func_name = spec.partition(":")
    if not sep or not module_name or not func_name:
        raise ConfigError(f"--config: expected 'module:function' such as 'configs.base:base', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"--config: cannot import module {module_name!r} ({exc})") from exc
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise ConfigError(f"--config: module {module_name!r} has no experiment function {func_name!r}")
    cfg = fn()
    if not isinstance(cfg, ExperimentConfig):
        raise ConfigError(f"--config: {spec} returned {type(cfg).__name__}, expected ExperimentConfig")
    cfg.validate()
    return cfg


def _parse_value(raw: str, tp: Any, path: str) -> Any:
    """Parse ``raw`` as the annotated field type ``tp`` (bool, int, float, str, Literal, tuple[...])."""
    origin = typing.get_origin(tp)
    if tp is bool:
        lowered = raw.strip().lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{path}: expected a boolean (true/false), got {raw!r}")
    if tp is int:
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            raise ConfigError(f"{path}: expected an integer, got {raw!r}") from None
    if tp is float:
        try:
            return float(raw)
        except ValueError:
            raise ConfigError(f"{path}: expected a number, got {raw!r}") from None
    if tp is str:
        return raw
    if origin is Literal:
        choices = typing.get_args(tp)
        if raw not in choices:
            raise ConfigError(f"{path}: expected one of {', '.join(map(str, choices))}, got {raw!r}")
        return raw
    if origin is tuple:
        args = typing.get_args(tp)
        parts = [p for p in raw.strip("()[] ").split(",") if p.strip()]
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_parse_value(p.strip(), args[0], path) for p in parts)
        if len(parts) != len(args):
            raise ConfigError(f"{path}: expected {len(args)} comma-separated values, got {raw!r}")
        return tuple(_parse_value(p.strip(), a, path) for p, a in zip(parts, args, strict=True))
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if raw.strip().lower() == "none" and len(args) < len(typing.get_args(tp)):
            return None
        return _parse_value(raw, args[0], path)
    raise ConfigError(f"{path}: fields of type {tp} cannot be set from the command line")


def apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Apply ``section.field=value`` overrides in place, parsed against the field types, then re-validate.

    Raises ConfigError for a malformed pair, an unknown path (listing the valid names) or a value of the wrong type.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set: expected 'section.field=value', got {item!r}")
        parts = key.strip().split(".")
        node: Any = cfg
        for depth, name in enumerate(parts):
            path = ".".join(parts[: depth + 1])
            if not dataclasses.is_dataclass(node):
                raise ConfigError(f"{path}: {'.'.join(parts[:depth])} is a value, not a section")
            names = [f.name for f in dataclasses.fields(node)]
            if name not in names:
                raise ConfigError(f"{path}: unknown key; valid keys here: {', '.join(names)}")
            if depth == len(parts) - 1:
                hints = typing.get_type_hints(type(node))
                if dataclasses.is_dataclass(getattr(node, name)):
                    raise ConfigError(f"{path}: is a section; set one of its fields, e.g. {path}.<field>=...")
                setattr(node, name, _parse_value(raw, hints[name], path))
            else:
                node = getattr(node, name)
    cfg.validate()
    return cfg


def to_dict(cfg: Any) -> dict[str, Any]:
    """The resolved configuration as plain JSON-able data."""
    return dataclasses.asdict(cfg)


def write_config(cfg: ExperimentConfig, run_dir: Path) -> Path:
    """Write ``run_dir/config.json`` (the resolved tree) atomically and return its path."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target = run_dir / "config.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    tmp.replace(target)
    return target


def field_docs(cls: type) -> dict[str, str]:
    """Attribute docstrings of a config dataclass, read from its source (for ``pgocc show-config``)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    docs: dict[str, str] = {}
    for prev, node in zip(body, body[1:], strict=False):
        if (isinstance(prev, ast.AnnAssign) and isinstance(prev.target, ast.Name) and isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)):
            docs[prev.target.id] = " ".join(node.value.value.split())
    return docs


def describe(cfg: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(dotted path, value, docstring) for every leaf field, in declaration order."""
    rows: list[tuple[str, Any, str]] = []
    docs = field_docs(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        path = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            rows.extend(describe(value, path + "."))
        else:
            rows.append((path, value, docs.get(f.name, "")))
    return rows
