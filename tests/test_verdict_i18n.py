"""The verdict's reasons as catalogue messages: every key in English and Urdu, Urdu free of English (issue 13).

`voxgate verify --json` keeps its English `reasons`; `reason_keys` carries the same messages, which the
public verify page renders in the reader's language. The browser side is in test_portal_browser.py.
"""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest
from test_verify import FOUND, G, A, S, X, content, every_evidence

from pipeline.domain.clips import ClipState
from pipeline.i18n import LANGUAGES, catalogue
from pipeline.i18n.messages import JOINS, Listing, Message, msg
from pipeline.provenance.credentials import CredentialStatus
from pipeline.verify import ClipFacts, Evidence, Outcome, PayloadReading, Trace, decide

VERDICT_SOURCE = Path(__file__).resolve().parents[1] / "pipeline" / "verify" / "verdict.py"
#: Families of keys the verdict builds from a value (`f"clip_state.{state}"`), with every value it can take.
FAMILIES = {
    "clip_state": [s.value for s in ClipState],
    "credentials.status": [s.value for s in CredentialStatus],
    "trace.by": ["bytes", "payload_mark"],
    "reason.altered.genuine": ["one", "many"],
    "reason.altered.mixed": ["one", "many"],
}
REASON_PREFIXES = ("reason.", "check.", "claim.", "list.", *(f"{family}." for family in FAMILIES))
LATIN_WORD = re.compile(r"[A-Za-z]{2,}")


def fields_of(text: str) -> set[tuple[str, str]]:
    """The placeholders of a catalogue text with their format specs: {share:.0%} → ("share", ".0%")."""
    return {(name, spec or "") for _, name, spec, _ in string.Formatter().parse(text) if name is not None}


def keys_named_in_the_verdict() -> set[str]:
    source = VERDICT_SOURCE.read_text(encoding="utf-8")
    literal = set(re.findall(r'msg\(\s*"([a-z_.]+)"', source))
    literal |= set(re.findall(r'"(reason\.[a-z_.]+)" if .*? else "(reason\.[a-z_.]+)"', source)[0])
    return literal | {f"{family}.{value}" for family, values in FAMILIES.items() for value in values} | {
        key for pair in JOINS.values() for key in pair}


def test_every_reason_key_is_in_both_catalogues_with_the_same_placeholders() -> None:
    named = keys_named_in_the_verdict()
    assert {"reason.no_proof", "reason.derived.share", "reason.trace.file", "reason.trace.fragment"} <= named
    for lang in LANGUAGES:
        assert not named - set(catalogue(lang)), f"{lang}: missing {sorted(named - set(catalogue(lang)))}"
    reason_keys = {k for k in catalogue("en") if k.startswith(REASON_PREFIXES)}
    assert reason_keys == {k for k in catalogue("ur") if k.startswith(REASON_PREFIXES)}
    for key in reason_keys:
        english, urdu = catalogue("en")[key], catalogue("ur")[key]
        assert fields_of(english) == fields_of(urdu), key  # same names and the same number formats
        if not key.startswith("list."):
            prose = re.sub(r"{[^}]*}", "", urdu)  # the placeholders are names, not text a reader sees
            assert not LATIN_WORD.search(prose), f"{key}: {urdu}"  # written in Urdu, not left in English


