"""A/B (GPU): online frame and training step with the query initialisation on its own CUDA stream or not, the
backbone's activations channels-last or not; and the stage-0 FPS alone. As run at this commit for bench/RESULTS.md:

    PYTHONPATH=. python bench/ab_init_stream.py train
"""
import sys

import torch
import torch.nn.functional as F

from bench.perf import build_inference, measure, online_frame, synthetic_batch, training_step
from configs.base import base
from kernels_triton.fps import fps_launch
from pgocc.model import pgocc as pg

cfg = base()
dev = torch.device("cuda")
batch = synthetic_batch(cfg, dev)
def plain_features(self, images):
    x = (images.flip(1).to(self.image_mean.dtype) - self.image_mean) / self.image_std
    H, W = x.shape[-2:]
    x = F.pad(x, (0, -W % pg.PAD_MULTIPLE, 0, -H % pg.PAD_MULTIPLE))
    return self.neck(self.backbone(x))
cl_features = pg.PGOcc.image_features
stream_fn = pg.PGOcc._init_stream
pts = batch.depth.new_empty(1, 345600, 3).uniform_(-40, 40)
n = torch.tensor([345600], device=dev)
for k in (4000, 6000):
    ms = measure(lambda: fps_launch(pts, n, k, persistent=True), dev, budget_s=1.0).ms
    print(f"fps alone 345600->{k}: {ms:.2f} ms", flush=True)
for stream in (True, False):
    for cl in (True, False):
        pg.PGOcc._init_stream = stream_fn if stream else (lambda self, d: None)
        pg.PGOcc.image_features = cl_features if cl else plain_features
        for bf16 in (False, True):
            model, readout = build_inference(cfg, dev)
            f = online_frame(cfg, model, readout, batch, bf16=bf16)
            ms = measure(f, dev, budget_s=1.5, warmup=2).ms
            line = f"stream={stream} channels_last={cl} bf16={bf16}: online {ms:.2f} ms"
            if sys.argv[1:] == ["train"]:
                m, c, step = training_step(cfg, dev, batch, bf16=bf16)
                line += f", train {measure(step, dev, budget_s=2.0, warmup=1).ms:.1f} ms"
                del m, c, step
            print(line, flush=True)
            del model, readout, f
            torch.cuda.empty_cache()
