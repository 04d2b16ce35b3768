"""`voxgate verify`: the verdict as pure logic (exhaustively), the audio match, and every verdict on real files.

The real-file tests render clips through the real pipeline (packaged Piper
voice, Perth, Whisper), release, export, re-encode and cut them with ffmpeg,
and verify what comes out.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from typer.testing import CliRunner

from conftest import DEMO_VOICE, ORG, PEOPLE, own_model_profile
from pipeline.cli.verify import verify
from pipeline.domain import Decision
from pipeline.export.formats import ExportFormat, export_clip
from pipeline.provenance.credentials import CredentialStatus
from pipeline.provenance.labels import ClipLabels
from pipeline.services import clips, review, statements
from pipeline.domain.serials import delivery_serial
from pipeline.services.auditing import audit_log
from pipeline.services.copies import payload_mark
from pipeline.services.deliveries import deliveries_of
from pipeline.services.render import render_statement
from pipeline.services.tools import Tools
from pipeline.services.users import add_user_from_keys
from pipeline.services.verify import PUBLIC_ACTOR, VerifyReport, verify_file
from pipeline.services.voices import add_voice, revoke_consent
from pipeline.services.workspace import Workspace, init_workspace, utcnow
from pipeline.store.models import ClipRow
from pipeline.verify import (
    EXIT_CODES,
    ClipFacts,
    ContentMatch,
    Evidence,
    Outcome,
    PayloadReading,
    Block,
    Trace,
    decide,
    localise,
    match_audio,
)
from pipeline.verify.match import RATE

# --- the verdict, as pure logic -----------------------------------------------------------

def content(*blocks: Block, master_s: float = 6.0) -> ContentMatch:
    """A match of one second per block; found seconds sit one after another in the master."""
    at = tuple(float(i) if b in (Block.GENUINE, Block.MIXED) else None for i, b in enumerate(blocks))
    return ContentMatch(sum(b is not Block.SILENT for b in blocks), sum(t is not None for t in at),
                        sum(b is Block.MIXED for b in blocks), blocks, at, master_s)


G, X, A, S = Block.GENUINE, Block.MIXED, Block.ABSENT, Block.SILENT
FOUND, NOT_FOUND = content(G, G, G, G, G, G), content(A, A, A, A, A, A)
REGISTERED = [None, (1, "mp3")]
CREDENTIALS = [(CredentialStatus.TRUSTED, 1), (CredentialStatus.UNTRUSTED, 1), (CredentialStatus.TAMPERED, 1),
               (CredentialStatus.ABSENT, None)]
TAGS = [None, 1]
PAYLOADS = [None, PayloadReading(None, 0.4), PayloadReading(1, 14.0)]  # not checked, nothing found, clip 1
CONTENT = [{}, {1: FOUND}, {1: NOT_FOUND}]
FACTS = [  # what the registry says about clip 1; None: no such clip
    None,
    ClipFacts(1, "draft", consent_revoked=False),
    ClipFacts(1, "superseded", consent_revoked=False),
    ClipFacts(1, "released", consent_revoked=False),
    ClipFacts(1, "revoked", consent_revoked=True),
    ClipFacts(1, "draft", consent_revoked=True),  # a leaked draft of a voice whose consent is gone: REVOKED wins
]
PRESENCE = [None, 0.0, 1.0]


def every_evidence():
    for registered, (status, claimed), tags, payload, content, facts, presence in itertools.product(
            REGISTERED, CREDENTIALS, TAGS, PAYLOADS, CONTENT, FACTS, PRESENCE):
        yield Evidence(registered_file=registered, credentials=status, credentials_clip=claimed, tags_clip=tags,
                       presence=presence, payload=payload, content=content, clips={1: facts} if facts else {})


def has_proof(e: Evidence) -> bool:
    return (e.registered_file is not None or e.credentials is CredentialStatus.TRUSTED
            or (e.payload is not None and e.payload.serial is not None) or any(m.found for m in e.content.values()))


def test_every_combination_of_evidence_gets_the_verdict_it_supports() -> None:
    """All 2×4×2×3×3×6×3 combinations against the rules, stated independently of the code."""
    seen = set()
    for e in every_evidence():
        v = decide(e)
        seen.add(v.outcome)
        facts = e.clips.get(1)
        intact = e.registered_file is not None or e.credentials is CredentialStatus.TRUSTED
        assert v.reasons, e
        if not has_proof(e):
            expected = Outcome.UNKNOWN
        elif facts is None:
            expected = Outcome.UNKNOWN  # a clip this registry does not hold
        elif facts.consent_revoked or facts.state == "revoked":
            expected = Outcome.REVOKED
        elif facts.state != "released":
            expected = Outcome.UNRELEASED
        elif intact:
            expected = Outcome.AUTHENTIC
        else:  # derived only when its seconds are shown to be the clip; a mark alone proves a fragment
            expected = Outcome.DERIVED if e.content.get(1) is FOUND else Outcome.ALTERED
        assert v.outcome is expected, (e, v)
        assert (v.clip_id is None) == (not has_proof(e)), (e, v)
    assert seen == set(Outcome)


def test_tags_and_the_presence_mark_never_change_a_verdict() -> None:
    """Both are forgeable by anyone: they are reported, never believed."""
    for e in every_evidence():
        if e.tags_clip is None and e.presence is None:
            for tags, presence in itertools.product(TAGS, PRESENCE):
                variant = Evidence(**{**vars(e), "tags_clip": tags, "presence": presence})
                assert decide(variant).outcome is decide(e).outcome, variant


def test_tags_alone_claim_a_clip_but_prove_nothing() -> None:
    v = decide(Evidence(tags_clip=1, presence=1.0, clips={1: ClipFacts(1, "released", False)}, content={1: NOT_FOUND}))
    assert v.outcome is Outcome.UNKNOWN and v.clip_id is None
    assert "claims to be clip 1 (in its metadata tags) but carries no proof" in v.reasons[0]
    assert "only 0 of its 6 audible seconds are in clip 1's master" in v.reasons[0]
    assert any("presence watermark" in r and "anyone can add" in r for r in v.reasons)


def test_a_manifest_from_someone_else_or_a_broken_one_is_only_a_claim() -> None:
    for status in (CredentialStatus.UNTRUSTED, CredentialStatus.TAMPERED):
        v = decide(Evidence(credentials=status, credentials_clip=1, clips={1: ClipFacts(1, "released", False)}))
        assert v.outcome is Outcome.UNKNOWN
        assert f"{status.value} content credentials" in v.reasons[0]


def test_a_tampered_manifest_on_matching_audio_is_derived_and_says_so() -> None:
    v = decide(Evidence(credentials=CredentialStatus.TAMPERED, credentials_clip=1,
                        credentials_problems=("assertion.dataHash.mismatch",), content={1: FOUND},
                        clips={1: ClipFacts(1, "released", False)}))
    assert v.outcome is Outcome.DERIVED and v.clip_id == 1
    assert any("changed after signing (assertion.dataHash.mismatch)" in r for r in v.reasons)


def test_the_strongest_proof_names_the_clip_and_a_conflict_is_reported() -> None:
    v = decide(Evidence(registered_file=(1, "wav"), payload=PayloadReading(2, 11.0),
                        clips={1: ClipFacts(1, "released", False), 2: ClipFacts(2, "released", False)}))
    assert v.outcome is Outcome.AUTHENTIC and v.clip_id == 1
    assert any(r.startswith("conflicting: its payload watermark names clip 2") for r in v.reasons)


def test_a_mark_naming_a_clip_this_registry_lacks_is_unknown() -> None:
    v = decide(Evidence(payload=PayloadReading(99, 12.0)))
    assert v.outcome is Outcome.UNKNOWN and v.clip_id == 99 and "not in this registry" in v.reasons[-1]


def test_a_trace_follows_the_clip_named_and_no_reason_names_the_recipient() -> None:
    dana, ravi = Trace(3, "dana", "bytes"), Trace(4, "ravi", "payload mark")
    facts = {1: ClipFacts(1, "released", False), 2: ClipFacts(2, "released", False)}
    v = decide(Evidence(registered_file=(1, "mp3"), payload=PayloadReading(1, 40.0, 3), traces=((1, dana),),
                        clips=facts))
    assert v.outcome is Outcome.AUTHENTIC and v.trace == dana
    assert any("delivery 3" in r for r in v.reasons) and not any("dana" in r for r in v.reasons)
    # A trace to another clip than the one proven is not this file's recipient.
    v = decide(Evidence(registered_file=(1, "mp3"), payload=PayloadReading(2, 40.0, 4), traces=((2, ravi),),
                        clips=facts))
    assert v.clip_id == 1 and v.trace is None
    # Two recipients' marks on one clip (copies mixed together) are both reported.
    v = decide(Evidence(payload=PayloadReading(1, 20.0, 3), traces=((1, dana), (1, Trace(4, "ravi", "bytes"))),
                        clips=facts))
    assert v.trace == dana and any(r.startswith("conflicting: it also carries delivery 4") for r in v.reasons)


def test_exit_codes_are_distinct_and_keep_1_for_errors() -> None:
    assert dict(EXIT_CODES) == {Outcome.AUTHENTIC: 0, Outcome.DERIVED: 10, Outcome.REVOKED: 11,
                                Outcome.UNRELEASED: 12, Outcome.UNKNOWN: 13, Outcome.ALTERED: 14}


RELEASED = {1: ClipFacts(1, "released", False)}
MARKED = PayloadReading(1, 30.0)


def test_two_seconds_of_a_clip_before_new_speech_is_altered_and_says_which_part_is_genuine() -> None:
    """Regression (issue 11): the mark on a 2 s fragment was taken as proof of the whole file (DERIVED)."""
    blocks = (G, G) + (A,) * 12
    v = decide(Evidence(payload=MARKED, content={1: content(*blocks, master_s=9.0)}, clips=RELEASED,
                        traces=((1, Trace(3, "dana", "payload mark")),)))
    assert v.outcome is Outcome.ALTERED and v.exit_code == 14 and v.clip_id == 1
    assert v.reasons[0] == ("seconds 0–2 come from released clip 1; the rest comes from no released clip — treat it "
                            "as a forgery built on a real clip")
    assert any(r.startswith("its genuine fragment comes from the personal copy made for one recipient (delivery 3")
               for r in v.reasons)
    assert "vouch for this file" in v.reasons[-1] and not any("dana" in r for r in v.reasons)
    assert v.timeline.bar() == "██" + "░" * 12 and v.timeline.share == 2 / 14


@pytest.mark.parametrize("blocks, outcome", [
    ((A,) + (G,) * 8 + (A,), Outcome.DERIVED),  # 80 %: the threshold itself, one second missed at each edge
    ((G,) * 8 + (A, A), Outcome.ALTERED),  # 80 %, but two seconds added after the clip ("... and vote for X")
    ((A, S, A) + (G,) * 12, Outcome.ALTERED),  # two seconds added before it, a pause between them
    ((G,) * 4 + (A,) + (G,) * 4 + (A,), Outcome.DERIVED),  # a missed second at a cut and at the end
    ((G,) * 12 + (A,) * 3, Outcome.ALTERED),  # 80 %, but three seconds in a row inserted
    ((G,) * 12 + (A, S, A, S, A), Outcome.ALTERED),  # pauses do not break an inserted run
    ((G,) * 7 + (A,) * 3, Outcome.ALTERED),  # 70 %
    ((G,) * 3 + (S,) * 6 + (A,), Outcome.ALTERED),  # silence counts for nothing: 3 of 4 audible seconds
    ((G,) * 4 + (S,) * 6, Outcome.DERIVED),  # a clip followed by silence
    ((X,) * 10, Outcome.ALTERED),  # other audio mixed over every second
    ((G,) * 9 + (X,), Outcome.DERIVED),
])
def test_derived_needs_most_of_the_audible_seconds_to_be_the_clip(blocks, outcome) -> None:
    v = decide(Evidence(payload=MARKED, content={1: content(*blocks, master_s=10.0)}, clips=RELEASED))
    assert v.outcome is outcome, v


def test_an_overlay_is_named_as_such() -> None:
    v = decide(Evidence(payload=MARKED, content={1: content(X, X, X, X, S, G)}, clips=RELEASED))
    assert v.outcome is Outcome.ALTERED
    assert v.reasons[0] == ("second 5 comes from released clip 1; seconds 0–4 are clip 1 with other audio mixed over "
                            "it — treat it as a forgery built on a real clip")


def test_seconds_out_of_the_clips_order_are_altered() -> None:
    rearranged = ContentMatch(4.0, 4.0, 0.0, (G, G, G, G), (2.0, 3.0, 0.0, 1.0), 4.0)
    assert not rearranged.in_order
    v = decide(Evidence(payload=MARKED, content={1: rearranged}, clips=RELEASED))
    assert v.outcome is Outcome.ALTERED and "re-arranged" in v.reasons[0]


def test_an_excerpt_is_derived_and_says_how_much_of_the_clip_it_covers() -> None:
    v = decide(Evidence(payload=MARKED, content={1: content(G, G, G, master_s=12.0)}, clips=RELEASED))
    assert v.outcome is Outcome.DERIVED
    assert any(r.startswith("it is an excerpt: it covers 25% of clip 1's audible seconds") for r in v.reasons)
    whole = decide(Evidence(payload=MARKED, content={1: content(*(G,) * 12, master_s=12.0)}, clips=RELEASED))
    assert not any("excerpt" in r for r in whole.reasons)


def test_the_mark_read_in_windows_vouches_where_the_waveform_cannot() -> None:
    """A time-stretched copy: the waveform is not found, the clip's mark reads in every window."""
    v = decide(Evidence(payload=MARKED, content={1: content(A, A, A, A, A, A)}, marks=(1,) * 6, clips=RELEASED))
    assert v.outcome is Outcome.DERIVED and v.timeline.by_mark == (True,) * 6
    spliced = decide(Evidence(payload=MARKED, content={1: content(A, A, A, A, A, A)}, marks=(1, 1, None, None, 2, 2),
                              clips=RELEASED))
    assert spliced.outcome is Outcome.ALTERED and spliced.reasons[0].startswith("seconds 0–2 come from released clip 1")