def extra_evidence():
    """Timelines, traces and conflicts that `every_evidence` does not reach."""
    released = {1: ClipFacts(1, "released", consent_revoked=False), 2: ClipFacts(2, "released", False)}
    marked = PayloadReading(1, 9.0)
    yield Evidence(payload=marked, content={1: content(G, G, A, A, A, A, A, A)}, clips=released)  # spliced
    yield Evidence(payload=marked, content={1: content(G, X, X, X, X, G)}, clips=released)  # overlay
    yield Evidence(payload=marked, content={1: content(G, S, A, A, A, G)}, clips=released)  # genuine seconds apart
    out_of_order = content(G, G, G, G, G, G)
    yield Evidence(payload=marked, content={1: type(out_of_order)(6, 6, 0, out_of_order.blocks,
                                                                  (5.0, 4.0, 3.0, 2.0, 1.0, 0.0), 6.0)},
                   clips=released)
    yield Evidence(payload=marked, content={1: content(A, A, A, A, A, A)}, clips=released)  # the mark, no audio found
    yield Evidence(payload=marked, clips=released, silent=(False,) * 6, marks=(1,) * 6)  # the mark alone vouches
    yield Evidence(payload=marked, clips=released)  # nothing to localise
    yield Evidence(payload=marked, content={1: content(G, G, G, master_s=30.0)}, clips=released)  # an excerpt
    yield Evidence(payload=PayloadReading(1, 9.0, delivery=4), content={1: FOUND}, clips=released,
                   traces=((1, Trace(4, "dana", "payload mark")), (1, Trace(5, "eve", "bytes"))))
    yield Evidence(payload=PayloadReading(1, 9.0, delivery=4), content={1: content(G, G, A, A, A, A, A)},
                   clips=released, traces=((1, Trace(4, "dana", "payload mark")),))
    yield Evidence(payload=marked, content={2: FOUND}, tags_clip=2, clips=released)  # a conflict
    yield Evidence(registered_file=(1, "premaster"), clips=released)
    yield Evidence(payload=marked, content={1: FOUND}, credentials=CredentialStatus.TAMPERED, credentials_clip=1,
                   credentials_problems=("assertion.dataHash.mismatch",), clips=released)
    yield Evidence(credentials=CredentialStatus.UNTRUSTED, credentials_signer="Someone Else Ltd", tags_clip=3)
    yield Evidence(payload=marked, clips={1: ClipFacts(1, "failed", consent_revoked=False)})


def string_params(m: Message | Listing) -> set[str]:
    """The codes and names a message quotes as they are (a format name, a c2pa code, a signer)."""
    found: set[str] = set()
    for value in (m.items if isinstance(m, Listing) else [v for _, v in m.params]):
        if isinstance(value, (Message, Listing)):
            found |= string_params(value)
        elif isinstance(value, str):
            found.add(value)
    return found


def test_every_verdict_reads_in_urdu_without_english_and_in_english_as_before() -> None:
    outcomes = set()
    for e in [*every_evidence(), *extra_evidence()]:
        v = decide(e)
        outcomes.add(v.outcome)
        assert len(v.reasons) == len(v.messages) and all(v.reasons)
        for m, english, urdu in zip(v.messages, v.reasons, v.reasons_in("ur")):
            assert Message.from_dict(m.to_dict()) == m and m.to_dict() == Message.from_dict(m.to_dict()).to_dict()
            assert Message.from_dict(m.to_dict()).text("en") == english
            quoted = " ".join(string_params(m))
            stray = [w for w in LATIN_WORD.findall(urdu) if w not in quoted]
            assert not stray, f"{english!r} in Urdu still says {stray}: {urdu!r}"
            assert urdu != english
    assert outcomes == set(Outcome)


@pytest.mark.parametrize(
    ("message", "english", "urdu"),
    [
        (msg("reason.revoked", clip=7), "the consent for clip 7's voice was revoked: it must no longer be used",
         "کلپ 7 کی آواز کی رضامندی واپس لے لی گئی ہے: اسے اب استعمال نہیں کیا جانا چاہیے"),
        # a list of spans joined the language's way, and a format spec applied to the number in both
        (msg("reason.altered.genuine.many", spans=Listing(("0–2", "5", "9–12")), clip=1),
         "seconds 0–2, 5 and 9–12 come from released clip 1", "سیکنڈ 0–2، 5 اور 9–12 جاری شدہ کلپ 1 سے آئے ہیں"),
        (msg("reason.proof.payload", clip=3, confidence=14.04),
         "its payload watermark names clip 3 (confidence 14.0)",
         "اس کا پے لوڈ واٹرمارک کلپ 3 کی نشاندہی کرتا ہے (اعتماد 14.0)"),
    ],
)
def test_a_message_renders_in_each_language(message, english, urdu) -> None:
    assert message.text("en") == english and message.text("ur") == urdu


def test_a_listing_refuses_an_unknown_join() -> None:
    with pytest.raises(ValueError, match="unknown join"):
        Listing(("a",), "or")
