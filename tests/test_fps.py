"""fps: identical indices to the reference (random points, exact ties, K = N, K = 1, ragged rows), both kernel
designs, compile, bad input.

On CPU the Triton kernels run under TRITON_INTERPRET=1: the step design as planned (several CTAs per row), the
persistent design with one CTA per row (its CTAs spin on each other, which a sequential interpreter cannot run, so
the cross-CTA exchange itself is only exercised on the GPU); with a GPU both designs run natively on the "gpu"
cases.
"""

from __future__ import annotations

import pytest
import torch

from pgocc import ops
from pgocc.ops._contract import Case
from tests.conftest import HAS_GPU, case_ids, parity_cases

OP = "fps"
spec = ops.contract(OP)
KERNELS = [name for name in ops.available(OP) if name != "reference"]
DESIGNS = ["persistent", "step"]


def assert_equal(out: torch.Tensor, ref: torch.Tensor) -> None:
    """Indices must be identical; report the first difference."""
    assert out.shape == ref.shape and out.dtype == ref.dtype, f"{out.shape}/{out.dtype} vs {ref.shape}/{ref.dtype}"
    diff = (out.cpu() != ref.cpu()).nonzero()
    if len(diff):
        b, k = (int(v) for v in diff[0])
        raise AssertionError(f"fps: {len(diff)} indices differ; first at row {b}, sample {k}: "
                             f"{int(out[b, k])} vs reference {int(ref[b, k])}")


def launch(design: str, points: torch.Tensor, lengths: torch.Tensor, num_samples: int,
           active: torch.Tensor | None = None, prefix: torch.Tensor | None = None) -> torch.Tensor:
    from kernels_triton.fps import fps_launch

    if design == "persistent":
        return fps_launch(points, lengths, num_samples, active, prefix, persistent=True,
                          ctas_per_row=None if HAS_GPU else 1)
    return fps_launch(points, lengths, num_samples, active, prefix, persistent=False)


@pytest.mark.parametrize("impl", KERNELS)
@pytest.mark.parametrize("case", parity_cases(OP), ids=case_ids(parity_cases(OP)))
def test_matches_reference(impl: str, case: Case, device: torch.device, seed: int) -> None:
    inputs = spec.make_inputs(case, device=device, seed=seed)
    assert_equal(ops.resolve(OP, impl)(**inputs), ops.resolve(OP, "reference")(**inputs))


@pytest.mark.gpu  # on CPU the registry's "triton" is the step design, covered by test_matches_reference
@pytest.mark.parametrize("design", ["persistent", "step"])
@pytest.mark.parametrize("case", parity_cases(OP), ids=case_ids(parity_cases(OP)))
def test_each_design_matches_reference(design: str, case: Case, device: torch.device, seed: int) -> None:
    inputs = spec.make_inputs(case, device=device, seed=seed)
    assert_equal(launch(design, **inputs), ops.resolve(OP, "reference")(**inputs))


@pytest.mark.parametrize("impl", KERNELS)
def test_float64(impl: str, device: torch.device, seed: int) -> None:
    """float64 goes to the step design (the persistent kernel's keys hold float32 distances)."""
    case = parity_cases(OP)[0]
    inputs = spec.make_inputs(case, device=device, dtype=torch.float64, seed=seed)
    assert_equal(ops.resolve(OP, impl)(**inputs), ops.resolve(OP, "reference")(**inputs))
    with pytest.raises(ValueError, match="persistent design packs float32 distances"):
        launch("persistent", **inputs)


def test_persistent_tags_wrap_around(device: torch.device, seed: int) -> None:
    """More than 256 iterations: the 8-bit iteration tags of the published keys wrap."""
    case = Case("b1_n320_k300", {"B": 1, "N": 320, "K": 300})
    inputs = spec.make_inputs(case, device=device, seed=seed)
    assert_equal(launch("persistent", **inputs), ops.resolve(OP, "reference")(**inputs))