def test_the_mark_does_not_vouch_for_seconds_next_to_a_clip_the_waveform_follows() -> None:
    """A clip's mark, read in 4 s windows, also reads over a second or two appended to it; where the waveform
    follows the file, a second it does not find is not the clip, whatever the windows around it say."""
    v = decide(Evidence(payload=MARKED, content={1: content(*(G,) * 10, A, A, master_s=10.0)}, marks=(1,) * 12,
                        clips=RELEASED))
    assert v.outcome is Outcome.ALTERED and not any(v.timeline.by_mark), v
    assert v.reasons[0].startswith("seconds 0–10 come from released clip 1; the rest comes from no released clip")
    lone = decide(Evidence(payload=MARKED, content={1: content(*(G,) * 5, A, *(G,) * 5, master_s=11.0)},
                           marks=(1,) * 11, clips=RELEASED))  # a codec's quiet second the waveform missed
    assert lone.outcome is Outcome.DERIVED and lone.timeline.by_mark[5] and lone.timeline.share == 1.0


def test_the_files_last_part_second_is_judged_on_its_own() -> None:
    from pipeline.verify.match import BLOCK, block_starts

    assert block_starts(12 * BLOCK) == [i * BLOCK for i in range(12)]
    assert block_starts(12 * BLOCK + BLOCK // 2)[-1] == 11 * BLOCK + BLOCK // 2  # ends where the file ends
    assert block_starts(12 * BLOCK + 10) == [i * BLOCK for i in range(12)]  # a few samples of codec padding
    assert block_starts(BLOCK // 2) == []


def test_a_mark_with_no_audio_to_localise_proves_only_a_fragment() -> None:
    v = decide(Evidence(payload=MARKED, clips=RELEASED))
    assert v.outcome is Outcome.ALTERED and v.timeline is None and "could not be compared" in v.reasons[0]


def test_the_timeline_bar_and_spans() -> None:
    t = localise(1, content(G, G, S, G, A, X), (), ())
    assert t.bar() == "██·█░▒" and t.spans(G) == [(0, 4)] and t.audible_s == 5 and t.genuine_s == 3


# --- the audio match ----------------------------------------------------------------------


@pytest.mark.parametrize("audible, matched, found", [
    (6.0, 6.0, True),
    (4.0, 2.0, True),  # the smallest proof: two seconds, half the file
    (1.0, 1.0, False),  # one second could be chance
    (6.0, 2.0, False),  # a third: chance can do that in the same voice and words
    (60.0, 29.0, False),  # under half: most of the file is not ours, whatever part is
])
def test_audio_is_found_only_when_most_of_it_matches(audible, matched, found) -> None:
    assert ContentMatch(audible, matched).found is found


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


@pytest.fixture(scope="module")
def resynthesised(piper_voice, speech_clip_text) -> tuple[np.ndarray, int]:
    """The same words in the same voice, synthesised again: the closest a forger gets without the file."""
    from piper import PiperVoice
    from piper.config import SynthesisConfig

    voice = PiperVoice.load(str(piper_voice[0]), config_path=str(piper_voice[1]))
    chunks = list(voice.synthesize(speech_clip_text, SynthesisConfig(noise_scale=0.7, noise_w_scale=0.9)))
    return np.concatenate([c.audio_float_array for c in chunks]).astype(np.float32), chunks[0].sample_rate


def at_match_rate(path: Path) -> np.ndarray:
    from pipeline.export.probe import decode

    return decode(path, RATE)[0]


def mark_reads(ws: Workspace, path: Path) -> int | None:
    """The serial the workspace's payload mark reads in the file (verify skips it for a registered file)."""
    return payload_mark(ws).detect(at_match_rate(path), RATE).payload


@pytest.mark.parametrize("attack", [
    ["-c:a", "libmp3lame", "-b:a", "64k"],
    ["-ss", "1", "-c:a", "libmp3lame", "-b:a", "128k"],  # the first second cut off
    ["-af", "aselect='not(between(t,2,3))',asetpts=N/SR/TB", "-c:a", "libopus", "-b:a", "24k"],  # a second cut out
])
def test_reencoded_or_cut_audio_is_found_in_its_master(tmp_path, speech_clip, attack) -> None:
    master = tmp_path / "master.wav"
    sf.write(master, *speech_clip)
    suspect = tmp_path / ("suspect.ogg" if "libopus" in attack else "suspect.mp3")
    ffmpeg("-i", str(master), *attack, str(suspect))
    m = match_audio(at_match_rate(suspect), at_match_rate(master))
    assert m.found and m.matched_s >= m.audible_s - 1, m  # only a block that spans the cut may be missed


def test_the_same_words_synthesised_again_are_not_found(tmp_path, speech_clip, resynthesised) -> None:
    sf.write(tmp_path / "master.wav", *speech_clip)
    sf.write(tmp_path / "again.wav", *resynthesised)
    m = match_audio(at_match_rate(tmp_path / "again.wav"), at_match_rate(tmp_path / "master.wav"))
    assert not m.found and m.coverage < 0.5, m


# --- every verdict on real files ----------------------------------------------------------------


@dataclass(frozen=True)
class Registry:
    ws: Workspace
    released: int
    draft: int
    revoked: int
    exports: dict[str, Path]  # the released clip, as a distributor exports it
    draft_file: Path  # taken from the file store before audio sign-off
    revoked_file: Path
    out: Path


@pytest.fixture(scope="module")
def tools() -> Tools:
    return Tools()


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory, tools: Tools) -> Registry:
    """One released clip, one draft awaiting sign-off, one released clip whose consent was then revoked."""
    root = tmp_path_factory.mktemp("verify")
    ws, _ = init_workspace(root / "ws", ORG, now=utcnow())
    for name, role in PEOPLE.items():
        add_user_from_keys(ws, name, role, actor="ops", now=utcnow())
    add_voice(ws, DEMO_VOICE, actor="ops", now=utcnow())
    add_voice(ws, own_model_profile(root, "other"), actor="ops", now=utcnow())
    out = root / "out"
    out.mkdir()

    def render(voice: str, text: str) -> tuple[int, int]:
        sid = statements.submit(ws, voice_id=voice, purpose="public-statement", channel="social", language="en",
                                text=text, actor="sam", now=utcnow()).id
        review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
        review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
        return sid, render_statement(ws, sid, tools, actor="rita", now=utcnow()).clip_id

    sid, released = render("demo", "We ask the court to hear the case in public. Thank you for standing with us.")
    review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())  # audio sign-off releases it
    exports = {fmt: clips.export_clip(ws, released, fmt, out, actor="dana", now=utcnow()) for fmt in clips.EXTENSIONS}
    _, draft = render("demo", "Our lawyers will speak to the press on Monday morning, after the hearing.")
    with ws.sessions() as s:
        mp3 = next(f for f in s.get(ClipRow, draft).files if f.format == "mp3")
    draft_file = out / "draft.mp3"
    shutil.copy(ws.files.open_checked(mp3.sha256), draft_file)
    sid, revoked = render("other", "Please share this message with everyone who stood with us this year.")
    review.decide(ws, sid, Decision.APPROVE, actor="ravi", now=utcnow())
    revoked_dir = out / "revoked"
    revoked_dir.mkdir()
    revoked_file = clips.export_clip(ws, revoked, "mp3", revoked_dir, actor="dana", now=utcnow())
    revoke_consent(ws, "other", "the owner withdrew consent", actor="joe-delegate", now=utcnow())
    return Registry(ws, released, draft, revoked, exports, draft_file, revoked_file, out)


