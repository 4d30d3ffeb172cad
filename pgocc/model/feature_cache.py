"""The feature cache of online inference: the FPN maps of the last frames, in fixed device buffers (a ring).

Online (docs/performance.md §1) a sample brings the N images of its current frame; its T − 1 past frames went
through the backbone as earlier samples' current frames and their maps are read back from here. Which slot each
frame occupies is decided on the host (:meth:`FeatureCache.plan`) and handed to the device as index tensors that,
like the maps' buffers, keep their addresses from frame to frame: the device part of an online frame (backbone,
cache write and read, decoder, readout) then has no host dependence and replays as one CUDA graph
(:class:`pgocc.eval.graphed.GraphedFrames`), the host planning each frame before its replay.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class CachePlan:
    """Where one batch's frames go: made by :meth:`FeatureCache.plan`, used by :meth:`FeatureCache.store_and_read`."""

    keys: tuple[tuple[str, ...], ...]
    """[B][T] frame ids of the batch's samples."""
    num_given: int
    """F: frames per sample whose images the batch holds (its first F; the online loader gives 1)."""
    fresh: tuple[int, ...]
    """Rows b·F + t of the given frames that go through the backbone and into the cache: every current frame
    (t = 0) and each past frame not cached yet, once per frame id."""
    added: tuple[str, ...]
    """Frame ids that got a slot with this plan (forgotten again if the forward fails before storing them)."""