def test_plan() -> None:
    from kernels_triton.fps import GPU_MIN_BLOCK, plan

    assert plan(345_600, 132, GPU_MIN_BLOCK) == (85, 4096)      # stage 0 on an H100: 85 CTAs
    assert plan(100_000, 132, GPU_MIN_BLOCK) == (25, 4096)      # fewer, fuller CTAs
    assert plan(1000, 132, GPU_MIN_BLOCK) == (1, 1024)          # a small row: one CTA
    assert plan(200, 1, 16) == (1, 256)
    assert plan(200, 4, 16) == (4, 64)
    with pytest.raises(ValueError, match="register-resident limit"):
        plan(3_000_000, 132, GPU_MIN_BLOCK)
    with pytest.raises(ValueError, match="a key can index"):
        plan((1 << 24) + 1, 132, GPU_MIN_BLOCK)


@pytest.mark.parametrize("design", DESIGNS)
def test_ties_go_to_the_lowest_index(design: str, device: torch.device) -> None:
    # After 0: points 1, 2, 3 all at distance 1 -> 1; then 2 and 3 both at distance 1 -> 2; then 3.
    # The same pattern across the chunk boundary of every CTA: far points repeated at high indices.
    pts = torch.tensor([[0.0, 0, 0], [1, 0, 0], [-1, 0, 0], [0, 1, 0]])
    assert launch(design, pts[None].to(device), torch.tensor([4], device=device), 4).tolist() == [[0, 1, 2, 3]]
    far = torch.zeros(1, 300, 3)
    far[0, 7] = far[0, 150] = far[0, 299] = torch.tensor([5.0, 5.0, 5.0])
    far[0, 40] = far[0, 260] = torch.tensor([-5.0, -5.0, -5.0])
    out = launch(design, far.to(device), torch.tensor([300], device=device), 3)
    assert out.tolist() == [[0, 7, 40]]
    assert_equal(out, ops.resolve(OP, "reference")(far, torch.tensor([300]), 3))


@pytest.mark.parametrize("design", DESIGNS)
def test_row_lengths_are_respected(design: str, device: torch.device, seed: int) -> None:
    """Points beyond a row's length are never selected, even when they are the farthest."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(2, 90, 3, generator=g)
    pts[:, 60:] += 100.0
    lengths = torch.tensor([60, 90])
    out = launch(design, pts.to(device), lengths.to(device), 10).cpu()
    assert int(out[0].max()) < 60 and int(out[1].max()) >= 60
    assert_equal(out, ops.resolve(OP, "reference")(pts, lengths, 10))


@pytest.mark.parametrize("design", DESIGNS)
def test_inactive_rows_are_skipped(design: str, device: torch.device, seed: int) -> None:
    """An inactive row is all 0; the active rows are the reference's, whichever rows are off."""
    inputs = spec.make_inputs(Case("b3_n120_k12", {"B": 3, "N": 120, "K": 12}), device=device, seed=seed)
    full = ops.resolve(OP, "reference")(**inputs)
    assert bool((full[:, 1:] != 0).all())  # so an all-0 row can only come from skipping it
    for mask in ([True, False, True], [False, True, True], [False, False, False]):
        active = torch.tensor(mask, device=device)
        out = launch(design, **inputs, active=active).cpu()
        for b, on in enumerate(mask):
            assert torch.equal(out[b], full[b].cpu() if on else torch.zeros(12, dtype=torch.int64)), (mask, b)
        assert_equal(out, ops.resolve(OP, "reference")(**inputs, active=active))


@pytest.mark.parametrize("design", DESIGNS)
def test_a_prefix_continues_the_sampling(design: str, device: torch.device, seed: int) -> None:
    """The first S picks of an FPS as prefix give that FPS run on (the model's fallbacks); for the persistent kernel
    S = 256 and 257 put its first iteration on both sides of an 8-bit tag wrap (the step design has no tags, and
    under the interpreter each of its steps is a launch: fewer picks there); an inactive row is left at 0."""
    K = 270 if design == "persistent" else 60
    inputs = spec.make_inputs(Case("b2_n400", {"B": 2, "N": 400, "K": K}), device=device, seed=seed)
    full = ops.resolve(OP, "reference")(**inputs)
    for S in (1, 40, 256, 257, K) if design == "persistent" else (1, 40, K):
        out = launch(design, **inputs, prefix=full[:, :S].contiguous())
        assert_equal(out, full)
    out = launch(design, **inputs, active=torch.tensor([False, True], device=device), prefix=full[:, :40])
    assert not bool(out[0].any()) and torch.equal(out[1].cpu(), full[1].cpu())
    # another prefix than the FPS's own: the picks come first, then the greedy continuation from all of them
    picks = torch.tensor([[399, 7, 123], [5, 6, 7]], device=device)
    out = launch(design, **inputs, prefix=picks)
    assert out[:, :3].tolist() == picks.tolist()
    assert_equal(out, ops.resolve(OP, "reference")(**inputs, prefix=picks))


