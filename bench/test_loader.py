"""CPU benchmark of the data loader: samples per second per CPU core (one process, one torch thread).

``extra_info``: ``samples_per_s_per_core`` from wall time, ``samples_per_cpu_s`` from this process's CPU time
(the two agree on an idle machine).

A training sample is 8 frames × 6 cameras (48 JPEG decodes + resize/crop), 18 render targets, 6 depth and 6
feature maps and the Occ3D labels; an online sample (inference as a car runs it) decodes only the 6 current
images and reads their depth and the labels. Two synthetic worlds: nuScenes-sized 1600×900 JPEGs (decoded at 1/2
scale) and the demo's 704×396 (no resize). Run: ``.venv/bin/python -m pytest bench/test_loader.py --benchmark-only``.
Generating the 1600×900 world takes about a minute on 2 cores (not timed).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from pgocc.data import OccDataset, build_index
from pgocc.synthetic.writer import WorldSpec, make_synthetic

WORLDS = {
    "nuscenes-1600x900": WorldSpec(seed=5, scenes=1, keyframes=3, sweeps=5, width=1600, height=900,
                                   text_encoder="hash"),
    "demo-704x396": WorldSpec(seed=5, scenes=1, keyframes=3, sweeps=5, text_encoder="hash"),
}


@pytest.fixture(scope="module", params=list(WORLDS))
def world(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    root = tmp_path_factory.mktemp("bench-world") / request.param
    make_synthetic(root, WORLDS[request.param])
    return request.param, root


@pytest.mark.parametrize("mode", ["train", "test", "online"])
def test_loader_samples_per_core(benchmark: Any, world: tuple[str, Path], mode: str) -> None:
    name, root = world
    spec = WORLDS[name]
    dataset = OccDataset(build_index(root, spec.version, "all"), num_frames=8, mode=mode, feature_dim=384)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    cpu_seconds: list[float] = []

    def load_all() -> None:
        start = time.process_time()
        for i in range(len(dataset)):
            dataset[i]
        cpu_seconds.append(time.process_time() - start)

    try:
        dataset[0]  # warm caches (file system, imports)
        benchmark.group = f"data_loader/{name}/{mode}"
        benchmark.pedantic(load_all, rounds=3, iterations=1)
    finally:
        torch.set_num_threads(threads)
    per_sample = benchmark.stats.stats.median / len(dataset)
    benchmark.extra_info["samples_per_s_per_core"] = 1.0 / per_sample
    # CPU time is what a dedicated core would need; on a shared machine wall time also counts waiting.
    benchmark.extra_info["samples_per_cpu_s"] = len(dataset) / float(np.median(cpu_seconds))
    benchmark.extra_info["images_per_sample"] = dataset[0].images.shape[1]
    assert per_sample > 0