def check(registry: Registry, tools: Tools, path: Path) -> VerifyReport:
    return verify_file(registry.ws, path, now=utcnow(), presence=tools.presence_mark())


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["wav", "mp3", "ogg", "m4a"])
def test_a_released_export_is_authentic(registry, tools, fmt) -> None:
    report = check(registry, tools, registry.exports[fmt])
    assert report.verdict.outcome is Outcome.AUTHENTIC and report.verdict.clip_id == registry.released
    # Every format carries signed credentials: embedded, or the Ogg's sidecar exported beside it.
    assert report.credentials.status is CredentialStatus.TRUSTED and report.credentials.sidecar == (fmt == "ogg")
    # Registered byte for byte: the presence model (the slowest thing to load) is not needed, and says so.
    assert report.evidence.presence is None and report.notes["presence"].startswith("not needed")
    clip = report.clip
    assert clip.state == "released" and clip.released_at is not None and clip.text.startswith("We ask the court")
    assert {(a["reviewer"], a["stage"]) for a in clip.approvals} == {("rita", "text"), ("joe-delegate", "owner"),
                                                                   ("ravi", "audio")}
    assert all(a["signature_valid"] for a in clip.approvals)


@pytest.mark.slow
def test_the_manifest_holds_the_text_approvals_and_consent_of_the_render(registry, tools) -> None:
    """Audio sign-off comes after signing, so the manifest has text and owner approvals only (the registry has all)."""
    ours = check(registry, tools, registry.exports["wav"]).credentials.provenance
    assert [(a["reviewer"], a["stage"]) for a in ours["approvals"]] == [("rita", "text"), ("joe-delegate", "owner")]
    (dana,) = deliveries_of(registry.ws, registry.released)
    assert ours["clip"] == registry.released and ours["watermark"]["payload_serial"] == delivery_serial(dana.id)
    assert ours["voice"]["id"] == "demo" and ours["consent"]["sha256"] == ours["render"]["consent_sha256"]


