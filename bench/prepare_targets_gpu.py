"""Throughput of ``pgocc prepare-targets`` on a GPU, with randomly initialised teachers of the real sizes.

    export OUT=bench/results; mkdir -p $OUT; source bench/gpu_env.sh
    python3 bench/prepare_targets_gpu.py [--images 96] [--batch-size 16] [--autocast bfloat16|none]

Needs open-clip-torch (and a torchvision matching torch) and the loader's packages on the machine; on one without
internet access put their wheels (open_clip_torch, ftfy, wcwidth besides those README "GPU runs" lists) in .whl/,
which bench/gpu_env.sh installs. Teachers, as prepare-targets
builds them but with random weights (the figures depend on sizes, not on weights):

- features: MaskCLIP on open_clip's ViT-B-16 at 432 × 768 → [512, 27, 48];
- depth: the Metric3D adapter (canonical focal 1000, input 616 × 1064) around a stand-in of Metric3D ViT-L's cost:
  open_clip's ViT-L-14 tower on the 616 × 1064 input (44 × 76 tokens), its token features averaged to one channel and
  upsampled. Metric3D's own decoder adds to this, so its depth throughput is at most this figure.

Two measurements per teacher set (features, depth, both): the teachers alone on batches of random 900 × 1600 images
already on the GPU, and the whole command path (prepare_targets: JPEG decoding in --workers processes, teachers,
checks, float16 writes) on a synthetic world of nuScenes-sized 1600 × 900 images written first. Prints a table and
writes $OUT/prepare_targets.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F  # noqa: N812

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pgocc.data.index import build_index  # noqa: E402
from pgocc.data.prepare import TargetJob, prepare_targets  # noqa: E402
from pgocc.data.teachers import METRIC3D_FOCAL, METRIC3D_INPUT, MaskCLIP, MetricDepth, load_maskclip  # noqa: E402
from pgocc.synthetic.writer import WorldSpec, make_synthetic  # noqa: E402


class DepthStandIn:
    """Metric3D-ViT-L-sized cost: ViT-L/14 tokens at ``METRIC3D_INPUT`` → one positive channel, upsampled."""

    def __init__(self, device: torch.device) -> None:
        import open_clip

        visual = open_clip.create_model("ViT-L-14", pretrained=None, device=device).visual
        self.tokens = MaskCLIP(visual, input_size=METRIC3D_INPUT)

    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        x = self.tokens(images, intrinsics).mean(dim=1, keepdim=True)
        return F.softplus(F.interpolate(x, size=images.shape[-2:], mode="bilinear")) * 10.0


def _teacher_only(jobs: list[TargetJob], batch: int, autocast: torch.dtype | None, device: torch.device,
                  repeats: int = 5) -> float:
    """Images/s of the teachers alone on random [batch, 3, 900, 1600] images on the device."""
    images = torch.rand(batch, 3, 900, 1600, device=device)
    k = torch.tensor([[1266.0, 0.0, 816.0], [0.0, 1266.0, 491.0], [0.0, 0.0, 1.0]], device=device).expand(batch, 3, 3)

    def step() -> None:
        with torch.autocast(device.type, dtype=autocast or torch.float32, enabled=autocast is not None):
            for job in jobs:
                job.teacher(images, k)

    step()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        step()
    torch.cuda.synchronize()
    return batch * repeats / (time.perf_counter() - start)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=96, help="keyframe images of the synthetic world (× 6 per "
                                                               "keyframe, rounded up)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--autocast", choices=("none", "bfloat16"), default="bfloat16")
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--out", default=os.environ.get("OUT", "bench/results"), help="folder of the JSON figures")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("prepare_targets_gpu: no CUDA device", file=sys.stderr)
        return 1
    device = torch.device("cuda")
    autocast = None if args.autocast == "none" else torch.bfloat16
    work = Path(tempfile.mkdtemp(prefix="pgocc-prepare-"))
    try:
        root = work / "world"
        spec = WorldSpec(seed=5, scenes=1, keyframes=max(2, math.ceil(args.images / 6)), sweeps=0, width=1600,
                         height=900, text_encoder="hash")
        t0 = time.perf_counter()
        make_synthetic(root, spec, jobs=os.cpu_count())
        print(f"world: {spec.keyframes * 6} keyframe images of 1600 × 900 in {time.perf_counter() - t0:.0f} s")
        index = build_index(root, spec.version, "all")
        torch.manual_seed(0)
        features = TargetJob(load_maskclip("ViT-B-16", "random", device), root / "features")
        depth = TargetJob(MetricDepth(DepthStandIn(device), canonical_focal=METRIC3D_FOCAL), root / "depth")
        rows = []
        for name, jobs in (("features", [features]), ("depth", [depth]), ("both", [features, depth])):
            for job in jobs:
                shutil.rmtree(job.folder, ignore_errors=True)
            teacher_rate = _teacher_only(jobs, args.batch_size, autocast, device)
            summary = prepare_targets(index, jobs, batch_size=args.batch_size, dtype=torch.float16, device=device,
                                      autocast=autocast, num_workers=args.workers, progress=False)
            peak = torch.cuda.max_memory_allocated() / 2**30
            rows.append({"teachers": name, "batch_size": args.batch_size, "autocast": args.autocast,
                         "teacher_images_per_s": round(teacher_rate, 1),
                         "command_images_per_s": round(summary.images / summary.seconds, 1),
                         "images": summary.images, "peak_memory_gib": round(peak, 1)})
            torch.cuda.reset_peak_memory_stats()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    device_name = torch.cuda.get_device_name()
    print(f"\n{device_name}, torch {torch.__version__}, batch {args.batch_size}, autocast {args.autocast}, "
          f"{args.workers} decoding workers")
    print(f"{'teachers':<10} {'teachers alone (img/s)':>24} {'prepare-targets (img/s)':>25} {'peak GiB':>9}")
    for r in rows:
        print(f"{r['teachers']:<10} {r['teacher_images_per_s']:>24} {r['command_images_per_s']:>25} "
              f"{r['peak_memory_gib']:>9}")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "prepare_targets.json").write_text(json.dumps({"device": device_name, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
