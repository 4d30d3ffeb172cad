"""The online feature cache (pgocc.model.feature_cache): a ring of fixed buffers whose slots the host plans.

Expected values come from a plain dictionary of the maps the test stored (frame id → maps, every value distinct),
so a wrong slot, a stale frame, a transposed layout or an eviction of a needed frame shows as a wrong value."""

from __future__ import annotations

import pytest
import torch

from pgocc.model import FeatureCache

N, C, SIZES = 2, 3, ((4, 6), (2, 3))
"""Cameras per frame, channels, two pyramid levels."""
CPU = torch.device("cpu")


def frame_maps(key: str) -> list[torch.Tensor]:
    """L × [N, C, H, W] channels-last maps with values unique to ``key`` (and to camera, channel, pixel)."""
    code = sum(ord(c) * 31 ** i for i, c in enumerate(key)) % 1000
    out = []
    for level, (H, W) in enumerate(SIZES):
        x = torch.arange(N * C * H * W, dtype=torch.float32).view(N, C, H, W) + 1000.0 * code + 0.5 * level
        out.append(x.contiguous(memory_format=torch.channels_last))
    return out


def run(cache: FeatureCache, keys: list[list[str]], num_given: int) -> list[torch.Tensor]:
    """Plan a batch and store its fresh frames' maps; return what the cache reads back."""
    plan = cache.plan(keys, num_given, CPU)
    fresh = [frame_maps(keys[r // num_given][r % num_given]) for r in plan.fresh]
    maps = [torch.cat([g[level] for g in fresh]) for level in range(len(SIZES))]
    return cache.store_and_read(maps, plan)


def expect(keys: list[list[str]]) -> list[torch.Tensor]:
    """L × [B, T·N, C, H, W]: the maps of each sample's frames, in order."""
    return [torch.stack([torch.cat([frame_maps(k)[level] for k in sample]) for sample in keys])
            for level in range(len(SIZES))]


def test_a_stream_of_online_samples_reads_back_the_right_frames() -> None:
    T = 3
    cache = FeatureCache(capacity=T)
    stream = [f"f{i}" for i in range(7)]
    for i in range(len(stream)):
        past = [stream[max(i - t, 0)] for t in range(T)]  # a scene's first samples repeat their first frame
        got = run(cache, [past], 1)
        for g, e in zip(got, expect([past]), strict=True):
            assert torch.equal(g, e)
        assert len(cache) == min(i + 1, T) and all(k in cache for k in past)
    assert "f3" not in cache  # least recently used, evicted


def test_batches_of_several_samples_and_given_frames() -> None:
    cache = FeatureCache(capacity=6)
    first = [["a", "a"], ["b", "a"]]           # F = 2: every frame given, "a" three times
    for g, e in zip(run(cache, first, 2), expect(first), strict=True):
        assert torch.equal(g, e)
    assert cache.last_plan is not None and cache.last_plan.fresh == (0, 2)  # each frame id once
    second = [["c", "b"], ["d", "c"]]          # F = 1: "c" is given by sample 0 and read by sample 1
    for g, e in zip(run(cache, second, 1), expect(second), strict=True):
        assert torch.equal(g, e)
    assert len(cache) == 4
    # F = 2 again: cached past frames are not recomputed, current frames always are (also when cached)
    third = [["c", "b"], ["e", "d"], ["f", "x"]]
    for g, e in zip(run(cache, third, 2), expect(third), strict=True):
        assert torch.equal(g, e)
    assert cache.last_plan is not None and cache.last_plan.fresh == (0, 2, 4, 5)


def test_a_needed_frame_is_never_evicted_and_a_failed_plan_changes_nothing() -> None:
    cache = FeatureCache(capacity=2)
    run(cache, [["a", "a"]], 1)
    run(cache, [["b", "a"]], 1)                # recency: a, then b (the current frame)
    run(cache, [["c", "b"]], 1)                # b is the least recent but needed: a goes
    assert "b" in cache and "c" in cache and "a" not in cache
    run(cache, [["a", "a"]], 1)                # c is more recent than b (the current frame): b goes
    assert "a" in cache and "c" in cache and "b" not in cache
    with pytest.raises(KeyError, match=r"frame x \(frame 1 of sample 0\) is neither in the feature cache"):
        cache.plan([["d", "x"]], 1, CPU)
    assert "d" not in cache and len(cache) == 2
    with pytest.raises(ValueError, match="needs 3 distinct frames but the capacity is 2"):
        cache.plan([["d", "a", "c"]], 1, CPU)
    # the cache still reads what it holds
    for g, e in zip(run(cache, [["c", "a"]], 1), expect([["c", "a"]]), strict=True):
        assert torch.equal(g, e)


def test_forget_drops_the_frames_a_plan_added_and_stale_plans_are_refused() -> None:
    cache = FeatureCache(capacity=4)
    run(cache, [["a", "a"]], 1)
    plan = cache.plan([["b", "a"]], 1, CPU)
    stale = cache.plan([["c", "a"]], 1, CPU)
    with pytest.raises(RuntimeError, match="not the cache's last one"):
        cache.store_and_read(frame_maps("b"), plan)
    cache.forget(stale)
    assert "c" not in cache and "a" in cache and "b" in cache


def test_a_slot_freed_by_forget_is_reused_and_no_two_frames_share_one() -> None:
    cache = FeatureCache(capacity=3)
    for key in ("a", "b", "c"):
        run(cache, [[key, key]], 1)
    cache.forget(cache.plan([["d", "c"]], 1, CPU))      # d took a's slot (a evicted); forgetting d frees that slot
    assert "d" not in cache and "a" not in cache and len(cache) == 2
    for keys in ([["e", "c"]], [["f", "e"]], [["c", "f"]]):   # e must take the freed slot, not c's
        for g, e in zip(run(cache, keys, 1), expect(keys), strict=True):
            assert torch.equal(g, e)
    assert "b" not in cache and len(cache) == 3


def test_maps_of_another_size_or_dtype_are_refused() -> None:
    cache = FeatureCache(capacity=2)
    run(cache, [["a", "a"]], 1)
    plan = cache.plan([["b", "a"]], 1, CPU)
    with pytest.raises(ValueError, match=r"level 0 maps of 2 images are \[2, 4, 6, 3\] torch.float64"):
        cache.store_and_read([m.double() for m in frame_maps("b")], plan)
    with pytest.raises(ValueError, match="capacity must be >= 1"):
        FeatureCache(0)


def test_the_maps_are_stored_detached_and_usable_across_inference_mode() -> None:
    cache = FeatureCache(capacity=2)
    with torch.inference_mode():
        run(cache, [["a", "a"]], 1)
    maps = [m.requires_grad_() for m in frame_maps("b")]
    got = cache.store_and_read(maps, cache.plan([["b", "a"]], 1, CPU))
    assert not any(g.requires_grad for g in got)
    for g, e in zip(got, expect([["b", "a"]]), strict=True):
        assert torch.equal(g, e)
