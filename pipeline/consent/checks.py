"""The checks behind an enrollment: what the owner said, who said it, and how it was recorded.

1. Speech recognition of the consent audio against the script (Whisper
   tiny.en, English only): the owner's name, the organisation, the end date and
   the whole challenge phrase must be heard, and the word error rate over the
   whole script must stay under `max_wer`. A language a recogniser in
   voxgate.toml `[recognisers]` covers is checked by that recogniser's own
   measure and threshold instead (`measured_checks`: CER for Urdu); a language
   no recogniser covers needs the operator's confirmation that they listened.
2. Speaker similarity (resemblyzer, weights in the wheel): the consent audio
   against the training recordings as a whole, and against each recording,
   so one stranger's clip cannot slip into the training set.
3. Audio checks on every file: sample rate, duration, clipping, silence, loudness.

Enrollment runs them cheapest first: 3, then 2, then 1.

Thresholds were measured with scripts/calibrate_speaker.py (same voice vs
different voices); see DEFAULT_MIN_SPEAKER_SIMILARITY. The matching helpers
are pure; the recogniser and the speaker encoder are loaded once in
`CheckTools` and shared, as render's `Tools` are.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from datetime import date
from typing import Any, Final

import numpy as np

from pipeline.errors import AudioError, InputError, map_exceptions

log = logging.getLogger(__name__)

DEFAULT_MAX_WER: Final = 0.15
DEFAULT_MIN_SPEAKER_SIMILARITY: Final = 0.80
"""Consent audio vs the mean of the training recordings (cosine of resemblyzer embeddings).

Measured with scripts/calibrate_speaker.py: 24 same-voice pairs scored
0.943–0.989 (the lowest under 20 dB of noise), 24 different-voice pairs
0.442–0.726 (the highest: the same synthetic voice shifted 3 semitones down).
The bound sits in that gap, nearer the different voices: a false refusal costs
a re-recording, a false acceptance enrolls a stranger; real voices recorded on
different microphones vary more than a synthetic voice does, hence the margin
below the same-voice figures."""
DEFAULT_MIN_RECORDING_SIMILARITY: Final = 0.72
"""Each training recording vs the consent audio: one short sentence gives a
noisier embedding. Measured: 48 same-voice pairs 0.829–0.965, 24 different
0.387–0.675."""
DEFAULT_NAME_MATCH: Final = 0.8
"""Names and the organisation are matched with this similarity ratio, by
letters or by consonant sounds (`name_heard`): a recogniser spells an
unfamiliar name its own way ("Okafor" → "Ockifer") and that is not a different name."""

MIN_CONSENT_SAMPLE_RATE: Final = 16_000  # both the recogniser and the speaker encoder work at 16 kHz
MIN_RECORDING_SAMPLE_RATE: Final = 22_050  # training needs the band the voice model will produce
CONSENT_DURATION_S: Final = (5.0, 300.0)
RECORDING_DURATION_S: Final = (0.5, 30.0)
MIN_RECORDINGS_TOTAL_S: Final = 10.0
MAX_CLIPPED_FRACTION: Final = 0.001
LOUDNESS_RANGE_LUFS: Final = (-45.0, -6.0)
MIN_ACTIVE_FRACTION: Final = 0.3
"""Share of 30 ms frames with sound in them (see `ACTIVE_BELOW_LOUDEST_DB`): below it the file is mostly silence."""
ACTIVE_BELOW_LOUDEST_DB: Final = 35.0
"""A frame has sound when it is within this many dB of the file's loud frames (their 95th percentile)
and above `SILENT_FRAME_DBFS`; relative, so a quiet but clean recording is judged on its loudness instead."""
SILENT_FRAME_DBFS: Final = -70.0
_FRAME_S: Final = 0.03


@dataclass(frozen=True)
class CheckConfig:
    """Bounds for the enrollment checks; `[enrollment]` in voxgate.toml overrides any of them."""

    max_wer: float = DEFAULT_MAX_WER
    min_speaker_similarity: float = DEFAULT_MIN_SPEAKER_SIMILARITY
    min_recording_similarity: float = DEFAULT_MIN_RECORDING_SIMILARITY
    name_match: float = DEFAULT_NAME_MATCH
    min_consent_sample_rate: int = MIN_CONSENT_SAMPLE_RATE
    min_recording_sample_rate: int = MIN_RECORDING_SAMPLE_RATE
    max_clipped_fraction: float = MAX_CLIPPED_FRACTION
    min_loudness_lufs: float = LOUDNESS_RANGE_LUFS[0]
    max_loudness_lufs: float = LOUDNESS_RANGE_LUFS[1]
    min_active_fraction: float = MIN_ACTIVE_FRACTION
    min_recordings_total_s: float = MIN_RECORDINGS_TOTAL_S

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, where: str = "[enrollment]") -> CheckConfig:
        names = {f.name: f.type for f in fields(cls)}
        unknown = set(raw) - set(names)
        if unknown:
            raise InputError(f"{where}: unknown settings {sorted(unknown)}; known: {', '.join(sorted(names))}.")
        try:
            cfg = cls(**{k: (int(v) if names[k] == "int" else float(v)) for k, v in raw.items()})
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: every setting must be a number ({exc}).") from None
        if not 0 < cfg.max_wer < 1 or not -1 < cfg.min_speaker_similarity < 1:
            raise InputError(f"{where}: max_wer must be in (0, 1) and min_speaker_similarity in (-1, 1).")
        return cfg


@dataclass(frozen=True)
class Check:
    """One check's outcome, with its figure and the bound it was held to."""

    name: str
    passed: bool
    figure: Any
    limit: str
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def line(self) -> str:
        return f"{self.name}: {self.detail or self.figure} (needs {self.limit})"


