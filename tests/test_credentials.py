"""Content credentials on real exports with real certificates: signing, reading, tampering, identity, import.

Every file here is made by the real exporter (ffmpeg) and signed by the real
c2pa library; certificates are made by `cryptography` in the test.
"""

from __future__ import annotations

import stat
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import ORG
from pipeline.errors import InputError, StoreError
from pipeline.export.formats import ExportFormat, export_clip
from pipeline.export.probe import probe
from pipeline.provenance.credentials import (
    ASSERTION_LABEL,
    PAYLOAD_ALGORITHM,
    TRAINED_ALGORITHMIC_MEDIA,
    ClipProvenance,
    CredentialStatus,
    SignedApproval,
    SigningIdentity,
    create_identity,
    embed_credentials,
    import_identity,
    load_identity,
    read_credentials,
    sidecar_path,
    write_sidecar,
)
from pipeline.provenance.labels import ClipLabels, ai_notice
from pipeline.services.auditing import audit_log
from pipeline.services.workspace import WATERMARK_KEY, init_workspace, open_workspace, utcnow, watermark_secret

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)
EMBEDDED = [ExportFormat.WAV, ExportFormat.MP3, ExportFormat.M4A]


@pytest.fixture(scope="module")
def identity(tmp_path_factory: pytest.TempPathFactory) -> SigningIdentity:
    folder = tmp_path_factory.mktemp("identity") / "c2pa"
    create_identity(folder, ORG, now=utcnow())
    return load_identity(folder)


@pytest.fixture(scope="module")
def provenance() -> ClipProvenance:
    return ClipProvenance(
        clip_id=7, organisation=ORG, voice_id="demo", voice_name="Joe Example", consent_id=1,
        consent_sha256="ab" * 32, statement_id=3, revision=2, revision_sha256="cd" * 32, language="en",
        created_at=NOW, approvals=(SignedApproval("rita", "text", "approve", "ef" * 32),
                                   SignedApproval("joe-delegate", "owner", "approve", "12" * 32)),
        settings={"engine": "piper", "target_lufs": -16.0},
    )


@pytest.fixture(scope="module")
def labels() -> ClipLabels:
    return ClipLabels(clip_id="7", statement_id=3, voice_id="demo", voice_name="Joe Example", organisation=ORG,
                      language="en", ai_notice=ai_notice(owner="Joe Example", organisation=ORG),
                      created_at=NOW.isoformat())


def signed_export(tmp_path: Path, speech_clip: tuple[np.ndarray, int], labels: ClipLabels, fmt: ExportFormat,
                  provenance: ClipProvenance, identity: SigningIdentity) -> Path:
    """An export as the render makes it: sealed inside the exporter, or with a sidecar for Ogg."""
    manifest = provenance.manifest()
    if fmt is ExportFormat.OGG:
        path = export_clip(*speech_clip, fmt, tmp_path / "clip.ogg", labels)
        write_sidecar(path, fmt.mime, manifest, identity)
        return path
    return export_clip(*speech_clip, fmt, tmp_path / f"clip{fmt.extension}", labels,
                       seal=lambda tmp, f: embed_credentials(tmp, f.mime, manifest, identity))


def flip_byte_in_the_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


# --- signing and reading --------------------------------------------------------------


@pytest.mark.parametrize("fmt", EMBEDDED)
def test_export_carries_a_trusted_manifest_declaring_ai_origin(
    tmp_path, speech_clip, labels, provenance, identity, fmt
) -> None:
    path = signed_export(tmp_path, speech_clip, labels, fmt, provenance, identity)
    report = read_credentials(path, identity.trust)
    assert report.status is CredentialStatus.TRUSTED and not report.sidecar
    assert report.source_type == TRAINED_ALGORITHMIC_MEDIA
    assert report.clip_id == 7 and report.provenance == provenance.manifest()["assertions"][2]["data"]
    # The label tags written before signing are still there (the exporter checks the signed bytes).
    assert probe(path).tags["voxgate_clip_id"] == "7"


