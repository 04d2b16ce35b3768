"""Passkeys for the people who approve in the portal, not with the CLI: invitations, registration,
sign-in, the nonces that keep every signature fresh, and the check of a stored passkey approval.

An admin runs `voxgate user invite NAME` (or NAME does, with their own key, which then vouches
for the passkey); the printed one-time link (stored only as a sha256, expiring) lets NAME register
a passkey with user verification. The credential's COSE public key is one of that person's keys
from then on: its registration and disable events in the audit log are its history
(`identity.history`), and a decision signed with it is a v2 approval like the CLI's.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from sqlalchemy import select
from sqlalchemy.orm import Session

from pipeline.domain import Approval, ApprovalPayload, Role
from pipeline.errors import ApprovalError, InputError, NotFoundError, PermissionError_
from pipeline.identity.history import PASSKEY_REGISTERED, PASSKEYS_DISABLED, People, people
from pipeline.identity.keys import verify
from pipeline.identity.passkeys import PasskeyAssertion, b64url, from_b64url, passkey_fingerprint, problems
from pipeline.services.workspace import Workspace, action_payload, workspace_id
from pipeline.store.models import (
    ApprovalRow,
    AuditRow,
    PasskeyApprovalRow,
    PasskeyChallengeRow,
    PasskeyInvitationRow,
    PasskeyRow,
    UserRow,
)

PASSKEY_INVITED: Final = "voxgate.passkey.invited"
INVITATION_HOURS: Final = 72
CHALLENGE_SECONDS: Final = 300  # a decision is signed within five minutes of asking, or asked again
NONCE_BYTES: Final = 16
_INVITE_PREFIX: Final = "vxi_"
#: Roles that approve in the portal with a passkey.
PASSKEY_ROLES: Final = (Role.REVIEWER, Role.OWNER, Role.DELEGATE, Role.ADMIN)


@dataclass(frozen=True)
class RelyingParty:
    """Where passkeys are used: the portal's origin (scheme, host, port) and its WebAuthn RP id (the host)."""

    origin: str
    name: str

    @property
    def id(self) -> str:
        from urllib.parse import urlsplit

        return urlsplit(self.origin).hostname or ""


