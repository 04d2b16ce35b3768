"""What a clip's content credentials assert: AI origin, the payload soft binding and our provenance assertion.

Pure data: `ClipProvenance.manifest()` is the definition c2pa's Builder signs (`pipeline.provenance.signing`).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import version
from typing import Any, Final

TRAINED_ALGORITHMIC_MEDIA: Final = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ASSERTION_LABEL: Final = "org.voxgate.provenance"
PAYLOAD_ALGORITHM: Final = "voxgate.payload.v1"


@dataclass(frozen=True)
class SignedApproval:
    reviewer: str
    stage: str
    decision: str
    signature_sha256: str


@dataclass(frozen=True)
class ClipProvenance:
    """Everything a clip's manifest asserts about where it came from."""

    clip_id: int
    organisation: str
    voice_id: str
    voice_name: str
    consent_id: int
    consent_sha256: str
    statement_id: int
    revision: int
    revision_sha256: str
    language: str
    created_at: datetime
    approvals: tuple[SignedApproval, ...]  # text and owner approvals: audio sign-off comes after signing
    settings: Mapping[str, Any]
    #: What the file's payload mark carries: the clip id in the clip's own files, a delivery's serial in a
    #: recipient's copy (pipeline.domain.serials). Only the registry maps a delivery to its recipient.
    payload_serial: int | None = None

    @property
    def serial(self) -> int:
        return self.clip_id if self.payload_serial is None else self.payload_serial

    def manifest(self) -> dict[str, Any]:
        """The manifest definition c2pa's Builder takes."""
        agent = {"name": "voxgate", "version": version("voxgate")}
        created = {"action": "c2pa.created", "digitalSourceType": TRAINED_ALGORITHMIC_MEDIA,
                   "when": self.created_at.isoformat(), "softwareAgent": agent}
        serial = base64.b64encode(self.serial.to_bytes(8, "big")).decode()
        return {
            "claim_generator_info": [agent],
            "title": f"{self.organisation}: statement {self.statement_id}, clip {self.clip_id} (AI-generated voice)",
            "assertions": [
                {"label": "c2pa.actions.v2", "data": {"actions": [created]}},
                # The payload watermark is how a copy that lost this manifest finds its way back to it.
                {"label": "c2pa.soft-binding",
                 "data": {"alg": PAYLOAD_ALGORITHM, "blocks": [{"scope": {}, "value": serial}]}},
                {"label": ASSERTION_LABEL, "data": {
                    "clip": self.clip_id,
                    "organisation": self.organisation,
                    "voice": {"id": self.voice_id, "name": self.voice_name},
                    "consent": {"id": self.consent_id, "sha256": self.consent_sha256},
                    "statement": {"id": self.statement_id, "revision": self.revision, "sha256": self.revision_sha256},
                    "language": self.language,
                    # the AI label in English and in the clip's language
                    **({"ai_label": dict(self.settings["ai_label"])} if "ai_label" in self.settings else {}),
                    "approvals": [vars(a) for a in self.approvals],
                    "approvals_scope": "text and owner approvals at render time; audio sign-off is in the "
                                       "publisher's registry and audit log",
                    "watermark": {"algorithm": PAYLOAD_ALGORITHM, "payload_serial": self.serial},
                    "render": dict(self.settings),
                }},
            ],
        }
