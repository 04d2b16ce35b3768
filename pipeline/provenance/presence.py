"""Perth presence watermark: says "this clip came from a voxgate pipeline", carries no payload.

Perth (resemble-perth 1.0.1) hides a learned mark in the 0–2 kHz band of the
magnitude spectrogram at 32 kHz and scores a clip 0..1 for its presence.

Why we do not call Perth at the caller's rate: `apply_watermark` resamples the
*whole* signal to 32 kHz and back (librosa/soxr), which throws away everything
above 16 kHz of a 48 kHz master. We resample to 32 kHz ourselves, let Perth
mark that, and add only the difference (the mark) back onto the untouched
original. The mark is as detectable as Perth's own (scores below); the rest
of the signal is left alone (energy above 17 kHz changes by 3e-8, relative).

Measured on the packaged Piper voice (22,050 Hz, about 6 s, CPU):

==========================================  =========
case                                        score
==========================================  =========
unmarked speech                             ≤ 0.001
unmarked, after WAV / MP3 128k / Opus 32k   ≤ 0.04
marked, straight after embedding            1.000
marked, after MP3 128k / 64k, Opus 24–32k   ≥ 0.999
marked, white noise at 20 dB SNR            0.95
silence                                     undefined: no frame is loud enough to decode
==========================================  =========

Embedding takes about 0.05 s and detection 0.06 s for that clip once warm;
importing Perth (torch, librosa) takes about 3 s, so it happens once, in
`load()`.
The mark sits about 16 dB below the speech (Perth hides it under a
psychoacoustic mask), so a clip normalised to full scale overshoots by up to
~0.4 dB on a handful of samples: those are clipped to [-1, 1] and logged. The
loudness stage's true-peak ceiling normally leaves room for it.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import warnings
from typing import TYPE_CHECKING, Final

import numpy as np

from pipeline.audio.mix import checked_mono, fit_length, resample
from pipeline.errors import ProvenanceError, map_exceptions

if TYPE_CHECKING:
    from perth import PerthImplicitWatermarker

log = logging.getLogger(__name__)

#: Decision point for "marked": Perth's own rounding point, far from both the
#: measured unmarked (≤ 0.04) and attacked-but-marked (≥ 0.95) scores.
DEFAULT_PRESENCE_THRESHOLD: Final = 0.5
#: Straight after embedding the score is 1.000; anything under 0.9 means the
#: mark is too weak to survive a codec, so the clip must not be released.
DEFAULT_EMBED_THRESHOLD: Final = 0.9
#: The rate Perth's network was trained at (its hparams.yaml).
PERTH_SAMPLE_RATE: Final = 32_000
#: Perth's 2048-point STFT cannot run on under 33 ms; under 0.1 s it runs but cannot mark.
MIN_DURATION_S: Final = 0.1

_REINSTALL_HINT: Final = "reinstall with `make setup`"
# Perth raises plain torch/numpy errors; any of them means the mark did not run.
_PERTH_ERRORS: Final = {RuntimeError: ProvenanceError, ValueError: ProvenanceError}


class PresenceMark:
    """Embeds and detects the Perth presence watermark; call `load()` once before use."""

    def __init__(self, *, device: str = "cpu") -> None:
        self.device = device
        self._watermarker: PerthImplicitWatermarker | None = None

    def load(self) -> PresenceMark:
        """Import Perth and load its network (about 3 s); a second call is free."""
        if self._watermarker is not None:
            return self
        try:
            # perth imports pkg_resources, whose deprecation warning we know about.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                import perth
        except ImportError as exc:
            raise ProvenanceError(f"Perth watermarker unavailable: {exc}; {_REINSTALL_HINT}") from exc
        if perth.PerthImplicitWatermarker is None:
            # perth swallows the ImportError of its implementation; redo it to learn why.
            reason = _perth_import_failure()
            raise ProvenanceError(f"Perth watermarker unavailable: {reason}; {_REINSTALL_HINT}")
        banner = io.StringIO()  # Perth prints its checkpoint step to stdout.
        with map_exceptions({OSError: ProvenanceError, **_PERTH_ERRORS}, "Perth watermarker failed to load"):
            with contextlib.redirect_stdout(banner):
                self._watermarker = perth.PerthImplicitWatermarker(device=self.device)
        log.debug("Perth ready on %s: %s", self.device, banner.getvalue().strip())
        return self

    def embed(self, x: np.ndarray, sr: int) -> np.ndarray:
        """Return `x` with the mark added: same length, float32, within [-1, 1]."""
        import torch

        watermarker = self._require_loaded()
        x = _checked_signal(x, sr)
        x32 = resample(x, sr, PERTH_SAMPLE_RATE)
        with map_exceptions(_PERTH_ERRORS, "Perth could not embed the presence mark"):
            with torch.inference_mode():
                marked32 = watermarker.apply_watermark(x32, sample_rate=PERTH_SAMPLE_RATE)
        # Perth's iSTFT drops the last partial hop; the mark there is zero.
        mark32 = fit_length(np.asarray(marked32, dtype=np.float32), len(x32)) - x32
        out = x + fit_length(resample(mark32, PERTH_SAMPLE_RATE, sr), len(x))
        over = int(np.count_nonzero(np.abs(out) > 1.0))
        if over:
            log.warning("Presence mark overshot full scale on %d samples (peak %.3f); clipped", over, np.abs(out).max())
            np.clip(out, -1.0, 1.0, out=out)
        return out.astype(np.float32, copy=False)

    def detect(self, x: np.ndarray, sr: int) -> float:
        """Return the presence score in [0, 1]; raise if the clip is too quiet to judge."""
        import torch

        watermarker = self._require_loaded()
        x32 = resample(_checked_signal(x, sr), sr, PERTH_SAMPLE_RATE)
        with map_exceptions(_PERTH_ERRORS, "Perth could not check the presence mark"):
            with torch.inference_mode():
                score = float(watermarker.get_watermark(x32, sample_rate=PERTH_SAMPLE_RATE, round=False))
        if not math.isfinite(score):
            # Perth averages over frames louder than 5 % of the loudest; silence has none.
            raise ProvenanceError(
                "The clip has no audible speech, so the presence mark cannot be checked; "
                "check the audio before watermarking it."
            )
        return score

    def embed_and_verify(
        self, x: np.ndarray, sr: int, *, threshold: float = DEFAULT_EMBED_THRESHOLD
    ) -> tuple[np.ndarray, float]:
        """Embed, then detect on the result; raise rather than return a weakly marked clip."""
        marked = self.embed(x, sr)
        score = self.detect(marked, sr)
        if score < threshold:
            raise ProvenanceError(
                f"Presence mark scored {score:.3f} right after embedding (needs {threshold:.2f}); "
                "refusing to pass on an unmarked clip. Check that the audio is speech at a normal level."
            )
        log.info("Presence mark embedded and verified (score %.3f)", score)
        return marked, score

    def _require_loaded(self) -> PerthImplicitWatermarker:
        if self._watermarker is None:
            raise ProvenanceError("PresenceMark used before load(); call load() once at start-up.")
        return self._watermarker


def _perth_import_failure() -> str:
    try:
        from perth.perth_net.perth_net_implicit.perth_watermarker import PerthImplicitWatermarker  # noqa: F401
    except ImportError as exc:
        return str(exc)
    return "its implementation did not import"


def _checked_signal(x: np.ndarray, sr: int) -> np.ndarray:
    x = checked_mono(x, sr, step="the audio step before the watermark is broken")
    if x.size < MIN_DURATION_S * sr:
        raise ProvenanceError(
            f"The clip is {1000 * x.size / sr:.0f} ms long; the presence mark needs at least "
            f"{MIN_DURATION_S:.1f} s of audio."
        )
    return x
