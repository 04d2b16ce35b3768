"""Verify a circulating file: gather what it carries and what the registry knows, then one verdict.

Evidence, cheapest first: the file's sha256 against every registered file;
its content credentials (embedded, or a ``<file>.c2pa`` sidecar beside it)
checked against this workspace's certificates; its metadata tags; the
presence and payload watermarks; and, for every clip the file names or is
marked with, its audio searched for in that clip's registered master. The
decision itself is `pipeline.verify.verdict.decide`. Every check lands in the
audit log as `voxgate.verify.checked`, by "public" unless a user is named.
"""

from __future__ import annotations

import functools
import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.audio.mix import resample
from pipeline.errors import InputError, ProvenanceError
from pipeline.export.probe import decode, probe
from pipeline.hashing import sha256_file
from pipeline.provenance.credentials import CredentialReport, CredentialStatus, load_trust, read_credentials
from pipeline.provenance.labels import AI_GENERATED_TAG, CLIP_ID_TAG
from pipeline.domain import ClipState
from pipeline.services.copies import payload_mark
from pipeline.services.gates import made_under, standing
from pipeline.services.review import approvals_of, verifier
from pipeline.services.voices import signatures_of, witness_only
from pipeline.services.workspace import Workspace
from pipeline.domain.serials import parse_serial
from pipeline.store.files import BlobStore
from pipeline.store.models import ClipFileRow, ClipRow, ConsentRow, DeliveryFileRow, DeliveryRow, StatementRow, VoiceRow
from pipeline.verify import match
from pipeline.verify.verdict import PREMASTER_FORMAT, ClipFacts, Evidence, Outcome, PayloadReading, Trace, Verdict, decide

if TYPE_CHECKING:
    from pipeline.provenance.presence import PresenceMark
    from pipeline.services.registry import Mirror

PUBLIC_ACTOR: Final = "public"
#: The shape of `VerifyReport.as_dict` (`voxgate verify --json`, `POST /api/verify`); 2 added ALTERED and the timeline.
REPORT_VERSION: Final = 2
PRESENCE_S: Final = 60
MAX_SEARCH_WINDOWS: Final = 60  # ~50 ms each: the search costs at most ~3 s, whatever the file's length
_PROVEN_WHOLE: Final = "not needed: the file is proven whole by its bytes or its content credentials"
MARK_WINDOW_S: Final = 4  # the payload mark needs 4 s to read (payload.MIN_DURATION_S): its windows' length
MASTERS_KEPT: Final = 4
"""Masters a process keeps decoded (16 kHz, ~4 MB a minute): a portal worker checks copies of the same
few released clips again and again, and a digest names the same samples for ever."""
_LABEL_TAGS: Final = (AI_GENERATED_TAG.lower(), CLIP_ID_TAG.lower(), "voxgate_statement", "voxgate_voice")


@dataclass(frozen=True)
class ClipRecord:
    """The registry's account of the clip a verdict names, for people to read."""

    clip_id: int
    state: str
    statement_id: int
    revision: int
    text: str | None  # only once released: an unreleased draft's words are not for whoever holds the file
    voice_id: str
    voice_name: str
    owner: str
    approvals: tuple[dict[str, Any], ...]  # reviewer, stage, decision, signature_valid
    created_at: datetime
    released_at: datetime | None
    revoked_at: datetime | None  # the clip's, or else its consent's
    consent_witness_only: bool = False  # the consent was signed by the admin who added it, not by the owner