@pytest.mark.slow
@pytest.mark.parametrize("name, make", [
    ("mp3-64k.mp3", lambda src, dest: ffmpeg("-i", str(src["mp3"]), "-c:a", "libmp3lame", "-b:a", "64k", str(dest))),
    ("cut-1s.mp3", lambda src, dest: ffmpeg("-ss", "1", "-i", str(src["mp3"]), str(dest))),
    ("opus-24k.ogg", lambda src, dest: ffmpeg("-i", str(src["ogg"]), "-c:a", "libopus", "-b:a", "24k", str(dest))),
    ("one-byte.wav", lambda src, dest: dest.write_bytes(flipped(src["wav"]))),
])
def test_a_reencoded_cut_or_altered_release_is_derived(registry, tools, tmp_path, name, make) -> None:
    suspect = tmp_path / name
    make(registry.exports, suspect)
    report = check(registry, tools, suspect)
    assert report.verdict.outcome is Outcome.DERIVED and report.verdict.clip_id == registry.released, report.verdict
    assert report.evidence.content[registry.released].found
    if name == "one-byte.wav":
        assert report.credentials.status is CredentialStatus.TAMPERED
        assert "assertion.dataHash.mismatch" in report.credentials.problems


@pytest.mark.slow
def test_a_draft_taken_before_audio_sign_off_is_unreleased(registry, tools) -> None:
    report = check(registry, tools, registry.draft_file)
    assert report.verdict.outcome is Outcome.UNRELEASED and report.verdict.clip_id == registry.draft
    assert report.clip.text is None  # the words of an unreleased draft are not shown to whoever holds it


