"""A consent reading must come from a person, not a machine: known AI watermarks and our own clips are refused.

Checked at enrollment, before anything else looks at the voice: Perth's
presence mark (which voxgate's clips and several commercial voice
generators carry), this workspace's keyed payload mark, and the audio of
every clip this registry holds (a re-recorded or stripped clip of ours still
matches its master). Each failure is one `Check`, so the refusal names its
figure. A reading too short for a mark to be judged passes that mark's check
with a note: the other checks still run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sqlalchemy import select

from pipeline.audio.mix import resample
from pipeline.consent.checks import Check
from pipeline.errors import ProvenanceError
from pipeline.services.copies import payload_mark
from pipeline.services.workspace import Workspace
from pipeline.store.models import ClipRow


def machine_checks(ws: Workspace, x: np.ndarray, sr: int, presence: Any) -> list[Check]:
    """The checks that a consent reading was not synthesised (`presence`: a loaded `PresenceMark`)."""
    from pipeline.export.probe import decode
    from pipeline.provenance.presence import DEFAULT_PRESENCE_THRESHOLD
    from pipeline.verify import match

    checks = []
    score = float(presence.detect(x, sr))  # Perth missing is a ProvenanceError: fail closed
    checks.append(Check("consent audio: no AI presence watermark", score < DEFAULT_PRESENCE_THRESHOLD, round(score, 3),
                        f"< {DEFAULT_PRESENCE_THRESHOLD}",
                        f"Perth presence score {score:.3f}: synthesised speech (voxgate's and several commercial "
                        "voice generators') carries this mark; the owner must read the script aloud themselves"))
    try:
        found = payload_mark(ws).detect(x, sr)
        serial, detail = found.payload, f"confidence {found.confidence:.1f}"
    except ProvenanceError as exc:  # too short to carry one period of the mark
        serial, detail = None, str(exc)
    checks.append(Check("consent audio: no payload mark of this workspace", serial is None, serial, "none",
                        f"it carries clip serial {serial} ({detail}): it is one of our own clips" if serial is not None
                        else detail))
    suspect = resample(x, sr, match.RATE)
    with ws.sessions() as s:
        masters = [(c.id, c.audio_sha256) for c in s.scalars(select(ClipRow).where(ClipRow.audio_sha256 != "")
                                                               .order_by(ClipRow.id))]
    hit = None
    for clip_id, sha in masters:
        if match.match_audio(suspect, decode(ws.files.open_checked(sha), match.RATE)[0]).found:
            hit = clip_id
            break
    checks.append(Check("consent audio: not a registered clip", hit is None, hit, "none",
                        f"its audio is found in clip {hit}'s master" if hit is not None
                        else f"searched {len(masters)} clips"))
    return checks
