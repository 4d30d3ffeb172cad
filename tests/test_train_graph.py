"""``train.cuda_graph``: the training step replayed as one CUDA graph (pgocc.training.graphed_step) takes the eager
steps — the same losses, gradient norms and weights step by step, also while the learning rate moves and the
batches change — and ``pgocc train`` with it logs the eager run's losses and resumes into it; where it cannot run it
is refused in one line. The graph tests need a GPU (bench/run_gpu.sh runs them).

Every op runs on triton (a graph cannot hold the reference kernels' host reads), and two of the Triton kernels
accumulate with atomics (``debug.deterministic`` refuses them): two eager runs already differ in the last bits, so
the graph is compared with the eager run within tolerances that the failures named in each test exceed by far.
"""

from __future__ import annotations

import pytest
import torch

from pgocc import ops
from pgocc.config import ExperimentConfig
from pgocc.errors import ConfigError
from pgocc.model.checks import Checks
from tests.data_fixtures import tiny_world  # noqa: F401
from tests.test_train import _cfg, _samples
from tests.test_train_run import RUN_SETS, _error_line, _losses, _train

ON_TRITON = [f"kernels.{op}=triton" for op in ops.OPS]


def test_checks_copy_keeps_the_flags_of_its_step() -> None:
    """A replay rewrites the recorded flags in place; the copy a step keeps for its later host read must not
    change with them."""
    checks = Checks()
    checks.expect(torch.ones(3, dtype=torch.bool), "first")
    checks.finite_each(["a", "b"], torch.tensor([1.0, 2.0]))
    copy = checks.copy()
    checks._flags[0].fill_(False)                    # what the next replay does to the flag's buffer
    assert checks.first_failure() == "first"
    assert copy.first_failure() is None and copy.messages == checks.messages and len(copy) == 3
    checks._flags[0].fill_(True)
    copy._flags[2].fill_(False)                      # and the copy shares nothing with the record
    assert checks.first_failure() is None and copy.first_failure() == "non-finite values in b"


def test_batch_copy_from_fills_the_buffers_in_place_and_names_a_mismatch() -> None:
    """What a replay reads is what ``copy_from`` wrote into the captured buffers, at their addresses."""
    import dataclasses

    from tests.test_model import make_batch

    first, second = make_batch(seed=0), make_batch(seed=1)
    second.filenames = [[f"other-{name}" for name in names] for names in second.filenames]
    buffers = first.clone()
    addresses = [buffers.images.data_ptr(), buffers.depth.data_ptr(), buffers.ego2img.data_ptr()]
    assert buffers.signature() == second.signature() and not torch.equal(buffers.images, second.images)
    buffers.copy_from(second)
    assert [buffers.images.data_ptr(), buffers.depth.data_ptr(), buffers.ego2img.data_ptr()] == addresses
    for f in dataclasses.fields(second):
        value = getattr(second, f.name)
        if isinstance(value, torch.Tensor):
            assert torch.equal(getattr(buffers, f.name), value), f.name
    assert buffers.frame_keys == second.frame_keys != first.frame_keys
    assert torch.equal(first.images, make_batch(seed=0).images)          # the clone shares nothing with its source
    smaller = dataclasses.replace(second, images=second.images[:, :6])
    with pytest.raises(ValueError, match=r"Batch\.copy_from: images is \(1, 6, 3, 32, 64\) torch\.uint8, the buffer "
                                         r"is \(1, 12, 3, 32, 64\) torch\.uint8"):
        buffers.copy_from(smaller)
    with pytest.raises(ValueError, match=r"features is None, the buffer is \("):
        buffers.copy_from(dataclasses.replace(first, features=None))
    assert torch.equal(buffers.images, second.images)                 # a refused copy writes nothing


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU refusal; on a GPU the option runs")
def test_cuda_graph_is_refused_on_the_cpu_in_one_line(tiny_world, tmp_path) -> None:  # noqa: F811
    code, err = _train("--dataroot", str(tiny_world), "--out", str(tmp_path / "run"),
                       sets=[*RUN_SETS, "train.cuda_graph=true"])
    assert code == 2
    line = _error_line(err)
    assert "train.cuda_graph" in line and "CUDA device" in line


def test_cuda_graph_is_refused_for_several_processes() -> None:
    from pgocc.train import check_run_config

    cfg: ExperimentConfig = _cfg("train.cuda_graph=true")
    with pytest.raises(ConfigError, match=r"train\.cuda_graph: .*one process; this run has 2"):
        check_run_config(cfg, 2, torch.device("cuda"))
    cfg.train.cuda_graph = False
    assert check_run_config(cfg, 2, torch.device("cuda")) == 1