@pytest.mark.slow
def test_a_clip_whose_consent_was_revoked_is_revoked_even_when_reencoded(registry, tools, tmp_path) -> None:
    assert check(registry, tools, registry.revoked_file).verdict.outcome is Outcome.REVOKED
    copy = tmp_path / "copy.mp3"
    ffmpeg("-i", str(registry.revoked_file), "-c:a", "libmp3lame", "-b:a", "64k", str(copy))
    report = check(registry, tools, copy)
    assert report.verdict.outcome is Outcome.REVOKED and report.verdict.clip_id == registry.revoked
    assert report.clip.revoked_at is not None


@pytest.mark.slow
def test_unrelated_speech_is_unknown(registry, tools, tmp_path, speech_clip) -> None:
    path = tmp_path / "unrelated.wav"
    sf.write(path, *speech_clip)
    report = check(registry, tools, path)
    assert report.verdict.outcome is Outcome.UNKNOWN and report.verdict.clip_id is None
    assert report.evidence.presence < 0.5


@pytest.mark.slow
def test_forged_tags_and_presence_mark_are_not_proof(registry, tools, tmp_path, speech_clip) -> None:
    """Someone's own synthetic speech, marked with public Perth and tagged as our released clip."""
    marked, _ = tools.presence_mark().embed_and_verify(*speech_clip)
    labels = ClipLabels(clip_id=str(registry.released), statement_id=1, voice_id="demo", voice_name="Joe Example",
                        organisation=ORG, language="en", ai_notice="AI-generated voice.",
                        created_at=utcnow().isoformat())
    forged = export_clip(marked, speech_clip[1], ExportFormat.MP3, tmp_path / "forged.mp3", labels)
    report = check(registry, tools, forged)
    assert report.verdict.outcome is Outcome.UNKNOWN and report.evidence.presence >= 0.5
    assert f"claims to be clip {registry.released} (in its metadata tags) but carries no proof" in report.verdict.reasons[0]