def test_manifest_names_consent_statement_approvals_and_payload(provenance) -> None:
    assertions = {a["label"]: a["data"] for a in provenance.manifest()["assertions"]}
    ours = assertions[ASSERTION_LABEL]
    assert ours["consent"] == {"id": 1, "sha256": "ab" * 32}
    assert ours["statement"] == {"id": 3, "revision": 2, "sha256": "cd" * 32}
    assert [(a["reviewer"], a["stage"]) for a in ours["approvals"]] == [("rita", "text"), ("joe-delegate", "owner")]
    assert "audio sign-off" in ours["approvals_scope"]  # it cannot exist when the manifest is signed
    assert ours["watermark"] == {"algorithm": PAYLOAD_ALGORITHM, "payload_serial": 7}
    assert assertions["c2pa.soft-binding"]["alg"] == PAYLOAD_ALGORITHM
    created = assertions["c2pa.actions.v2"]["actions"][0]
    assert created["action"] == "c2pa.created" and created["digitalSourceType"] == TRAINED_ALGORITHMIC_MEDIA


@pytest.mark.parametrize("fmt, code", [
    (ExportFormat.WAV, "assertion.dataHash.mismatch"),
    (ExportFormat.MP3, "assertion.dataHash.mismatch"),
    (ExportFormat.M4A, "assertion.bmffHash.mismatch"),  # MP4 is hashed box by box
])
def test_a_file_changed_after_signing_reads_as_tampered(
    tmp_path, speech_clip, labels, provenance, identity, fmt, code
) -> None:
    path = signed_export(tmp_path, speech_clip, labels, fmt, provenance, identity)
    flip_byte_in_the_middle(path)
    report = read_credentials(path, identity.trust)
    assert report.status is CredentialStatus.TAMPERED and code in report.problems


def test_ogg_gets_a_sidecar_bound_to_its_bytes(tmp_path, speech_clip, labels, provenance, identity) -> None:
    path = signed_export(tmp_path, speech_clip, labels, ExportFormat.OGG, provenance, identity)
    assert sidecar_path(path).name == "clip.ogg.c2pa"
    report = read_credentials(path, identity.trust)
    assert report.status is CredentialStatus.TRUSTED and report.sidecar and report.clip_id == 7
    flip_byte_in_the_middle(path)
    assert read_credentials(path, identity.trust).status is CredentialStatus.TAMPERED
    sidecar_path(path).unlink()
    assert read_credentials(path, identity.trust).status is CredentialStatus.ABSENT


def test_unsigned_audio_and_other_files_have_no_credentials(tmp_path, speech_clip, labels, identity) -> None:
    wav = export_clip(*speech_clip, ExportFormat.WAV, tmp_path / "plain.wav", labels)
    text = tmp_path / "notes.txt"
    text.write_text("not audio")
    for path in (wav, text):
        assert read_credentials(path, identity.trust).status is CredentialStatus.ABSENT


def test_another_workspaces_signature_is_untrusted(tmp_path, speech_clip, labels, provenance, identity) -> None:
    create_identity(tmp_path / "other", "Someone Else", now=utcnow())
    theirs = load_identity(tmp_path / "other")
    path = signed_export(tmp_path, speech_clip, labels, ExportFormat.WAV, provenance, theirs)
    report = read_credentials(path, identity.trust)
    assert report.status is CredentialStatus.UNTRUSTED and "signingCredential.untrusted" in report.problems
    assert report.clip_id == 7  # a claim only: the verdict never believes an untrusted manifest


