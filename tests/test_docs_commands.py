"""The commands the README shows and the examples the ``--help`` texts give are real.

- Every command of the README's ``bash`` blocks and every ``pgocc ...`` code span of its text is parsed by the real
  argument parser, with its ``--config`` loaded and its ``--set`` overrides applied; a ``make`` target is expanded
  with ``make -n`` and every pgocc command it would run is checked the same way; a ``torchrun ... -m pgocc.train``
  line is parsed by the trainer's parser. A command of a kind this file does not know fails the test, so a new one
  is either checked or deliberately added here.
- The README's one-process commands of ``train``, ``infer`` and ``show-config`` are run, in the README's order, on
  the tiny synthetic world (tests/data_fixtures.py) in place of ``data/demo-world``, with reduced settings: 2
  training steps instead of ``train.num_steps=200``, the small sizes of tests/test_train.py (``SMALL``), no
  validation, loading in the main process, one inferred sample. ``make demo``, ``make test`` (set-up, minutes), the
  torchrun lines (8 processes, the paper-size config) and the other commands are only parsed as above.
- Every ``e.g. --option VALUE`` of a ``--help`` text parses, and a ``--set PATH=VALUE`` example changes that field of
  the command's default config and names a field the package reads.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import torch

from pgocc.cli import COMMANDS, build_parser, main
from pgocc.config import apply_overrides, load_experiment, to_dict
from tests.data_fixtures import tiny_world  # noqa: F401
from tests.test_train import SMALL

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
RUN_ON_TINY_WORLD = ("train", "infer", "show-config")
"""pgocc subcommands whose README commands are run, not only parsed."""
REDUCED = [*SMALL, "train.val_samples=0"]
"""Settings added to a README training command run on the tiny world (its export carries them to infer)."""
DEFAULT_CONFIG = "configs.tiny:tiny"
"""The config a --set example of a --help text is applied to when its command has no default of its own."""


def _bash_commands() -> list[list[str]]:
    """argv of every command in the README's ``bash`` blocks (continuation lines joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README.read_text(encoding="utf-8"), re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def _inline_commands() -> list[list[str]]:
    """argv of every ``pgocc ...`` code span of the README's text (outside the bash blocks)."""
    text = re.sub(r"```.*?```", "", README.read_text(encoding="utf-8"), flags=re.DOTALL)
    return [shlex.split(span) for span in re.findall(r"`((?:\.venv/bin/)?pgocc(?: [^`]*)?)`", text)]


def _pgocc_args(argv: list[str]) -> list[str] | None:
    """The arguments after ``pgocc`` / ``python -m pgocc`` in ``argv``, or None when it is not a pgocc command."""
    if Path(argv[0]).name == "pgocc":
        return argv[1:]
    if Path(argv[0]).name.startswith("python") and argv[1:3] == ["-m", "pgocc"]:
        return argv[3:]
    return None


def _check_config(args: argparse.Namespace, where: str) -> None:
    """Load the namespace's --config and apply its --set overrides, as the command would."""
    if getattr(args, "config", None) and hasattr(args, "overrides"):
        try:
            apply_overrides(load_experiment(args.config), args.overrides)
        except Exception as exc:  # noqa: BLE001 (any failure of a documented command is the finding)
            pytest.fail(f"{where}: its config does not resolve: {exc}")


def _parse(parser: argparse.ArgumentParser, args: list[str], where: str) -> None:
    try:
        namespace = parser.parse_args(args)
    except SystemExit as exc:
        if exc.code == 0 and ("--help" in args or "-h" in args or "--version" in args):
            return
        pytest.fail(f"{where}: the parser refuses it (exit {exc.code})")
    _check_config(namespace, where)


def _train_parser() -> argparse.ArgumentParser:
    from pgocc.commands.train import add_arguments

    parser = argparse.ArgumentParser(prog="python -m pgocc.train")
    add_arguments(parser)
    return parser


def _check_command(argv: list[str], where: str) -> None:
    """Parse one README command (see the module docstring); fail on a kind of command this file does not know."""
    args = _pgocc_args(argv)
    if args is not None:
        _parse(build_parser(), args, where)
    elif argv[0] == "make":
        for target in argv[1:]:
            dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
            assert dry.returncode == 0, f"{where}: make -n {target} fails:\n{dry.stderr}"
            lines = [shlex.split(x.split("||")[-1]) for x in dry.stdout.splitlines() if " -m pgocc " in x]
            assert lines or target == "test", f"{where}: make {target} runs no pgocc command:\n{dry.stdout}"
            for line in lines:
                _check_command(line, f"{where} (make -n {target}: {shlex.join(line)})")
    elif Path(argv[0]).name == "torchrun":
        module = argv.index("-m")
        assert argv[module + 1] == "pgocc.train", f"{where}: torchrun of an unexpected module"
        _parse(_train_parser(), argv[module + 2:], where)
    else:
        pytest.fail(f"{where}: a README command of a kind tests/test_docs_commands.py does not check")


