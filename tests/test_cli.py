"""The command line: help lists every command, errors are clear and exit non-zero."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pgocc.cli import COMMANDS, build_parser, main


def test_help_lists_every_command_with_text() -> None:
    text = build_parser().format_help()
    for name in COMMANDS:
        assert name in text, f"pgocc --help does not list {name}"
    for action in build_parser()._subparsers._group_actions[0]._choices_actions:  # type: ignore[union-attr]
        assert action.help, f"{action.dest} has no help text"


def test_python_dash_m_works() -> None:
    out = subprocess.run([sys.executable, "-m", "pgocc", "--help"], capture_output=True, text=True, check=True)
    assert "show-config" in out.stdout


def test_show_config_with_override(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-config", "--config", "configs.tiny:tiny", "--set", "train.num_steps=7"]) == 0
    out = capsys.readouterr().out
    assert "train.num_steps" in out and " 7 " in out and "Optimizer steps to run." in out


def test_config_error_exits_2_with_message(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show-config", "--set", "train.bogus=1"]) == 2
    assert "train.bogus: unknown key" in capsys.readouterr().err


def test_kernels_lists_every_op(capsys: pytest.CaptureFixture[str]) -> None:
    from pgocc import ops

    assert main(["kernels"]) == 0
    out = capsys.readouterr().out
    for op in ops.OPS:
        assert f"{op} " in out


def test_check_kernels_writes_results(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from pgocc import ops

    run_dir = tmp_path / "run"
    assert main(["check-kernels", "--config", "configs.tiny:tiny", "--run-dir", str(run_dir)]) == 0
    rows = json.loads((run_dir / "check_kernels.json").read_text())
    assert [r["op"] for r in rows] == list(ops.OPS)
    assert all(r["max_abs_diff"] < 1e-5 for r in rows), rows  # float32 reference vs float64 reference
    assert json.loads((run_dir / "config.json").read_text())["kernels"]["fps"] == "reference"
    assert set(json.loads((run_dir / "kernels.json").read_text())) == set(ops.OPS)
