"""A consent reading must come from a person (issue 10): a synthesised, marked reading never enrolls.

On main a reading synthesised and Perth-marked enrolled like a live one. Both marks are embedded
here by the real watermarkers into real speech, and enrollment is refused with the store unchanged.
"""

from __future__ import annotations

import pytest

from conftest import store_snapshot
from pipeline.errors import ConsentError
from pipeline.services.copies import payload_mark
from pipeline.services.enrollment import enroll
from pipeline.services.workspace import utcnow
from test_enrollment import make_workspace, new_script

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("mark", "match"), [
    ("perth", "no AI presence watermark"),  # what voxgate and several commercial generators add
    ("payload", "no payload mark of this workspace"),  # our own keyed mark: one of our clips played back
])
def test_a_synthesised_marked_consent_reading_is_refused(tmp_path, enrollment_audio, check_tools, mark, match) -> None:
    ws = make_workspace(tmp_path / "ws")
    script = new_script(ws)
    x, sr = enrollment_audio.speak(script.text)
    if mark == "perth":
        x = check_tools.presence().embed(x, sr)
    else:
        x, _ = payload_mark(ws).embed_and_verify(x, sr, 4242)
    reading = enrollment_audio.write(x, sr, f"marked-{mark}.wav")
    before = store_snapshot(ws.home)
    with pytest.raises(ConsentError, match=match):
        enroll(ws, "joe", enrollment_audio.recordings(), reading, actor="ops", now=utcnow(), tools=check_tools)
    assert store_snapshot(ws.home) == before
