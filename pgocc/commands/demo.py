"""``pgocc demo``: the shipped model on a small held-out synthetic world, beside its untrained self, with text
queries, pictures and report.md (the pipeline: pgocc/eval/demo.py; ``make demo`` runs it)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = ("the shipped model at work: a held-out synthetic world, occupancy and scores beside the untrained model, "
        "three text queries, pictures and report.md")

DEFAULT_CHECKPOINT = Path(__file__).resolve().parent.parent / "assets" / "demo.safetensors"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--world", type=Path, default=Path("data/demo-heldout"),
                        help="the held-out world: written there on the first run, reused after")
    parser.add_argument("--checkpoint", type=Path, default=DEFAULT_CHECKPOINT,
                        help="an exported model (.safetensors from pgocc train); its training curves are read from "
                             "<name>.metrics.jsonl beside it")
    parser.add_argument("--out", type=Path, default=Path("runs/demo"),
                        help="where report.md, the pictures and the runs go (existing files are replaced)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="PATH=VALUE",
                        help="typed override of the checkpoint's config, e.g. --set data.num_workers=0")


def run(args: argparse.Namespace) -> int:
    from pgocc.commands.infer import device_for_inference
    from pgocc.errors import CheckpointError
    from pgocc.eval.demo import run_demo

    if args.checkpoint.suffix != ".safetensors":
        raise CheckpointError(f"{args.checkpoint}: the demo needs an exported model (.safetensors, which embeds its "
                              "config) (--checkpoint)")
    device = device_for_inference()
    result = run_demo(args.world, args.checkpoint, args.out, device, overrides=args.overrides)
    t, u = result.trained.scores, result.untrained.scores

    def pct(x: float) -> str:
        return "n/a" if x != x else f"{100 * x:.1f} %"

    if t is not None and u is not None:
        print(f"pgocc demo: mIoU {pct(t.occupancy.miou)} trained vs {pct(u.occupancy.miou)} untrained; geometric IoU "
              f"{pct(t.occupancy.geometric_iou)} vs {pct(u.occupancy.geometric_iou)}"
              + (f"; RayIoU {pct(t.rays.rayiou)} vs {pct(u.rays.rayiou)}" if t.rays and u.rays else ""))
    print(f"pgocc demo: {result.seconds:.0f} s on {device}; report: {result.report}")
    print(f"  pictures: {result.trained.run_dir / 'samples'}"
          + ("" if result.curves is None else f" and {result.curves}"))
    return 0
