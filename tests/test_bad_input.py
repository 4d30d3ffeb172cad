"""Bad input, as a new user meets it: every error is one line naming the file or argument and what is wrong, with
exit code 2, also when the file is read in a DataLoader worker; nothing runs for minutes before a refusal.

One test (or parametrised case) per row of the first-run error table: corrupt data files, foreign or damaged
checkpoints, a CUDA-only kernel without CUDA, an unknown ``check-kernels --impl``, a folder that is not a dataset, and
the paper-size config on CPU; then the output items: ``--version``, the ``num_workers`` default, the check-kernels
verdict, the make-synthetic progress bar, infer's progress inside a sample and the test seed under ``pytest -q``.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from pgocc import ops
from pgocc.cli import main
from pgocc.config import DataConfig, apply_overrides, load_experiment
from pgocc.data.dataset import build_dataset
from pgocc.data.layout import target_stem
from tests.data_fixtures import clone_world, replace_file, tiny_world  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]
SETS = ["data.render_size=45,80", "model.num_queries=24,8,8"]
"""configs.tiny:tiny at the reduced sizes of tests/test_infer.py."""
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")


def _cli(*argv: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``pgocc ARGV`` run in this process."""
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(argv))
    finally:
        torch.use_deterministic_algorithms(False)
    return code, out.getvalue(), err.getvalue()


def _error(command: str, code: int, stderr: str) -> str:
    """The message of the one ``pgocc COMMAND: error:`` line, after checking that it is the last thing printed, fits
    on one line, carries exit code 2 and that no traceback was printed."""
    assert code == 2, stderr
    assert "Traceback" not in stderr and "DataLoader worker" not in stderr, stderr
    marker = f"pgocc {command}: error: "
    assert stderr.count(marker) == 1, stderr
    message = stderr.split(marker, 1)[1]
    assert message.endswith("\n") and "\n" not in message[:-1], f"the error is not one line:\n{message}"
    return message.strip()


def _sets(*extra: str) -> list[str]:
    return [a for s in (*SETS, *extra) for a in ("--set", s)]


# ---------------------------------------------------------------------------------------------------------------
# Data files, read in the main process or in a DataLoader worker


def _first_sample_files(root: Path) -> dict[str, Path]:
    """The files the loader reads first for the first val sample of ``root``: its CAM_FRONT image, that camera's
    foundation depth, and its Occ3D labels."""
    cfg = apply_overrides(load_experiment("configs.tiny:tiny"), SETS)
    cfg.data.dataroot = str(root)
    dataset = build_dataset(cfg.data, cfg.data.val_split, num_frames=cfg.model.num_frames,
                            feature_dim=cfg.model.ov_dims, mode="test")
    ix = dataset.index
    image = str(ix.frame_path[ix.cams[0][0]])
    return {"image": root / image, "depth": dataset.depth_dir / f"{target_stem(image)}.npy",
            "labels": dataset.labels_dir / str(ix.scene_name[0]) / str(ix.sample_token[0]) / "labels.npz"}


