"""Captions: line breaking, timing from the synthesis and the recogniser, SRT and WebVTT output.

The timing test runs on real speech: sentences synthesised by the packaged
Piper voice and joined as the render joins them, heard by Whisper tiny.en.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import synthesise
from pipeline.errors import InputError
from pipeline.export.captions import (
    DEFAULT_LEAD_S,
    RLM,
    Caption,
    build_captions,
    split_caption_text,
    to_srt,
    to_vtt,
    write_captions,
)

MAX_EARLY_S = 0.3  # the bound: a caption may precede its first spoken word by at most this
LONG_SENTENCE = (
    "I ask only for what the constitution promises every citizen: an open trial before an independent judge, "
    "and for the records of every closed hearing to be published without delay."
)
URDU_SENTENCE = (
    "میں آپ کو ایک ایسی جگہ سے لکھ رہا ہوں جہاں میں اپنے لیے بول نہیں سکتا، "
    "اس لیے میرے دوست میرے لیے بولتے ہیں۔"
)


@dataclass(frozen=True)
class Heard:
    """A recognised word, shaped like `pipeline.quality.asr.Word`."""

    text: str
    start: float
    end: float


# --- line breaking -----------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Short one.",
        LONG_SENTENCE,
        URDU_SENTENCE,
        # one word longer than a line: it keeps a line to itself instead of being cut
        "See https://example.org/a/very/long/path/that/does/not/fit/on/one/caption/line for details.",
    ],
)
def test_split_keeps_every_word_in_order_within_two_lines(text: str) -> None:
    captions = split_caption_text(text)
    assert [w for lines in captions for line in lines for w in line.split()] == text.split()
    for lines in captions:
        assert 1 <= len(lines) <= 2
        for line in lines:
            assert len(line) <= 42 or " " not in line, line


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="abcdefghijklmnopqrstuvwxyz,.", min_size=1, max_size=15), min_size=1, max_size=60))
def test_split_never_loses_reorders_or_overflows(words: list[str]) -> None:
    captions = split_caption_text(" ".join(words), 42, 2)
    assert [w for lines in captions for line in lines for w in line.split()] == words
    assert all(len(lines) <= 2 and all(len(line) <= 42 for line in lines) for lines in captions)


def test_split_prefers_a_clause_boundary() -> None:
    # 65 characters: one caption of two lines; the most even break would be after "and",
    # but a break four characters less even, after the comma, reads better.
    lines = split_caption_text("We will answer it with facts, and with patience and with the law.")[0]
    assert lines == ("We will answer it with facts,", "and with patience and with the law.")


def test_long_sentence_becomes_the_fewest_captions_cut_at_clauses() -> None:
    # 177 characters need three captions of two 42-character lines; the cuts fall on ":" and ",".
    assert [" ".join(lines) for lines in split_caption_text(LONG_SENTENCE)] == [
        "I ask only for what the constitution promises every citizen:",
        "an open trial before an independent judge,",
        "and for the records of every closed hearing to be published without delay.",
    ]


# --- timing ------------------------------------------------------------------------


def test_captions_follow_the_timeline_without_words() -> None:
    timeline = [{"start": 0.2, "end": 6.0, "text": LONG_SENTENCE}, {"start": 6.4, "end": 7.5, "text": "Thank you."}]
    captions = build_captions(timeline, lang="en")
    assert captions[0].start == pytest.approx(0.2)
    assert captions[-1].start == pytest.approx(6.4)
    assert captions[-1].text == "Thank you."
    _assert_ordered(captions)
    # the long sentence's captions share its span in proportion to their text
    assert 0.2 < captions[1].start < captions[2].start < 6.0


def test_recognised_onset_moves_a_caption_later_never_earlier_than_the_sentence() -> None:
    timeline = [{"start": 1.0, "end": 2.0, "text": "Hello there."}]
    late = build_captions(timeline, [Heard("Hello", 1.5, 1.8), Heard("there.", 1.8, 2.0)], lang="en")
    early = build_captions(timeline, [Heard("Hello", 0.6, 0.9), Heard("there.", 0.9, 1.2)], lang="en")
    assert late[0].start == pytest.approx(1.5 - DEFAULT_LEAD_S)
    assert early[0].start == pytest.approx(1.0)  # the synthesis knows when the sentence starts


def test_misheard_first_word_uses_the_next_heard_word() -> None:
    # "42" heard for "forty-two": the caption starts at the recogniser's word in that place.
    timeline = [{"start": 0.0, "end": 1.0, "text": "Hello."},
                {"start": 1.5, "end": 4.0, "text": "Forty-two people came."}]
    words = [Heard("Hello.", 0.1, 0.5), Heard("42", 2.0, 2.4), Heard("people", 2.5, 2.9), Heard("came.", 3.0, 3.4)]
    captions = build_captions(timeline, words, lang="en")
    assert captions[1].start == pytest.approx(2.0 - DEFAULT_LEAD_S)


def test_a_word_matched_in_the_wrong_sentence_is_ignored() -> None:
    # The recogniser missed the second sentence and heard "again" 6 s later, in another one.
    timeline = [{"start": 0.0, "end": 1.0, "text": "Hello."}, {"start": 1.4, "end": 3.0, "text": "Again we ask."},
                {"start": 9.0, "end": 10.0, "text": "Goodbye again."}]
    words = [Heard("Hello.", 0.1, 0.5), Heard("again", 9.6, 9.9)]
    captions = build_captions(timeline, words, lang="en")
    assert captions[1].start == pytest.approx(1.4)


@pytest.mark.parametrize(
    "timeline",
    [
        [{"start": 0.0, "end": 2.0, "text": "One."}, {"start": 1.0, "end": 3.0, "text": "Overlaps."}],
        [{"start": 2.0, "end": 1.0, "text": "Backwards."}],
        [{"start": 0.0, "text": "No end."}],
        [{"start": float("nan"), "end": 1.0, "text": "Not a number."}],
    ],
)
def test_bad_timelines_are_refused(timeline: list[dict]) -> None:
    with pytest.raises(InputError):
        build_captions(timeline, lang="en")


@pytest.mark.slow
def test_captions_never_run_ahead_of_recognised_speech(piper_voice: tuple[Path, Path]) -> None:
    """Each caption starts at most 0.3 s before Whisper hears its first word (issue: video clips)."""
    from pipeline.quality.asr import Transcriber

    sentences = ["Our message today is simple.", LONG_SENTENCE, "Thank you for listening."]
    audio, rate, timeline = synthesise(sentences, piper_voice)
    words = Transcriber().load().transcribe(audio, rate, word_timings=True).words
    captions = build_captions(timeline, words, lang="en")
    assert len(captions) >= 5

    cursor, window = 0, 4
    for caption in captions:
        first = _token(caption.text.split()[0])
        # the first recognised word equal to the caption's first word, just after the previous caption's words
        found = next(i for i in range(cursor, min(cursor + window, len(words))) if _token(words[i].text) == first)
        heard = words[found].start
        assert caption.start >= heard - MAX_EARLY_S, (caption, words[found])
        assert caption.start <= heard + 0.5, (caption, words[found])  # and not left trailing far behind
        cursor, window = found + 1, len(caption.text.split()) + 4
    _assert_ordered(captions)


# --- SRT and WebVTT ------------------------------------------------------------------


def test_srt_parses_numbered_and_monotonic() -> None:
    captions = build_captions(
        [{"start": 0.25, "end": 6.0, "text": LONG_SENTENCE}, {"start": 3725.5, "end": 3727.0, "text": "Late."}],
        lang="en",
    )
    cues = parse_srt(to_srt(captions))
    assert [c[0] for c in cues] == list(range(1, len(captions) + 1))
    assert [(c[1], c[2]) for c in cues] == [(pytest.approx(c.start), pytest.approx(c.end)) for c in captions]
    assert [c[3] for c in cues] == [list(c.lines) for c in captions]
    assert cues[-1][1] == pytest.approx(3725.5)  # hours are written as hours: 01:02:05,500


def test_vtt_parses_and_escapes_markup() -> None:
    captions = build_captions([{"start": 0.0, "end": 2.0, "text": "Fish & chips <b>now</b>."}], lang="en")
    text = to_vtt(captions)
    assert text.startswith("WEBVTT\n\n")
    cues = parse_vtt(text)
    assert cues[0][3] == ["Fish &amp; chips &lt;b&gt;now&lt;/b&gt;."]
    assert cues[0][1:3] == (pytest.approx(0.0), pytest.approx(captions[0].end))


def test_urdu_captions_are_marked_right_to_left() -> None:
    captions = build_captions([{"start": 0.0, "end": 5.0, "text": "Joe " + URDU_SENTENCE}], lang="ur")
    assert all(c.rtl for c in captions)
    for cue in parse_srt(to_srt(captions)) + parse_vtt(to_vtt(captions)):
        assert all(line.startswith(RLM) for line in cue[3])  # a line opening with "Joe" still reads RTL
    assert " align:center" in to_vtt(captions)
    assert "".join(parse_srt(to_srt(captions))[0][3]).replace(RLM, "").startswith("Joe")


def test_overlapping_captions_are_refused_by_the_writers() -> None:
    captions = [Caption(0.0, 2.0, ("One",)), Caption(1.0, 3.0, ("Two",))]
    with pytest.raises(InputError):
        to_srt(captions)


def test_write_captions_picks_the_format_from_the_suffix(tmp_path: Path) -> None:
    captions = build_captions([{"start": 0.0, "end": 2.0, "text": "Hello there."}], lang="en")
    srt = write_captions(captions, tmp_path / "clip.srt")
    vtt = write_captions(captions, tmp_path / "clip.vtt")
    assert srt.read_text(encoding="utf-8") == to_srt(captions)
    assert vtt.read_text(encoding="utf-8") == to_vtt(captions)
    with pytest.raises(InputError):
        write_captions(captions, tmp_path / "clip.txt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.srt", "clip.vtt"]  # no temp files left


# --- helpers ------------------------------------------------------------------------


_SRT_TIME = r"(\d\d):(\d\d):(\d\d)[,.](\d\d\d)"


def parse_srt(text: str) -> list[tuple[int, float, float, list[str]]]:
    """(number, start, end, lines) per cue; asserts the SubRip shape."""
    cues = []
    for block in text.strip("\n").split("\n\n"):
        number, span, *lines = block.split("\n")
        match = re.fullmatch(f"{_SRT_TIME} --> {_SRT_TIME}", span)
        assert match, span
        cues.append((int(number), _seconds(match.groups()[:4]), _seconds(match.groups()[4:]), lines))
    _assert_monotonic(cues)
    return cues


def parse_vtt(text: str) -> list[tuple[int, float, float, list[str]]]:
    """(number, start, end, lines) per cue; asserts the WebVTT shape."""
    header, *blocks = text.strip("\n").split("\n\n")
    assert header == "WEBVTT"
    cues = []
    for block in blocks:
        number, span, *lines = block.split("\n")
        match = re.match(f"{_SRT_TIME} --> {_SRT_TIME}( [a-z]+:[a-z0-9%]+)*$", span)
        assert match and "," not in span, span
        cues.append((int(number), _seconds(match.groups()[:4]), _seconds(match.groups()[4:8]), lines))
    _assert_monotonic(cues)
    return cues


def _seconds(parts: tuple[str, ...]) -> float:
    hours, minutes, seconds, millis = map(int, parts)
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _assert_monotonic(cues: list[tuple[int, float, float, list[str]]]) -> None:
    for previous, cue in zip(cues, cues[1:]):
        assert cue[1] >= previous[2] - 1e-9, (previous, cue)
    assert all(cue[1] < cue[2] and cue[3] for cue in cues)


def _assert_ordered(captions: list[Caption]) -> None:
    for previous, caption in zip(captions, captions[1:]):
        assert caption.start >= previous.end - 1e-9
    assert all(c.end - c.start >= 0.5 for c in captions)


def _token(word: str) -> str:
    return "".join(ch for ch in word.casefold() if ch.isalnum())
