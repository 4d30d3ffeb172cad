"""Step times of ``pgocc train`` runs from their metrics.jsonl (issue 18: the training step in the real loop, data
loading, distortion and feature targets included). Prints a Markdown table, one row per run directory.

    PYTHONPATH=. python bench/loop_times.py NAME=RUN_DIR [NAME=RUN_DIR ...] [--skip-windows 1]

``step_time`` in metrics.jsonl is the wall time per step of each logging window (checkpoint and validation time
excluded). The first ``--skip-windows`` windows are left out of the median: they hold the Triton compilation,
autotuning and, with ``train.cuda_graph``, the eager warm-up steps and the capture.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path


def window_times(run_dir: Path) -> list[dict]:
    """The training records (not validation) of ``run_dir``'s metrics.jsonl, in order."""
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        raise SystemExit(f"bench/loop_times.py: {path}: not found (did the run start?)")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if r.get("split") != "val"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="NAME=RUN_DIR")
    parser.add_argument("--skip-windows", type=int, default=1, help="first logging windows left out")
    args = parser.parse_args(argv)
    print("| run | logging steps timed | median ms / step | min–max ms / step | samples / s | peak GiB | last loss |")
    print("|---|---|---|---|---|---|---|")
    for spec in args.runs:
        name, sep, directory = spec.partition("=")
        if not sep:
            raise SystemExit(f"bench/loop_times.py: {spec!r}: expected NAME=RUN_DIR")
        records = window_times(Path(directory))[args.skip_windows:]
        if not records:
            print(f"| {name} | 0 | – | – | – | – | – |")
            continue
        times = [1e3 * r["step_time"] for r in records]
        print(f"| {name} | {records[0]['step']}–{records[-1]['step']} | {statistics.median(times):.1f} | "
              f"{min(times):.1f}–{max(times):.1f} | "
              f"{statistics.median(r['samples_per_s'] for r in records):.2f} | "
              f"{max(r['peak_memory_gib'] for r in records):.2f} | {records[-1]['loss']:.4g} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
