"""Captions for released clips: timing from the synthesis, refined by the recogniser; SRT and WebVTT.

Pure functions, except `write_captions` (the one file writer). The render stores a *timeline*, one entry per
synthesised sentence in master-clip seconds (``{"start", "end", "text"}``).
Sentence boundaries are exact (they are where the engine's audio was joined),
but a long sentence needs several captions, and where those change inside the
sentence is only an estimate by character count. When the speech recogniser's
word timings are at hand (English: Whisper tiny.en), each caption instead
starts where the recogniser heard its first word, less `DEFAULT_LEAD_S`.

The rule that matters to viewers: a caption never shows words before they are
spoken (beyond a small lead). So timings are only ever moved *later* when
sources disagree: a caption starts at the later of the sentence start and
the recognised onset, and a caption squeezed by its neighbour is delayed,
never advanced.

Right-to-left captions (Urdu, Arabic, ...) get a RIGHT-TO-LEFT MARK at the
start of each line in SRT and WebVTT: players pick a line's direction from its
first strong character, so an Urdu line that opens with a Latin name or a
number would otherwise be laid out left to right. (Approved text may not
contain bidi marks, see `pipeline.synth.text`; here the mark is added by us,
only to set the display direction.)
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import Any, Final, Protocol

from pipeline.errors import InputError, StoreError, map_exceptions
from pipeline.store.files import atomic_output

#: Netflix / BBC guidance for Latin script: about 42 characters a line, two lines.
DEFAULT_MAX_CHARS: Final = 42
DEFAULT_MAX_LINES: Final = 2
#: Shown this long before the recognised first word: enough for the eye to land,
#: far inside the 0.3 s a caption may run ahead of the speech.
DEFAULT_LEAD_S: Final = 0.1
#: A caption stays up this long after its sentence ends, unless the next one starts.
DEFAULT_HOLD_S: Final = 0.6
#: Shorter captions cannot be read; the next caption is delayed (never this one advanced).
MIN_CAPTION_S: Final = 0.7
#: How far the recogniser may place a sentence's words outside the synthesis timeline and still be believed.
ONSET_SLACK_S: Final = 1.0


RTL_LANGUAGES: Final = frozenset({"ar", "fa", "ur", "ps", "sd", "ug", "ckb", "he", "yi", "dv"})
RLM: Final = "\u200f"

_CLAUSE_END: Final = re.compile(r"[,;:—–،؛]$")
_SENTENCE_END: Final = re.compile(r"[.!?…۔؟]['\"”’»)]*$")
# A break after a clause mark costs this many characters of imbalance less.
_PUNCTUATION_BONUS: Final = 12.0


class TimedWord(Protocol):
    """A recognised word (`pipeline.quality.asr.Word` fits)."""

    text: str
    start: float
    end: float


@dataclass(frozen=True)
class Caption:
    """One caption: shown from `start` to `end` (seconds in the clip), one or two lines."""

    start: float
    end: float
    lines: tuple[str, ...]
    rtl: bool = False

    def __post_init__(self) -> None:
        if not self.lines or not all(line.strip() for line in self.lines):
            raise InputError("A caption needs at least one non-empty line.")
        if not (math.isfinite(self.start) and math.isfinite(self.end)) or self.start < 0 or self.end <= self.start:
            raise InputError(f"Caption times {self.start}..{self.end} s are not a forward span from 0 s or later.")

    @property
    def text(self) -> str:
        return " ".join(self.lines)


@dataclass(frozen=True)
class _Sentence:
    start: float
    end: float
    text: str


def is_rtl(lang: str) -> bool:
    """True if `lang` (a BCP 47 tag) is written right to left."""
    return _primary(lang) in RTL_LANGUAGES


def build_captions(
    timeline: Sequence[Mapping[str, Any]],
    words: Sequence[TimedWord] | None = None,
    *,
    lang: str,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_lines: int = DEFAULT_MAX_LINES,
    lead_s: float = DEFAULT_LEAD_S,
    hold_s: float = DEFAULT_HOLD_S,
) -> list[Caption]:
    """Captions for a clip from its sentence timeline, refined by recognised `words` when given.

    Each sentence is split into captions of at most `max_lines` lines of
    about `max_chars` characters (a single longer word keeps a line to
    itself). Raises InputError for a malformed or overlapping timeline.
    """
    if max_chars < 1 or max_lines < 1:
        raise InputError(f"Captions need max_chars and max_lines of at least 1 (got {max_chars}, {max_lines}).")
    sentences = _checked_timeline(timeline)
    rtl = is_rtl(lang)
    blocks: list[tuple[int, tuple[str, ...]]] = []  # (sentence index, lines)
    for index, sentence in enumerate(sentences):
        blocks.extend((index, lines) for lines in split_caption_text(sentence.text, max_chars, max_lines))
    if not blocks:
        return []

    starts = _estimated_starts(sentences, blocks)
    if words:
        onsets = _recognised_onsets(blocks, words)
        for i, onset in enumerate(onsets):
            sentence = sentences[blocks[i][0]]
            # An onset outside its sentence means the alignment matched the wrong word: keep the estimate.
            if onset is not None and sentence.start - ONSET_SLACK_S <= onset <= sentence.end + ONSET_SLACK_S:
                starts[i] = max(starts[i] if _first_in_sentence(blocks, i) else 0.0, onset - lead_s)
    # Never earlier than the previous caption plus a readable minimum: delays only.
    for i in range(1, len(starts)):
        starts[i] = max(starts[i], starts[i - 1] + MIN_CAPTION_S)

    captions: list[Caption] = []
    for i, (sentence_index, lines) in enumerate(blocks):
        next_start = starts[i + 1] if i + 1 < len(blocks) else math.inf
        last_in_sentence = i + 1 == len(blocks) or blocks[i + 1][0] != sentence_index
        natural_end = sentences[sentence_index].end + hold_s if last_in_sentence else next_start
        end = min(next_start, max(natural_end, starts[i] + MIN_CAPTION_S))
        captions.append(Caption(start=round(starts[i], 3), end=round(end, 3), lines=lines, rtl=rtl))
    return captions


def split_caption_text(text: str, max_chars: int = DEFAULT_MAX_CHARS,
                       max_lines: int = DEFAULT_MAX_LINES) -> list[tuple[str, ...]]:
    """Split one sentence into captions (each a tuple of lines), balanced, breaking at clauses where it can.

    Uses the fewest captions that fit, then the cut points that make them
    most even in length, preferring cuts after a comma or semicolon.
    """
    words = text.split()
    if not words:
        return []
    for count in range(1, len(words) + 1):
        cuts = _balanced_cuts(words, count, max_chars, max_lines)
        if cuts is not None:
            bounds = [0, *cuts, len(words)]
            return [_balanced_lines(words[a:b], max_chars, max_lines) for a, b in zip(bounds, bounds[1:])]
    raise AssertionError("one word per caption always fits")  # pragma: no cover


def to_srt(captions: Sequence[Caption]) -> str:
    """SubRip text: numbered cues, ``HH:MM:SS,mmm`` times, a blank line after each."""
    cues = []
    for number, caption in enumerate(_checked_order(captions), start=1):
        span = f"{_timestamp(caption.start, ',')} --> {_timestamp(caption.end, ',')}"
        text = "\n".join(_directed(line.replace("-->", "->"), caption.rtl) for line in caption.lines)
        cues.append(f"{number}\n{span}\n{text}\n")
    return "\n".join(cues)


def to_vtt(captions: Sequence[Caption]) -> str:
    """WebVTT text; right-to-left cues are centred and each line starts with a RIGHT-TO-LEFT MARK.

    WebVTT has no direction setting: a cue's direction comes from its text
    (the mark), and ``align:center`` keeps lines of either direction centred
    under the picture.
    """
    blocks = ["WEBVTT\n"]
    for number, caption in enumerate(_checked_order(captions), start=1):
        settings = " align:center" if caption.rtl else ""
        span = f"{_timestamp(caption.start, '.')} --> {_timestamp(caption.end, '.')}{settings}"
        text = "\n".join(_directed(_vtt_escape(line), caption.rtl) for line in caption.lines)
        blocks.append(f"{number}\n{span}\n{text}\n")
    return "\n".join(blocks)


def write_captions(captions: Sequence[Caption], dest: Path) -> Path:
    """Write `captions` as SRT or WebVTT (chosen by `dest`'s suffix) atomically, UTF-8; return `dest`."""
    writers = {".srt": to_srt, ".vtt": to_vtt}
    dest = Path(dest)
    writer = writers.get(dest.suffix.lower())
    if writer is None:
        raise InputError(f"{dest.name} must end in .srt or .vtt to say which caption format to write.")
    text = writer(captions)
    with map_exceptions({OSError: StoreError}, f"Could not write {dest} (check the folder exists and is writable)"), \
            atomic_output(dest) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="\n")
    return dest