@pytest.mark.slow
def test_the_payload_mark_alone_names_the_clip(registry, tools, tmp_path, speech_clip) -> None:
    """Audio too altered to match the master, with no tags or credentials: the keyed mark still names the clip."""
    mark = payload_mark(registry.ws)
    path = tmp_path / "marked.wav"
    marked, _ = mark.embed_and_verify(*speech_clip, registry.released)  # the mark module's own read-back first
    sf.write(path, marked, speech_clip[1])
    report = check(registry, tools, path)
    assert report.evidence.payload.serial == registry.released
    assert report.verdict.outcome is Outcome.DERIVED and report.verdict.clip_id == registry.released


@pytest.mark.slow
def test_each_recipients_copy_names_them_even_after_a_reencode(registry, tools, tmp_path) -> None:
    ws, clip = registry.ws, registry.released
    ravi = clips.export_clip(ws, clip, "mp3", tmp_path, actor="ravi", now=utcnow())
    dana = registry.exports["mp3"]
    assert ravi.read_bytes() != dana.read_bytes()
    again = tmp_path / "again"
    again.mkdir()
    assert clips.export_clip(ws, clip, "mp3", again, actor="dana", now=utcnow()).read_bytes() == dana.read_bytes()
    ids = {d.recipient: d.id for d in deliveries_of(ws, clip)}
    assert set(ids) == {"dana", "ravi"}
    for who, path in (("dana", dana), ("ravi", ravi), ("dana", registry.exports["mp4-vertical"])):
        report = check(registry, tools, path)
        assert report.verdict.outcome is Outcome.AUTHENTIC and report.verdict.trace == Trace(ids[who], who, "bytes")
        assert report.as_dict()["traced_to"]["recipient"] == who
        # Its bytes name the copy, so verify reads no audio; the copy's own mark names the recipient too.
        assert report.evidence.payload is None and "registered file" in report.notes["payload"]
        assert mark_reads(ws, path) == delivery_serial(ids[who])
    # A leaked copy, re-encoded and cut, still names its recipient through the payload mark alone.
    leak = tmp_path / "leak.ogg"
    ffmpeg("-ss", "0.7", "-i", str(ravi), "-c:a", "libopus", "-b:a", "24k", str(leak))
    report = check(registry, tools, leak)
    assert report.verdict.outcome is Outcome.DERIVED and report.verdict.trace == Trace(ids["ravi"], "ravi",
                                                                                       "payload mark")


@pytest.mark.slow
def test_the_clips_own_files_name_the_clip_and_nobody(registry, tools, tmp_path) -> None:
    with registry.ws.sessions() as s:
        own = next(f.sha256 for f in s.get(ClipRow, registry.released).files if f.format == "wav")
    path = tmp_path / "release.wav"
    shutil.copy(registry.ws.files.open_checked(own), path)
    report = check(registry, tools, path)
    assert report.verdict.outcome is Outcome.AUTHENTIC and report.verdict.trace is None
    assert mark_reads(registry.ws, path) == registry.released  # the clip's own mark: no delivery in it


@pytest.mark.slow
def test_every_check_is_audited_anonymously_unless_a_user_is_named(registry, tools) -> None:
    report = check(registry, tools, registry.exports["mp3"])
    event = audit_log(registry.ws)[-1]
    assert (event.action, event.actor, event.subject) == ("voxgate.verify.checked", PUBLIC_ACTOR, str(registry.released))
    assert event.data == {"verdict": "AUTHENTIC", "sha256": report.sha256, "clip": registry.released,
                          "credentials": "trusted", "delivery": report.verdict.trace.delivery}
    verify_file(registry.ws, registry.exports["mp3"], now=utcnow(), actor="dana", presence=tools.presence_mark())
    assert audit_log(registry.ws)[-1].actor == "dana"