def test_a_certificate_from_our_ca_that_we_never_signed_with_is_not_ours(
    tmp_path, speech_clip, labels, provenance
) -> None:
    """An imported chain may end at a CA that certifies others too: we pin our own signing certificates."""
    ca_key, ca = make_ca()
    ours, stranger = make_leaf(ca_key, ca), make_leaf(ca_key, ca)
    import_identity(tmp_path / "c2pa", pem(ours[1], ca), key_pem(ours[0]), now=utcnow())
    trust = load_identity(tmp_path / "c2pa").trust
    import_identity(tmp_path / "stranger", pem(stranger[1], ca), key_pem(stranger[0]), now=utcnow())
    path = signed_export(tmp_path, speech_clip, labels, ExportFormat.MP3, provenance,
                         load_identity(tmp_path / "stranger"))
    report = read_credentials(path, trust)
    assert report.status is CredentialStatus.UNTRUSTED
    assert any("not one this workspace signs with" in p for p in report.problems)


# --- the workspace identity -------------------------------------------------------------


def test_init_creates_the_signing_identity_and_watermark_secret(tmp_path) -> None:
    ws, created = init_workspace(tmp_path / "ws", ORG, now=utcnow())
    assert created
    c2pa_files = sorted(p.name for p in ws.c2pa_dir.iterdir())
    assert c2pa_files == ["signer.key", "signer.pem", "trusted.pem"]  # the CA's private key is never written
    assert stat.S_IMODE((ws.c2pa_dir / "signer.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((ws.home / WATERMARK_KEY).stat().st_mode) == 0o600
    secret = watermark_secret(ws)
    assert len(secret) == 32 and secret != watermark_secret(init_workspace(tmp_path / "ws2", ORG, now=utcnow())[0])
    chain = x509.load_pem_x509_certificates((ws.c2pa_dir / "signer.pem").read_bytes())
    assert [is_ca(c) for c in chain] == [False, True]
    key = serialization.load_pem_private_key((ws.c2pa_dir / "signer.key").read_bytes(), password=None)
    assert key.public_key() == chain[0].public_key()
    assert ORG in chain[0].subject.rfc4514_string()
    created_event = next(e for e in audit_log(ws) if e.action == "voxgate.workspace.created")
    assert "created the C2PA signing identity" in created_event.data["c2pa"]


def test_a_workspace_without_identity_files_is_refused_until_init_adds_them(tmp_path) -> None:
    ws, _ = init_workspace(tmp_path / "ws", ORG, now=utcnow())
    before = {p: (ws.home / p).read_bytes() for p in ("voxgate.toml", "keys/org.key")}
    for path in sorted(ws.c2pa_dir.iterdir()):
        path.unlink()
    ws.c2pa_dir.rmdir()
    (ws.home / WATERMARK_KEY).unlink()  # as a workspace made before content credentials
    with pytest.raises(StoreError, match=r"keys/c2pa/signer.pem.*Run `voxgate init --home"):
        open_workspace(ws.home)
    said: list[str] = []
    again, created = init_workspace(ws.home, "ignored for an existing workspace", now=utcnow(), say=said.append)
    assert not created and len(said) == 2
    assert "created the C2PA signing identity" in said[0] and ORG in said[0]
    assert "created the watermark secret" in said[1]
    assert {p: (ws.home / p).read_bytes() for p in before} == before  # nothing else changed
    assert audit_log(again)[-1].action == "voxgate.workspace.identity_added"
    said.clear()
    init_workspace(ws.home, ORG, now=utcnow(), say=said.append)
    assert said == []  # complete now: a second init adds nothing


def test_half_an_identity_is_never_silently_replaced(tmp_path) -> None:
    ws, _ = init_workspace(tmp_path / "ws", ORG, now=utcnow())
    (ws.c2pa_dir / "signer.key").unlink()
    with pytest.raises(StoreError, match="incomplete.*restore it from a backup"):
        init_workspace(ws.home, ORG, now=utcnow())


def test_an_operators_own_certificate_replaces_the_signer_and_old_clips_stay_trusted(
    tmp_path, speech_clip, labels, provenance
) -> None:
    ws, _ = init_workspace(tmp_path / "ws", ORG, now=utcnow())
    before = signed_export(tmp_path, speech_clip, labels, ExportFormat.WAV, provenance, load_identity(ws.c2pa_dir))
    ca_key, ca = make_ca()
    leaf_key, leaf = make_leaf(ca_key, ca)
    (tmp_path / "chain.pem").write_bytes(pem(leaf, ca))
    (tmp_path / "signer.key").write_bytes(key_pem(leaf_key))
    said: list[str] = []
    init_workspace(ws.home, ORG, now=utcnow(), c2pa=(tmp_path / "chain.pem", tmp_path / "signer.key"), say=said.append)
    assert said and "imported the C2PA signing identity" in said[0] and "Operator Signer" in said[0]
    identity = load_identity(ws.c2pa_dir)
    after_dir = tmp_path / "after"
    after_dir.mkdir()
    after = signed_export(after_dir, speech_clip, labels, ExportFormat.WAV, provenance, identity)
    assert "Operator Signer" in read_credentials(after, identity.trust).signer
    assert read_credentials(after, identity.trust).status is CredentialStatus.TRUSTED
    assert read_credentials(before, identity.trust).status is CredentialStatus.TRUSTED


@pytest.mark.parametrize("case, match", [
    ("other key", "does not belong to the signing certificate"),
    ("leaf only", "holds one certificate"),  # verifiers need the CA to anchor trust
    ("p384", "EC P-256"),  # we sign ES256
    ("encrypted key", "encrypted"),
    ("no extended key usage", "c2pa refused|reads as"),  # c2pa's own rule, found by the test signature
    ("expired", "not valid now"),
])
def test_import_refuses_unusable_certificates(tmp_path, case, match) -> None:
    ca_key, ca = make_ca()
    curve = ec.SECP384R1() if case == "p384" else ec.SECP256R1()
    valid_days = -1 if case == "expired" else 365
    leaf_key, leaf = make_leaf(ca_key, ca, curve=curve, eku=case != "no extended key usage", valid_days=valid_days)
    chain = pem(leaf) if case == "leaf only" else pem(leaf, ca)
    key = ec.generate_private_key(ec.SECP256R1()) if case == "other key" else leaf_key
    password = serialization.BestAvailableEncryption(b"pw") if case == "encrypted key" else None
    with pytest.raises(InputError, match=match):
        import_identity(tmp_path / "c2pa", chain, key_pem(key, password), now=utcnow())
    assert not (tmp_path / "c2pa").exists()  # nothing written


# --- certificates made here ----------------------------------------------------------------


def make_ca() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Operator CA")])
    cert = (builder(name, name, key.public_key(), 3650)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(usage(key_cert_sign=True), critical=True)
            .sign(key, hashes.SHA256()))
    return key, cert


def make_leaf(ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, *, curve: ec.EllipticCurve = ec.SECP256R1(),
              eku: bool = True, valid_days: int = 365) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(curve)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Operator Signer"),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORG)])
    b = (builder(name, ca.subject, key.public_key(), valid_days)
         .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
         .add_extension(usage(digital_signature=True), critical=True)
         .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False))
    if eku:
        b = b.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
    return key, b.sign(ca_key, hashes.SHA256())


def builder(subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey,
            days: int) -> x509.CertificateBuilder:
    now = utcnow()
    start = now - timedelta(days=2) if days < 0 else now - timedelta(hours=1)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(public_key)
            .serial_number(x509.random_serial_number()).not_valid_before(start)
            .not_valid_after(now + timedelta(days=days))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False))


def usage(*, digital_signature: bool = False, key_cert_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
                         data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign,
                         crl_sign=key_cert_sign, encipher_only=False, decipher_only=False)


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: ec.EllipticCurvePrivateKey,
            encryption: serialization.KeySerializationEncryption | None = None) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             encryption or serialization.NoEncryption())


def is_ca(cert: x509.Certificate) -> bool:
    return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
