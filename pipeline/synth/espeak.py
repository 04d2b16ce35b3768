"""espeak-ng engine: the formant synthesiser Debian packages, for any language it speaks.

Robotic, and never a person's voice: the last-resort announcer for the
audible disclosure, and the demo voice for languages no packaged neural
voice speaks (Urdu). A voice is a language plus an optional variant
("ur", "ur+f3"); its "model" is espeak-ng's dictionary for the language
(`<lang>_dict`), pinned by sha256 like any model, with a small JSON config
({"voice": "ur", "variant": "f3", "speed": 150}).

Measured here (espeak-ng 1.51, one CPU): about 0.05 s for a 5 s Urdu sentence.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from pipeline.errors import EngineError, InputError

log = logging.getLogger(__name__)

ESPEAK: Final = "espeak-ng"
DEFAULT_SPEED: Final = 150  # words a minute; espeak-ng's 175 is hard to follow in Urdu
_DATA_DIRS: Final = (Path("/usr/lib/x86_64-linux-gnu/espeak-ng-data"), Path("/usr/lib/aarch64-linux-gnu/espeak-ng-data"),
                     Path("/usr/share/espeak-ng-data"))
_INSTALL_HINT: Final = "install it with `apt-get install espeak-ng` (scripts/setup.sh does)"


@dataclass(frozen=True)
class EspeakVoice:
    """An espeak-ng voice: language, optional variant (m1-m7, f1-f5, …) and speed."""

    language: str
    variant: str | None = None
    speed: int = DEFAULT_SPEED

    @property
    def spec(self) -> str:
        return f"{self.language}+{self.variant}" if self.variant else self.language

    @property
    def identity(self) -> str:
        """What makes two espeak voices the same voice (the speed does not)."""
        return f"espeak-ng:{self.spec}"

    def to_dict(self) -> dict[str, object]:
        return {"voice": self.language, "variant": self.variant, "speed": self.speed}

    @classmethod
    def from_file(cls, path: Path) -> EspeakVoice:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(str(raw["voice"]), raw.get("variant") or None, int(raw.get("speed", DEFAULT_SPEED)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise EngineError(f"{path} is not an espeak-ng voice config ({exc}); "
                              'write {"voice": "ur", "variant": null, "speed": 150}.') from exc


def data_dir() -> Path:
    for candidate in _DATA_DIRS:
        if candidate.is_dir():
            return candidate
    raise EngineError(f"espeak-ng's data folder was not found; {_INSTALL_HINT}.")


def dictionary(language: str) -> Path:
    """espeak-ng's dictionary for `language`: the file a voice profile pins by sha256."""
    path = data_dir() / f"{language.split('-')[0]}_dict"
    if not path.is_file():
        raise EngineError(f"espeak-ng has no dictionary for {language!r} ({path}); it does not speak that language.")
    return path


def speaks(language: str) -> bool:
    """True if the installed espeak-ng has a voice for `language` (never raises)."""
    if shutil.which(ESPEAK) is None:
        return False
    try:
        out = subprocess.run([ESPEAK, f"--voices={language}"], capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return False
    primary = language.replace("_", "-").split("-")[0].lower()
    return any(line.split()[1].split("-")[0] == primary for line in out.stdout.splitlines()[1:] if len(line.split()) > 1)


class EspeakEngine:
    """espeak-ng behind the engine interface: one subprocess a sentence, WAV read back."""

    name: str = "espeak"

    def __init__(self, voice: EspeakVoice) -> None:
        if not voice.language or not all(c.isalnum() or c in "-_" for c in voice.language):
            raise InputError(f"{voice.language!r} is not an espeak-ng language code (such as ur or en-gb).")
        self.voice = voice
        self._sample_rate: int | None = None

    def load(self) -> None:
        if shutil.which(ESPEAK) is None:
            raise EngineError(f"{ESPEAK} is not installed; {_INSTALL_HINT}.")
        if not speaks(self.voice.language):
            raise EngineError(f"espeak-ng has no voice for {self.voice.language!r}; list them with `espeak-ng --voices`.")
        self._speak(".")  # sets the sample rate from espeak-ng's own WAV header (empty text writes no file)

    @property
    def sample_rate(self) -> int:
        if self._sample_rate is None:
            raise EngineError("The espeak-ng engine is not loaded; call load() first.")
        return self._sample_rate

    @property
    def device(self) -> str:
        return "cpu"

    def synthesize(self, sentences: Sequence[str]) -> list[np.ndarray]:
        if self._sample_rate is None:
            raise EngineError("The espeak-ng engine is not loaded; call load() first.")
        return [self._speak(sentence) for sentence in sentences]

    def _speak(self, text: str) -> np.ndarray:
        if not any(c.isalnum() for c in text) and self._sample_rate is not None:
            return np.zeros(0, np.float32)  # nothing speakable: espeak-ng writes no file at all
        with tempfile.TemporaryDirectory(prefix="voxgate-espeak-") as tmp:
            out = Path(tmp) / "s.wav"
            try:
                subprocess.run([ESPEAK, "-b", "1", "-v", self.voice.spec, "-s", str(self.voice.speed), "-w", str(out),
                                "--stdin"], input=text.encode("utf-8"), capture_output=True, timeout=120, check=True)
                with wave.open(str(out), "rb") as w:
                    rate, width, channels = w.getframerate(), w.getsampwidth(), w.getnchannels()
                    frames = w.readframes(w.getnframes())
            except (OSError, subprocess.SubprocessError, wave.Error) as exc:
                raise EngineError(f"espeak-ng could not speak with voice {self.voice.spec!r}: {exc}") from exc
        if width != 2 or channels != 1:
            raise EngineError(f"espeak-ng wrote {channels} channel(s) of {8 * width}-bit audio; expected 16-bit mono.")
        self._sample_rate = rate
        return (np.frombuffer(frames, dtype="<i2").astype(np.float32) / 32768.0).copy()
