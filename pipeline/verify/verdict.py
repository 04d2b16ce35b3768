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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from types import MappingProxyType
from typing import Final

from pipeline.provenance.credentials import CredentialStatus
from pipeline.verify.match import Block, ContentMatch
from pipeline.verify.timeline import EXCERPT_BELOW, Timeline, localise, seconds_text

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
    reasons: tuple[str, ...]
    #: The recipient whose copy this is. Reasons never name them: a public check must not expose a
    #: distributor, so only the workspace's own `voxgate verify` shows this.
    trace: Trace | None = None
    #: Which seconds of the file come from the clip; None when its bytes or credentials prove it whole.
    timeline: Timeline | None = None

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
        whose = "its genuine fragment comes from" if altered else "it is"
        reasons.append(f"{whose} the personal copy made for one recipient (delivery {trace.delivery}, shown by its "
                       f"{trace.by}), so it can be traced to whoever it was handed to")
        others = {t.delivery for clip, t in e.traces if clip == clip_id} - {trace.delivery}
        reasons += [f"conflicting: it also carries delivery {d}'s mark" for d in sorted(others)]
    reasons += [f"conflicting: {why}" for clip, why in proofs if clip != clip_id]
    if not intact:
        reasons.append(_credentials_note(e))
    reasons += [f"its {' and '.join(where)} claim clip {clip} instead" for clip, where in _claims(e).items()
                if clip != clip_id]
    if facts is None:
        reasons.append(f"clip {clip_id} is not in this registry: it may come from another voxgate workspace")
        return Verdict(Outcome.UNKNOWN, clip_id, tuple(reasons), trace, timeline)
    if facts.consent_revoked or facts.state == "revoked":
        reasons.append(f"the consent for clip {clip_id}'s voice was revoked: it must no longer be used")
        return Verdict(Outcome.REVOKED, clip_id, tuple(reasons), trace, timeline)
    if facts.state != "released":
        reasons.append(f"clip {clip_id} was never released (it is {facts.state}): a leaked draft or discarded take")
        return Verdict(Outcome.UNRELEASED, clip_id, tuple(reasons), trace, timeline)
    if e.registered_file == (clip_id, PREMASTER_FORMAT):
        reasons.append(f"the premaster of clip {clip_id} is kept inside the workspace and never handed out: "
                       "this copy leaked from the workspace")
        return Verdict(Outcome.UNRELEASED, clip_id, tuple(reasons), trace, timeline)
    if intact:
        return Verdict(Outcome.AUTHENTIC, clip_id, tuple(reasons), trace)
    if altered:
        reasons.append(f"neither clip {clip_id}'s approved text nor its approvals vouch for this file")
        return Verdict(Outcome.ALTERED, clip_id, tuple(reasons), trace, timeline)
    by_mark = (f" ({sum(timeline.by_mark)} shown by the payload mark where the waveform no longer matches)"
               if any(timeline.by_mark) else "")
    reasons.append(f"{timeline.genuine_s} of its {timeline.audible_s} audible seconds ({timeline.share:.0%}) come "
                   f"from clip {clip_id}, in order{by_mark}")
    if timeline.clip_covered is not None and timeline.clip_covered < EXCERPT_BELOW:
        reasons.append(f"it is an excerpt: it covers {timeline.clip_covered:.0%} of clip {clip_id}'s audible "
                       "seconds, so words of the clip are left out")
    reasons.append(f"the file is not clip {clip_id} as released: it was re-encoded or cut")
    return Verdict(Outcome.DERIVED, clip_id, tuple(reasons), trace, timeline)


