"""Turn a pytest-benchmark JSON file into the Markdown table recorded in bench/RESULTS.md.

    python bench/summarize.py bench.json [device.txt] > summary.md

One row per (group, impl): median and p20/p80 from CUDA events, peak memory, achieved GB/s and % of the measured
copy bandwidth, and the speed-up over the reference and over the peer (gsplat / flex) measured in the same run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

PEERS = ("gsplat", "flex", "torch")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[0])
    if not path.exists():
        print(f"summarize: {path} not found (did the benchmarks run?)", file=sys.stderr)
        return 1
    data = json.loads(path.read_text())
    if len(argv) > 1 and Path(argv[1]).exists():
        print("Device: " + " | ".join(Path(argv[1]).read_text().strip().splitlines()) + "\n")
    by_group: dict[str, dict[str, dict]] = {}
    cpu_rows: list[tuple[str, dict]] = []
    for b in data.get("benchmarks", []):
        info = b.get("extra_info", {})
        if "median_ms_cuda" not in info:  # a CPU benchmark (the data loader): reported in its own table
            cpu_rows.append((b["name"], info))
            continue
        by_group.setdefault(b.get("group") or b["name"], {})[info.get("impl", b["name"])] = info
    print("| group | impl | median ms | p20–p80 ms | peak MB | GB/s | % bw | × reference | × peer |")
    print("|---|---|---|---|---|---|---|---|---|")
    for group in sorted(by_group):
        rows = by_group[group]
        ref = rows.get("reference", {}).get("median_ms_cuda")
        peer = next((rows[p]["median_ms_cuda"] for p in PEERS if p in rows), None)
        for impl, info in rows.items():
            med = info.get("median_ms_cuda", float("nan"))
            x_ref = f"{ref / med:.2f}" if ref and impl != "reference" else ""
            x_peer = f"{peer / med:.2f}" if peer and impl not in PEERS and impl != "reference" else ""
            gbps = f"{info['GB_per_s']:.0f}" if "GB_per_s" in info else ""
            pct = f"{info['pct_of_measured_bw']:.0f}" if "pct_of_measured_bw" in info else ""
            print(f"| {group} | {impl} | {med:.3f} | {info.get('p20_ms', 0):.3f}–{info.get('p80_ms', 0):.3f} | "
                  f"{info.get('peak_mem_mb', 0):.0f} | {gbps} | {pct} | {x_ref} | {x_peer} |")
    if cpu_rows:
        print("\n| CPU benchmark | figures |")
        print("|---|---|")
        for name, info in cpu_rows:
            figures = ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}" for k, v in info.items())
            print(f"| {name} | {figures} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
