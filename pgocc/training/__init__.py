"""The training engine's parts, applied by the main loop of :mod:`pgocc.train` (read that first).

- :mod:`pgocc.training.optim`: parameter groups, AdamW and the warm-up + cosine schedule.
- :mod:`pgocc.training.parallelize`: FSDP2 / DDP, torch.compile per block, what activation checkpointing does.
- :mod:`pgocc.training.checkpoint`: DCP checkpoints (model, optimiser, schedule, data position, RNG) and the
  safetensors export for inference.
- :mod:`pgocc.training.photometric`: the training-only photometric distortion of the input images.
- :mod:`pgocc.training.data`: deterministic, rank-sharded, resumable sample order.
- :mod:`pgocc.training.graphed_step`: the step replayed as one CUDA graph (``train.cuda_graph``).
"""
