"""Which speech recogniser checks which language, by which measure and threshold.

The bundled Whisper tiny.en checks English by word error rate. A workspace
adds any faster-whisper (CTranslate2) model folder in voxgate.toml, pinned by
the sha256 of its model.bin and declared with the languages it covers:

    [recognisers.whisper-small]
    path = "/opt/models/faster-whisper-small"
    sha256 = "…"             # of model.bin
    languages = ["ur"]
    measure = "cer"          # character error rate: Urdu word boundaries are not reliable in transcripts
    threshold = 0.35
    calibrated = false       # say so until the threshold is measured on real Urdu speech

A configured recogniser wins over the bundled one for its languages. Urdu is
compared after the same normalisation on both sides (`pipeline.synth.urdu.
comparable_urdu`: numbers in words, Urdu letters, no diacritics or punctuation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pipeline.errors import InputError, ProvenanceError
from pipeline.hashing import sha256_file

MEASURES: Final = ("wer", "cer")
BUILTIN_NAME: Final = "whisper tiny.en (bundled)"
BUILTIN_THRESHOLD: Final = 0.25


@dataclass(frozen=True)
class RecogniserSpec:
    """A recogniser and its gate; `path` None is the bundled tiny.en."""

    name: str
    languages: frozenset[str]
    measure: str = "wer"
    threshold: float = BUILTIN_THRESHOLD
    path: Path | None = None
    sha256: str | None = None
    calibrated: bool = True

    @property
    def label(self) -> str:
        note = "" if self.calibrated else ", threshold not calibrated on real speech in this language"
        return f"{self.name} ({self.measure.upper()} <= {self.threshold:g}{note})"


BUILTIN: Final = RecogniserSpec(BUILTIN_NAME, frozenset({"en"}))


def parse(raw: dict[str, dict], *, where: str) -> tuple[RecogniserSpec, ...]:
    """`[recognisers.NAME]` tables from voxgate.toml; a bad one is a config error, never skipped."""
    specs = []
    for name, table in raw.items():
        unknown = set(table) - {"path", "sha256", "languages", "measure", "threshold", "calibrated"}
        if unknown:
            raise ValueError(f"recognisers.{name}: unknown keys {sorted(unknown)}")
        measure = str(table.get("measure", "wer"))
        if measure not in MEASURES:
            raise ValueError(f"recognisers.{name}.measure must be wer or cer, not {measure!r}")
        languages = frozenset(str(x).lower() for x in table["languages"])
        if not languages:
            raise ValueError(f"recognisers.{name}.languages is empty")
        specs.append(RecogniserSpec(name, languages, measure, float(table["threshold"]), Path(table["path"]),
                                    str(table["sha256"]).lower(), bool(table.get("calibrated", False))))
    return tuple(specs)


def recogniser_for(language: str, configured: tuple[RecogniserSpec, ...] = ()) -> RecogniserSpec | None:
    """The recogniser that checks `language`: a configured one first, else the bundled one, else None."""
    primary = language.replace("_", "-").split("-", 1)[0].lower()
    for spec in (*configured, BUILTIN):
        if primary in spec.languages:
            return spec
    return None


def load_transcriber(spec: RecogniserSpec | None = None, *, threads: int = 0):  # type: ignore[no-untyped-def]
    """The recogniser `spec` names, loaded (the bundled one for no spec or no folder); check its pin first.
    `threads`: CPU threads it decodes on (0: CTranslate2's default)."""
    from pipeline.quality.asr import Transcriber  # faster-whisper: kept off the CLI's start-up path

    if spec is None or spec.path is None:
        return Transcriber(threads=threads).load()
    return Transcriber(spec.path, languages=spec.languages, threads=threads).load()


def check_pinned(spec: RecogniserSpec) -> None:
    """Refuse a configured model folder whose model.bin is missing or not the pinned one."""
    if spec.path is None:
        return
    model = spec.path / "model.bin"
    if not model.is_file():
        raise ProvenanceError(f"Recogniser {spec.name!r}: no model.bin in {spec.path}; fix [recognisers.{spec.name}] "
                              "path in voxgate.toml.")
    found = sha256_file(model)
    if found != spec.sha256:
        raise ProvenanceError(f"Recogniser {spec.name!r}: {model} has sha256 {found}, not the pinned {spec.sha256}; "
                              "restore the model or update the pin after checking it.")


def comparable(text: str, language: str) -> list[str]:
    """Words of `text` normalised for comparison, the same for reference and transcript."""
    if language.replace("_", "-").split("-", 1)[0].lower() == "ur":
        from pipeline.synth.urdu import comparable_urdu

        return comparable_urdu(text)
    from pipeline.quality.wer import normalise_words

    return normalise_words(text)


def error_rate(measure: str, reference: str, hypothesis: str, language: str) -> float:
    """WER over words or CER over characters (words joined by one space), after `comparable` on both sides."""
    ref, hyp = comparable(reference, language), comparable(hypothesis, language)
    if measure == "cer":
        ref, hyp = list(" ".join(ref)), list(" ".join(hyp))
    if not ref:
        raise InputError("The reference text has nothing to compare, so an error rate is undefined.")
    return _edit_distance(ref, hyp) / len(ref)


def _edit_distance(ref: list[str], hyp: list[str]) -> int:
    previous = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, start=1):
        current = [i]
        for j, h in enumerate(hyp, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (r != h)))
        previous = current
    return previous[-1]
