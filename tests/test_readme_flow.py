"""The README's flow, run verbatim through the real CLI: the documented commands cannot drift from the real ones.

Each line of the fenced block under "## The flow" runs in a fresh folder (with
the demo voice profile at `voices/demo`, as in a checkout), a key folder of its
own and a passphrase in the environment, as a new user would type it.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DEMO_VOICE
from pipeline.cli.main import app

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def flow_commands() -> list[tuple[list[str], str | None]]:
    """(voxgate arguments, standard input) for each command of the flow block, comments and continuations undone."""
    block = re.search(r"^## The flow\n+```\n(.*?)^```", README, re.S | re.M)
    assert block, "README has no fenced block under '## The flow'"
    text = block.group(1).replace("\\\n", " ")
    commands = []
    for line in text.splitlines():
        words = shlex.split(line, comments=True)
        if not words:
            continue
        stdin = None
        if words[0] == "echo":
            bar = words.index("|")
            stdin, words = " ".join(words[1:bar]) + "\n", words[bar + 1:]
        assert words[0] == "voxgate", f"not a voxgate command: {line}"
        commands.append((words[1:], stdin))
    return commands


def test_the_flow_block_is_found_and_covers_the_whole_path() -> None:
    names = [" ".join(a[:2]) for a, _ in flow_commands()]
    for step in ("init --home", "key init", "user add", "voice add", "submit -", "review approve", "render 1",
                 "review show", "clips export", "audit verify"):
        assert any(n.startswith(step) for n in names), step


def test_the_readme_flow_runs_verbatim(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    shutil.copytree(DEMO_VOICE, tmp_path / "voices" / "demo")
    monkeypatch.setenv("VOXGATE_KEYS", str(tmp_path / "my-keys"))
    monkeypatch.setenv("VOXGATE_PASSPHRASE", "a passphrase for the readme")
    runner = CliRunner()
    for args, stdin in flow_commands():
        result = runner.invoke(app, args, input=stdin)
        assert result.exit_code == 0, f"voxgate {shlex.join(args)} failed:\n{result.output}"
        if args[0] == "submit":
            assert result.stdout.strip() == "1"
        if args[:2] == ["audit", "verify"]:
            assert "OK" in result.stdout
    assert (tmp_path / "draft-1.wav").read_bytes()[:4] == b"RIFF"
    shown = runner.invoke(app, ["review", "show", "1", "--json", "--home", "ws"])
    audio = [a for a in json.loads(shown.stdout)["approvals"] if a["stage"] == "audio"]
    assert [(a["reviewer"], a["listened"], a["signature_valid"]) for a in audio] == [("rita", True, True)]
    assert list(tmp_path.glob("*.ogg")), "the distributor's export is missing"
    assert not (tmp_path / "ws" / "keys" / "users").exists()