def _sha(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


# --- invitations and registration ---------------------------------------------


def invite(ws: Workspace, name: str, *, actor: str | None, now: datetime, hours: int = INVITATION_HOURS) -> str:
    """A one-time invitation token for `name` to register a passkey; shown once, stored as its sha256."""
    if not 1 <= hours <= 24 * 14:
        raise InputError("An invitation lives between 1 hour and 14 days; pass --hours N.")
    raw = _INVITE_PREFIX + secrets.token_urlsafe(32)
    with ws.transaction() as s:
        # An admin invites anyone; a person may invite themselves, proven by their own key, which then
        # vouches for the passkey (a consent that binds their key accepts its approvals: see `vouchers`).
        who = ws.actor(s, actor) if actor == name else ws.actor(s, actor, Role.ADMIN)
        user = s.get(UserRow, name)
        if user is None:
            raise NotFoundError(f"No user named {name!r}; add them first with `voxgate user add`.")
        if user.role not in {r.value for r in PASSKEY_ROLES}:
            raise InputError(f"{name} is a {user.role}; passkeys are for reviewers, owners and delegates. "
                             "Distributors sign in with a token (`voxgate user token`).")
        invitation = PasskeyInvitationRow(user=name, token_sha256=_sha(raw), created_by=who.name, created_at=now,
                                          expires_at=now + timedelta(hours=hours))
        s.add(invitation)
        s.flush()
        ws.record(s, PASSKEY_INVITED, actor=who.name, subject=name,
                  data={"hours": hours, "invitation": invitation.id}, now=now)
    return raw


def invitation_user(ws: Workspace, raw: str | None, *, now: datetime) -> str:
    """The user an unused, unexpired invitation is for."""
    with ws.sessions() as s:
        return _invitation(s, raw, now).user


def _invitation(s: Session, raw: str | None, now: datetime) -> PasskeyInvitationRow:
    if not raw or not raw.startswith(_INVITE_PREFIX) or len(raw) > 100:
        raise PermissionError_("This invitation link is not valid; ask your admin for a new one.")
    row = s.scalars(select(PasskeyInvitationRow).where(PasskeyInvitationRow.token_sha256 == _sha(raw))).first()
    if row is None or row.used_at is not None:
        raise PermissionError_("This invitation link was already used or is unknown; ask your admin for a new one.")
    if now >= row.expires_at:
        raise PermissionError_("This invitation link expired; ask your admin for a new one (`voxgate user invite`).")
    return row


def registration_options(ws: Workspace, raw_invitation: str, rp: RelyingParty, *, now: datetime) -> dict[str, Any]:
    """WebAuthn creation options (JSON) for the invited user; the challenge is a fresh server nonce."""
    from webauthn import generate_registration_options, options_to_json
    from webauthn.helpers.structs import (
        AuthenticatorSelectionCriteria,
        PublicKeyCredentialDescriptor,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    with ws.sessions() as s:
        user = _invitation(s, raw_invitation, now).user
        existing = [PublicKeyCredentialDescriptor(id=from_b64url(p.credential_id))
                    for p in s.scalars(select(PasskeyRow).where(PasskeyRow.user == user))]
    nonce = new_challenge(ws, "register", user=user, session=_sha(raw_invitation), payload=None, now=now)
    options = generate_registration_options(
        rp_id=rp.id, rp_name=rp.name, user_name=user, user_id=hashlib.sha256(user.encode()).digest()[:16],
        challenge=nonce, exclude_credentials=existing,
        authenticator_selection=AuthenticatorSelectionCriteria(resident_key=ResidentKeyRequirement.REQUIRED,
                                                               user_verification=UserVerificationRequirement.REQUIRED))
    return json.loads(options_to_json(options))


def register(ws: Workspace, raw_invitation: str, credential: dict[str, Any], rp: RelyingParty, *,
             now: datetime) -> tuple[str, int]:
    """Check the browser's new credential (user verified, our challenge, our origin) and keep it as the
    invited user's key; the invitation is spent. Returns (user, passkey id)."""
    from webauthn import verify_registration_response
    from webauthn.helpers.exceptions import InvalidRegistrationResponse

    with ws.transaction() as s:
        invitation = _invitation(s, raw_invitation, now)
        nonce = _client_challenge(credential)
        take_challenge(s, nonce, "register", user=invitation.user, session=_sha(raw_invitation), now=now)
        try:
            verified = verify_registration_response(credential=credential, expected_challenge=nonce,
                                                    expected_rp_id=rp.id, expected_origin=rp.origin,
                                                    require_user_verification=True)
        except (InvalidRegistrationResponse, ValueError, KeyError, TypeError) as exc:
            raise PermissionError_(f"The passkey could not be registered: {exc}") from None
        credential_id = b64url(verified.credential_id)
        if s.scalars(select(PasskeyRow).where(PasskeyRow.credential_id == credential_id)).first() is not None:
            raise PermissionError_("This passkey is already registered.")
        invitation.used_at = now
        row = PasskeyRow(user=invitation.user, credential_id=credential_id, public_key=verified.credential_public_key,
                         sign_count=verified.sign_count, rp_id=rp.id, origin=rp.origin, created_at=now)
        s.add(row)
        s.flush()
        ws.record(s, PASSKEY_REGISTERED, actor=invitation.user, subject=invitation.user,
                  data={"passkey": row.id, "credential_sha256": _sha(credential_id),
                        "public_key_sha256": hashlib.sha256(row.public_key).hexdigest(), "origin": rp.origin,
                        "invited_by": invitation.created_by, "invitation": invitation.id}, now=now)
        return invitation.user, row.id


def disable_passkeys(ws: Workspace, name: str, *, reason: str, actor: str | None, now: datetime) -> int:
    """Stop every passkey of `name` (a person who left, or a lost phone): no sign-in and no approval
    counts from them after this; earlier approvals stay verifiable as history. Returns how many."""
    if not reason.strip():
        raise InputError("Say why with --reason; it goes into the audit log.")
    with ws.transaction() as s:
        who = ws.actor(s, actor, Role.ADMIN)
        if s.get(UserRow, name) is None:
            raise NotFoundError(f"No user named {name!r}; see `voxgate user list`.")
        live = list(s.scalars(select(PasskeyRow).where(PasskeyRow.user == name, PasskeyRow.disabled_at.is_(None))))
        for row in live:
            row.disabled_at, row.disabled_reason = now, reason.strip()
        ws.record(s, PASSKEYS_DISABLED, actor=who.name, subject=name,
                  data={"passkeys": [r.id for r in live], "reason": reason.strip()}, now=now)
    return len(live)


# --- challenges ---------------------------------------------------------------


def new_challenge(ws: Workspace, purpose: str, *, user: str | None, session: str | None, payload: bytes | None,
                  now: datetime) -> bytes:
    """A fresh random nonce, remembered for one use within CHALLENGE_SECONDS."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    with ws.transaction() as s:
        s.add(PasskeyChallengeRow(nonce=nonce.hex(), purpose=purpose, user=user, session_sha256=session,
                                  payload=payload.decode() if payload is not None else None, created_at=now,
                                  expires_at=now + timedelta(seconds=CHALLENGE_SECONDS)))
    return nonce


def take_challenge(s: Session, nonce: bytes, purpose: str, *, user: str | None, session: str | None,
                   now: datetime) -> PasskeyChallengeRow:
    """Spend a nonce: refused when unknown, used, expired, or issued to another person or session."""
    row = s.get(PasskeyChallengeRow, nonce.hex())
    if row is None or row.purpose != purpose:
        raise PermissionError_("The portal did not ask for this signature; reload the page and try again.")
    if row.used_at is not None:
        raise PermissionError_("This signature was already used once; reload the page and sign again.")
    if now >= row.expires_at:
        raise PermissionError_("The request to sign expired; reload the page and sign again.")
    if (user is not None and row.user != user) or row.session_sha256 != session:
        raise PermissionError_("This request to sign was made for another session; reload the page and sign again.")
    row.used_at = now
    return row


def _client_challenge(credential: dict[str, Any]) -> bytes:
    """The challenge the browser says it signed (checked again, with everything else, by the verifier)."""
    try:
        client = json.loads(from_b64url(credential["response"]["clientDataJSON"]))
        return from_b64url(client["challenge"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PermissionError_(f"The browser's answer is not a WebAuthn credential ({exc}).") from None


# --- sign-in ------------------------------------------------------------------


def sign_in_options(ws: Workspace, rp: RelyingParty, *, now: datetime) -> tuple[dict[str, Any], bytes]:
    """Request options for signing in with any registered passkey (discoverable credentials)."""
    from webauthn import generate_authentication_options, options_to_json
    from webauthn.helpers.structs import UserVerificationRequirement

    nonce = new_challenge(ws, "sign-in", user=None, session=None, payload=None, now=now)
    options = generate_authentication_options(rp_id=rp.id, challenge=nonce,
                                              user_verification=UserVerificationRequirement.REQUIRED)
    return json.loads(options_to_json(options)), nonce


def sign_in(ws: Workspace, credential: dict[str, Any], rp: RelyingParty, *, now: datetime) -> tuple[str, int]:
    """Check a sign-in assertion; returns (user, passkey id) of a live passkey."""
    nonce = _client_challenge(credential)
    with ws.transaction() as s:
        take_challenge(s, nonce, "sign-in", user=None, session=None, now=now)
        passkey = _live_passkey(s, credential)
        _verify_assertion(passkey, credential, nonce, rp)
        ws.record(s, "voxgate.passkey.used", actor=passkey.user, subject=passkey.user,
                  data={"passkey": passkey.id, "for": "sign-in"}, now=now)
        return passkey.user, passkey.id


def _live_passkey(s: Session, credential: dict[str, Any]) -> PasskeyRow:
    credential_id = str(credential.get("id", ""))
    passkey = s.scalars(select(PasskeyRow).where(PasskeyRow.credential_id == credential_id)).first()
    if passkey is None:
        raise PermissionError_("This passkey is not registered here; ask your admin for an invitation.")
    if passkey.disabled_at is not None:
        raise PermissionError_(f"This passkey was disabled on {passkey.disabled_at:%Y-%m-%d}: "
                               f"{passkey.disabled_reason}. Ask your admin.")
    return passkey


def _verify_assertion(passkey: PasskeyRow, credential: dict[str, Any], challenge: bytes, rp: RelyingParty) -> None:
    """WebAuthn's checks (challenge, origin, RP, user verified, signature, sign count); the count moves on."""
    from webauthn import verify_authentication_response
    from webauthn.helpers.exceptions import InvalidAuthenticationResponse

    if passkey.rp_id != rp.id or passkey.origin != rp.origin:
        raise PermissionError_(f"This passkey was registered for {passkey.origin}, not {rp.origin}.")
    try:
        verified = verify_authentication_response(
            credential=credential, expected_challenge=challenge, expected_rp_id=rp.id, expected_origin=rp.origin,
            credential_public_key=passkey.public_key, credential_current_sign_count=passkey.sign_count,
            require_user_verification=True)
    except (InvalidAuthenticationResponse, ValueError, KeyError, TypeError) as exc:
        raise PermissionError_(f"The passkey signature was refused: {exc}.") from None
    passkey.sign_count = verified.new_sign_count


# --- approvals ----------------------------------------------------------------


@dataclass(frozen=True)
class PasskeySignature:
    """A passkey's answer to an approval challenge, as the browser sent it."""

    credential: dict[str, Any]
    rp: RelyingParty
    session: str  # the portal session (its sha256) the challenge was issued to


def approval_challenge(ws: Workspace, payload: ApprovalPayload, *, session: str, now: datetime) -> tuple[bytes, list[str]]:
    """A nonce for signing `payload`, and the ids of the reviewer's live passkeys to sign with."""
    with ws.sessions() as s:
        ids = [p.credential_id for p in s.scalars(select(PasskeyRow).where(PasskeyRow.user == payload.reviewer,
                                                                            PasskeyRow.disabled_at.is_(None)))]
    if not ids:
        raise PermissionError_(f"{payload.reviewer} has no live passkey; ask your admin for an invitation.")
    nonce = new_challenge(ws, "approve", user=payload.reviewer, session=session, payload=payload.to_bytes(), now=now)
    return nonce, ids


def check_signature(s: Session, signed: PasskeySignature, payload: ApprovalPayload,
                    now: datetime) -> tuple[PasskeyRow, bytes, bytes]:
    """Inside the decision's transaction: the nonce was issued for exactly `payload` to this session,
    the assertion is by a live passkey of the reviewer, and it verifies. Returns (passkey, nonce, signature)."""
    nonce = _client_challenge(signed.credential)[32:]
    challenge = take_challenge(s, nonce, "approve", user=payload.reviewer, session=signed.session, now=now)
    if challenge.payload != payload.to_bytes().decode():
        raise ApprovalError("You were asked to sign another decision than this one (the statement, its revision or "
                            "its stage changed, or the signature is for another statement); reload and sign again.")
    passkey = _live_passkey(s, signed.credential)
    if passkey.user != payload.reviewer:
        raise PermissionError_("This passkey belongs to someone else.")
    _verify_assertion(passkey, signed.credential, payload.challenge(nonce), signed.rp)
    return passkey, nonce, from_b64url(signed.credential["response"]["signature"])


def store_assertion(s: Session, approval: ApprovalRow, passkey: PasskeyRow, payload: ApprovalPayload, nonce: bytes,
                    signed: PasskeySignature) -> None:
    response = signed.credential["response"]
    s.add(PasskeyApprovalRow(approval_id=approval.id, passkey_id=passkey.id, payload=payload.to_bytes().decode(),
                             nonce=nonce.hex(), authenticator_data=from_b64url(response["authenticatorData"]),
                             client_data_json=from_b64url(response["clientDataJSON"]),
                             signature=from_b64url(response["signature"]), public_key=passkey.public_key,
                             rp_id=passkey.rp_id, origin=passkey.origin))


def assertions(s: Session) -> dict[bytes, PasskeyApprovalRow]:
    """Every stored passkey assertion, by the signature the approval row carries."""
    return {r.signature: r for r in s.scalars(select(PasskeyApprovalRow))}


def approval_verifies(s: Session, a: Approval, expected: ApprovalPayload, held: People,
                      stored: dict[bytes, PasskeyApprovalRow]) -> bool:
    """Whether a v2 approval signed with a passkey counts, by its stored assertion alone (checked offline).

    The assertion must verify against the passkey's registered COSE key, origin and RP id for
    exactly `expected` (this workspace, statement, revision, stage, subject, reviewer, decision,
    listened); the passkey must be the one the approval names (`key_fingerprint`), registered by
    the reviewer and live (not disabled) at the approval's audit event, and the reviewer active then.
    """
    record = stored.get(a.signature)
    if record is None or a.seq is None:
        return False
    passkey = s.get(PasskeyRow, record.passkey_id)
    approval = s.get(ApprovalRow, record.approval_id)
    if passkey is None or approval is None or approval.seq != a.seq or approval.reviewer != a.reviewer:
        return False
    if record.public_key != passkey.public_key or passkey_fingerprint(passkey.public_key) != a.key_fingerprint:
        return False
    if held.passkey_at(a.reviewer, passkey.id, passkey.public_key, a.seq) is None or not held.active_at(a.reviewer,
                                                                                                         a.seq):
        return False
    assertion = PasskeyAssertion(record.payload.encode(), bytes.fromhex(record.nonce), record.authenticator_data,
                                 record.client_data_json, record.signature, passkey.public_key, passkey.rp_id,
                                 passkey.origin)
    return not problems(assertion, expected)


def vouchers(s: Session) -> dict[int, str]:
    """Passkey id -> the fingerprint of its owner's own key that vouched for it.

    A person vouches for a passkey by inviting themselves (`voxgate user invite NAME --as NAME`):
    that invitation's audit event carries their signature, checked here against the key they held
    then. A passkey registered from an admin's invitation has no voucher: an admin could have
    registered it under the person's name, so it never stands in for a key a consent binds.
    """
    ws_id, held = workspace_id(s), people(s)
    invited = {}
    for row in s.scalars(select(AuditRow).where(AuditRow.action == PASSKEY_INVITED)):
        if isinstance(row.data, dict) and isinstance(row.data.get("invitation"), int):
            invited[row.data["invitation"]] = row
    found: dict[int, str] = {}
    for reg in s.scalars(select(AuditRow).where(AuditRow.action == PASSKEY_REGISTERED)):
        data = reg.data if isinstance(reg.data, dict) else {}
        inv = invited.get(data.get("invitation"))  # type: ignore[arg-type]
        if inv is None or ws_id is None or inv.actor != reg.subject or inv.subject != reg.subject or inv.seq > reg.seq:
            continue
        signed = inv.data.get("signed")
        if not isinstance(signed, dict) or "signature" not in signed:
            continue
        key = held.key_at(inv.actor, str(signed.get("key")), inv.seq)
        try:
            signature = bytes.fromhex(str(signed["signature"]))
        except ValueError:
            continue
        unsigned = {k: v for k, v in inv.data.items() if k != "signed"}
        if key is not None and verify(key.public_key, signature,
                                      action_payload(ws_id, inv.action, inv.subject, unsigned, inv.actor, inv.at)):
            found[int(data["passkey"])] = key.fingerprint
    return found