# --- audio ------------------------------------------------------------------


@dataclass(frozen=True)
class AudioFigures:
    sample_rate: int
    duration_s: float
    clipped_fraction: float
    integrated_lufs: float
    active_fraction: float


def audio_figures(samples: np.ndarray, sr: int) -> AudioFigures:
    """Measure what the audio checks look at (mono float samples at the file's own rate)."""
    from pipeline.audio.loudness import MIN_DURATION_S, measure

    x = np.asarray(samples, dtype=np.float32)
    duration = x.size / sr if sr > 0 else 0.0
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise AudioError("The audio is empty or holds invalid samples (NaN or infinity).")
    frame = max(1, int(_FRAME_S * sr))
    usable = x[: x.size // frame * frame].reshape(-1, frame) if x.size >= frame else x.reshape(1, -1)
    level = 20 * np.log10(np.maximum(np.sqrt(np.mean(np.square(usable, dtype=np.float64), axis=1)), 1e-10))
    floor = max(float(np.percentile(level, 95)) - ACTIVE_BELOW_LOUDEST_DB, SILENT_FRAME_DBFS)
    active = float(np.mean(level > floor))
    lufs = measure(x, sr).integrated_lufs if duration >= MIN_DURATION_S else float("-inf")
    clipped = float(np.count_nonzero(np.abs(x) >= 0.999)) / x.size
    return AudioFigures(sr, round(duration, 3), clipped, lufs, active)


def audio_checks(label: str, f: AudioFigures, *, consent: bool, cfg: CheckConfig) -> list[Check]:
    """Sample rate, duration, clipping, silence and loudness of one file."""
    min_sr = cfg.min_consent_sample_rate if consent else cfg.min_recording_sample_rate
    lo, hi = CONSENT_DURATION_S if consent else RECORDING_DURATION_S
    silent = not np.isfinite(f.integrated_lufs) or f.active_fraction < cfg.min_active_fraction
    lufs = round(f.integrated_lufs, 1) if np.isfinite(f.integrated_lufs) else None
    return [
        Check(f"{label} sample rate", f.sample_rate >= min_sr, f.sample_rate, f">= {min_sr} Hz",
              f"{f.sample_rate} Hz"),
        Check(f"{label} duration", lo <= f.duration_s <= hi, f.duration_s, f"{lo:g}–{hi:g} s", f"{f.duration_s:.1f} s"),
        Check(f"{label} clipping", f.clipped_fraction <= cfg.max_clipped_fraction, round(f.clipped_fraction, 5),
              f"<= {cfg.max_clipped_fraction:.2%} of samples at full scale", f"{f.clipped_fraction:.2%} of samples clipped"),
        Check(f"{label} silence", not silent, round(f.active_fraction, 3),
              f">= {cfg.min_active_fraction:.0%} of the time",
              f"sound in {f.active_fraction:.0%} of the time"),
        Check(f"{label} loudness", silent or cfg.min_loudness_lufs <= f.integrated_lufs <= cfg.max_loudness_lufs, lufs,
              f"{cfg.min_loudness_lufs:g} to {cfg.max_loudness_lufs:g} LUFS",
              f"{lufs} LUFS" if lufs is not None else "silent"),
    ]


# --- what was said ------------------------------------------------------------


def _words(text: str) -> list[str]:
    from pipeline.quality.wer import normalise_words

    return normalise_words(text)


def _similar(a: str, b: str) -> float:
    return difflib.SequenceMatcher(None, a, b).ratio()


def find_phrase(heard: Sequence[str], phrase: Sequence[str]) -> int | None:
    """Where `phrase` occurs as consecutive words in `heard` (index of its first word), or None."""
    n = len(phrase)
    if n == 0:
        return None
    for i in range(len(heard) - n + 1):
        if list(heard[i:i + n]) == list(phrase):
            return i
    return None


_SOUNDS: Final = (("ph", "f"), ("ck", "k"), ("kh", "k"), ("gh", "g"), ("sh", "s"), ("ch", "s"), ("th", "t"),
                  ("c", "k"), ("q", "k"), ("x", "ks"), ("z", "s"), ("v", "f"), ("w", ""), ("h", ""))


def sound_skeleton(text: str) -> str:
    """The consonants of `text` as they sound, roughly: "Okafor" and "Ockifer" both give "kfr".

    A recogniser spells an unfamiliar name its own way; the consonants survive
    better than the letters do.
    """
    out = text.casefold()
    for written, sound in _SOUNDS:
        out = out.replace(written, sound)
    out = "".join(c for c in out if c.isalpha() and c not in "aeiouy")
    return "".join(c for i, c in enumerate(out) if i == 0 or c != out[i - 1])


def name_heard(heard: Sequence[str], name: str, threshold: float) -> bool:
    """Whether `name` was said: some run of heard words matches it by letters or by consonant sounds.

    Names are compared with their spaces removed ("Justice Media Team" heard as
    "just as media team"), against runs of one word fewer to one word more.
    """
    words = _words(name)
    target, skeleton = "".join(words), sound_skeleton("".join(words))
    for size in range(max(1, len(words) - 1), len(words) + 2):
        for i in range(len(heard) - size + 1):
            run = "".join(heard[i:i + size])
            if _similar(run, target) >= threshold:
                return True
            if len(skeleton) >= 3 and _similar(sound_skeleton(run), skeleton) >= max(threshold, 0.8):
                return True
    return False


_EN_MONTHS: Final = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
                     "october", "november", "december")