# --- timing -------------------------------------------------------------------


def _checked_timeline(timeline: Sequence[Mapping[str, Any]]) -> list[_Sentence]:
    sentences: list[_Sentence] = []
    for number, entry in enumerate(timeline, start=1):
        try:
            start, end, text = float(entry["start"]), float(entry["end"]), str(entry["text"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"Timeline entry {number} is not {{'start': s, 'end': s, 'text': str}} ({exc!r}); "
                "re-render the clip to rebuild its timeline."
            ) from None
        if not (math.isfinite(start) and math.isfinite(end)) or start < 0 or end < start:
            raise InputError(f"Timeline entry {number} runs from {start} to {end} s; it must run forwards from 0 s.")
        if sentences and start < sentences[-1].end - 1e-3:
            raise InputError(
                f"Timeline entry {number} starts at {start:.3f} s, before entry {number - 1} ends "
                f"({sentences[-1].end:.3f} s); entries must be in order and must not overlap."
            )
        if text.strip():
            sentences.append(_Sentence(start, end, text.strip()))
    return sentences


def _estimated_starts(sentences: list[_Sentence], blocks: list[tuple[int, tuple[str, ...]]]) -> list[float]:
    """Starts from the timeline alone: blocks share their sentence's span by character count."""
    starts: list[float] = []
    for index, sentence in enumerate(sentences):
        lengths = [sum(map(len, lines)) + len(lines) for i, lines in blocks if i == index]
        total = sum(lengths) or 1
        done = 0
        for length in lengths:
            starts.append(sentence.start + (sentence.end - sentence.start) * done / total)
            done += length
    return starts


def _first_in_sentence(blocks: list[tuple[int, tuple[str, ...]]], i: int) -> bool:
    return i == 0 or blocks[i - 1][0] != blocks[i][0]


def _recognised_onsets(blocks: list[tuple[int, tuple[str, ...]]], words: Sequence[TimedWord]) -> list[float | None]:
    """Where the recogniser heard each block begin, or None where it cannot tell.

    Caption words and recognised words are aligned as token sequences, so
    misheard or differently written words ("42" for "forty-two") only lose
    their own match. A block whose first word was not matched begins with
    the first recognised word after the previous block's last match.
    """
    caption_tokens: list[str] = []
    block_tokens: list[list[int]] = []  # per block: indices into caption_tokens, punctuation-only words left out
    for _sentence, lines in blocks:
        mine = []
        for word in " ".join(lines).split():
            if token := _token(word):
                mine.append(len(caption_tokens))
                caption_tokens.append(token)
        block_tokens.append(mine)
    heard = [_token(w.text) for w in words]
    matched: dict[int, int] = {}  # caption token -> recognised word
    for run in SequenceMatcher(None, caption_tokens, heard, autojunk=False).get_matching_blocks():
        matched.update((run.a + k, run.b + k) for k in range(run.size))

    onsets: list[float | None] = []
    last_heard = -1  # index into `words` of the last match so far
    for tokens in block_tokens:
        hits = [matched[t] for t in tokens if t in matched]
        if tokens and tokens[0] in matched:
            onsets.append(float(words[matched[tokens[0]]].start))
        elif hits:
            onsets.append(float(words[min(last_heard + 1, hits[0])].start))
        else:
            onsets.append(None)
        if hits:
            last_heard = hits[-1]
    return onsets


def _token(word: str) -> str:
    """A word as compared across text and recogniser: case-folded, letters and digits only."""
    return "".join(ch for ch in unicodedata.normalize("NFKC", word).casefold() if ch.isalnum())


# --- line breaking -------------------------------------------------------------


def _balanced_cuts(words: list[str], count: int, max_chars: int, max_lines: int) -> list[int] | None:
    """Word indices splitting `words` into `count` captions that fit, most evenly; None if impossible."""
    n = len(words)
    if count > n:
        return None
    # reach[a]: the largest b such that words[a:b] fits one caption (fitting is monotonic in b).
    reach = []
    for a in range(n):
        b = a + 1
        while b < n and _line_count(words[a : b + 1], max_chars) <= max_lines:
            b += 1
        reach.append(b)
    sizes = [0]
    for word in words:
        sizes.append(sizes[-1] + len(word) + 1)
    target = sizes[-1] / count

    def cost(a: int, b: int) -> float:
        clause = b < n and (_CLAUSE_END.search(words[b - 1]) or _SENTENCE_END.search(words[b - 1]))
        return (sizes[b] - sizes[a] - target) ** 2 / max(target, 1.0) - (_PUNCTUATION_BONUS if clause else 0.0)

    # best[k][j]: least cost of the first j words in k captions, and where the last caption starts.
    best: list[dict[int, tuple[float, int]]] = [{0: (0.0, 0)}]
    for k in range(1, count + 1):
        row: dict[int, tuple[float, int]] = {}
        for i, (so_far, _) in best[k - 1].items():
            if i >= n:
                continue
            for j in range(i + 1, reach[i] + 1):
                candidate = (so_far + cost(i, j), i)
                if j not in row or candidate < row[j]:
                    row[j] = candidate
        best.append(row)
    if n not in best[count]:
        return None
    cuts, j = [], n
    for k in range(count, 1, -1):
        j = best[k][j][1]
        cuts.append(j)
    return cuts[::-1]


def _line_count(words: list[str], max_chars: int) -> int:
    """Lines greedy filling needs (greedy gives the fewest)."""
    lines, width = 0, -1
    for word in words:
        if width < 0 or width + 1 + len(word) > max_chars:
            lines, width = lines + 1, len(word)
        else:
            width += 1 + len(word)
    return lines


def _balanced_lines(words: list[str], max_chars: int, max_lines: int) -> tuple[str, ...]:
    """Lay out one caption on as few lines as fit; two lines are made as even as they can be."""
    needed = _line_count(words, max_chars)
    if needed <= 1 or max_lines == 1:
        return (" ".join(words),)
    if needed == 2:
        options = []
        for cut in range(1, len(words)):
            first, second = " ".join(words[:cut]), " ".join(words[cut:])
            if len(first) <= max_chars and len(second) <= max_chars:
                bonus = _PUNCTUATION_BONUS / 2 if _CLAUSE_END.search(words[cut - 1]) else 0.0
                options.append((max(len(first), len(second)) - bonus, cut))
        if options:
            cut = min(options)[1]
            return (" ".join(words[:cut]), " ".join(words[cut:]))
    lines: list[list[str]] = [[]]
    for word in words:  # a word longer than a line, or more than two lines: greedy
        if lines[-1] and len(" ".join([*lines[-1], word])) > max_chars:
            lines.append([])
        lines[-1].append(word)
    return tuple(" ".join(line) for line in lines)


# --- writing --------------------------------------------------------------------


def _checked_order(captions: Sequence[Caption]) -> Sequence[Caption]:
    for previous, caption in zip(captions, captions[1:]):
        if caption.start < previous.end - 1e-6:
            raise InputError(
                f"Caption at {caption.start:.3f} s starts before the previous one ends ({previous.end:.3f} s); "
                "build captions with build_captions()."
            )
    return captions


def _timestamp(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def _directed(line: str, rtl: bool) -> str:
    return RLM + line if rtl else line


def _vtt_escape(line: str) -> str:
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _primary(lang: str) -> str:
    return lang.replace("_", "-").split("-", 1)[0].strip().lower()
