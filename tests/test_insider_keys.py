"""An insider at the keyboard: the acting identity is the key that signs, never a name typed after `--as`.

Replayed against the real CLI and the real SQLite file. Every person has
their own key folder and passphrase, as they would on their own machines; a
refused command leaves every table row and the audit head as they were.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import DEMO_VOICE, ORG, store_snapshot
from pipeline.cli.main import app
from pipeline.identity.personal import passphrase_env_name

runner = CliRunner()
TEXT = "We ask for a fair and public trial."
PEOPLE = {"ops": "admin", "sam": "submitter", "rita": "reviewer", "ravi": "reviewer", "joe-delegate": "delegate"}


class Team:
    """A workspace and, for each person, their own key folder and passphrase."""

    def __init__(self, root: Path) -> None:
        self.root, self.home = root, root / "ws"
        self.folders = {name: root / "people" / name / "keys" for name in PEOPLE}
        self.passphrases = {name: f"{name}'s own passphrase" for name in PEOPLE}

    def env(self, person: str, *, acting: str | None = None, folder: Path | None = None,
            passphrase: str | None = None) -> dict[str, str | None]:
        """The shell of `person`: their key folder, and the only passphrase they know (typed for `acting`'s key)."""
        env: dict[str, str | None] = {"VOXGATE_KEYS": str(folder or self.folders[person]), "VOXGATE_PASSPHRASE": None}
        env.update({passphrase_env_name(name): None for name in PEOPLE})
        env[passphrase_env_name(acting or person)] = passphrase or self.passphrases[person]
        return env

    def run(self, person: str, *args: str, user: str | None = None, stdin: str | None = None, **env_opts):  # noqa: ANN003
        extra = ["--home", str(self.home)] + (["--as", user or person] if user != "" else [])
        env = self.env(person, acting=user or person, **env_opts)
        return runner.invoke(app, [*args, *extra], env=env, input=stdin)

    def ok(self, person: str, *args: str, **kw):  # noqa: ANN003
        result = self.run(person, *args, **kw)
        assert result.exit_code == 0, result.output
        return result

    def refused(self, person: str, *args: str, match: str, **kw) -> str:  # noqa: ANN003
        before = store_snapshot(self.home)
        result = self.run(person, *args, **kw)
        assert result.exit_code == 1, result.output
        err = result.stderr.strip()
        assert "\n" not in err and "Traceback" not in err, err
        assert match in err, err
        assert store_snapshot(self.home) == before, "a refused command changed the store"
        return err

    def state(self, statement_id: int) -> str:
        con = sqlite3.connect(self.home / "voxgate.db")
        try:
            return con.execute("SELECT state FROM statements WHERE id = ?", (statement_id,)).fetchone()[0]
        finally:
            con.close()


@pytest.fixture
def team(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Team:
    """Each person makes their key on their own machine; the admin registers the public keys and the demo voice."""
    for var in ("VOXGATE_KEYS", "VOXGATE_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)
    t = Team(tmp_path)
    for name in PEOPLE:
        result = runner.invoke(app, ["key", "init", name, "--keys", str(t.folders[name])], env=t.env(name))
        assert result.exit_code == 0, result.output
        assert result.stdout.startswith("ssh-ed25519 ")
    assert runner.invoke(app, ["init", "--home", str(t.home), "--org", ORG]).exit_code == 0
    for name, role in PEOPLE.items():
        t.ok("ops", "user", "add", name, "--role", role, "--public-key", str(t.folders[name] / f"{name}.pub"),
             user="" if name == "ops" else "ops")
    t.ok("ops", "voice", "add", str(DEMO_VOICE))
    t.ok("sam", "submit", "-", "--voice", "demo", "--purpose", "public-statement", "--channel", "social", stdin=TEXT)
    return t


def test_the_submitter_cannot_approve_as_the_reviewer_or_the_delegate(team: Team) -> None:
    """Issue 10's first finding: `--as rita` then `--as joe-delegate`, typed by sam, brought his text to approval."""
    team.refused("sam", "review", "approve", "1", user="rita", match="No key for rita")
    team.refused("sam", "review", "approve", "1", user="joe-delegate", match="No key for joe-delegate")
    # He gets hold of rita's key file, but not her passphrase.
    shutil.copy(team.folders["rita"] / "rita.key", team.folders["sam"] / "rita.key")
    team.refused("sam", "review", "approve", "1", user="rita", match="Wrong passphrase for rita's key")
    # He puts a key of his own under her name.
    (team.folders["sam"] / "rita.key").unlink()
    shutil.copy(team.folders["sam"] / "sam.key", team.folders["sam"] / "rita.key")
    team.refused("sam", "review", "approve", "1", user="rita", match="is not rita's registered key")
    assert team.state(1) == "submitted"
    # The real people, each with their own key, can.
    team.ok("rita", "review", "approve", "1")
    team.ok("joe-delegate", "review", "approve", "1")
    assert team.state(1) == "text_approved"


def test_submit_needs_the_submitters_own_key_too(team: Team) -> None:
    team.refused("rita", "submit", "-", "--voice", "demo", "--purpose", "public-statement", "--channel", "social",
                 user="sam", stdin=TEXT, match="No key for sam")


def test_a_wrong_passphrase_is_refused_in_one_line(team: Team) -> None:
    err = team.refused("rita", "review", "approve", "1", passphrase="not rita's passphrase",
                       match="Wrong passphrase for rita's key")
    assert len(err) < 200


def test_a_disabled_reviewer_cannot_act_and_nothing_signed_after_the_disable_counts(team: Team) -> None:
    team.ok("ops", "user", "disable", "rita", "--reason", "leaked a draft")
    team.refused("rita", "review", "approve", "1", match="rita was disabled")
    # An insider with database access and rita's key writes her approval in anyway, dated before the disable.
    from pipeline.domain import ApprovalPayload, Decision, Stage
    from pipeline.identity.personal import load_key
    from pipeline.services import review
    from pipeline.services.workspace import Keyring, open_workspace
    from pipeline.store.models import ApprovalRow, StatementRow

    ws = open_workspace(team.home, Keyring(team.folders["ops"], lambda _name: team.passphrases["ops"].encode()))
    key = load_key(team.folders["rita"], "rita", team.passphrases["rita"].encode())
    with ws.transaction() as s:
        row = s.get(StatementRow, 1)
        disabled_at = s.get(__import__("pipeline.store.models", fromlist=["UserRow"]).UserRow, "rita").disabled_at
        backdated = disabled_at.replace(year=disabled_at.year - 1)
        payload = ApprovalPayload(ws.id_in(s), 1, row.revision, Stage.TEXT, row.revisions[-1].sha256, "rita",
                                  Decision.APPROVE)
        signature = key.sign(payload.to_bytes())
        from pipeline.identity.personal import fingerprint
        from pipeline.identity.keys import public_key_of

        a = ApprovalRow(statement_id=1, stage="text", subject_sha256=payload.subject_hash, reviewer="rita",
                        decision="approve", comment="", signature=signature, created_at=backdated, payload_version=2,
                        revision=row.revision, listened=False, key_fingerprint=fingerprint(public_key_of(key)))
        s.add(a)
        s.flush()
        import hashlib

        event = ws.record(s, "voxgate.review.approve", actor="rita", subject=1, now=backdated,
                          data={"stage": "text", "signature_sha256": hashlib.sha256(signature).hexdigest()})
        a.seq = event.seq
    details = review.review_details(ws, 1)
    assert [x["signature_valid"] for x in details["approvals"]] == [False]
    assert "1 more reviewer approval" in details["missing"]
    team.ok("joe-delegate", "review", "approve", "1")
    assert team.state(1) == "in_review"  # the owner stage is met; the reviewer's is not


def test_a_key_swapped_under_the_delegates_name_does_not_count_for_the_owner_stage(team: Team, tmp_path: Path) -> None:
    """The admin registers a key of his own for joe-delegate and approves with it: the consent binds joe's key."""
    evil = tmp_path / "admin-made"
    result = runner.invoke(app, ["key", "init", "joe-delegate", "--keys", str(evil)],
                           env={**team.env("ops"), passphrase_env_name("joe-delegate"): "the admin's passphrase"})
    assert result.exit_code == 0, result.output
    team.ok("ops", "user", "rotate-key", "joe-delegate", "--public-key", str(evil / "joe-delegate.pub"),
            "--reason", "lost his laptop")
    team.ok("rita", "review", "approve", "1")
    team.ok("ops", "review", "approve", "1", user="joe-delegate", folder=evil, passphrase="the admin's passphrase")
    assert team.state(1) == "in_review"
    show = team.ok("ops", "review", "show", "1", "--json", user="")
    assert "the voice owner's (or a named delegate's) approval" in show.stdout
    # joe's own old key no longer acts (it is not his current key) ...
    team.refused("joe-delegate", "review", "approve", "1", match="is not joe-delegate's registered key")
    consent = team.ok("ops", "consent", "show", "demo", user="")
    assert "WITNESSED ONLY" in consent.stdout
    from pipeline.identity.personal import fingerprint, read_public_key

    record = json.loads(team.ok("ops", "consent", "show", "demo", "--json", user="").stdout)["consent"]
    joe = fingerprint(read_public_key(team.folders["joe-delegate"] / "joe-delegate.pub"))
    assert record["approver_keys"] == {"joe-delegate": joe} and record["witness_only"]
    team.ok("ops", "consent", "certificate", "demo", "--out", str(tmp_path / "consent.html"), user="")
    assert "Witnessed only" in (tmp_path / "consent.html").read_text()


def test_a_revision_back_to_earlier_words_does_not_revive_their_approval(workspace) -> None:
    """A→B→A: rita approved A; after a change request and two revisions the words are A again, as revision 3."""
    from pipeline.domain import Decision
    from pipeline.services import review, statements
    from pipeline.services.workspace import utcnow

    a, b = "We ask for a fair and public trial.", "We ask for a closed hearing."
    sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=a, actor="sam", now=utcnow()).id
    review.decide(workspace, sid, Decision.APPROVE, actor="rita", now=utcnow())
    review.decide(workspace, sid, Decision.REQUEST_CHANGES, actor="ravi", now=utcnow())
    statements.revise(workspace, sid, b, actor="sam", now=utcnow())
    statements.revise(workspace, sid, a, actor="sam", now=utcnow())
    row = review.decide(workspace, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
    assert row.revision == 3
    assert row.state == "in_review", "rita's approval of revision 1 counted for revision 3"
    assert "1 more reviewer approval" in review.review_details(workspace, sid)["missing"]
    row = review.decide(workspace, sid, Decision.APPROVE, actor="rita", now=utcnow())  # she reads it again
    assert row.state == "text_approved"


def test_a_v1_approval_stored_before_the_upgrade_keeps_verifying_as_v1(workspace) -> None:
    from pipeline.domain import Decision, Stage, approval_payload
    from pipeline.services import review, statements
    from pipeline.services.workspace import utcnow
    from pipeline.store.models import ApprovalRow

    sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=TEXT, actor="sam", now=utcnow()).id
    with workspace.transaction() as s:
        subject = s.get(__import__("pipeline.store.models", fromlist=["StatementRow"]).StatementRow, sid).revisions[-1].sha256
        signature = workspace.keyring.key("rita").sign(approval_payload(sid, Stage.TEXT, subject, "rita", Decision.APPROVE))
        s.add(ApprovalRow(statement_id=sid, stage="text", subject_sha256=subject, reviewer="rita", decision="approve",
                          comment="", signature=signature, created_at=utcnow()))
    assert [a["signature_valid"] for a in review.review_details(workspace, sid)["approvals"]] == [True]
    # The same bytes claimed as someone else's v1 approval do not verify.
    with workspace.transaction() as s:
        s.add(ApprovalRow(statement_id=sid, stage="text", subject_sha256=subject, reviewer="ravi", decision="approve",
                          comment="", signature=signature, created_at=utcnow()))
    assert [a["signature_valid"] for a in review.review_details(workspace, sid)["approvals"]] == [True, False]


def test_key_handover_leaves_no_private_key_in_an_older_workspace(tmp_path: Path, monkeypatch) -> None:
    """A workspace made the old way kept every person's unencrypted key in keys/users/; handover moves them out."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from pipeline.identity.keys import public_key_of
    from pipeline.services.workspace import init_workspace, utcnow
    from pipeline.store.models import UserRow

    for var in ("VOXGATE_KEYS", "VOXGATE_PASSPHRASE"):
        monkeypatch.delenv(var, raising=False)
    ws, _ = init_workspace(tmp_path / "ws", ORG, now=utcnow())
    (ws.home / "keys" / "users").mkdir()
    for name, role in (("ops", "admin"), ("rita", "reviewer")):  # as the old `user add` did it
        key = Ed25519PrivateKey.generate()
        (ws.home / "keys" / "users" / f"{name}.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        with ws.transaction() as s:
            s.add(UserRow(name=name, role=role, public_key=public_key_of(key), created_at=utcnow()))
            ws.record(s, "voxgate.user.added", actor="system", subject=name,
                      data={"role": role, "public_key": public_key_of(key).hex()}, now=utcnow())
    out = tmp_path / "handed-over"
    env = {"VOXGATE_KEYS": str(tmp_path / "ops-keys"), "VOXGATE_PASSPHRASE": "a passphrase for the handover"}
    result = runner.invoke(app, ["key", "handover", "--to", str(out), "--home", str(ws.home), "--as", "ops"], env=env)
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.glob("*.key")) == ["ops.key", "rita.key"]
    assert all(p.read_text().startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----") for p in out.glob("*.key"))
    assert not (ws.home / "keys" / "users").exists()
    private = [p for p in ws.home.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()
               and p.parent.name not in ("keys", "c2pa")]
    assert private == []
    audit = runner.invoke(app, ["audit", "log", "--json", "--home", str(ws.home)])
    assert "voxgate.key.handed_over" in audit.stdout
    # The people now act with the handed-over keys.
    result = runner.invoke(app, ["user", "role", "rita", "submitter", "--home", str(ws.home), "--as", "ops"],
                           env={**env, "VOXGATE_KEYS": str(out)})
    assert result.exit_code == 0, result.output
    before = store_snapshot(ws.home)
    again = runner.invoke(app, ["key", "handover", "--to", str(out), "--home", str(ws.home), "--as", "ops"], env=env)
    assert again.exit_code == 1 and "holds no private keys" in again.stderr
    assert store_snapshot(ws.home) == before


def test_after_a_key_rotation_old_signatures_verify_and_the_old_key_no_longer_acts(workspace, tmp_path) -> None:
    from pipeline.domain import Decision
    from pipeline.errors import IdentityError
    from pipeline.identity.personal import create_key
    from pipeline.services import review, statements, users
    from pipeline.services.auditing import audit_verify
    from pipeline.services.workspace import Keyring, utcnow

    sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=TEXT, actor="sam", now=utcnow()).id
    review.decide(workspace, sid, Decision.APPROVE, actor="rita", now=utcnow())
    new_public = create_key(tmp_path / "rita-new", "rita", b"rita's new passphrase")
    users.rotate_key(workspace, "rita", new_public, reason="new laptop", actor="ops", now=utcnow())
    assert [a["signature_valid"] for a in review.review_details(workspace, sid)["approvals"]] == [True]
    assert audit_verify(workspace).ok
    with pytest.raises(IdentityError, match="is not rita's registered key"):
        review.decide(workspace, sid, Decision.REJECT, actor="rita", now=utcnow())
    assert [k.until_seq is None for k in users.key_history(workspace, "rita")] == [False, True]
    with pytest.raises(Exception, match="for themselves"):
        users.rotate_key(workspace, "ops", create_key(tmp_path / "ops-new", "ops", b"ops's new passphrase"),
                         actor="ops", now=utcnow())
    from dataclasses import replace

    rita_now = replace(workspace, keyring=Keyring(tmp_path / "rita-new", lambda _name: b"rita's new passphrase"))
    second = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social",
                               language="en", text=TEXT + " Again.", actor="sam", now=utcnow()).id
    review.decide(rita_now, second, Decision.APPROVE, actor="rita", now=utcnow())  # her new key acts
    assert all(a["signature_valid"] for a in review.review_details(workspace, second)["approvals"])


def test_audit_verify_catches_an_action_signature_the_actor_never_made(workspace) -> None:
    """Whoever holds the organisation key can append events, but cannot sign as a person."""
    from pipeline.identity.personal import fingerprint
    from pipeline.services.auditing import audit_verify
    from pipeline.services.workspace import utcnow

    assert audit_verify(workspace).ok
    with workspace.transaction() as s:
        rita = fingerprint(workspace.keyring.key("rita").public_key().public_bytes_raw())
        workspace.record(s, "voxgate.review.approve", actor="rita", subject=1, now=utcnow(),
                         data={"signed": {"key": rita, "signature": "00" * 64}})
    report = audit_verify(workspace)
    assert not report.ok and "signature by rita that does not verify" in report.problem