def date_forms(day: date) -> list[list[str]]:
    """Every way an English speaker (or recogniser) may say `day`, as normalised words.

    "December 31, 2030" comes back from Whisper as "December 31st, 2030", "31 December 2030",
    "the thirty-first of December, twenty thirty" …; all of them count.
    """
    from num2words import num2words

    month = [_EN_MONTHS[day.month - 1]]
    days = {tuple(_words(str(day.day))), tuple(_words(num2words(day.day, to="ordinal"))),
            tuple(_words(f"{day.day}{_ordinal_suffix(day.day)}"))}
    years = {tuple(_words(str(day.year))), tuple(_words(num2words(day.year, to="year"))),
             tuple(_words(num2words(day.year).replace(" and ", " ")))}
    forms: list[list[str]] = []
    for d in days:
        for y in years:
            for the in ([], ["the"]):
                forms.append([*month, *the, *d, *y])
                forms.append([*month, *the, *d, "of", *y])
                forms.append([*the, *d, *month, *y])
                forms.append([*the, *d, "of", *month, *y])
    return sorted(forms, key=len, reverse=True)  # longest first: "the … of …" before the bare form


_NUMBER_WORDS: Final = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty thirty forty fifty sixty seventy eighty ninety hundred thousand first "
    "second third fourth fifth sixth seventh eighth ninth tenth twelfth twentieth thirtieth".split())


def find_date(heard: Sequence[str], day: date) -> tuple[int, int] | None:
    """(start, length) of `day` said in any form, or None; "2030" must not run on into "2031"."""
    for form in date_forms(day):
        start = 0
        while (at := find_phrase(heard[start:], form)) is not None:
            at += start
            end = at + len(form)
            if end >= len(heard) or heard[end] not in _NUMBER_WORDS:
                return at, len(form)
            start = at + 1
    return None


