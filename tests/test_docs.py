"""Every command has help text, and the README shows the two commands first and names every command."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from pipeline.cli.main import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def _commands(t: typer.Typer, prefix: tuple[str, ...] = ()):
    for info in t.registered_commands:
        yield (*prefix, info.name or info.callback.__name__), info.callback
    for group in t.registered_groups:
        yield from _commands(group.typer_instance, (*prefix, group.name))


COMMANDS = list(_commands(app))


def test_readme_starts_with_the_two_commands() -> None:
    head = README.split("\n## ")[0]
    assert "make demo" in head and "make test" in head


def test_every_command_has_help() -> None:
    runner = CliRunner()
    assert len(COMMANDS) >= 20
    for cmd, callback in COMMANDS:
        assert (callback.__doc__ or "").strip(), f"voxgate {' '.join(cmd)} has no help text"
        result = runner.invoke(app, [*cmd, "--help"])
        assert result.exit_code == 0 and callback.__doc__.strip().splitlines()[0][:30] in " ".join(result.output.split())


def test_every_command_is_in_the_readme() -> None:
    missing = [" ".join(cmd) for cmd, _ in COMMANDS if f"voxgate {' '.join(cmd)}" not in README]
    assert not missing, f"not in the README: {missing}"