@dataclass(frozen=True)
class VerifyReport:
    path: Path
    sha256: str
    tags: Mapping[str, str]  # our label tags as found (a claim)
    credentials: CredentialReport
    evidence: Evidence
    verdict: Verdict
    clip: ClipRecord | None
    notes: Mapping[str, str]  # checks that could not run, and why

    def as_dict(self, *, public: bool = False) -> dict[str, Any]:
        """For `--json` and `POST /api/verify`: stable keys, plain values.

        `public` leaves out what only the workspace may see: the recipient of a personal copy and the
        names of the publisher's reviewers (the copy is said to be traceable, the approvals by stage).
        """
        e = self.evidence
        v = self.verdict
        traced = None if v.trace is None else {
            **({"traceable": True} if public else vars(v.trace)),
            "of": "the genuine fragment" if v.outcome is Outcome.ALTERED else "the file"}
        clip = None if self.clip is None else dict(vars(self.clip))
        if clip is not None and public:
            clip["approvals"] = [{k: a[k] for k in ("stage", "decision", "signature_valid")} for a in clip["approvals"]]
        if clip is not None:
            clip["approvals"] = list(clip["approvals"])
            clip.update({k: v.isoformat(timespec="seconds") for k, v in clip.items() if isinstance(v, datetime)})
        return {
            "version": REPORT_VERSION,
            "file": str(self.path),
            "sha256": self.sha256,
            "verdict": self.verdict.outcome.value,
            "exit_code": self.verdict.exit_code,
            "clip_id": self.verdict.clip_id,
            "reasons": list(self.verdict.reasons),  # English, as always: scripts rely on these lines
            # The same reasons as catalogue messages (pipeline/i18n): a page renders them in its reader's language.
            "reason_keys": [m.to_dict() for m in self.verdict.messages],
            "traced_to": traced,
            "timeline": None if v.timeline is None else v.timeline.as_dict(),
            "evidence": {
                "registered_file": None if e.registered_file is None else
                {"clip": e.registered_file[0], "format": e.registered_file[1]},
                "credentials": {"status": e.credentials.value, "clip": e.credentials_clip,
                                "signer": e.credentials_signer, "problems": list(e.credentials_problems),
                                "sidecar": self.credentials.sidecar,
                                "digital_source_type": self.credentials.source_type},
                "tags": dict(self.tags),
                "presence": e.presence,
                "payload": None if e.payload is None else
                {"clip": e.payload.serial, "delivery": None if public else e.payload.delivery,
                 "confidence": e.payload.confidence},
                "content": {str(clip): {"audible_s": m.audible_s, "matched_s": m.matched_s, "coverage": m.coverage}
                            for clip, m in e.content.items()},
            },
            "clip": clip,
            "notes": dict(self.notes),
        }


