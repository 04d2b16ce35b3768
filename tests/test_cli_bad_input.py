"""Bad input: one readable line on stderr, exit status 1, and the store exactly as it was."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import store_snapshot, voice_profile
from pipeline.cli.main import app
from pipeline.domain import Decision
from pipeline.services import review, statements
from pipeline.services.workspace import utcnow

runner = CliRunner()
BOTH_DATABASES = True
GOOD = "We ask for a fair and public trial."


def run(ws, *args: str, user: str | None = "sam", stdin: bytes | None = None):
    extra = ["--home", str(ws.home)] + (["--as", user] if user else [])
    return runner.invoke(app, [*args, *extra], input=stdin)


def refused(ws, *args: str, match: str, user: str | None = "sam", stdin: bytes | None = None) -> None:
    before = store_snapshot(ws.home)
    result = run(ws, *args, user=user, stdin=stdin)
    assert result.exit_code == 1, result.output
    err = result.stderr.strip()
    assert "\n" not in err and "Traceback" not in err, err
    assert match in err, err
    assert store_snapshot(ws.home) == before, "a refused command changed the store"


def submit_args(path: Path | str, **opts: str) -> list[str]:
    o = {"voice": "demo", "purpose": "public-statement", "channel": "social", **opts}
    return ["submit", str(path), *(x for k, v in o.items() for x in (f"--{k}", v))]


def text_file(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "statement.txt"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def approved(ws, text: str = GOOD) -> int:
    sid = statements.submit(ws, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=text, actor="sam", now=utcnow()).id
    review.decide(ws, sid, Decision.APPROVE, actor="rita", now=utcnow())
    review.decide(ws, sid, Decision.APPROVE, actor="joe-delegate", now=utcnow())
    return sid


def test_submit_prints_the_new_id(workspace, tmp_path) -> None:
    result = run(workspace, *submit_args(text_file(tmp_path, GOOD)))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "1"


def test_submit_reads_standard_input(workspace) -> None:
    result = run(workspace, *submit_args("-"), stdin=GOOD.encode())
    assert result.exit_code == 0 and result.stdout.strip() == "1"


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("", "empty"),
        ("  \n\t \n", "empty"),  # whitespace only is empty too
        ("a" * 5001, "over the limit of 5,000"),
        (b"caf\xe9 au lait", "not UTF-8"),  # Latin-1 bytes
        ("Hello\x07 world", "U+0007"),  # a control character
        ("Pay \u202eevil\u202c now", "RIGHT-TO-LEFT OVERRIDE"),  # hides reversed words from a reviewer
        ("Pay \u2066x\u2069 now", "LEFT-TO-RIGHT ISOLATE"),
        ("free\u200bdom", "ZERO WIDTH SPACE"),
        ("free\ufeffdom", "ZERO WIDTH NO-BREAK SPACE"),
    ],
    ids=["empty", "blank", "too-long", "not-utf8", "control", "bidi-override", "bidi-isolate", "zwsp", "bom-inside"],
)
def test_bad_text_is_refused(workspace, tmp_path, content, match) -> None:
    refused(workspace, *submit_args(text_file(tmp_path, content)), match=match)


def test_missing_text_file(workspace, tmp_path) -> None:
    refused(workspace, *submit_args(tmp_path / "nope.txt"), match="No file")


@pytest.mark.parametrize(
    ("args", "user", "match"),
    [
        (["statements", "show", "999"], None, "No statement 999"),
        (["review", "approve", "999"], "rita", "No statement 999"),
        (["voice", "show", "nobody"], None, "No voice 'nobody'"),
        (["consent", "revoke", "nobody", "--reason", "x"], "ops", "No voice 'nobody'"),
        (["clips", "export", "42", "--out", "."], "dana", "No clip 42"),
        (["clips", "copies", "42"], None, "No clip 42"),
        (["user", "revoke-tokens", "ghost", "--reason", "x"], "ops", "No user named 'ghost'"),
    ],
)
def test_unknown_things(workspace, args, user, match) -> None:
    refused(workspace, *args, user=user, match=match)


def test_unknown_voice_on_submit(workspace, tmp_path) -> None:
    refused(workspace, *submit_args(text_file(tmp_path, GOOD), voice="ghost"), match="No voice 'ghost'")


def test_unknown_user(workspace, tmp_path) -> None:
    refused(workspace, *submit_args(text_file(tmp_path, GOOD)), user="ghost", match="No user named 'ghost'")


def test_no_acting_user(workspace, tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("VOXGATE_USER", raising=False)
    refused(workspace, *submit_args(text_file(tmp_path, GOOD)), user=None, match="--as NAME")


@pytest.mark.parametrize(
    ("args", "user"),
    [
        (["review", "approve", "1"], "sam"),  # a submitter cannot review
        (["review", "approve", "1"], "dana"),  # nor can a distributor
        (["consent", "revoke", "demo", "--reason", "x"], "rita"),  # a reviewer cannot revoke consent
        (["user", "add", "eve", "--role", "admin", "--from-keys"], "rita"),  # only admins add users
    ],
)
def test_wrong_role(workspace, args, user) -> None:
    approved_id = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social",
                                    language="en", text=GOOD, actor="sam", now=utcnow()).id
    assert approved_id == 1
    refused(workspace, *args, user=user, match="this needs the role")


def test_submitter_cannot_approve_own_statement_even_as_admin(workspace) -> None:
    sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=GOOD, actor="ops", now=utcnow()).id
    refused(workspace, "review", "approve", str(sid), user="ops", match="cannot review it")


def test_reviser_cannot_approve(workspace) -> None:
    sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=GOOD, actor="sam", now=utcnow()).id
    statements.revise(workspace, sid, GOOD + " Thank you.", actor="ops", now=utcnow())
    refused(workspace, "review", "approve", str(sid), user="ops", match="submitted or revised")


def test_approving_twice_is_refused(workspace) -> None:
    sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=GOOD, actor="sam", now=utcnow()).id
    review.decide(workspace, sid, Decision.APPROVE, actor="rita", now=utcnow())
    refused(workspace, "review", "approve", str(sid), user="rita", match="already recorded")


def test_approving_an_already_approved_text_is_refused(workspace) -> None:
    sid = approved(workspace)
    refused(workspace, "review", "approve", str(sid), user="ravi", match="already approved")


def test_approving_a_stale_revision_is_refused(workspace) -> None:
    sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=GOOD, actor="sam", now=utcnow()).id
    statements.revise(workspace, sid, GOOD + " Thank you.", actor="sam", now=utcnow())
    refused(workspace, "review", "approve", str(sid), "--revision", "1", user="rita", match="now at revision 2")


def test_revision_voids_earlier_approvals(workspace) -> None:
    sid = approved(workspace)
    row = statements.revise(workspace, sid, GOOD + " Thank you.", actor="sam", now=utcnow())
    assert row.state == "submitted"
    details = review.review_details(workspace, sid)
    assert details["complete"] is False
    assert all(not a["current"] for a in details["approvals"])


def test_render_without_approvals_is_refused(workspace) -> None:
    sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=GOOD, actor="sam", now=utcnow()).id
    refused(workspace, "render", str(sid), user="rita", match="still needs 1 more reviewer approval")


def test_render_without_owner_approval_is_refused(workspace) -> None:
    # A reviewer alone leaves it in review: the per_statement policy also needs the owner's delegate.
    sid = statements.submit(workspace, voice_id="demo", purpose="public-statement", channel="social", language="en",
                            text=GOOD, actor="sam", now=utcnow()).id
    row = review.decide(workspace, sid, Decision.APPROVE, actor="rita", now=utcnow())
    assert row.state == "in_review"
    refused(workspace, "render", str(sid), user="rita", match="still needs the voice owner's")


def test_release_without_approvals_is_refused(workspace) -> None:
    sid = approved(workspace)
    refused(workspace, "release", str(sid), user="rita", match="cannot be released now")


def test_render_after_revocation_is_refused(workspace) -> None:
    sid = approved(workspace)
    from pipeline.services.voices import revoke_consent

    revoke_consent(workspace, "demo", "the owner withdrew consent", actor="joe-delegate", now=utcnow())
    refused(workspace, "render", str(sid), user="rita", match="was revoked")
    refused(workspace, *submit_args("-"), stdin=GOOD.encode(), match="was revoked")


def test_out_of_scope_purpose_is_refused(workspace, tmp_path) -> None:
    refused(workspace, *submit_args(text_file(tmp_path, GOOD), purpose="advertising"),
            match="purpose 'advertising' of statement")


def test_out_of_scope_channel_is_refused(workspace, tmp_path) -> None:
    refused(workspace, *submit_args(text_file(tmp_path, GOOD), channel="tv"), match="channel 'tv'")


def test_expired_consent_is_refused(workspace, tmp_path) -> None:
    folder = voice_profile(tmp_path, id='"expired"', valid_from="2020-01-01", valid_until="2021-01-01")
    assert run(workspace, "voice", "add", str(folder), user="ops").exit_code == 0
    refused(workspace, *submit_args(text_file(tmp_path, GOOD), voice="expired"), match="expired on 2021-01-01")


def test_voice_whose_model_does_not_match_its_sha256_is_refused(workspace, tmp_path) -> None:
    folder = voice_profile(tmp_path, id='"tampered"', sha256='"' + "0" * 64 + '"')
    refused(workspace, "voice", "add", str(folder), user="ops", match="does not match the sha256")


@pytest.mark.parametrize(
    ("home", "match"),
    [("/nonexistent-parent/ws", "does not exist"), ("/proc/voxgate-ws", "not writable")],
)
def test_init_refuses_a_bad_workspace_path(home, match) -> None:
    result = runner.invoke(app, ["init", "--home", home])
    assert result.exit_code == 1 and match in result.stderr and "Traceback" not in result.stderr


def test_commands_on_a_missing_workspace_say_how_to_create_one(tmp_path) -> None:
    result = runner.invoke(app, ["statements", "list", "--home", str(tmp_path / "none")])
    assert result.exit_code == 1 and "voxgate init" in result.stderr


def test_init_twice_changes_nothing(workspace) -> None:
    before = store_snapshot(workspace.home)
    result = runner.invoke(app, ["init", "--home", str(workspace.home)])
    assert result.exit_code == 0 and "already exists; nothing else changed" in result.stdout
    assert store_snapshot(workspace.home) == before


@pytest.mark.parametrize("args, match", [
    (["--queues", "videos"], "--queues takes render and/or copies"),  # no such queue
    (["--queues", ","], "--queues takes"),  # nothing named
    (["--concurrency", "0"], "--concurrency must be 1 or more"),
])
def test_worker_refuses_unknown_queues_and_no_concurrency(workspace, args, match) -> None:
    result = CliRunner().invoke(app, ["worker", *args, "--home", str(workspace.home)])
    assert result.exit_code == 1 and match in result.output, result.output
    assert "Traceback" not in result.output
