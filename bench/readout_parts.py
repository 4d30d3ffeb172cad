"""The readout's GPU time by part, and three ways of merging prompt scores into labels (issue 18: the readout stage).

    PYTHONPATH=. python bench/readout_parts.py [--config configs.base:base] [--set PATH=VALUE ...] [--calls 50]

The Gaussians are the final stage of one online frame of bench/perf.py's synthetic batch (random weights). Times,
CUDA events around ``--calls`` back-to-back calls: the whole readout; its similarity field (filters, prompt dot
products, gs2vox); the label merge of the field as :func:`pgocc.model.readout.merge_labels` does it (one argmax over
the columns ordered by label), as the running maximum over a [G, L] column table it replaced (624cb13 to 3dc1e0f),
and as the per-label list indexing before that (288ffd0, which copies host data every call). Every merge must give
the same labels. Needs a GPU.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from bench.cuda_timing import cuda_ms_per_call
from bench.perf import gpu_inference, random_prototypes
from pgocc.commands._common import add_experiment_arguments
from pgocc.model.readout import merge_labels
from tests.test_readout import OCC3D_COLUMNS


def merge_by_running_max(scores: torch.Tensor, column_labels: Sequence[int]) -> torch.Tensor:
    """The merge as it was from 624cb13 to 3dc1e0f: the group max per label as a running maximum over the G rows of
    a [G, L] column table (column l lists label l's columns, its last repeated), then an argmax over the labels."""
    labels = sorted(set(column_labels))
    groups = [[k for k, c in enumerate(column_labels) if c == lab] for lab in labels]
    table = torch.tensor([[g[min(j, len(g) - 1)] for g in groups] for j in range(max(map(len, groups)))],
                         device=scores.device)
    merged = scores.index_select(-1, table[0])
    for row in table[1:]:
        merged = torch.maximum(merged, scores.index_select(-1, row))
    return torch.tensor(labels, device=scores.device)[merged.argmax(-1)]


def merge_by_label_lists(scores: torch.Tensor, column_labels: Sequence[int]) -> torch.Tensor:
    """The merge as it was at 288ffd0: one list-indexed group max per label, stacked."""
    labels = sorted(set(column_labels))
    merged = torch.stack([scores[..., [k for k, c in enumerate(column_labels) if c == lab]].amax(-1)
                          for lab in labels], -1)
    return torch.tensor(labels, device=scores.device)[merged.argmax(-1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="timed back-to-back calls per row")
    add_experiment_arguments(parser, default="configs.base:base")
    args = parser.parse_args()
    run = gpu_inference(args, "bench/readout_parts.py")
    readout = run.readout
    prototypes = random_prototypes(run.cfg, run.device)
    with torch.inference_mode():
        g = run.model(run.batch).final
        density, field = readout.similarity(g, prototypes)
        expected = merge_labels(field, OCC3D_COLUMNS)
        rows = {
            "readout (whole)": lambda: readout(g, prototypes, OCC3D_COLUMNS),
            "similarity field (filters, dot products, gs2vox)": lambda: readout.similarity(g, prototypes),
            "merge: argmax over label-ordered columns (merge_labels)": lambda: merge_labels(field, OCC3D_COLUMNS),
            "merge: running maximum (3dc1e0f)": lambda: merge_by_running_max(field, OCC3D_COLUMNS),
            "merge: per-label list indexing (288ffd0)": lambda: merge_by_label_lists(field, OCC3D_COLUMNS),
        }
        for merge in (merge_by_running_max, merge_by_label_lists):
            if not torch.equal(merge(field, OCC3D_COLUMNS), expected):
                sys.exit(f"bench/readout_parts.py: {merge.__name__} disagrees with merge_labels")
        print(f"# Readout parts — {torch.cuda.get_device_name()}, {args.config}; field {tuple(field.shape)} "
              f"{field.dtype}\n\n| part | ms / call |\n|---|---|")
        for name, fn in rows.items():
            for _ in range(3):
                fn()
            print(f"| {name} | {cuda_ms_per_call(fn, args.calls):.3f} |", flush=True)


if __name__ == "__main__":
    main()