def test_every_readme_command_parses() -> None:
    commands = _bash_commands()
    assert len(commands) >= 8, "the README's commands were not found"
    for argv in commands:
        _check_command(argv, f"README: {shlex.join(argv)}")
    for argv in _inline_commands():
        if len(argv) == 2 and not argv[1].startswith("-"):  # a command's name, as in the table of commands
            assert argv[1] in COMMANDS, f"README: `{shlex.join(argv)}` is not a pgocc command"
        else:
            _check_command(argv, f"README: `{shlex.join(argv)}`")


def _runnable(argv: list[str], world: Path, runs: Path) -> list[str] | None:
    """The README command ``argv`` as run on the tiny world (module docstring), or None when it is not run."""
    args = _pgocc_args(argv)
    if not args or args[0] not in RUN_ON_TINY_WORLD:
        return None
    args = [a.replace("data/demo-world", str(world)) for a in args]
    args = [str(runs / a.removeprefix("runs/")) if a.startswith("runs/") else a for a in args]
    if args[0] == "train":
        args = [a if not a.startswith("train.num_steps=") else "train.num_steps=2" for a in args]
        args += [x for s in REDUCED for x in ("--set", s)]
    elif args[0] == "infer":
        args += ["--set", "data.num_workers=0", "--num-samples", "1", "--pictures", "1"]
    return args


def test_readme_one_process_commands_run(tiny_world: Path, tmp_path: Path,  # noqa: F811
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # a command without --out writes under ./runs
    ran = []
    for argv in _bash_commands():
        args = _runnable(argv, tiny_world, tmp_path / "runs")
        if args is None:
            continue
        err = io.StringIO()
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
                code = main(args)
        finally:
            torch.use_deterministic_algorithms(False)
        assert code == 0, f"README: {shlex.join(argv)}\nran as: {shlex.join(args)}\n{err.getvalue()}"
        ran.append(args[0])
    # The training section's sequence: train, resume, infer on the export; and the configuration example.
    assert ran.count("train") >= 2 and "infer" in ran and "show-config" in ran, ran
    assert (tmp_path / "runs" / "tiny" / "model.safetensors").is_file()


# ---------------------------------------------------------------------------------------------------------------
# --help examples

EXAMPLE = re.compile(r"e\.g\. (--[\w-]+)[ =]([^\s),;]+)")


def _help_examples() -> list[tuple[str, argparse.ArgumentParser, str, str]]:
    """(command, its parser, option, value) of every ``e.g. --option VALUE`` in a subcommand's help texts."""
    sub = build_parser()._subparsers._group_actions[0]  # type: ignore[union-attr]
    found = []
    for name, parser in sub.choices.items():
        for action in parser._actions:
            for option, value in EXAMPLE.findall(action.help or ""):
                found.append((name, parser, option, value))
    return found


def _package_reads(field_name: str) -> bool:
    """Whether some module of the package other than the config's definition reads ``.<field_name>``."""
    pattern = re.compile(rf"\.{re.escape(field_name)}\b")
    return any(pattern.search(p.read_text(encoding="utf-8")) for p in (ROOT / "pgocc").rglob("*.py")
               if p.name != "config.py")


def test_help_examples_work() -> None:
    examples = _help_examples()
    assert any(option == "--set" for _, _, option, _ in examples), "no --set example found in the help texts"
    for command, parser, option, value in examples:
        where = f"pgocc {command} --help: e.g. {option} {value}"
        # The command's required arguments get placeholders: the example itself is what is checked.
        required = []
        for action in parser._actions:
            if action.required and action.option_strings:
                required += [action.option_strings[0], "PLACEHOLDER"]
            elif not action.option_strings and action.nargs is None:
                required.append("PLACEHOLDER")
        namespace = parser.parse_args([*required, option, value])
        if option != "--set":
            continue
        config = getattr(namespace, "config", None) or DEFAULT_CONFIG
        path, _, raw = value.partition("=")
        section, name = path.split(".")
        before = to_dict(load_experiment(config))[section][name]
        after = to_dict(apply_overrides(load_experiment(config), [value]))[section][name]
        assert str(after) == raw and after != before, f"{where}: sets nothing new ({before} -> {after})"
        assert _package_reads(name), f"{where}: nothing in pgocc/ reads {path}"
