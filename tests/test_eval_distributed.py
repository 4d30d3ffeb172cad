"""Metric accumulators summed over processes (pgocc.eval.loop.all_reduce_metric, 2 gloo processes on CPU): each
process scores its own samples, and after the all-reduce both hold what one process scoring all of them holds."""

from __future__ import annotations

import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from pgocc.eval.depth import DepthMetric
from pgocc.eval.loop import all_reduce_metric
from pgocc.eval.metrics import OccupancyMIoU
from pgocc.eval.retrieval import RetrievalAP


def _samples(rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    rng = np.random.default_rng(rank)
    gt = rng.choice([4, 11, 15, 17], (6, 5, 4)).astype(np.uint8)
    pred = rng.choice([4, 11, 15, 17], (6, 5, 4)).astype(np.uint8)
    scores = rng.random((1, 6, 5, 4))
    return gt, pred, scores, rng.random((2, 3, 4)) * 10 + 1, [rng.random((3, 4)) * 10 + 1 for _ in range(2)]


def _accumulate(ranks: list[int]) -> tuple[OccupancyMIoU, DepthMetric, RetrievalAP]:
    occ, depth, ret = OccupancyMIoU(), DepthMetric(2), RetrievalAP(["car"], [[4]])
    for r in ranks:
        gt, pred, scores, rendered, true = _samples(r)
        occ.update(pred, gt, None)
        depth.update(rendered, true)
        ret.update(scores, gt, np.ones_like(gt, bool))
    return occ, depth, ret


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        occ, depth, ret = _accumulate([rank])
        for metric in (occ, depth, ret):
            all_reduce_metric(metric, torch.device("cpu"))
        np.savez(f"{out}/{rank}.npz", confusion=occ.confusion, above=occ.confusion_above_ground,
                 samples=occ.samples, depth_sums=depth.sums, depth_counts=depth.counts, ap_sums=ret.ap_sums,
                 ap_counts=ret.counts)
    finally:
        dist.destroy_process_group()


def test_two_processes_sum_to_one(tmp_path) -> None:  # noqa: ANN001
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_worker, args=(port, str(tmp_path)), nprocs=2)
    occ, depth, ret = _accumulate([0, 1])
    for rank in (0, 1):
        with np.load(tmp_path / f"{rank}.npz") as z:
            np.testing.assert_array_equal(z["confusion"], occ.confusion)
            np.testing.assert_array_equal(z["above"], occ.confusion_above_ground)
            assert int(z["samples"]) == 2 and z["confusion"].dtype == np.int64
            np.testing.assert_allclose(z["depth_sums"], depth.sums, rtol=1e-12)
            np.testing.assert_array_equal(z["depth_counts"], depth.counts)
            np.testing.assert_allclose(z["ap_sums"], ret.ap_sums, rtol=1e-12)
            np.testing.assert_array_equal(z["ap_counts"], ret.counts)
