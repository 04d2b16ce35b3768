"""From what a file carries to one verdict about it: pure logic, no I/O.

Only four things prove that a file's audio comes from a registered clip:

1. its bytes are exactly those of a registered file (sha256);
2. its content credentials validate against this workspace's own
   certificates and the audio still matches them;
3. the keyed payload watermark, which only the workspace secret can write;
4. its audio is found in the clip's registered master (`match.py`).

1 and 2 also prove that nothing changed. Everything else is a claim: tags,
a manifest signed by someone else, a manifest whose audio no longer matches
it (ours could have been copied into another file), and the presence
watermark (Perth's model is public, so anyone can add it). Claims are shown,
never believed: on their own they give UNKNOWN.

Which clip a file is: the strongest proof wins (in the order above). A
weaker proof that names another clip is reported, never silently dropped.

3 and 4 prove only that *some* of the file is the clip. So a file that is
not proven whole by 1 or 2 is localised second by second (`timeline.py`):
DERIVED needs most of its audible audio to be the clip, in order; a splice
or an overlay built on a fragment of a released clip is ALTERED, and then
the clip's text and approvals are not shown as vouching for it (issue 11).

Each reason is a catalogue message (`pipeline.i18n.messages`): `Verdict.reasons` reads them in
English, as `voxgate verify` always printed them; the public page reads them in Urdu too (issue 13).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from types import MappingProxyType
from typing import Final

from pipeline.i18n.messages import Listing, Message, msg
from pipeline.provenance.credentials import CredentialStatus
from pipeline.verify.match import Block, ContentMatch
from pipeline.verify.timeline import EXCERPT_BELOW, Timeline, localise

#: The format name of a clip's premaster among registered files: kept in the workspace, never handed out.
PREMASTER_FORMAT: Final = "premaster"

#: At or above this Perth score a file counts as carrying the presence mark (the detector's own rounding point).
PRESENCE_THRESHOLD: Final = 0.5


class Outcome(str, Enum):
    AUTHENTIC = "AUTHENTIC"  # a released clip, unchanged
    DERIVED = "DERIVED"  # made from a released clip: re-encoded or cut, and most of it is the clip, in order
    ALTERED = "ALTERED"  # a released clip's audio is in it, but most of it is not the clip (a splice, an overlay)
    REVOKED = "REVOKED"  # made from a clip whose voice's consent was revoked
    UNRELEASED = "UNRELEASED"  # made from a clip that was never released: a leaked draft
    UNKNOWN = "UNKNOWN"  # nothing proves it comes from this registry

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self]


#: `voxgate verify`'s exit status for each verdict; 1 stays "the check itself failed".
EXIT_CODES: Final = MappingProxyType({
    Outcome.AUTHENTIC: 0, Outcome.DERIVED: 10, Outcome.REVOKED: 11, Outcome.UNRELEASED: 12, Outcome.UNKNOWN: 13,
    Outcome.ALTERED: 14,
})


@dataclass(frozen=True)
class ClipFacts:
    """What the registry says about one clip."""

    clip_id: int
    state: str  # rendering | draft | released | revoked | superseded | failed
    consent_revoked: bool
    released_at: datetime | None = None


@dataclass(frozen=True)
class PayloadReading:
    serial: int | None  # the clip the mark names; None: no mark of ours (or a copy the registry lacks)
    confidence: float
    delivery: int | None = None  # set when the mark is a recipient's copy (pipeline.domain.serials)


@dataclass(frozen=True)
class Trace:
    """Whose copy a file is: the delivery, its recipient, and what showed it."""

    delivery: int
    recipient: str
    by: str  # "bytes" (a registered copy, unchanged) or "payload mark"


@dataclass(frozen=True)
class Evidence:
    """Everything gathered about one file; None means "not available", not "absent"."""

    registered_file: tuple[int, str] | None = None  # (clip, format) of a registered file with these very bytes
    traces: tuple[tuple[int, Trace], ...] = ()  # (clip, whose copy) from the bytes and from the payload mark
    credentials: CredentialStatus = CredentialStatus.ABSENT
    credentials_clip: int | None = None  # the clip the manifest names, whatever its status
    credentials_signer: str = ""
    credentials_problems: tuple[str, ...] = ()
    tags_clip: int | None = None  # the clip the metadata tags name
    presence: float | None = None  # Perth score; None when it could not be measured
    payload: PayloadReading | None = None  # None when the detector could not run
    content: Mapping[int, ContentMatch] = field(default_factory=dict)  # claimed clip → its master vs this audio
    marks: tuple[int | None, ...] = ()  # per second: the clip whose payload mark reads around it (where read)
    silent: tuple[bool, ...] = ()  # per second: too quiet to judge; empty when the audio was not decoded
    clips: Mapping[int, ClipFacts] = field(default_factory=dict)  # every clip named above that the registry holds


@dataclass(frozen=True)
class Verdict:
    outcome: Outcome
    clip_id: int | None
    #: Why, as catalogue messages (`pipeline/i18n/*.json`): the public page reads them in its language.
    messages: tuple[Message, ...]
    #: The recipient whose copy this is. Reasons never name them: a public check must not expose a
    #: distributor, so only the workspace's own `voxgate verify` shows this.
    trace: Trace | None = None
    #: Which seconds of the file come from the clip; None when its bytes or credentials prove it whole.
    timeline: Timeline | None = None

    @property
    def reasons(self) -> tuple[str, ...]:
        """The reasons in English, as `voxgate verify` prints them and `--json` has always carried them."""
        return tuple(m.text("en") for m in self.messages)

    def reasons_in(self, lang: str) -> tuple[str, ...]:
        return tuple(m.text(lang) for m in self.messages)

    @property
    def exit_code(self) -> int:
        return self.outcome.exit_code


def decide(e: Evidence) -> Verdict:
    """The one verdict the evidence supports, with the reasons in the order they matter."""
    proofs = _proofs(e)
    if not proofs:
        return Verdict(Outcome.UNKNOWN, None, _without_proof(e))
    clip_id = proofs[0][0]
    intact = (e.registered_file is not None and e.registered_file[0] == clip_id) or (
        e.credentials is CredentialStatus.TRUSTED and e.credentials_clip == clip_id)
    timeline = None if intact else localise(clip_id, e.content.get(clip_id), e.marks, e.silent)
    facts = e.clips.get(clip_id)
    released = facts is not None and facts.state == "released" and not facts.consent_revoked
    altered = released and not intact and (timeline is None or not timeline.derived)
    trace = next((t for clip, t in e.traces if clip == clip_id), None)
    reasons = [_altered(clip_id, timeline)] if altered else []
    reasons += [why for clip, why in proofs if clip == clip_id]
    if trace is not None:
        reasons.append(msg("reason.trace.fragment" if altered else "reason.trace.file", delivery=trace.delivery,
                           by=msg(f"trace.by.{trace.by.replace(' ', '_')}")))
        others = {t.delivery for clip, t in e.traces if clip == clip_id} - {trace.delivery}
        reasons += [msg("reason.conflicting_delivery", delivery=d) for d in sorted(others)]
    reasons += [msg("reason.conflicting", why=why) for clip, why in proofs if clip != clip_id]
    if not intact:
        reasons.append(_credentials_note(e))
    reasons += [msg("reason.claims_other_clip", where=where, clip=clip) for clip, where in _claims(e).items()
                if clip != clip_id]
    if facts is None:
        reasons.append(msg("reason.not_in_registry", clip=clip_id))
        return Verdict(Outcome.UNKNOWN, clip_id, tuple(reasons), trace, timeline)
    if facts.consent_revoked or facts.state == "revoked":
        reasons.append(msg("reason.revoked", clip=clip_id))
        return Verdict(Outcome.REVOKED, clip_id, tuple(reasons), trace, timeline)
    if facts.state != "released":
        reasons.append(msg("reason.never_released", clip=clip_id, state=msg(f"clip_state.{facts.state}")))
        return Verdict(Outcome.UNRELEASED, clip_id, tuple(reasons), trace, timeline)
    if e.registered_file == (clip_id, PREMASTER_FORMAT):
        reasons.append(msg("reason.premaster_leaked", clip=clip_id))
        return Verdict(Outcome.UNRELEASED, clip_id, tuple(reasons), trace, timeline)
    if intact:
        return Verdict(Outcome.AUTHENTIC, clip_id, tuple(reasons), trace)
    if altered:
        reasons.append(msg("reason.altered.no_vouch", clip=clip_id))
        return Verdict(Outcome.ALTERED, clip_id, tuple(reasons), trace, timeline)
    if any(timeline.by_mark):
        reasons.append(msg("reason.derived.share_by_mark", genuine=timeline.genuine_s, audible=timeline.audible_s,
                           share=timeline.share, clip=clip_id, marked=sum(timeline.by_mark)))
    else:
        reasons.append(msg("reason.derived.share", genuine=timeline.genuine_s, audible=timeline.audible_s,
                           share=timeline.share, clip=clip_id))
    if timeline.clip_covered is not None and timeline.clip_covered < EXCERPT_BELOW:
        reasons.append(msg("reason.derived.excerpt", covered=timeline.clip_covered, clip=clip_id))
    reasons.append(msg("reason.derived.reencoded", clip=clip_id))
    return Verdict(Outcome.DERIVED, clip_id, tuple(reasons), trace, timeline)


def _seconds(key: str, spans: list[tuple[int, int]], clip_id: int) -> Message:
    """'second 4 is …', 'seconds 0–2 and 9–12 are …': `key` + `.one` or `.many`, the spans as a list."""
    one = len(spans) == 1 and spans[0][1] - spans[0][0] == 1
    listed = Listing(tuple(f"{a}–{b}" if b - a > 1 else f"{a}" for a, b in spans))
    return msg(f"{key}.{'one' if one else 'many'}", spans=listed, clip=clip_id)


def _altered(clip_id: int, t: Timeline | None) -> Message:
    """What is genuine in a file that is mostly not the clip, said plainly."""
    if t is None:
        return msg("reason.altered.no_timeline", clip=clip_id)
    parts: list[Message] = []
    if genuine := t.spans(Block.GENUINE):
        parts.append(_seconds("reason.altered.genuine", genuine, clip_id))
    if mixed := t.spans(Block.MIXED):
        parts.append(_seconds("reason.altered.mixed", mixed, clip_id))
    if t.count(Block.ABSENT):
        parts.append(msg("reason.altered.rest_absent") if parts else msg("reason.altered.none_found", clip=clip_id))
    if not t.in_order:
        parts.append(msg("reason.altered.rearranged", clip=clip_id))
    return msg("reason.altered.forgery", parts=Listing(tuple(parts), "semicolon"))


def _proofs(e: Evidence) -> list[tuple[int, Message]]:
    """(clip, why) for every proof the file carries, strongest first."""
    proofs = []
    if e.registered_file is not None:
        clip, fmt = e.registered_file
        proofs.append((clip, msg("reason.proof.premaster", clip=clip) if fmt == PREMASTER_FORMAT else
                       msg("reason.proof.bytes", format=fmt, clip=clip)))
    if e.credentials is CredentialStatus.TRUSTED and e.credentials_clip is not None:
        proofs.append((e.credentials_clip, msg("reason.proof.credentials", clip=e.credentials_clip)))
    if e.payload is not None and e.payload.serial is not None:
        proofs.append((e.payload.serial, msg("reason.proof.payload", clip=e.payload.serial,
                                             confidence=e.payload.confidence)))
    for clip, m in sorted(e.content.items(), key=lambda item: -item[1].matched_s):
        if m.found:
            proofs.append((clip, msg("reason.proof.content", matched_s=m.matched_s, coverage=m.coverage, clip=clip)))
    return proofs


def _credentials_note(e: Evidence) -> Message:
    match e.credentials:
        case CredentialStatus.TAMPERED:
            if e.credentials_problems:  # c2pa failure codes: shown as they are, in every language
                return msg("reason.credentials.tampered_problems",
                           problems=Listing(tuple(e.credentials_problems), "comma"))
            return msg("reason.credentials.tampered")
        case CredentialStatus.UNTRUSTED:
            if e.credentials_signer:
                return msg("reason.credentials.untrusted", signer=e.credentials_signer)
            return msg("reason.credentials.untrusted_unknown")
        case CredentialStatus.TRUSTED:
            if e.credentials_clip is None:
                return msg("reason.credentials.trusted_no_clip")
            return msg("reason.credentials.trusted_other_clip", clip=e.credentials_clip)
        case CredentialStatus.ABSENT:
            return msg("reason.credentials.absent")


def _without_proof(e: Evidence) -> tuple[Message, ...]:
    """Why nothing links the file to a clip, naming every claim it makes."""
    reasons = []
    for clip, where in _claims(e).items():
        if clip not in e.clips:
            check = msg("check.not_registered")
        elif clip in e.content:
            m = e.content[clip]
            check = msg("check.partial", matched_s=m.matched_s, audible_s=m.audible_s, clip=clip)
        else:
            check = msg("check.not_compared")
        reasons.append(msg("reason.claim_unproven", clip=clip, where=where, check=check))
    if e.credentials is not CredentialStatus.ABSENT and e.credentials_clip is None:
        reasons.append(_credentials_note(e))
    if e.presence is not None and e.presence >= PRESENCE_THRESHOLD:
        reasons.append(msg("reason.presence", score=e.presence))
    if e.payload is not None and e.payload.serial is None:
        reasons.append(msg("reason.no_payload"))
    return (*reasons, msg("reason.no_proof"))


def _claims(e: Evidence) -> dict[int, Listing]:
    """Clips the file says it is, and where it says so."""
    claims: dict[int, list[Message]] = {}
    if e.tags_clip is not None:
        claims.setdefault(e.tags_clip, []).append(msg("claim.tags"))
    if e.credentials_clip is not None:
        claims.setdefault(e.credentials_clip, []).append(
            msg("claim.credentials", status=msg(f"credentials.status.{e.credentials.value}")))
    return {clip: Listing(tuple(where)) for clip, where in claims.items()}
