"""Plot training runs from their metrics.jsonl (``pgocc train``) with pgocc.vis.curves: losses, Gaussian statistics
and validation.

    python bench/plot_learning.py --out curves.png NAME=RUN_DIR_OR_METRICS_JSONL [NAME=... ...]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pgocc.vis.curves import curves_picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("runs", nargs="+", metavar="NAME=PATH")
    args = parser.parse_args()
    runs = {}
    for spec in args.runs:
        name, _, path = spec.partition("=")
        runs[name] = Path(path)
    print(f"wrote {curves_picture(args.out, runs)}")


if __name__ == "__main__":
    main()
