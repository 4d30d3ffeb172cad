"""Open-vocabulary retrieval (docs/model.md §8.3): how well a text query's per-voxel relevance ranks the voxels of the
classes it names above the others, as average precision (the protocol of POP-3D and LangOcc; the original ships no
code for it).

Per query and sample: the candidates are the camera-visible voxels, the relevant ones those whose ground-truth label
is one of the query's classes, the score the model's similarity to the query. AP over the ranking by decreasing
score, ties counted together (one precision/recall point per distinct score):

    AP = Σ_k (R_k − R_{k−1}) · P_k     over the distinct scores s_k in decreasing order, with P_k, R_k the precision
                                       and recall of "score ≥ s_k"

A sample without a relevant voxel gives no AP for that query; a query's AP is the mean over the samples that give
one, and the mAP the mean over the queries that have one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of ranking [N] ``scores`` (higher first) against [N] bool ``relevant``; NaN if nothing is relevant."""
    if scores.shape != relevant.shape or scores.ndim != 1:
        raise ValueError(f"average_precision: scores {scores.shape} and relevant {relevant.shape} must be one "
                         "[N] shape")
    total = int(relevant.sum())
    if total == 0:
        return float("nan")
    order = np.argsort(-scores.astype(np.float64), kind="stable")
    s, r = scores[order], relevant[order].astype(np.int64)
    last = np.r_[s[1:] != s[:-1], True]               # the last item of each run of equal scores
    tp = np.cumsum(r)[last]
    seen = (np.arange(len(s)) + 1)[last]
    precision, recall = tp / seen, tp / total
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


@dataclass(frozen=True, slots=True)
class RetrievalScores:
    """What :meth:`RetrievalAP.compute` reports."""

    ap: dict[str, float]
    """Query → its AP (mean over samples with a relevant voxel; NaN if none had one)."""
    mean_ap: float
    """Mean of the non-NaN APs; NaN if all are."""

    def as_dict(self) -> dict[str, object]:
        return {"map": None if np.isnan(self.mean_ap) else self.mean_ap,
                "ap": {q: (None if np.isnan(v) else v) for q, v in self.ap.items()}}


class RetrievalAP:
    """Accumulates per-query AP sums over samples (sums: all-reduce combines processes)."""

    def __init__(self, queries: Sequence[str], classes: Sequence[Sequence[int]]) -> None:
        """``classes[q]``: the Occ3D labels that query q names (its relevant voxels)."""
        if len(queries) != len(classes):
            raise ValueError(f"RetrievalAP: {len(queries)} queries but {len(classes)} class lists")
        self.queries = tuple(queries)
        self.classes = tuple(tuple(c) for c in classes)
        self.ap_sums = np.zeros(len(queries), np.float64)
        """[Q] sum of the per-sample APs."""
        self.counts = np.zeros(len(queries), np.int64)
        """[Q] samples that gave an AP."""

    def update(self, scores: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> None:
        """Add one sample: ``scores`` [Q, X, Y, Z] similarity per query, ``gt`` [X, Y, Z] labels, ``mask``
        [X, Y, Z] bool candidate voxels (camera-visible)."""
        if scores.shape != (len(self.queries), *gt.shape) or mask.shape != gt.shape:
            raise ValueError(f"RetrievalAP.update: expected scores [{len(self.queries)}, *{gt.shape}] and mask "
                             f"{gt.shape}, got {scores.shape} and {mask.shape}")
        m = mask.astype(bool)
        labels = gt[m]
        for q, cls in enumerate(self.classes):
            ap = average_precision(scores[q][m], np.isin(labels, cls))
            if not np.isnan(ap):
                self.ap_sums[q] += ap
                self.counts[q] += 1

    def compute(self) -> RetrievalScores:
        ap = np.divide(self.ap_sums, self.counts, out=np.full(len(self.queries), np.nan), where=self.counts > 0)
        mean_ap = float("nan") if np.isnan(ap).all() else float(np.nanmean(ap))
        return RetrievalScores(ap={q: float(v) for q, v in zip(self.queries, ap, strict=True)}, mean_ap=mean_ap)