def _ordinal_suffix(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


@dataclass(frozen=True)
class Heard:
    """The recogniser's transcript set against the script."""

    transcript: str
    wer: float
    checks: tuple[Check, ...]


def speech_checks(script: str, transcript: str, *, names: Sequence[str], organisation: str, until: date,
                  challenge: Sequence[str], cfg: CheckConfig) -> Heard:
    """Did the owner say the script? Names, organisation, end date, challenge phrase, and the overall WER."""
    from pipeline.quality.wer import word_error_rate

    heard = _words(transcript)
    checks: list[Check] = []
    for name in names:
        found = name_heard(heard, name, cfg.name_match)
        checks.append(Check(f"name {name!r} heard", found, found, "heard", "heard" if found else "not heard"))
    found = name_heard(heard, organisation, cfg.name_match)
    checks.append(Check("organisation heard", found, found, "heard", "heard" if found else f"{organisation!r} not heard"))

    # The end date: any spoken form counts, and it is put back in the script's form before the WER.
    spoken = _words(f"{_EN_MONTHS[until.month - 1]} {until.day}, {until.year}")
    if (found_at := find_date(heard, until)) is not None:
        at, length = found_at
        heard = [*heard[:at], *spoken, *heard[at + length:]]
    else:
        at = None
    checks.append(Check("end date heard", at is not None, at is not None, "heard",
                        "heard" if at is not None else f"{until:%Y-%m-%d} not heard"))

    phrase = _words(" ".join(challenge))
    found = find_phrase(heard, phrase) is not None
    missing = [w for w in phrase if w not in heard]
    checks.append(Check("challenge phrase heard", found, found, "every word, in order",
                        "heard" if found else (f"missing {', '.join(missing)}" if missing else "words out of order")))

    wer = round(word_error_rate(script, " ".join(heard)), 3)
    checks.append(Check("word error rate", wer <= cfg.max_wer, wer, f"<= {cfg.max_wer}", f"{wer:.2f}"))
    return Heard(transcript, wer, tuple(checks))


def measured_checks(script: str, transcript: str, challenge: Sequence[str], spec: Any, language: str) -> tuple[Check, ...]:
    """A reading checked by a configured recogniser (`pipeline.quality.recognisers`), by its own measure.

    The whole script by word or character error rate after the same normalisation on both sides
    (for Urdu: numbers in words, Urdu letters, no diacritics or punctuation), and the challenge
    phrase somewhere in the transcript within the same rate: the English name and date checks of
    `speech_checks` do not carry over to another language, the challenge phrase (never used
    before) is what shows the reading is fresh.
    """
    from pipeline.quality.recognisers import comparable, error_rate

    name = "word" if spec.measure == "wer" else "character"
    rate = round(error_rate(spec.measure, script, transcript, language), 3)
    phrase = phrase_error_rate(spec.measure, comparable(" ".join(challenge), language), comparable(transcript, language))
    phrase = round(phrase, 3)
    note = "" if spec.calibrated else " (threshold not calibrated on real speech)"
    return (
        Check("challenge phrase heard", phrase <= spec.threshold, phrase, f"{spec.measure.upper()} <= {spec.threshold:g}",
              f"best match {spec.measure.upper()} {phrase:.2f} by {spec.name}{note}"),
        Check(f"{name} error rate", rate <= spec.threshold, rate, f"<= {spec.threshold:g}",
              f"{rate:.2f} by {spec.name}{note}"),
    )


def phrase_error_rate(measure: str, phrase: Sequence[str], heard: Sequence[str]) -> float:
    """The error rate of `phrase` against the best-matching stretch of `heard` (words, or characters for CER).

    Approximate substring matching: an edit distance whose first row is all zeros, so the phrase may
    start anywhere in the transcript.
    """
    ref = list(" ".join(phrase)) if measure == "cer" else list(phrase)
    hyp = list(" ".join(heard)) if measure == "cer" else list(heard)
    if not ref:
        raise InputError("The challenge phrase has nothing to compare, so an error rate is undefined.")
    previous = [0] * (len(hyp) + 1)
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return min(previous) / len(ref)


MAX_CHUNK_S: Final = 20.0
"""Whisper reads 30 s windows; a long reading handed over whole sometimes loses its last
sentences at a window edge, so it is cut at its quietest moments into pieces this long at most."""


def split_for_asr(samples: np.ndarray, sr: int, max_s: float = MAX_CHUNK_S) -> list[np.ndarray]:
    """Cut `samples` into pieces of at most `max_s`, each cut at the quietest 0.3 s of its second half."""
    x = np.asarray(samples, dtype=np.float32)
    limit = int(max_s * sr)
    hop = max(1, int(0.01 * sr))
    pieces: list[np.ndarray] = []
    while x.size > limit:
        window = x[limit // 2: limit]
        energy = np.convolve(np.square(window[: window.size // hop * hop].reshape(-1, hop)).mean(axis=1),
                             np.ones(30) / 30, mode="same")
        cut = limit // 2 + int(np.argmin(energy)) * hop
        pieces.append(x[:cut])
        x = x[cut:]
    pieces.append(x)
    return pieces


ASR_SEED: Final = 0


def transcribe(transcriber: Any, samples: np.ndarray, sr: int, *, language: str = "en") -> str:
    """What the recogniser hears in a reading of any length (see `MAX_CHUNK_S`).

    Whisper falls back to sampling at higher temperatures on a segment it is
    unsure of; the sampler is seeded so that the same recording always gets the
    same verdict (an enrollment must be reproducible, and so must its tests).
    """
    import ctranslate2

    texts = []
    for piece in split_for_asr(samples, sr):
        ctranslate2.set_random_seed(ASR_SEED)
        texts.append(transcriber.transcribe(piece, sr, language=language).text)
    return " ".join(texts).strip()


# --- who said it --------------------------------------------------------------


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def speaker_checks(consent: np.ndarray, recordings: Sequence[tuple[str, np.ndarray]], cfg: CheckConfig) -> tuple[Check, ...]:
    """The consent voice against the recordings as a whole, then against the least similar recording."""
    mean = np.mean([e for _, e in recordings], axis=0)
    overall = round(cosine(consent, mean), 3)
    per = sorted(((round(cosine(consent, e), 3), name) for name, e in recordings))
    worst, worst_name = per[0]
    return (
        Check("speaker similarity", overall >= cfg.min_speaker_similarity, overall,
              f">= {cfg.min_speaker_similarity}", f"{overall:.3f}"),
        Check("least similar recording", worst >= cfg.min_recording_similarity, worst,
              f">= {cfg.min_recording_similarity}", f"{worst:.3f} ({worst_name})"),
    )


class SpeakerEncoder:
    """resemblyzer's d-vector encoder; the weights ship in the wheel. Call `load()` once."""

    def __init__(self) -> None:
        self._encoder: Any = None

    def load(self) -> SpeakerEncoder:
        if self._encoder is None:
            try:
                from resemblyzer import VoiceEncoder
            except ImportError as exc:
                raise AudioError(f"The speaker encoder (resemblyzer) is unavailable: {exc}; run `make setup`.") from exc
            with map_exceptions({RuntimeError: AudioError, OSError: AudioError}, "Could not load the speaker encoder"):
                self._encoder = VoiceEncoder("cpu", verbose=False)
        return self

    def embed(self, samples: np.ndarray, sr: int) -> np.ndarray:
        """A unit-length speaker embedding of one utterance (any length; long audio is averaged)."""
        from resemblyzer import preprocess_wav

        if self._encoder is None:
            raise AudioError("SpeakerEncoder used before load(); call load() once at start-up.")
        wav = preprocess_wav(np.asarray(samples, dtype=np.float32), source_sr=sr)
        if wav.size < 0.5 * 16_000:  # resampled to 16 kHz and silence trimmed: under half a second is no voice
            raise AudioError("No speech left after trimming silence; the speaker cannot be compared.")
        return self._encoder.embed_utterance(wav)


@dataclass
class CheckTools:
    """The recogniser, the speaker encoder and the presence-mark detector, loaded on first use and shared."""

    transcriber: Any = None
    encoder: SpeakerEncoder | None = None
    presence_mark: Any = None
    configured: dict[Any, Any] = field(default_factory=dict)  # configured recognisers by folder and languages

    def presence(self) -> Any:
        if self.presence_mark is None:
            from pipeline.provenance.presence import PresenceMark

            self.presence_mark = PresenceMark().load()
        return self.presence_mark

    def asr(self, spec: Any = None) -> Any:
        """The bundled recogniser, or with `spec` a configured one (checked against its pin, loaded once)."""
        from pipeline.quality.recognisers import check_pinned, load_transcriber

        if spec is not None and spec.path is not None:
            check_pinned(spec)
            key = (spec.path, spec.languages)  # one folder may be declared for other languages elsewhere
            if key not in self.configured:
                self.configured[key] = load_transcriber(spec)
            return self.configured[key]
        if self.transcriber is None:
            self.transcriber = load_transcriber()
        return self.transcriber

    def speaker(self) -> SpeakerEncoder:
        if self.encoder is None:
            self.encoder = SpeakerEncoder().load()
        return self.encoder


def first_failure(checks: Iterable[Check]) -> Check | None:
    return next((c for c in checks if not c.passed), None)