def _truncate(path: Path) -> bytes:
    return path.read_bytes()[: path.stat().st_size // 2]


DATA_FAULTS: dict[str, tuple[str, Callable[[Path], bytes | None], str]] = {
    # name: (file, its new content from the old file (None: deleted), what the message must say)
    "truncated-jpeg": ("image", _truncate, "corrupt JPEG"),
    "random-bytes-jpeg": ("image", lambda p: os.urandom(4000), "not a JPEG"),
    "missing-jpeg": ("image", lambda p: None, "image file not found"),
    "truncated-labels": ("labels", _truncate, "not an .npz archive"),
    "text-as-depth": ("depth", lambda p: b"0.5 0.7 1.2\n3.4 5.6 7.8\n", "not a NumPy .npy file"),
}


@pytest.mark.parametrize("workers", [0, 1], ids=["main-process", "worker"])
@pytest.mark.parametrize("fault", list(DATA_FAULTS))
def test_corrupt_data_file_is_one_line_naming_it(fault: str, workers: int, tiny_world: Path,  # noqa: F811
                                                 tmp_path: Path) -> None:
    which, content, expected = DATA_FAULTS[fault]
    root = clone_world(tiny_world, tmp_path / "world")
    path = _first_sample_files(root)[which]
    replace_file(path, content(path))
    code, _, err = _cli("infer", "--config", "configs.tiny:tiny", *_sets(f"data.num_workers={workers}"),
                        "--dataroot", str(root), "--num-samples", "1", "--pictures", "0", "--out", str(tmp_path / "o"))
    message = _error("infer", code, err)
    assert message.startswith(f"{path}: ") and expected in message, message
    assert "pickled" not in message and "allow_pickle" not in message, message


def test_corrupt_data_file_in_a_training_worker(tiny_world: Path, tmp_path: Path) -> None:  # noqa: F811
    root = clone_world(tiny_world, tmp_path / "world")
    # Training draws its samples in a random order: every keyframe's front image is truncated, so the first fails.
    for path in (root / "samples" / "CAM_FRONT").glob("*.jpg"):
        replace_file(path, _truncate(path))
    code, _, err = _cli("train", "--config", "configs.tiny:tiny",
                        *_sets("data.num_workers=1", "train.num_steps=2", "train.val_samples=0"),
                        "--dataroot", str(root), "--out", str(tmp_path / "run"))
    message = _error("train", code, err)
    assert re.match(rf"{re.escape(str(root / 'samples' / 'CAM_FRONT'))}/[^ ]+\.jpg: corrupt JPEG", message), message


# ---------------------------------------------------------------------------------------------------------------
# Checkpoints


def _object_checkpoint(path: Path) -> bytes:
    """A torch.save file holding a Python object besides its tensor (what weights_only refuses)."""
    import argparse

    torch.save({"weight": torch.zeros(2), "args": argparse.Namespace(lr=1.0)}, path)
    return path.read_bytes()


def _zip_checkpoint(path: Path) -> bytes:
    torch.save({"weight": torch.zeros(1000)}, path)
    return path.read_bytes()


CHECKPOINT_FAULTS: dict[str, tuple[Callable[[Path], bytes], str]] = {
    # name: (file content, what the message must say)
    "text": (lambda p: b"model weights: see the release page\n", "not a PyTorch file"),
    "random-bytes": (lambda p: bytes([0x17]) + os.urandom(4000), "not a PyTorch file"),
    # A pickle that would call os.system("true") when unpickled: refused by the tensors-only loader.
    "pickled-call": (lambda p: b"\x80\x02cos\nsystem\nX\x04\x00\x00\x00true\x85R.", "not loadable as tensors only"),
    "python-objects": (_object_checkpoint, "never unpickles"),
    "truncated-zip": (lambda p: _zip_checkpoint(p)[:600], "corrupt or truncated PyTorch file"),
}


def _checkpoint_file(fault: str, tmp_path: Path) -> Path:
    make, _ = CHECKPOINT_FAULTS[fault]
    path = tmp_path / "model.pth"
    data = make(path)
    path.write_bytes(data)
    return path


def _never_advises_unsafe_loading(message: str) -> None:
    assert "weights_only=False" not in message and "likely succeed" not in message, message
    assert "add_safe_globals" not in message and "if you trust" not in message.lower(), message


@pytest.mark.parametrize("fault", list(CHECKPOINT_FAULTS))
def test_convert_checkpoint_of_a_bad_file_is_one_line(fault: str, tmp_path: Path) -> None:
    path = _checkpoint_file(fault, tmp_path)
    out = tmp_path / "converted.safetensors"
    code, _, err = _cli("convert-checkpoint", str(path), "--out", str(out), "--config", "configs.tiny:tiny")
    message = _error("convert-checkpoint", code, err)
    assert message.startswith(f"{path}: cannot read the checkpoint file (SOURCE): "), message
    assert CHECKPOINT_FAULTS[fault][1] in message, message
    _never_advises_unsafe_loading(message)
    assert not out.exists() and not list(tmp_path.glob("converted*")), "something was written"


@pytest.mark.parametrize("fault", list(CHECKPOINT_FAULTS))
def test_infer_checkpoint_of_a_bad_file_is_one_line(fault: str, tiny_world: Path, tmp_path: Path) -> None:  # noqa: F811
    path = _checkpoint_file(fault, tmp_path)
    code, _, err = _cli("infer", "--config", "configs.tiny:tiny", *_sets(), "--dataroot", str(tiny_world),
                        "--checkpoint", str(path), "--num-samples", "1", "--out", str(tmp_path / "o"))
    message = _error("infer", code, err)
    assert message.startswith(f"{path}: cannot read the checkpoint file (--checkpoint): "), message
    assert CHECKPOINT_FAULTS[fault][1] in message, message
    _never_advises_unsafe_loading(message)


@pytest.mark.parametrize("content", [b"exported weights\n", bytes([0xFF]) * 16 + os.urandom(4000)],
                         ids=["text", "random-bytes"])
def test_infer_exported_checkpoint_of_a_bad_file_is_one_line(content: bytes, tiny_world: Path,  # noqa: F811
                                                             tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    path.write_bytes(content)
    code, _, err = _cli("infer", *_sets(), "--dataroot", str(tiny_world), "--checkpoint", str(path),
                        "--out", str(tmp_path / "o"))
    message = _error("infer", code, err)
    assert message.startswith(f"{path}: corrupt .safetensors file"), message


# ---------------------------------------------------------------------------------------------------------------
# Kernels and configs that cannot run here


@NO_CUDA
@pytest.mark.parametrize("command", ["infer", "train"])
def test_cuda_only_kernel_without_cuda_is_refused_before_the_run(command: str, tiny_world: Path,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, _, err = _cli(command, "--config", "configs.tiny:tiny", *_sets("kernels.gs_raster=gsplat"),
                        "--dataroot", str(tiny_world), "--out", str(out))
    message = _error(command, code, err)
    assert message.startswith("kernels.gs_raster: implementation 'gsplat' runs on cuda only"), message
    assert "cpu" in message and "reference, triton" in message, message
    assert not out.exists(), "the run started before the refusal"


def test_check_kernels_refuses_an_unknown_impl(tmp_path: Path) -> None:
    code, _, err = _cli("check-kernels", "--config", "configs.tiny:tiny", "--impl", "bogus",
                        "--run-dir", str(tmp_path / "run"))
    message = _error("check-kernels", code, err)
    names = sorted({name for op in ops.OPS for name in ops.available(op)})
    assert message == f"--impl: unknown implementation 'bogus'; implementations: {', '.join(names)}"
    assert {"reference", "triton", "gsplat"} <= set(names)
    assert not (tmp_path / "run").exists()


@NO_CUDA
def test_check_kernels_that_checks_nothing_fails(tmp_path: Path) -> None:
    code, _, err = _cli("check-kernels", "--config", "configs.tiny:tiny", "--impl", "gsplat",
                        "--run-dir", str(tmp_path / "run"))
    assert code == 1 and "no op checked" in err


@pytest.mark.parametrize("command", ["infer", "train"])
def test_a_folder_without_tables_is_named_for_its_tables(command: str, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = _cli(command, "--config", "configs.tiny:tiny", *_sets(), "--dataroot", str(empty),
                        "--out", str(tmp_path / "run"))
    message = _error(command, code, err)
    assert message.startswith(f"{empty / 'v1.0-synthetic'}: nuScenes table folder not found"), message


REFERENCE_KERNELS = [f"kernels.{op}=reference" for op in ops.OPS]


@NO_CUDA
@pytest.mark.parametrize("kernels", ["triton", "reference"])
@pytest.mark.parametrize("command", ["infer", "train"])
def test_paper_size_config_on_cpu_is_refused_with_the_configs_to_use(command: str, kernels: str,
                                                                     tiny_world: Path,  # noqa: F811
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "run"
    sets = REFERENCE_KERNELS if kernels == "reference" else []
    code, _, err = _cli(command, "--config", "configs.base:base", *[a for s in sets for a in ("--set", s)],
                        "--dataroot", str(tiny_world), "--out", str(out))
    message = _error(command, code, err)
    expected = ("kernels.aniso_sample: 'triton' on a machine without CUDA" if kernels == "triton"
                else "model.num_queries: 6000 Gaussians × 8 frames = 48000 is above the 2000")
    assert message.startswith(expected), message
    assert "configs.small:small_cpu or configs.tiny:tiny" in message
    assert not out.exists(), "the run started before the refusal"


# ---------------------------------------------------------------------------------------------------------------
# Output


def test_version_is_the_installed_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"pgocc {importlib.metadata.version('pgocc')}"


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (2, 2), (3, 3), (16, 4)])
def test_num_workers_default_follows_the_usable_cores(cores: int, workers: int,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)), raising=False)
    assert DataConfig().num_workers == workers


def broken_fps(points: torch.Tensor, lengths: torch.Tensor, num_samples: int) -> torch.Tensor:
    """The reference with the first two picks swapped: every index right, the order wrong."""
    from reference.fps import fps

    out = fps(points, lengths, num_samples)
    return out[:, [1, 0, *range(2, out.shape[1])]]


def broken_gs2vox(**kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference with a density 0.1 % too high (a misplaced constant)."""
    from reference.gs2vox import gs2vox

    density, features = gs2vox(**kwargs)
    return density * 1.001, features


def same_as_reference(**kwargs: object) -> object:
    from reference.dist_attention import dist_attention

    return dist_attention(**kwargs)


def test_check_kernels_verdict_fails_a_wrong_kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgocc.commands import check_kernels

    for op, target in (("fps", "broken_fps"), ("gs2vox", "broken_gs2vox"), ("dist_attention", "same_as_reference")):
        monkeypatch.setitem(ops.contract(op).IMPLS, "broken", ops.Impl(f"tests.test_bad_input:{target}", True))
    monkeypatch.setitem(check_kernels.TOLERANCE, "broken", check_kernels.TOLERANCE["triton"])
    run = tmp_path / "run"
    code, out, err = _cli("check-kernels", "--config", "configs.tiny:tiny", "--impl", "broken", "--run-dir", str(run))
    assert code == 1, out + err
    rows = {r["op"]: r for r in json.loads((run / "check_kernels.json").read_text())}
    assert set(rows) == {"fps", "gs2vox", "dist_attention"}
    assert not rows["fps"]["passed"] and rows["fps"]["relative_error"] == 2  # two indices differ
    assert not rows["gs2vox"]["passed"] and rows["gs2vox"]["relative_error"] > 1e-4
    assert rows["dist_attention"]["passed"] and rows["dist_attention"]["relative_error"] < 1e-5  # float32 rounding
    lines = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in rows}
    assert "FAIL" in lines["fps"] and "FAIL" in lines["gs2vox"] and " pass " in lines["dist_attention"], out
    assert "1e-04" in lines["gs2vox"], "the tolerance is not shown"
    assert "FAILED: gs2vox/broken, fps/broken" in err  # in the order of ops.OPS


def test_check_kernels_has_a_tolerance_for_every_implementation() -> None:
    from pgocc.commands.check_kernels import TOLERANCE

    missing = {f"{op}/{name}" for op in ops.OPS for name in ops.available(op) if name not in TOLERANCE}
    assert not missing, f"check-kernels has no tolerance for {sorted(missing)}"


def test_make_synthetic_shows_progress_over_keyframes(tmp_path: Path) -> None:
    code, out, err = _cli("make-synthetic", "--out", str(tmp_path / "w"), "--scenes", "1", "--keyframes", "2",
                          "--sweeps", "0", "--width", "160", "--height", "90", "--text-encoder", "hash", "--jobs", "1")
    assert code == 0, err
    assert "make-synthetic: 100%" in err and "2/2" in err and "keyframe" in err, err


def test_infer_progress_names_the_stage_inside_a_sample(tiny_world: Path, tmp_path: Path) -> None:  # noqa: F811
    code, _, err = _cli("infer", "--config", "configs.tiny:tiny", *_sets("data.num_workers=0"), "--dataroot",
                        str(tiny_world), "--num-samples", "1", "--pictures", "0", "--out", str(tmp_path / "o"))
    assert code == 0, err
    shown = re.findall(r"0/1 \[[^]]*, ([a-z0-9 /]+)\]", err)  # the postfix of the bar before the sample is done
    assert shown[:5] == ["image features", "stage 1/3", "stage 2/3", "stage 3/3", "readout"], shown


def test_pytest_quiet_run_prints_the_seed(tmp_path: Path) -> None:
    """`make test` runs ``pytest -q``, which hides the report header; the seed must still be printed."""
    env = {**os.environ, "PGOCC_TEST_SEED": "4242"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/test_bad_input.py::test_version_is_the_installed_package_version"],
                         cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PGOCC_TEST_SEED=4242" in out.stdout, out.stdout