@pytest.mark.slow
def test_cli_prints_the_verdict_and_exits_with_its_code(registry) -> None:
    app = typer.Typer()
    app.command()(verify)  # the lead registers it as `voxgate verify`
    runner = CliRunner()
    home = ["--home", str(registry.ws.home)]
    result = runner.invoke(app, [str(registry.exports["m4a"]), *home, "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "AUTHENTIC" and data["clip_id"] == registry.released
    assert data["evidence"]["credentials"]["status"] == "trusted"
    result = runner.invoke(app, [str(registry.draft_file), *home])
    assert result.exit_code == 12 and f"UNRELEASED  clip {registry.draft}" in result.stdout
    assert "WITNESSED ONLY" in result.stdout  # the demo profile's consent was signed by the admin alone
    result = runner.invoke(app, [str(registry.out / "missing.mp3"), *home])
    assert result.exit_code == 1 and "is not a file" in result.stderr


def flipped(path: Path) -> bytes:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x10
    return bytes(data)


# --- forgeries built on a real clip (issue 11) ------------------------------------------------


def espeak(text: str, dest: Path) -> Path:
    """Other speech: what a forger adds to a real fragment."""
    subprocess.run(["espeak-ng", "-w", str(dest), text], check=True)
    return dest


OTHER_SPEECH = ("The trial is over and we accept the verdict of the court. We ask our supporters to stop "
                "sharing messages and to go home quietly now.")


def splice(src: Path, fake: Path, dest: Path, genuine_s: float | None, fake_s: float) -> Path:
    """The first `genuine_s` of `src` (all of it if None), then `fake_s` of `fake` (looped), as one MP3."""
    head = "" if genuine_s is None else f"atrim=0:{genuine_s},"
    ffmpeg("-i", str(src), "-stream_loop", "-1", "-i", str(fake), "-filter_complex",
           f"[0]{head}aresample=48000,aformat=channel_layouts=mono,asetpts=N/SR/TB[a];"
           f"[1]atrim=0:{fake_s},aresample=48000,aformat=channel_layouts=mono,asetpts=N/SR/TB[b];"
           "[a][b]concat=n=2:v=0:a=1", "-c:a", "libmp3lame", "-b:a", "128k", str(dest))
    return dest


@pytest.mark.slow
@pytest.mark.parametrize("genuine_s, fake_s", [
    (2.0, 12.0),  # the case: 2 s of a copy, then new speech
    (4.0, 4.0),  # half and half
])
def test_a_fragment_of_a_copy_spliced_before_other_speech_is_altered(registry, tools, tmp_path, genuine_s,
                                                                     fake_s) -> None:
    fake = espeak(OTHER_SPEECH, tmp_path / "fake.wav")
    path = splice(registry.exports["mp3"], fake, tmp_path / "splice.mp3", genuine_s, fake_s)
    report = check(registry, tools, path)
    v = report.verdict
    assert v.outcome is Outcome.ALTERED and v.exit_code == 14 and v.clip_id == registry.released, v
    assert v.reasons[0].startswith("seconds 0–") and v.reasons[0].endswith(
        f"from released clip {registry.released}; the rest comes from no released clip — treat it as a forgery "
        "built on a real clip")
    t = v.timeline
    assert t.share < 0.8 and t.seconds[0] is Block.GENUINE and t.count(Block.ABSENT) >= fake_s - 1
    # Neither the clip's words nor its sign-offs are shown as vouching for this file.
    assert report.clip.text is None and report.clip.approvals == ()
    data = report.as_dict()
    assert data["timeline"]["bar"].startswith("█") and "░" in data["timeline"]["bar"]
    if v.trace is not None:  # the recipient is named only as the source of the genuine fragment
        assert data["traced_to"]["of"] == "the genuine fragment" and v.trace.recipient == "dana"


@pytest.mark.slow
@pytest.mark.parametrize("tail_s", [1.2, 2.0])
def test_a_copy_with_a_short_tail_of_other_speech_after_it_is_altered(registry, tools, tmp_path, tail_s) -> None:
    """Regression: a released copy with a second or two of other speech appended ("... and vote for X") was
    DERIVED: 86 % of it is genuine, the tail fell partly in the file's last part-second that no block judged,
    and the clip's mark, read in 4 s windows, vouched for the seconds next to it."""
    fake = espeak(OTHER_SPEECH, tmp_path / "fake.wav")
    report = check(registry, tools, splice(registry.exports["mp3"], fake, tmp_path / "tail.mp3", None, tail_s))
    v = report.verdict
    assert v.outcome is Outcome.ALTERED and v.clip_id == registry.released, v
    assert v.reasons[0].endswith("the rest comes from no released clip — treat it as a forgery built on a real clip")
    assert v.timeline.seconds[-1] is Block.ABSENT and not any(v.timeline.by_mark)


@pytest.mark.slow
@pytest.mark.parametrize("codec", [["-c:a", "libmp3lame", "-b:a", "128k"], ["-c:a", "libopus", "-b:a", "24k"]])
def test_other_speech_mixed_over_a_released_clip_at_minus_12_db_is_altered(registry, tools, tmp_path, codec) -> None:
    """Regression (issue 11): correlation stays ≈ 0.97 under a -12 dB overlay; the residual does not."""
    from pipeline.audio.loudness import measure

    speech, rate = sf.read(espeak(OTHER_SPEECH, tmp_path / "fake.wav"), dtype="float32")
    clip, clip_rate = sf.read(registry.exports["wav"], dtype="float32")
    # 12 dB under the clip's integrated loudness, measured the same way for both
    gain = 10 ** ((measure(clip, clip_rate).integrated_lufs - 12 - measure(speech, rate).integrated_lufs) / 20)
    sf.write(tmp_path / "under.wav", speech * gain, rate)
    fake = tmp_path / "under.wav"
    path = tmp_path / ("overlay.ogg" if "libopus" in codec else "overlay.mp3")
    ffmpeg("-i", str(registry.exports["mp3"]), "-stream_loop", "-1", "-i", str(fake), "-filter_complex",
           "[1]aresample=48000,aformat=channel_layouts=mono[f];"
           "[0]aformat=channel_layouts=mono[c];[c][f]amix=inputs=2:duration=first:normalize=0", *codec, str(path))
    report = check(registry, tools, path)
    v = report.verdict
    assert v.outcome is Outcome.ALTERED and v.clip_id == registry.released, v
    assert "with other audio mixed over it" in v.reasons[0] and v.timeline.count(Block.MIXED) >= 3


@pytest.mark.slow
def test_a_plain_reencode_is_derived_and_wholly_genuine(registry, tools, tmp_path) -> None:
    path = tmp_path / "reencode.ogg"
    ffmpeg("-i", str(registry.exports["wav"]), "-c:a", "libopus", "-b:a", "24k", str(path))
    report = check(registry, tools, path)
    v = report.verdict
    assert v.outcome is Outcome.DERIVED and v.timeline.share == 1.0 and v.timeline.in_order, (
        v.timeline.bar(), report.evidence.marks, report.evidence.content[v.clip_id].at)
    assert not any("excerpt" in r for r in v.reasons) and v.timeline.count(Block.MIXED) == 0


@pytest.mark.slow
def test_a_three_second_excerpt_is_derived_and_called_an_excerpt(registry, tools, tmp_path) -> None:
    path = tmp_path / "excerpt.mp3"
    ffmpeg("-ss", "3", "-t", "3", "-i", str(registry.exports["mp3"]), str(path))  # keeps the tags: they name the clip
    v = check(registry, tools, path).verdict
    assert v.outcome is Outcome.DERIVED and v.clip_id == registry.released, v
    assert any(r.startswith("it is an excerpt: it covers") for r in v.reasons)


@pytest.mark.slow
def test_cli_prints_the_map_of_an_altered_file_and_exits_14(registry, tmp_path) -> None:
    fake = espeak(OTHER_SPEECH, tmp_path / "fake.wav")
    path = splice(registry.exports["mp3"], fake, tmp_path / "splice.mp3", 2.0, 12.0)
    app = typer.Typer()
    app.command()(verify)
    result = CliRunner().invoke(app, [str(path), "--home", str(registry.ws.home)])
    assert result.exit_code == 14, result.output
    assert "██░░░░" in result.stdout and "█ genuine" in result.stdout and "ALTERED" in result.stdout
    assert "not shown: they vouch for the clip, not for this file" in result.stdout
    assert "We ask the court" not in result.stdout
    data = json.loads(CliRunner().invoke(app, [str(path), "--home", str(registry.ws.home), "--json"]).stdout)
    assert data["verdict"] == "ALTERED" and data["exit_code"] == 14 and data["version"] == 2
    assert data["timeline"]["seconds"][:2] == ["genuine", "genuine"] and data["clip"]["approvals"] == []
    # English reasons for scripts, as always; the same reasons as message keys for any language (issue 13)
    from pipeline.i18n.messages import Message

    assert [Message.from_dict(k).text("en") for k in data["reason_keys"]] == data["reasons"]
    assert "from released clip" in data["reasons"][0] and data["reason_keys"][0]["key"] == "reason.altered.forgery"


# --- the public registry and its mirrors (issue 11) ---------------------------------------------


@pytest.mark.slow
def test_a_mirror_verifies_the_workspaces_files_alone_and_refuses_an_edit_or_another_key(registry, tmp_path) -> None:
    from pipeline.services.registry import export_registry

    head = export_registry(registry.ws, tmp_path / "published", now=utcnow())
    mirror = tmp_path / "mirror"
    shutil.copytree(tmp_path / "published", mirror)  # anyone's copy, on a machine without the workspace
    app = typer.Typer()
    app.command()(verify)
    runner = CliRunner()
    nowhere = ["--home", str(tmp_path / "no-workspace-here")]  # never opened: a mirror needs no workspace

    def check_offline(path: Path, key: str = head["fingerprint"]):
        return runner.invoke(app, [str(path), *nowhere, "--registry", str(mirror), "--registry-key", key, "--json"])

    result = check_offline(registry.exports["mp3"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "AUTHENTIC" and data["clip_id"] == registry.released
    assert data["notes"]["payload"].startswith("needs the publisher") and "delivery" in data["notes"]["copy"]
    assert "dana" not in result.stdout
    assert check_offline(registry.revoked_file).exit_code == 11  # revoked, from the consent's revocation event
    reencoded = tmp_path / "reencoded.mp3"
    ffmpeg("-i", str(registry.exports["mp3"]), "-c:a", "libmp3lame", "-b:a", "64k", str(reencoded))
    assert check_offline(reencoded).exit_code == 13  # the mark and the waveform need the publisher, and it says so
    assert not (tmp_path / "no-workspace-here").exists()

    other = check_offline(registry.exports["mp3"], key="0000-1111-2222-3333")
    assert other.exit_code == 1 and "refused" in other.stderr and head["fingerprint"] in other.stderr
    entries = mirror / "entries.jsonl"
    lines = entries.read_text().splitlines()
    edited = next(i for i, line in enumerate(lines) if '"kind":"revoked"' in line)
    lines[edited] = lines[edited].replace(f"[{registry.revoked}]", "[]")  # hide a revocation
    entries.write_text("\n".join(lines) + "\n")
    refused = check_offline(registry.revoked_file)
    assert refused.exit_code == 1 and "do not match their signed head" in refused.stderr
    missing = runner.invoke(app, [str(registry.revoked_file), *nowhere, "--registry", str(mirror)])
    assert missing.exit_code == 1 and "--registry-key" in missing.stderr
