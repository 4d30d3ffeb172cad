"""``pgocc prepare-targets`` with randomly initialised teachers: MaskCLIP's value path, the Metric3D adapter's
rescaling, written shapes and dtypes, the loader reading what was written, resume after a kill, atomic writes, and
bad teacher outputs refused with the file named."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from pgocc.cli import main
from pgocc.data import OccDataset, build_index
from pgocc.data.layout import target_stem
from pgocc.data.prepare import TargetJob, prepare_targets
from pgocc.data.targets import write_target
from pgocc.data.teachers import MaskCLIP, MetricDepth, load_depth_model
from pgocc.errors import DataError
from tests.data_fixtures import TINY_SPEC, clone_world, tiny_world  # noqa: F401

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

VERSION = TINY_SPEC.version
H, W = TINY_SPEC.height, TINY_SPEC.width
KEYFRAME_IMAGES = TINY_SPEC.scenes * TINY_SPEC.keyframes * 6


class _Block(nn.Module):
    """A transformer block with open_clip's attribute names (batch first)."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = nn.MultiheadAttention(width, heads, batch_first=True)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ln_1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class _ToyViT(nn.Module):
    """A randomly initialised CLIP vision tower with open_clip's ``VisionTransformer`` attribute names, trained for a
    14 × 14 grid (224 px at patch 16), small enough for CPU tests."""

    def __init__(self, width: int = 32, layers: int = 1, out: int = 16) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv1 = nn.Conv2d(3, width, 16, 16, bias=False)
        self.class_embedding = nn.Parameter(0.1 * torch.randn(width, generator=g))
        self.positional_embedding = nn.Parameter(0.1 * torch.randn(14 * 14 + 1, width, generator=g))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList([_Block(width, 4) for _ in range(layers)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(width ** -0.5 * torch.randn(width, out, generator=g))


class _TinyDepth(nn.Module):
    """A random conv net: images [B, 3, H, W] → positive depth [B, 1, H, W] (TorchScript-able)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 3, padding=1)

    def forward(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(self.conv(images)) * 10.0 + intrinsics[:, 0, 0].view(-1, 1, 1, 1) * 0.0


# ---- the teachers -------------------------------------------------------------------------------------------------


def test_maskclip_uses_the_value_path_of_the_last_block() -> None:
    """With one block, MaskCLIP has no token mixing: changing the pixels of one patch changes that patch's feature
    (at its row and column) and no other; the output is [D, 432/16, 768/16]."""
    torch.manual_seed(0)
    teacher = MaskCLIP(_ToyViT(layers=1))
    images = torch.rand(1, 3, 432, 768)
    k = torch.eye(3)[None]
    base = teacher(images, k)
    assert base.shape == (1, 16, 27, 48) and teacher.output_shape((900, 1600)) == (16, 27, 48)
    changed = images.clone()
    changed[:, :, 3 * 16:4 * 16, 5 * 16:6 * 16] = torch.rand(3, 16, 16)  # patch row 3, column 5
    moved = (teacher(changed, k) - base).abs().amax(dim=1)[0]  # [27, 48]
    assert moved[3, 5] > 1e-3
    moved[3, 5] = 0
    assert moved.max() < 1e-5
    deeper = MaskCLIP(_ToyViT(layers=2))  # blocks before the last mix the tokens, as they should
    assert ((deeper(changed, k) - deeper(images, k)).abs().amax(dim=1)[0] > 1e-6).sum() > 1


def test_metric3d_adapter_rescales_canonical_depth_by_the_focal_length() -> None:
    """A model that knows the true depth (7 m) and answers in Metric3D's canonical camera (focal 1000) gives 7 m
    back at the full image size once the adapter rescales by fx · scale / 1000."""
    seen = {}

    def canonical(images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        seen["size"], seen["k"] = tuple(images.shape[-2:]), intrinsics.clone()
        return (7.0 * 1000.0 / intrinsics[:, 0, 0]).view(-1, 1, 1).expand(len(images), *images.shape[-2:])

    k = torch.tensor([[[316.5, 0.0, 200.0], [0.0, 316.5, 112.5], [0.0, 0.0, 1.0]]])
    depth = MetricDepth(canonical, canonical_focal=1000.0)(torch.rand(1, 3, H, W), k)
    assert depth.shape == (1, H, W)
    torch.testing.assert_close(depth, torch.full((1, H, W), 7.0))
    scale = min(616 / H, 1064 / W)  # 2.66: the width fills 1064, the height is padded
    assert seen["size"] == (616, 1064)
    assert seen["k"][0, 0, 0].item() == pytest.approx(316.5 * scale)
    assert seen["k"][0, 1, 2].item() == pytest.approx(112.5 * scale + (616 - round(H * scale)) // 2)


def test_depth_model_loads_from_torchscript_and_module_path(tmp_path: Path) -> None:
    path = tmp_path / "depth.pt"
    torch.jit.script(_TinyDepth()).save(str(path))
    model = load_depth_model(str(path), torch.device("cpu"))
    assert model(torch.rand(2, 3, 8, 8), torch.eye(3).expand(2, 3, 3)).shape == (2, 1, 8, 8)
    assert load_depth_model("tests.test_prepare_targets:_TinyDepth", torch.device("cpu")) is _TinyDepth
    with pytest.raises(Exception, match="--depth-model: cannot import"):
        load_depth_model("tests.nothing_here:fn", torch.device("cpu"))


def test_maskclip_without_a_usable_open_clip_says_what_to_install() -> None:
    import importlib.util

    from pgocc.data.teachers import load_maskclip
    from pgocc.errors import ConfigError

    if importlib.util.find_spec("open_clip") is not None:
        pytest.skip("open-clip-torch is installed here")
    with pytest.raises(ConfigError, match=r"--feature-model maskclip: open-clip-torch is not usable here .*clip extra"):
        load_maskclip("ViT-B-16", "random", torch.device("cpu"))


# ---- writing --------------------------------------------------------------------------------------------------------


@pytest.fixture
def bare_world(tiny_world: Path, tmp_path: Path) -> Path:  # noqa: F811
    """A clone of the tiny world without its depth and feature targets."""
    root = clone_world(tiny_world, tmp_path / "world")
    shutil.rmtree(root / "depth")
    shutil.rmtree(root / "features")
    return root


def _jobs(root: Path) -> list[TargetJob]:
    torch.manual_seed(0)
    return [TargetJob(MetricDepth(torch.jit.script(_TinyDepth()).eval()), root / "depth"),
            TargetJob(MaskCLIP(_ToyViT()), root / "features")]


def test_written_targets_are_the_teachers_outputs_and_the_loader_reads_them(bare_world: Path) -> None:
    index = build_index(bare_world, VERSION, "all")
    jobs = _jobs(bare_world)
    summary = prepare_targets(index, jobs, batch_size=5, dtype=torch.float16, device=torch.device("cpu"),
                              progress=False)
    assert summary.written == {"depth": KEYFRAME_IMAGES, "features": KEYFRAME_IMAGES}
    files = {p.name for p in (bare_world / "depth").iterdir()}
    assert files == {p.name for p in (bare_world / "features").iterdir()}
    assert files == {f"{target_stem(str(index.frame_path[f]))}.npy" for f in index.cams.reshape(-1)}
    # One image through the teachers directly, decoded here with Pillow as RGB in [0, 1].
    f = int(index.cams[1, 2])
    rgb = np.asarray(Image.open(bare_world / str(index.frame_path[f])).convert("RGB"), np.float32) / 255
    images = torch.from_numpy(rgb.transpose(2, 0, 1).copy())[None]
    k = torch.from_numpy(index.calib_k[index.frame_calib[f]].astype(np.float32))[None]
    stem = target_stem(str(index.frame_path[f]))
    for job in jobs:
        written = np.load(job.folder / f"{stem}.npy")
        assert written.dtype == np.float16 and written.shape == job.teacher.output_shape((H, W))
        expected = job.teacher(images, k)[0].half().numpy()
        np.testing.assert_allclose(written.astype(np.float32), expected.astype(np.float32), rtol=2e-2, atol=2e-2)
    batch = OccDataset(index, num_frames=1, mode="test", feature_dim=16)[1]
    assert batch.features.shape == (1, 6, 16, 27, 48)
    np.testing.assert_array_equal(batch.features[0, 2].numpy(),
                                  np.load(bare_world / "features" / f"{stem}.npy").astype(np.float32))
    assert batch.depth.shape == (1, 6, 1, 180, 320) and bool((batch.depth > 0).all())


class _Killed(BaseException):
    """Stands for the process being killed (not an Exception: nothing may catch it)."""


class _Counting:
    """Wraps a teacher: counts images and raises _Killed on call ``kill_at`` (1-based)."""

    def __init__(self, teacher: object, kill_at: int = 0) -> None:
        self.teacher, self.kill_at, self.calls, self.images = teacher, kill_at, 0, 0
        self.kind = teacher.kind  # type: ignore[attr-defined]

    def output_shape(self, size: tuple[int, int]) -> tuple[int, ...]:
        return self.teacher.output_shape(size)  # type: ignore[attr-defined]

    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls == self.kill_at:
            raise _Killed
        self.images += len(images)
        return self.teacher(images, intrinsics)  # type: ignore[operator]


def test_resume_after_a_kill_writes_only_what_is_missing(bare_world: Path) -> None:
    index = build_index(bare_world, VERSION, "all")
    depth = _jobs(bare_world)[0]
    killed = _Counting(depth.teacher, kill_at=3)
    with pytest.raises(_Killed):
        prepare_targets(index, [TargetJob(killed, depth.folder)], batch_size=4, dtype=torch.float16,
                        device=torch.device("cpu"), progress=False)
    finished = sorted(depth.folder.iterdir())
    assert len(finished) == 8 and all(p.suffix == ".npy" and not p.name.startswith(".") for p in finished)
    # a kill during a write leaves a temporary file (never a truncated target): the next run deletes it
    (depth.folder / f".{finished[0].name}.partial-12345").write_bytes(b"\x93NUMPY half")
    again = _Counting(depth.teacher)
    summary = prepare_targets(index, [TargetJob(again, depth.folder)], batch_size=4, dtype=torch.float16,
                              device=torch.device("cpu"), progress=False)
    assert again.images == KEYFRAME_IMAGES - 8
    assert summary.skipped == {"depth": 8} and summary.written == {"depth": KEYFRAME_IMAGES - 8}
    assert summary.stale_removed == 1
    assert len(list(depth.folder.iterdir())) == KEYFRAME_IMAGES
    nothing = _Counting(depth.teacher)
    prepare_targets(index, [TargetJob(nothing, depth.folder)], batch_size=4, dtype=torch.float16,
                    device=torch.device("cpu"), progress=False)
    assert nothing.calls == 0


def test_write_target_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "x.npy"
    write_target(path, np.arange(6, dtype=np.float16).reshape(2, 3))
    np.testing.assert_array_equal(np.load(path), np.arange(6).reshape(2, 3))

    def dies_half_way(f, array, allow_pickle: bool) -> None:  # noqa: ANN001
        f.write(b"\x93NUMPY")
        raise _Killed

    monkeypatch.setattr(np, "save", dies_half_way)
    with pytest.raises(_Killed):
        write_target(tmp_path / "y.npy", np.zeros(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]  # no y.npy, no temporary file
    with pytest.raises(_Killed):
        write_target(path, np.zeros(3))
    np.testing.assert_array_equal(np.load(path), np.arange(6).reshape(2, 3))  # the old file is whole


class _Bad:
    """A depth teacher whose output is wrong: ``how`` = shape, nan (image 2 of each batch), negative, overflow."""

    kind = "depth"

    def __init__(self, how: str) -> None:
        self.how = how

    def output_shape(self, size: tuple[int, int]) -> tuple[int, ...]:
        return size

    def __call__(self, images: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
        out = torch.full((len(images), *images.shape[-2:]), 5.0)
        if self.how == "shape":
            return out.transpose(1, 2)
        out[2, 10, 10] = {"nan": float("nan"), "negative": -1.0, "overflow": 1e6}[self.how]
        return out


@pytest.mark.parametrize("how", ["shape", "nan", "negative", "overflow"])
def test_bad_teacher_outputs_are_refused_naming_the_file(bare_world: Path, how: str) -> None:
    index = build_index(bare_world, VERSION, "all")
    folder = bare_world / "depth"
    with pytest.raises(DataError) as info:
        prepare_targets(index, [TargetJob(_Bad(how), folder)], batch_size=4, dtype=torch.float16,
                        device=torch.device("cpu"), progress=False)
    frames = np.unique(index.cams.reshape(-1))
    named = frames[0] if how == "shape" else frames[2]  # the batch's first image, or the bad one
    assert str(folder / f"{target_stem(str(index.frame_path[named]))}.npy") in str(info.value)
    assert {"shape": f"expected (4, {H}, {W})", "nan": "NaN", "negative": "negative",
            "overflow": "infinite"}[how] in str(info.value)
    assert list(folder.iterdir()) == []  # nothing of the bad batch was written


def test_cli_refuses_without_a_teacher(tiny_world: Path, capsys: pytest.CaptureFixture[str]) -> None:  # noqa: F811
    assert main(["prepare-targets", "--dataroot", str(tiny_world), "--version", VERSION, "--device", "cpu"]) == 2
    assert "give at least one teacher" in capsys.readouterr().err


def test_cli_writes_depth_targets_with_a_torchscript_teacher(bare_world: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "depth.pt"
    torch.jit.script(_TinyDepth()).save(str(path))
    args = ["prepare-targets", "--dataroot", str(bare_world), "--version", VERSION, "--split", "val",
            "--depth-model", str(path), "--canonical-focal", "1000", "--device", "cpu", "--workers", "0",
            "--dtype", "float32"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "depth: wrote 18, already there 0, of 18 images" in out  # the val split: one scene × 3 keyframes × 6
    written = sorted((bare_world / "depth").iterdir())
    assert len(written) == 18 and np.load(written[0]).dtype == np.float32 and np.load(written[0]).shape == (H, W)
    assert main(args) == 0
    assert "depth: wrote 0, already there 18" in capsys.readouterr().out


def test_autocast_runs_the_teachers_in_bfloat16(bare_world: Path) -> None:
    index = build_index(bare_world, VERSION, "val")
    features = _jobs(bare_world)[1]
    dtypes = []
    features.teacher.visual.ln_post.register_forward_hook(lambda m, i, o: dtypes.append(i[0].dtype))
    prepare_targets(index, [features], batch_size=6, dtype=torch.float16, device=torch.device("cpu"),
                    autocast=torch.bfloat16, progress=False)
    assert set(dtypes) == {torch.bfloat16} and len(list(features.folder.iterdir())) == 18


def test_a_real_kill_leaves_only_whole_files_and_the_run_resumes(bare_world: Path) -> None:
    """SIGKILL a prepare-targets process mid-run: every target left behind loads whole, and a second run writes
    exactly the rest."""
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = bare_world / "depth"
    script = (
        "import time, torch\n"
        "from pgocc.data import build_index\n"
        "from pgocc.data.prepare import TargetJob, prepare_targets\n"
        "from pgocc.data.teachers import MetricDepth\n"
        "def slow(images, intrinsics):\n"
        "    time.sleep(0.05)\n"
        "    return torch.full((len(images), *images.shape[-2:]), 3.0)\n"
        f"index = build_index({str(bare_world)!r}, {VERSION!r}, 'all')\n"
        f"prepare_targets(index, [TargetJob(MetricDepth(slow), __import__('pathlib').Path({str(folder)!r}))],\n"
        "                batch_size=1, dtype=torch.float16, device=torch.device('cpu'), progress=False)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if folder.is_dir() and len(list(folder.glob("*.npy"))) >= 5:
            break
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = sorted(folder.glob("*.npy"))
    assert 5 <= len(left) < KEYFRAME_IMAGES
    for path in left:
        assert np.load(path).shape == (H, W)  # whole files only
    index = build_index(bare_world, VERSION, "all")
    summary = prepare_targets(index, [TargetJob(MetricDepth(lambda im, k: torch.full((len(im), H, W), 3.0)), folder)],
                              batch_size=4, dtype=torch.float16, device=torch.device("cpu"), progress=False)
    assert summary.skipped["depth"] == len(left) and summary.written["depth"] == KEYFRAME_IMAGES - len(left)
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in folder.glob("*.npy"))
    assert len(list(folder.iterdir())) == KEYFRAME_IMAGES