def verify_file(ws: Workspace, path: Path, *, now: datetime, actor: str | None = None,
                presence: PresenceMark | None = None, check_presence: bool = False, record: bool = True,
                max_audio_s: float | None = None) -> VerifyReport:
    """Check `path` against this workspace's registry and record the check.

    The presence mark is checked only when asked (`check_presence`, or a loaded `presence` detector to
    reuse): it is a claim anyone can add and never changes the verdict, while Perth costs ~10 s and
    ~800 MB to load (torch), twice the whole check's budget (issue 11).

    `record=False` leaves the audit log to the caller (the portal counts public checks in batches);
    `max_audio_s` checks only the first so many seconds of audio, and the report says so.
    """
    path = path.expanduser()
    if not path.is_file():
        raise InputError(f"{path} is not a file; give the path of the audio file to check.")
    digest = sha256_file(path)
    with ws.sessions() as s:
        registered, traces = _registered(s, digest)
    # Perth is the slowest thing to load, and a file registered byte for byte does not need it; when asked
    # for, it loads on a second thread while the file is decoded and matched.
    wanted = (check_presence or presence is not None) and not registered
    background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voxgate-presence")
    try:
        loading = background.submit(_loaded_presence, presence) if wanted else None
        info = probe(path)
        tags = {k: v for k, v in info.tags.items() if k in _LABEL_TAGS}
        notes: dict[str, str] = {}
        credentials = read_credentials(path, load_trust(ws.c2pa_dir))
        intact = {registered[0]} if registered else set()
        if credentials.status is CredentialStatus.TRUSTED and credentials.clip_id is not None:
            intact.add(credentials.clip_id)
        if registered:  # bytes we handed out: the registry says what they are, and nobody need read the audio
            notes["payload"] = "its bytes are a registered file, which says whose copy it is"
            notes["presence"] = _PROVEN_WHOLE
            return _judge(ws, path, digest, tags, credentials, registered, traces, intact, np.zeros(0, np.float32),
                          (), None, None, notes, now=now, actor=actor, record=record, presence_score=lambda: None)
        if max_audio_s and info.duration > max_audio_s:
            notes["decoded"] = f"only the first {max_audio_s / 60:g} minutes of {info.duration / 60:.0f} were checked"
        # Without the presence mark everything works at 16 kHz: ffmpeg resamples while it streams, a third
        # of the samples a 48 kHz decode would hold.
        samples, rate = decode(path, None if wanted else match.RATE, limit_s=max_audio_s)
        # The presence mark is only a claim: its first minute is enough to report it, and bounds Perth's memory.
        head = samples[:PRESENCE_S * rate].copy() if loading else None  # a copy: the decode is freed below
        scoring = None if intact or loading is None else background.submit(
            lambda: _presence(head, rate, loading.result(), notes))
        if intact:
            notes["presence"] = _PROVEN_WHOLE
        elif not wanted:
            notes["presence"] = ("not checked: it is a claim anyone can add and never changes the verdict "
                                 "(`--presence` checks it)")
        x16 = resample(samples, rate, match.RATE)
        del samples  # the 16 kHz copy is all the rest needs
        silent = _silent_seconds(x16)
        mark = payload_mark(ws)
        payload = _payload(mark, x16, notes)
        if not intact and (payload is None or payload.serial is None):
            payload = _search_windows(mark, x16, silent, notes) or payload
        report = _judge(ws, path, digest, tags, credentials, registered, traces, intact, x16, silent, mark, payload,
                        notes, now=now, actor=actor, record=record,
                        presence_score=lambda: None if scoring is None else scoring.result())
    finally:
        background.shutdown(wait=False, cancel_futures=True)
    return report


def _judge(ws: Workspace, path: Path, digest: str, tags: dict[str, str], credentials: CredentialReport,
           registered: tuple[int, str] | None, traces: list[tuple[int, Trace]], intact: set[int], x16: np.ndarray,
           silent: tuple[bool, ...], mark: Any, payload: PayloadReading | None, notes: dict[str, str], *,
           now: datetime, actor: str | None, record: bool, presence_score: Callable[[], float | None]) -> VerifyReport:
    """The registry's side: the clips named, their masters matched second by second, the verdict recorded."""
    tags_clip = _clip_number(tags.get(CLIP_ID_TAG.lower()))
    with ws.sessions() as s:
        payload = _trace_payload(s, payload, traces, notes)
        named = {registered[0] if registered else None, credentials.clip_id, tags_clip,
                 payload.serial if payload else None} - {None}
        rows = {clip: row for clip in sorted(named) if (row := s.get(ClipRow, clip)) is not None}
        facts = {clip: _facts(s, ws, row) for clip, row in rows.items()}
        masters = {clip: row.audio_sha256 for clip, row in rows.items() if row.audio_sha256}
    content = {clip: match.match_audio(x16, _master(ws.files, sha)) for clip, sha in masters.items()
               if clip not in intact}
    marks: tuple[int | None, ...] = ()
    if payload is not None and payload.serial is not None and payload.serial not in intact:
        found = content.get(payload.serial)
        unexplained = [i for i, quiet in enumerate(silent) if not quiet and (
            found is None or found.blocks[i] not in (match.Block.GENUINE, match.Block.MIXED))]
        with ws.sessions() as s:
            marks = _mark_seconds(mark, x16, unexplained, lambda serial: _clip_of(s, serial))
    evidence = Evidence(
        registered_file=(registered[0], registered[1]) if registered else None,
        credentials=credentials.status, credentials_clip=credentials.clip_id, credentials_signer=credentials.signer,
        credentials_problems=credentials.problems, tags_clip=tags_clip, presence=presence_score(), payload=payload,
        content=content, clips=facts, traces=tuple(traces), marks=marks, silent=silent,
    )
    verdict = decide(evidence)
    with ws.transaction() if record else ws.sessions() as s:
        clip = (_record(s, ws, verdict.clip_id, vouches=verdict.outcome is not Outcome.ALTERED)
                if verdict.clip_id in rows else None)
        if record:
            who = ws.person(s, actor).name if actor else PUBLIC_ACTOR
            ws.record(s, "voxgate.verify.checked", actor=who,
                      subject=verdict.clip_id if verdict.clip_id is not None else digest,
                      data={"verdict": verdict.outcome.value, "sha256": digest, "clip": verdict.clip_id,
                            "credentials": credentials.status.value,
                            "delivery": verdict.trace.delivery if verdict.trace else None}, now=now)
    return VerifyReport(path, digest, tags, credentials, evidence, verdict, clip, notes)


