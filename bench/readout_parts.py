"""The readout's GPU time by part, and three ways of merging prompt scores into labels (issue 18: the readout stage).

    PYTHONPATH=. python bench/readout_parts.py [--config configs.base:base] [--set PATH=VALUE ...] [--calls 50]

The Gaussians are the final stage of one online frame of bench/perf.py's synthetic batch (random weights). Times,
CUDA events around ``--calls`` back-to-back calls: the whole readout; its similarity field (filters, prompt dot
products, gs2vox); the label merge of the field as :func:`pgocc.model.readout.merge_labels` does it (a running
maximum over the [G, L] column table), as one gather of the whole table and a max over G, and as the per-label
list indexing it replaced in 624cb13 (which copies host data every call). Every merge must give the same labels.
Needs a GPU.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import torch

from bench.cuda_timing import cuda_ms_per_call
from bench.perf import gpu_inference, random_prototypes
from pgocc.commands._common import add_experiment_arguments
from pgocc.model.readout import _label_tables, merge_labels
from tests.test_readout import OCC3D_COLUMNS


def merge_by_gather(scores: torch.Tensor, column_labels: Sequence[int]) -> torch.Tensor:
    """The merge as one gather of the [G, L] column table ([..., G, L]) and a max over G."""
    labels, table = _label_tables(column_labels)
    columns = torch.tensor(table, device=scores.device)
    return torch.tensor(labels, device=scores.device)[scores[..., columns].amax(-2).argmax(-1)]


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
            "merge: running maximum (merge_labels)": lambda: merge_labels(field, OCC3D_COLUMNS),
            "merge: one gather + max": lambda: merge_by_gather(field, OCC3D_COLUMNS),
            "merge: per-label list indexing (288ffd0)": lambda: merge_by_label_lists(field, OCC3D_COLUMNS),
        }
        for merge in (merge_by_gather, merge_by_label_lists):
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