@pytest.mark.parametrize("impl", KERNELS)
def test_compiles_fullgraph(impl: str, device: torch.device, seed: int) -> None:
    inputs = spec.make_inputs(spec.CASES["cpu"][0], device=device, seed=seed)
    fn = ops.resolve(OP, impl)
    compiled = torch.compile(lambda p, n: torch.gather(p, 1, fn(p, n, 8)[..., None].expand(-1, -1, 3)),
                             fullgraph=True)
    got = compiled(inputs["points"], inputs["lengths"])
    want = torch.gather(inputs["points"], 1, ops.resolve(OP, "reference")(inputs["points"], inputs["lengths"], 8)
                        [..., None].expand(-1, -1, 3))
    assert torch.equal(got, want)


@pytest.mark.skipif(HAS_GPU, reason="a failed device assert would poison the CUDA context of the test session")
@pytest.mark.parametrize("impl", KERNELS)
def test_short_row_is_an_error(impl: str) -> None:
    with pytest.raises(RuntimeError, match="lengths"):
        ops.resolve(OP, impl)(torch.zeros(2, 10, 3), torch.tensor([10, 3]), 4)


def test_reference_prefix_outside_the_row_names_the_row() -> None:
    with pytest.raises(ValueError, match=r"^fps: prefix\[1\] holds an index outside the row's 6 points$"):
        ops.resolve(OP, "reference")(torch.zeros(2, 10, 3), torch.tensor([10, 6]), 4, None,
                                     torch.tensor([[0, 9], [0, 6]]))


def test_reference_short_row_names_the_row() -> None:
    # The reference checks each row's length on the host (the kernels assert on the device, above): the message
    # names the row, its length and K, word for word.
    with pytest.raises(ValueError, match=r"^fps: lengths\[1\]=3 is smaller than num_samples=4$"):
        ops.resolve(OP, "reference")(torch.zeros(2, 10, 3), torch.tensor([10, 3]), 4)


@pytest.mark.parametrize("impl", ops.available(OP))
@pytest.mark.parametrize(("args", "message"), [
    ((torch.zeros(1, 0, 3), torch.tensor([0]), 1), "N = 0"),
    ((torch.zeros(1, 10, 3), torch.tensor([10]), 11), "num_samples=11 exceeds the 10 points"),
    ((torch.zeros(1, 10, 3), torch.tensor([10]), 0), "num_samples must be an int >= 1"),
    ((torch.zeros(1, 10, 2), torch.tensor([10]), 4), r"points must be \[B, N, 3\]"),
    ((torch.zeros(1, 10, 3), torch.tensor([10], dtype=torch.int32), 4), "lengths must have dtype"),
    ((torch.zeros(2, 10, 3), torch.tensor([10]), 4), r"lengths must be \[2\]"),
    ((torch.zeros(1, 10, 3, dtype=torch.float16), torch.tensor([10]), 4), "points must have dtype"),
    ((torch.zeros(2, 10, 3), torch.tensor([10, 10]), 4, torch.tensor([1, 0])), "active must have dtype"),
    ((torch.zeros(2, 10, 3), torch.tensor([10, 10]), 4, torch.tensor([True])), r"active must be \[2\]"),
    ((torch.zeros(2, 10, 3), torch.tensor([10, 10]), 4, None, torch.zeros(2, 0, dtype=torch.int64)),
     r"prefix must hold 1 to num_samples=4 picks per row, got 0"),
    ((torch.zeros(2, 10, 3), torch.tensor([10, 10]), 4, None, torch.zeros(2, 5, dtype=torch.int64)),
     r"prefix must hold 1 to num_samples=4 picks per row, got 5"),
    ((torch.zeros(2, 10, 3), torch.tensor([10, 10]), 4, None, torch.zeros(2, 2, dtype=torch.int32)),
     "prefix must have dtype"),
])
def test_bad_input_names_the_argument(impl: str, args: tuple, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ops.resolve(OP, impl)(*args)