def _altered(clip_id: int, t: Timeline | None) -> str:
    """What is genuine in a file that is mostly not the clip, said plainly."""
    if t is None:
        return (f"it carries clip {clip_id}'s mark, but its audio could not be compared second by second, so "
                "nothing shows that more than a fragment is genuine — treat it as a forgery built on a real clip")
    parts = []
    if genuine := t.spans(Block.GENUINE):
        parts.append(f"{seconds_text(genuine, ('comes', 'come'))} from released clip {clip_id}")
    if mixed := t.spans(Block.MIXED):
        parts.append(f"{seconds_text(mixed)} clip {clip_id} with other audio mixed over it")
    if t.count(Block.ABSENT):
        parts.append("the rest comes from no released clip" if parts else
                     f"none of its audio is found in clip {clip_id}")
    if not t.in_order:
        parts.append(f"its genuine seconds are not in clip {clip_id}'s order: it was re-arranged")
    return "; ".join(parts) + " — treat it as a forgery built on a real clip"


def _proofs(e: Evidence) -> list[tuple[int, str]]:
    """(clip, why) for every proof the file carries, strongest first."""
    proofs = []
    if e.registered_file is not None:
        clip, fmt = e.registered_file
        what = "the premaster (before any recipient's mark)" if fmt == PREMASTER_FORMAT else f"a registered {fmt} file"
        proofs.append((clip, f"its bytes are exactly {what} of clip {clip}"))
    if e.credentials is CredentialStatus.TRUSTED and e.credentials_clip is not None:
        proofs.append((e.credentials_clip, f"its content credentials for clip {e.credentials_clip} are signed by this "
                                           "workspace and the audio is unchanged since"))
    if e.payload is not None and e.payload.serial is not None:
        proofs.append((e.payload.serial, f"its payload watermark names clip {e.payload.serial} "
                                         f"(confidence {e.payload.confidence:.1f})"))
    for clip, m in sorted(e.content.items(), key=lambda item: -item[1].matched_s):
        if m.found:
            proofs.append((clip, f"{m.matched_s:.0f} s of its audio ({m.coverage:.0%}) are found in clip {clip}'s "
                                 "registered master"))
    return proofs


def _credentials_note(e: Evidence) -> str:
    problems = f" ({', '.join(e.credentials_problems)})" if e.credentials_problems else ""
    match e.credentials:
        case CredentialStatus.TAMPERED:
            return f"its content credentials no longer match it: changed after signing{problems}"
        case CredentialStatus.UNTRUSTED:
            signer = e.credentials_signer or "someone else"
            return f"its content credentials are signed by {signer}, not by this workspace"
        case CredentialStatus.TRUSTED:
            named = "name no clip" if e.credentials_clip is None else f"name clip {e.credentials_clip}"
            return f"its content credentials are signed by this workspace but {named}"
        case CredentialStatus.ABSENT:
            return "it carries no content credentials"


def _without_proof(e: Evidence) -> tuple[str, ...]:
    """Why nothing links the file to a clip, naming every claim it makes."""
    reasons = []
    for clip, where in _claims(e).items():
        if clip not in e.clips:
            check = "no such clip is registered"
        elif clip in e.content:
            m = e.content[clip]
            check = f"only {m.matched_s:.0f} of its {m.audible_s:.0f} audible seconds are in clip {clip}'s master"
        else:
            check = "its audio could not be compared with that clip's"
        reasons.append(f"claims to be clip {clip} (in its {' and '.join(where)}) but carries no proof; {check}")
    if e.credentials is not CredentialStatus.ABSENT and e.credentials_clip is None:
        reasons.append(_credentials_note(e))
    if e.presence is not None and e.presence >= PRESENCE_THRESHOLD:
        reasons.append(f"it carries the presence watermark (score {e.presence:.2f}), which anyone can add: "
                       "not proof of origin on its own")
    if e.payload is not None and e.payload.serial is None:
        reasons.append("no payload watermark of this workspace found")
    return (*reasons, "no mark of ours proves where it comes from")


def _claims(e: Evidence) -> dict[int, list[str]]:
    """Clips the file says it is, and where it says so."""
    claims: dict[int, list[str]] = {}
    if e.tags_clip is not None:
        claims.setdefault(e.tags_clip, []).append("metadata tags")
    if e.credentials_clip is not None:
        claims.setdefault(e.credentials_clip, []).append(f"{e.credentials.value} content credentials")
    return claims