class FeatureCache:
    """Ring of the FPN maps of the last ``capacity`` frames, keyed by frame id (the CAM_FRONT file name).

    Per batch: :meth:`plan` (host) chooses the fresh frames (:attr:`CachePlan.fresh`) and gives each a slot — its
    own if the frame is cached, else a free one or that of the least recently used frame the batch does not need —
    and looks up the slot of every other frame, which must be cached. :meth:`store_and_read` (device) writes the
    fresh frames' maps into their slots and gathers every sample's T frames. A current frame is always fresh, so
    that an online frame (F = 1) does the same device work every time, also when it is run again, and can be
    replayed as a graph. The buffers are allocated by the first store, for its map sizes and dtype.
    """

    def __init__(self, capacity: int = 16) -> None:
        if capacity < 1:
            raise ValueError(f"FeatureCache: capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._slots: OrderedDict[str, int] = OrderedDict()
        """frame id → slot, least recently used first."""
        self._free = list(range(capacity - 1, -1, -1))
        """Slots no frame holds (popped from the end)."""
        self._maps: list[torch.Tensor] | None = None
        """L × [capacity, N, H_l, W_l, C]: channels last, the layout of the backbone's maps."""
        self._buffers: dict[tuple[str, tuple[int, ...], torch.device], torch.Tensor] = {}
        """Device buffers of the slot indices, one per use and shape: a batch of another shape (a smaller last one)
        gets its own and leaves those a CUDA graph captured where they are."""
        self._write = torch.empty(0, dtype=torch.int64)
        """[R] int64 slot of each fresh frame (:attr:`CachePlan.fresh`), on the device."""
        self._read = torch.empty(0, 0, dtype=torch.int64)
        """[B, T] int64 slot of each sample's frames, on the device."""
        self.last_plan: CachePlan | None = None

    def __contains__(self, key: str) -> bool:
        return key in self._slots

    def __len__(self) -> int:
        return len(self._slots)

    def plan(self, frame_keys: Sequence[Sequence[str]], num_given: int, device: torch.device) -> CachePlan:
        """Assign the slots of one batch and copy them to the device (pinned, non-blocking on CUDA: no host sync).

        The frames it adds count as cached from here on: the plan's store (:meth:`store_and_read`, or the replay
        of a graph that holds it) must run before the next plan, or :meth:`forget` undo it.

        Args:
            frame_keys: [B][T] frame ids; frames t < ``num_given`` of each sample are the batch's images.
            num_given: F.
            device: where the maps live.

        Raises:
            KeyError: a frame neither cached nor given (online samples not in scene order); nothing is changed.
            ValueError: the batch needs more distinct frames than the capacity.
        """
        keys = tuple(tuple(str(k) for k in sample) for sample in frame_keys)
        given = [k for sample in keys for k in sample[:num_given]]
        fresh: dict[str, int] = {}  # frame id → its first row
        for row, key in enumerate(given):
            if key not in fresh and (row % num_given == 0 or key not in self._slots):
                fresh[key] = row
        needed = dict.fromkeys(k for sample in keys for k in sample)
        if len(needed) > self.capacity:
            raise ValueError(f"FeatureCache: the batch needs {len(needed)} distinct frames but the capacity is "
                             f"{self.capacity}")
        for b, sample in enumerate(keys):
            for t, key in enumerate(sample):
                if key not in self._slots and key not in given:
                    raise KeyError(f"PGOcc: frame {key} (frame {t} of sample {b}) is neither in the feature cache nor "
                                   "among the batch's images; the online loader needs a scene's samples in order "
                                   "from its first keyframe")
        added = []
        for key in fresh:
            if key not in self._slots:
                self._slots[key] = self._free_slot(needed)
                added.append(key)
        # Recency: the batch's frames in reverse order, so that a current frame (t = 0) is the most recent and the
        # oldest past frame, which the next sample no longer needs, the first to go.
        for key in reversed(needed):
            self._slots.move_to_end(key)
        write = torch.tensor([self._slots[k] for k in fresh], dtype=torch.int64)
        read = torch.tensor([[self._slots[k] for k in sample] for sample in keys], dtype=torch.int64)
        self._write = self._to_device("write", write, device)
        self._read = self._to_device("read", read, device)
        self.last_plan = CachePlan(keys, num_given, tuple(fresh.values()), tuple(added))
        return self.last_plan

    def forget(self, plan: CachePlan) -> None:
        """Drop the frames ``plan`` added (their maps were never stored) and free their slots; frames it evicted to
        make room stay evicted."""
        for key in plan.added:
            if key in self._slots:
                self._free.append(self._slots.pop(key))
        self.last_plan = None

    def _to_device(self, use: str, values: torch.Tensor, device: torch.device) -> torch.Tensor:
        """``values`` copied into this use's buffer of its shape (the same address frame after frame); pinned and
        non-blocking on CUDA."""
        key = (use, tuple(values.shape), device)
        if key not in self._buffers:
            with torch.inference_mode(False):
                self._buffers[key] = torch.empty(values.shape, dtype=values.dtype, device=device)
        buffer = self._buffers[key]
        if device.type == "cuda":
            values = values.pin_memory()
        buffer.copy_(values, non_blocking=device.type == "cuda")
        return buffer

    def _free_slot(self, needed: dict[str, None]) -> int:
        """A slot no frame holds, else that of the least recently used frame the batch does not need."""
        if self._free:
            return self._free.pop()
        victim = next(k for k in self._slots if k not in needed)  # exists: len(needed) <= capacity
        return self._slots.pop(victim)

    def store_and_read(self, maps: Sequence[torch.Tensor], plan: CachePlan) -> list[torch.Tensor]:
        """Store the fresh frames' maps in their slots; return every sample's T frames.

        Args:
            maps: L × [R·N, C, H_l, W_l], the backbone's maps of the R = len(plan.fresh) fresh frames' images, in
                the order of ``plan.fresh``, cameras inside.
            plan: this batch's plan (the last one made).

        Returns:
            L × [B, T·N, C, H_l, W_l] (channels-last strides).
        """
        if plan is not self.last_plan:
            raise RuntimeError("FeatureCache.store_and_read: the plan is not the cache's last one")
        B, T = self._read.shape
        GN = maps[0].shape[0]
        N = GN // self._write.numel()
        if self._maps is None:
            with torch.inference_mode(False):  # usable both inside and outside inference mode
                self._maps = [torch.empty(self.capacity, N, m.shape[2], m.shape[3], m.shape[1], dtype=m.dtype,
                                          device=m.device) for m in maps]
        out = []
        for level, (m, ring) in enumerate(zip(maps, self._maps, strict=True)):
            want = (N, m.shape[2], m.shape[3], m.shape[1])
            if tuple(ring.shape[1:]) != want or ring.dtype != m.dtype:
                raise ValueError(f"FeatureCache: level {level} maps of {N} images are {list(want)} {m.dtype} "
                                 f"(channels last) but the cache holds {list(ring.shape[1:])} {ring.dtype}")
            ring.index_copy_(0, self._write, m.detach().permute(0, 2, 3, 1).reshape(-1, *want))
            frames = torch.index_select(ring, 0, self._read.view(-1))  # [B·T, N, H, W, C]
            out.append(frames.view(B, T * N, *want[1:]).permute(0, 1, 4, 2, 3))
        return out
