"""A deterministic, rank-sharded, resumable order of training samples.

    epoch e: permutation of the N samples by torch.Generator(seed + e), padded by its own head to a multiple of
             world · batch; rank r takes positions r, r + world, … (DistributedSampler's layout)
    item   : (sample index, item seed); the dataset's random choices for the item (the random past-frame stride)
             are drawn from torch's generator seeded with the item seed, whatever worker loads it

The order depends only on (seed, epoch, position), so a run resumed from ``DataPosition`` loads exactly what the
uninterrupted run would have loaded, with any number of DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from pgocc.data.batch import Batch


@dataclass(slots=True)
class DataPosition:
    """Where the sample order stands: ``batches`` batches of epoch ``epoch`` were consumed by this rank."""

    epoch: int = 0
    batches: int = 0

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "batches": self.batches}


class ShardedOrder(torch.utils.data.Sampler):
    """The (index, item seed) pairs of one rank for one epoch, from batch ``start_batch`` on."""

    def __init__(self, num_samples: int, *, seed: int, epoch: int, rank: int, world: int, batch_size: int,
                 start_batch: int = 0) -> None:
        self.num_samples, self.seed, self.epoch = num_samples, seed, epoch
        self.rank, self.world, self.batch_size, self.start_batch = rank, world, batch_size, start_batch

    def batches_per_epoch(self) -> int:
        return -(-self.num_samples // (self.world * self.batch_size))

    def _items(self) -> list[tuple[int, int]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(self.num_samples, generator=g).tolist()
        total = self.batches_per_epoch() * self.world * self.batch_size
        order = (order * (-(-total // len(order))))[:total]
        seeds = torch.randint(0, 2**62, (total,), generator=g).tolist()
        mine = list(zip(order, seeds, strict=True))[self.rank::self.world]
        return mine[self.start_batch * self.batch_size:]

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(self._items())

    def __len__(self) -> int:
        return (self.batches_per_epoch() - self.start_batch) * self.batch_size


class SeededItems(torch.utils.data.Dataset):
    """``dataset[i]`` with torch's generator seeded by the item seed (forked: the caller's state is untouched)."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Batch:
        index, seed = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.dataset[index]