def _steps(cfg: ExperimentConfig, batches: list, graphed: bool, num_steps: int
           ) -> tuple[list, list, list, list, int]:
    """(totals, gradient norms, initial weights, final weights, replays) of ``num_steps`` steps over ``batches`` in
    turn, eager or through :class:`GraphedTrainingStep`, from the same initial weights and random streams."""
    from pgocc.model import PGOcc, PGOccLoss
    from pgocc.train import forward_backward, optimizer_step, prepare
    from pgocc.training.graphed_step import GraphedTrainingStep
    from pgocc.training.optim import build_optimizer

    torch.manual_seed(0)
    model = PGOcc(cfg.model, cfg.kernels).cuda().train()
    criterion = PGOccLoss(cfg.model, cfg.loss, cfg.kernels).cuda()
    optimizer, scheduler = build_optimizer(model, cfg.train)
    params = [p for p in model.parameters() if p.requires_grad]
    initial = [p.detach().clone() for p in params]
    graph = (GraphedTrainingStep(model, criterion, optimizer, params, autocast="none",
                                 grad_clip_norm=cfg.train.grad_clip_norm) if graphed else None)
    torch.manual_seed(1)  # the distortion's (CPU) and dropout's (CUDA) streams
    outs = []
    for k in range(num_steps):
        micro = prepare(criterion, [batches[k % len(batches)]], distortion=True)
        if graph is not None:
            out = graph(micro)
            scheduler.step()
        else:
            out = forward_backward(model, criterion, micro)
            optimizer_step(params, optimizer, scheduler, out, cfg.train.grad_clip_norm)
        assert out.checks[0].first_failure() is None
        outs.append(out)
    return ([o.total.item() for o in outs], [o.grad_norm.item() for o in outs], initial,
            [p.detach().clone() for p in params], graph.replays if graph is not None else 0)


@pytest.mark.gpu
def test_graphed_steps_are_the_eager_steps(tiny_world) -> None:  # noqa: F811
    """Eight steps (three eager warm-ups, the capture, four replays) over three batches in turn, with dropout, the
    photometric distortion and a learning rate that grows from 0.38 to 0.88 of its peak over the replayed steps
    (warm-up over 8 steps from 0.01): each step's total and gradient norm within 1e-3 of the eager run's, and the
    weights' difference under 2 % of their total change. Stale input buffers (a replay on the captured batch) change
    the totals by far more; a learning rate frozen at the capture shrinks the last four updates by 25–57 %."""
    from pgocc.data.dataset import collate

    cfg = _cfg(*ON_TRITON, "train.lr=5e-3", "train.warmup_steps=8", "train.warmup_start_factor=0.01",
               "train.num_steps=10", "model.dropout=0.1")
    batches = [collate([s]).to("cuda") for s in _samples(tiny_world, 3, cfg)]
    eager_totals, eager_norms, initial, eager_weights, _ = _steps(cfg, batches, graphed=False, num_steps=8)
    totals, norms, _, weights, replays = _steps(cfg, batches, graphed=True, num_steps=8)
    assert replays == 5
    assert len(set(totals)) == 8                       # every step its own values
    assert totals == pytest.approx(eager_totals, rel=1e-3)
    assert norms == pytest.approx(eager_norms, rel=1e-3)
    change = torch.cat([(e - i).flatten() for e, i in zip(eager_weights, initial, strict=True)]).norm()
    diff = torch.cat([(w - e).flatten() for w, e in zip(weights, eager_weights, strict=True)]).norm()
    assert change > 0 and diff / change < 0.02, f"graph vs eager weights: {diff / change:.2e} of the change"


@pytest.mark.gpu
def test_train_with_cuda_graph_logs_the_eager_losses_and_resumes(tiny_world, tmp_path) -> None:  # noqa: F811
    """``pgocc train`` for 8 steps (checkpoint at 4; dropout and distortion on) eagerly, with train.cuda_graph, and
    with it stopped after 4 and resumed (eager warm-ups, then a capture at step 8): the same learning rates, and
    per-step losses and gradient norms within 1e-3 (each step's loss depends on the weights all earlier steps
    made)."""
    sets = [*RUN_SETS, *ON_TRITON, "debug.deterministic=false", "train.num_steps=8", "train.checkpoint_every=4"]
    runs = {name: tmp_path / name for name in ("eager", "graph", "resumed")}
    code, err = _train("--dataroot", str(tiny_world), "--out", str(runs["eager"]), sets=sets)
    assert code == 0, err
    graph_sets = [*sets, "train.cuda_graph=true"]
    code, err = _train("--dataroot", str(tiny_world), "--out", str(runs["graph"]), sets=graph_sets)
    assert code == 0, err
    code, err = _train("--dataroot", str(tiny_world), "--out", str(runs["resumed"]), "--stop-after", "4",
                       sets=graph_sets)
    assert code == 0, err
    code, err = _train("--dataroot", str(tiny_world), "--out", str(runs["resumed"]), "--resume", "auto",
                       sets=graph_sets)
    assert code == 0, err
    logs = {name: _losses(path) for name, path in runs.items()}
    assert sorted(logs["eager"]) == sorted(logs["graph"]) == sorted(logs["resumed"]) == list(range(1, 9))
    assert len({logs["eager"][step]["loss"] for step in range(1, 9)}) == 8
    for name in ("graph", "resumed"):
        for step in range(1, 9):
            mine, eager = logs[name][step], logs["eager"][step]
            assert mine["lr"] == eager["lr"], (name, step)
            assert mine["loss"] == pytest.approx(eager["loss"], rel=1e-3), (name, step)
            assert mine["grad_norm"] == pytest.approx(eager["grad_norm"], rel=1e-3), (name, step)
        assert (runs[name] / "model.safetensors").is_file()