@functools.lru_cache(maxsize=MASTERS_KEPT)
def _master(files: BlobStore, digest: str) -> np.ndarray:
    """The master with this digest at the match's rate, decoded from the store once its bytes are checked."""
    samples = decode(files.open_checked(digest), match.RATE)[0]
    samples.flags.writeable = False  # shared by every check that reads it
    return samples


def _silent_seconds(x16: np.ndarray) -> tuple[bool, ...]:
    """Per judged second of the file (the match's blocks, the file's last second included): too quiet to judge."""
    x = np.asarray(x16, dtype=np.float64)
    return tuple(bool(np.sqrt(np.mean(np.square(x[start:start + match.BLOCK]))) < match.SILENCE_RMS)
                 for start in match.block_starts(len(x)))


def _search_windows(mark: Any, x16: np.ndarray, silent: tuple[bool, ...],
                    notes: dict[str, str]) -> PayloadReading | None:
    """The mark read in 4 s windows two seconds apart (at most 60 of them), when the whole file does not read.

    A fragment of a clip inside other audio can hide the mark from a reading of the whole file. One
    window reading by chance is ~1e-7 (the detector's own bound); the same serial in two windows is
    asked for, so a file's chance stays far below that however many windows it has.
    """
    step = max(2, -(-len(silent) // MAX_SEARCH_WINDOWS))  # a long file is sampled, not read end to end
    starts = [s for s in range(0, len(silent) - MARK_WINDOW_S + 1, step)
              if not all(silent[s:s + MARK_WINDOW_S])]
    readings = {s: _window(mark, x16, s) for s in starts}
    serials = Counter(r.payload for r in readings.values() if r.payload is not None)
    if not serials:
        return None
    serial, times = serials.most_common(1)[0]
    if times < 2:
        return None
    best = max((r for r in readings.values() if r.payload == serial), key=lambda r: r.confidence)
    notes["payload"] = f"read in {times} of {len(readings)} windows of {MARK_WINDOW_S} s, not in the whole file"
    return PayloadReading(serial, float(best.confidence))


def _mark_seconds(mark: Any, x16: np.ndarray, seconds: list[int],
                  clip_of: Callable[[int], int | None]) -> tuple[int | None, ...]:
    """Per second: the clip whose mark reads in most of the 4 s windows over it (only `seconds` are read)."""
    total = len(x16) // match.BLOCK
    if total < MARK_WINDOW_S or not seconds:
        return ()
    # The file's overlapping last second (index `total`, see match.block_starts) is read by the last window.
    covering = {i: range(max(0, min(i, total - 1) - MARK_WINDOW_S + 1), min(i, total - MARK_WINDOW_S) + 1)
                for i in seconds}
    starts = sorted({s for r in covering.values() for s in r})
    clips = {}
    for start in starts:
        found = _window(mark, x16, start).payload
        clips[start] = None if found is None else clip_of(found)
    marks: list[int | None] = [None] * (max(total - 1, *seconds) + 1)
    for i, windows in covering.items():
        votes = Counter(clips[s] for s in windows)
        clip, n = votes.most_common(1)[0]
        marks[i] = clip if clip is not None and n * 2 > len(windows) else None
    return tuple(marks)


def _window(mark: Any, x16: np.ndarray, start: int) -> Any:
    try:
        return mark.detect(x16[start * match.BLOCK:(start + MARK_WINDOW_S) * match.BLOCK], match.RATE)
    except ProvenanceError:  # a window too quiet to read
        from pipeline.provenance.payload import Detection

        return Detection(None, 0.0, None)


def _clip_of(s: Session, serial: int) -> int | None:
    """The clip a payload serial names (a delivery's clip for a recipient's copy)."""
    parsed = parse_serial(serial)
    if parsed.delivery is None:
        return serial
    delivery = s.get(DeliveryRow, parsed.delivery)
    return None if delivery is None else delivery.clip_id


def _loaded_presence(mark: PresenceMark | None) -> PresenceMark | ProvenanceError:
    """The presence detector, loaded (or why it cannot be)."""
    from pipeline.provenance.presence import PresenceMark

    try:
        return (mark or PresenceMark()).load()
    except ProvenanceError as exc:
        return exc


def _presence(samples: np.ndarray, rate: int, mark: PresenceMark | ProvenanceError,
              notes: dict[str, str]) -> float | None:
    try:
        if isinstance(mark, ProvenanceError):
            raise mark
        return float(mark.detect(samples, rate))
    except ProvenanceError as exc:  # Perth missing, or too short or quiet to judge: the other checks still count
        notes["presence"] = str(exc)
        return None


def _payload(mark: Any, x16: np.ndarray, notes: dict[str, str]) -> PayloadReading | None:
    try:
        found = mark.detect(x16, match.RATE)
    except ProvenanceError as exc:  # too short to carry a full period of the mark
        notes["payload"] = str(exc)
        return None
    return PayloadReading(found.payload, float(found.confidence))


def _registered(s: Session, digest: str) -> tuple[tuple[int, str] | None, list[tuple[int, Trace]]]:
    """(clip, format) of a registered file with these bytes: a clip's own, its premaster, or someone's personal copy."""
    own = s.execute(select(ClipFileRow.clip_id, ClipFileRow.format)
                    .where(ClipFileRow.sha256 == digest).order_by(ClipFileRow.id).limit(1)).first()
    if own is not None:
        return (own[0], own[1]), []
    premaster = s.scalars(select(ClipRow.id).where(ClipRow.premaster_sha256 == digest).limit(1)).first()
    if premaster is not None:  # never handed out: a copy outside the workspace is a leak
        return (premaster, PREMASTER_FORMAT), []
    copy = s.execute(select(DeliveryRow, DeliveryFileRow.format).join(DeliveryFileRow)
                     .where(DeliveryFileRow.sha256 == digest).order_by(DeliveryFileRow.id).limit(1)).first()
    if copy is None:
        return None, []
    delivery, fmt = copy
    return (delivery.clip_id, fmt), [(delivery.clip_id, Trace(delivery.id, delivery.recipient, "bytes"))]


def _trace_payload(s: Session, payload: PayloadReading | None, traces: list[tuple[int, Trace]],
                   notes: dict[str, str]) -> PayloadReading | None:
    """The payload reading in clip terms: a delivery's serial becomes its clip, and its recipient a trace."""
    if payload is None or payload.serial is None:
        return payload
    serial = parse_serial(payload.serial)
    if serial.delivery is None:
        return payload
    delivery = s.get(DeliveryRow, serial.delivery)
    if delivery is None:
        notes["payload"] = f"the payload mark names delivery {serial.delivery}, which this registry does not hold"
        return PayloadReading(None, payload.confidence, serial.delivery)
    traces.append((delivery.clip_id, Trace(delivery.id, delivery.recipient, "payload mark")))
    return PayloadReading(delivery.clip_id, payload.confidence, delivery.id)


def _clip_number(tag: str | None) -> int | None:
    return int(tag) if tag is not None and tag.isascii() and tag.isdigit() else None


def _facts(s: Session, ws: Workspace, clip: ClipRow) -> ClipFacts:
    """The clip as the signed records show it (`services.gates`): its state column is only a claim."""
    found = standing(s, ws, clip)
    revoked = found.state is ClipState.REVOKED
    return ClipFacts(clip.id, found.state.value, revoked, clip.released_at if found.released else None)


def _consent(s: Session, clip: ClipRow) -> ConsentRow:
    """The consent the clip was rendered under (the voice's current one for a clip that never finished)."""
    return made_under(s, clip)


def _record(s: Session, ws: Workspace, clip_id: int, *, vouches: bool = True) -> ClipRecord:
    """The clip as the signed records have it; for a file only partly from the clip, without its text and approvals."""
    clip = s.get(ClipRow, clip_id)
    statement = s.get(StatementRow, clip.statement_id)
    voice = s.get(VoiceRow, clip.voice_id)
    consent = _consent(s, clip)
    valid = verifier(s, ws)
    approvals = tuple(
        {"reviewer": a.reviewer, "stage": a.stage.value, "decision": a.decision.value, "signature_valid": valid(a),
         "signature_sha256": hashlib.sha256(a.signature).hexdigest()}
        for a in approvals_of(s, clip.statement_id) if a.subject_hash in (clip.revision_sha256, clip.audio_sha256)
        and a.revision in (None, clip.revision)
    )
    found = standing(s, ws, clip)
    released = found.released or found.state is ClipState.REVOKED and clip.released_at is not None
    text = next(r.text for r in statement.revisions if r.number == clip.revision) if released else None
    if not vouches:  # an ALTERED file: the clip's words and sign-offs are not this file's
        text, approvals = None, ()
    return ClipRecord(clip.id, found.state.value, clip.statement_id, clip.revision, text, voice.id, voice.name, consent.owner,
                      approvals, clip.created_at, clip.released_at if released else None,
                      clip.revoked_at or consent.revoked_at, witness_only(signatures_of(s, consent)))


#: What a mirror cannot do without the publisher, said in every offline report.
_OFFLINE_NOTES: Final = {
    "payload": "needs the publisher: the keyed payload mark, which names the clip and the recipient of a re-encoded "
               "or cut copy, can only be read with their secret",
    "content": "needs the publisher: the waveform match compares with masters that are never handed out",
    "presence": "not checked against a mirror: the presence mark is only a claim (anyone can add it)",
}


def verify_with_mirror(mirror: Mirror, path: Path) -> VerifyReport:
    """Check `path` against a registry mirror alone (no workspace, no secret): exact bytes and content credentials."""
    path = path.expanduser()
    if not path.is_file():
        raise InputError(f"{path} is not a file; give the path of the audio file to check.")
    digest = sha256_file(path)
    tags = {k: v for k, v in probe(path).tags.items() if k in _LABEL_TAGS}
    credentials = read_credentials(path, load_trust(mirror.folder))
    found = mirror.file(digest)
    notes = dict(_OFFLINE_NOTES)
    if found is not None and found[2] is not None:
        notes["copy"] = (f"a personal copy (delivery {found[2]}): only the publisher can say whom it was handed to")
    released, revoked = mirror.released(), mirror.revoked()
    named = {found[0] if found else None, credentials.clip_id, _clip_number(tags.get(CLIP_ID_TAG.lower()))} - {None}
    facts = {clip: ClipFacts(clip, "revoked" if clip in revoked else "released", clip in revoked)
             for clip in named if clip in released}
    evidence = Evidence(
        registered_file=(found[0], found[1]) if found else None, credentials=credentials.status,
        credentials_clip=credentials.clip_id, credentials_signer=credentials.signer,
        credentials_problems=credentials.problems, tags_clip=_clip_number(tags.get(CLIP_ID_TAG.lower())), clips=facts,
    )
    return VerifyReport(path, digest, tags, credentials, evidence, decide(evidence), None, notes)
