"""Arguments and helpers shared by subcommands that take an experiment."""

from __future__ import annotations

import argparse

from pgocc.config import ExperimentConfig, apply_overrides, load_experiment
from pgocc.errors import ConfigError

CPU_MAX_QUERY_FRAMES = 2000
"""Largest sum(model.num_queries) × model.num_frames a run without CUDA accepts; the sampling, fusion and attention
of every stage grow with it. On 2 CPU cores configs.small:small_cpu (500 Gaussians × 2 frames) infers a sample in
about 40 s; configs.small:small_reference (2000 × 4) had not finished one after 400 s (shared machine, 145 CPU-seconds)
and configs.base:base (6000 × 8) not after 500 s."""
CPU_CONFIGS = "configs.small:small_cpu or configs.tiny:tiny"


def add_experiment_arguments(parser: argparse.ArgumentParser, default: str = "configs.tiny:tiny") -> None:
    parser.add_argument("--config", default=default, help="experiment as module:function (see configs/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="typed override of one config field, e.g. --set train.num_steps=200 (repeatable)")


def experiment_from_args(args: argparse.Namespace) -> ExperimentConfig:
    return apply_overrides(load_experiment(args.config), args.overrides)


def check_cpu_run(cfg: ExperimentConfig) -> None:
    """Refuse, before anything is built, an experiment that cannot run in reasonable time without CUDA: a Triton
    kernel (on CPU it runs in the Triton interpreter, meant for the tests' small cases) or a model larger than
    :data:`CPU_MAX_QUERY_FRAMES`. Call only when the run is on the CPU."""
    from pgocc import ops

    triton = [op for op in ops.OPS if getattr(cfg.kernels, op) == "triton"]
    if triton:
        raise ConfigError(f"kernels.{triton[0]}: 'triton' on a machine without CUDA runs in the Triton interpreter, "
                          f"which is for tests and far too slow for a model (kernels {', '.join(triton)}); on CPU use "
                          f"the reference kernels, e.g. --config {CPU_CONFIGS}")
    size = sum(cfg.model.num_queries) * cfg.model.num_frames
    if size > CPU_MAX_QUERY_FRAMES:
        raise ConfigError(f"model.num_queries: {sum(cfg.model.num_queries)} Gaussians × {cfg.model.num_frames} "
                          f"frames = {size} is above the {CPU_MAX_QUERY_FRAMES} a machine without CUDA runs in "
                          f"reasonable time (one sample would take many minutes); on CPU use --config {CPU_CONFIGS}")


def add_tree_arguments(parser: argparse.ArgumentParser, split_help: str) -> None:
    """--dataroot, --version, --split and the target folders of a nuScenes-format tree (docs/data.md §1)."""
    from pgocc.config import DataConfig

    d = DataConfig()
    parser.add_argument("--dataroot", required=True, help="the nuScenes-format root (data.dataroot)")
    parser.add_argument("--version", default="v1.0-trainval", help="table folder under the dataroot (data.version)")
    parser.add_argument("--split", default="all",
                        help=f"{split_help}: a key of <dataroot>/splits.json, a devkit split, or all")
    parser.add_argument("--depth-dir", default=d.depth_dir,
                        help="depth folder, relative to the dataroot unless absolute (the original's: "
                             "../nuscenes_metric3d)")
    parser.add_argument("--feature-dir", default=d.feature_dir,
                        help="feature folder, relative to the dataroot unless absolute (the original's: "
                             "../nuscenes_featup)")
