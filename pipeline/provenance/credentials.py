"""Content credentials (C2PA), one import for callers: identity (`identity`), assertions (`manifest`), signing and reading (`signing`).

Every export whose format can hold a manifest carries one signed with the
workspace's certificate: WAV, MP3 and MP4/M4A embed it. c2pa cannot embed
into Ogg, so an Ogg export gets a sidecar ``<file>.c2pa`` beside it, bound to
the Ogg's bytes by hash. The manifest declares the audio as made by a trained
model (a `c2pa.created` action with digital source type
trainedAlgorithmicMedia), names the payload watermark as a soft binding, and
carries our assertion `org.voxgate.provenance`: organisation, voice, consent
record, statement revision, approvals and render settings.

The manifest is signed at render time, so it can only hold the approvals that
exist then: the text and owner approvals. Audio sign-off comes after the audio
by its nature; it lives in the registry and the audit log, and `voxgate
verify` reports it from there.

The identity lives in ``<home>/keys/c2pa/``:

    signer.pem   the signing chain: the signing certificate first, the CA verifiers should trust last
    signer.key   its private key (EC P-256 for ES256, mode 0600)
    trusted.pem  every chain this workspace has signed with; its CA certificates are the
                 trust anchors, the others the signing certificates we pin

`init` makes a CA and a signing certificate; the CA's private key exists only
in memory during `init`, so the signing key is the one secret to guard. An
operator may import their own chain (`import_identity`). A manifest counts as
ours (TRUSTED) only when c2pa validates its chain up to one of our anchors
*and* its signing certificate is one we signed with: an imported chain may end
at a public CA that certifies other people too.

Measured with c2pa-python 0.38.1 (c2pa-rs 0.91.3) on this project's 2-core
machine, for an 11 s clip: signing with the read-back check 9 ms (MP3, M4A,
Ogg sidecar) to 23 ms (WAV, 1 MB); reading and validating 2-7 ms.
"""

from pipeline.provenance.identity import (
    CA_VALIDITY,
    IDENTITY_FILES,
    SIGNER_CHAIN,
    SIGNER_KEY,
    SIGNER_VALIDITY,
    TRUSTED_CHAINS,
    SigningIdentity,
    TrustList,
    create_identity,
    import_identity,
    load_identity,
    load_trust,
)
from pipeline.provenance.manifest import (
    ASSERTION_LABEL,
    PAYLOAD_ALGORITHM,
    TRAINED_ALGORITHMIC_MEDIA,
    ClipProvenance,
    SignedApproval,
)
from pipeline.provenance.signing import (
    SIDECAR_SUFFIX,
    CredentialReport,
    CredentialStatus,
    can_embed,
    embed_credentials,
    read_credentials,
    sidecar_path,
    write_sidecar,
)

__all__ = [
    "ASSERTION_LABEL",
    "CA_VALIDITY",
    "IDENTITY_FILES",
    "PAYLOAD_ALGORITHM",
    "SIDECAR_SUFFIX",
    "SIGNER_CHAIN",
    "SIGNER_KEY",
    "SIGNER_VALIDITY",
    "TRAINED_ALGORITHMIC_MEDIA",
    "TRUSTED_CHAINS",
    "ClipProvenance",
    "CredentialReport",
    "CredentialStatus",
    "SignedApproval",
    "SigningIdentity",
    "TrustList",
    "can_embed",
    "create_identity",
    "embed_credentials",
    "import_identity",
    "load_identity",
    "load_trust",
    "read_credentials",
    "sidecar_path",
    "write_sidecar",
]
