"""Passkey-signed approvals, checked offline: anyone holding the stored assertion can re-verify it.

A person who approves in the portal signs with a WebAuthn credential (a passkey). What the
authenticator signs is `authenticatorData || sha256(clientDataJSON)`; the clientDataJSON carries
the challenge, which voxgate makes `ApprovalPayload.challenge(nonce)`: the sha256 of the exact
approval payload followed by the server's expiring nonce. So the stored assertion binds the
signature to one decision on one revision of one statement in one workspace. This module needs
nothing but those bytes, the credential's COSE public key and the expected relying party (its
id and origin): no database, no clock.
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature

from pipeline.domain import ApprovalPayload

_FLAG_UP = 0x01  # user present
_FLAG_UV = 0x04  # user verified (PIN, biometrics): required for an approval
PASSKEY_PREFIX = "passkey:"


@dataclass(frozen=True)
class PasskeyAssertion:
    """Everything a passkey approval consists of, as stored beside the approval."""

    payload: bytes  # ApprovalPayload.to_bytes(), exactly as the challenge was made from it
    nonce: bytes
    authenticator_data: bytes
    client_data_json: bytes
    signature: bytes
    public_key: bytes  # the credential's COSE_Key
    rp_id: str
    origin: str


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def passkey_fingerprint(public_key: bytes) -> str:
    """A passkey's identity where approvals name the key they were signed with: its COSE key's sha256.

    Prefixed, so it never equals a CLI key's fingerprint (`identity.personal.fingerprint`, "SHA256:...").
    """
    return PASSKEY_PREFIX + b64url(hashlib.sha256(public_key).digest())


def is_passkey_fingerprint(fp: str | None) -> bool:
    return bool(fp) and fp.startswith(PASSKEY_PREFIX)


def problems(assertion: PasskeyAssertion, expected: ApprovalPayload) -> list[str]:
    """Why `assertion` is not a valid passkey signature of `expected`; an empty list when it is.

    Checked: the payload is the expected one byte for byte; clientDataJSON is a `webauthn.get`
    from the expected origin whose challenge is sha256(payload) || nonce; authenticatorData's
    rpIdHash is sha256(rp_id) with the user-present and user-verified flags; and the signature
    over authenticatorData || sha256(clientDataJSON) verifies with the credential's public key.
    """
    found = []
    if assertion.payload != expected.to_bytes():
        found.append("the signed payload is not this approval (another statement, revision, stage or decision)")
    try:
        client = json.loads(assertion.client_data_json)
        if not isinstance(client, dict):
            raise ValueError
    except (ValueError, UnicodeDecodeError):
        return [*found, "clientDataJSON is not a JSON object"]
    if client.get("type") != "webauthn.get":
        found.append(f"clientDataJSON is a {client.get('type')!r}, not a webauthn.get assertion")
    try:
        challenge = from_b64url(str(client.get("challenge", "")))
    except ValueError:
        challenge = b""
    if challenge != expected.challenge(assertion.nonce):
        found.append("the challenge is not sha256(payload) followed by the server's nonce")
    if client.get("origin") != assertion.origin:
        found.append(f"it was signed on {client.get('origin')!r}, not on the portal's origin {assertion.origin!r}")
    data = assertion.authenticator_data
    if len(data) < 37:
        return [*found, "authenticatorData is too short"]
    if data[:32] != hashlib.sha256(assertion.rp_id.encode()).digest():
        found.append(f"authenticatorData is for another relying party than {assertion.rp_id!r}")
    if not data[32] & _FLAG_UP:
        found.append("the authenticator did not see the user present")
    if not data[32] & _FLAG_UV:
        found.append("the authenticator did not verify the user (PIN or biometrics)")
    if not _signature_ok(assertion):
        found.append("the signature does not verify with the credential's public key")
    return found


def verifies(assertion: PasskeyAssertion, expected: ApprovalPayload) -> bool:
    return not problems(assertion, expected)


def _signature_ok(assertion: PasskeyAssertion) -> bool:
    from webauthn.helpers import decode_credential_public_key, decoded_public_key_to_cryptography
    from webauthn.helpers.verify_signature import verify_signature

    signed = assertion.authenticator_data + hashlib.sha256(assertion.client_data_json).digest()
    try:
        key = decode_credential_public_key(assertion.public_key)
        verify_signature(public_key=decoded_public_key_to_cryptography(key), signature_alg=key.alg,
                         signature=assertion.signature, data=signed)
    except InvalidSignature:
        return False
    except Exception:  # noqa: BLE001 - a malformed COSE key or signature is simply not a valid signature
        return False
    return True
