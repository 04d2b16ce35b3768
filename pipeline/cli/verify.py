"""`voxgate verify FILE`: is a circulating clip ours and unchanged, derived, revoked, leaked, or unknown?"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.text import Text

from pipeline.cli.output import (
    HOME_DEFAULT,
    AsJson,
    AsUser,
    Home,
    console,
    err_console,
    handles_errors,
    print_fields,
    print_json,
)
from pipeline.services.voices import WITNESS_ONLY_NOTE
from pipeline.verify.timeline import LEGEND
from pipeline.verify.verdict import Outcome

if TYPE_CHECKING:
    from pipeline.services.verify import VerifyReport

_STYLE = {Outcome.AUTHENTIC: "bold green", Outcome.DERIVED: "bold yellow", Outcome.REVOKED: "bold red",
          Outcome.UNRELEASED: "bold red", Outcome.UNKNOWN: "bold", Outcome.ALTERED: "bold red"}


@handles_errors
def verify(
    file: Annotated[Path, typer.Argument(help="The audio file to check; a FILE.c2pa sidecar beside it is read too.",
                                         show_default=False)],
    home: Home = HOME_DEFAULT,
    as_json: AsJson = False,
    as_user: AsUser = None,
    presence: Annotated[bool, typer.Option(
        "--presence", help="Also check the public presence mark (a claim only; loads Perth: ~10 s, ~800 MB).")] = False,
    registry: Annotated[Optional[Path], typer.Option(
        help="Check against this registry mirror instead of a workspace (no keys needed).")] = None,
    registry_key: Annotated[Optional[str], typer.Option(
        help="The registry key fingerprint the publisher posted; a mirror signed by another key is refused.")] = None,
) -> None:
    """Check a clip against this workspace: content credentials, labels, watermarks and the registry.

    Exit status: 0 AUTHENTIC, 10 DERIVED, 11 REVOKED, 12 UNRELEASED, 13 UNKNOWN, 14 ALTERED,
    1 the check itself failed.
    """
    from pipeline.errors import InputError
    from pipeline.services.verify import verify_file, verify_with_mirror
    from pipeline.services.workspace import open_workspace, utcnow

    if registry is not None:
        from pipeline.services.registry import open_mirror

        if not registry_key:
            raise InputError("Give --registry-key FINGERPRINT too: the key fingerprint the publisher posted on "
                             "their own channels, so a forged mirror is refused.")
        with err_console.status(f"Checking {file.name} against the registry in {registry} …"):
            report = verify_with_mirror(open_mirror(registry, registry_key), file)
    else:
        ws = open_workspace(home)
        with err_console.status(f"Checking {file.name} …"):
            report = verify_file(ws, file, now=utcnow(), actor=as_user, check_presence=presence)
    if as_json:
        print_json(report.as_dict())
    else:
        _print(report)
    raise typer.Exit(report.verdict.exit_code)


def _print(report: VerifyReport) -> None:
    e, creds = report.evidence, report.credentials
    registered = (f"a {e.registered_file[1]} file of clip {e.registered_file[0]}, byte for byte" if e.registered_file
                  else "no registered file has these bytes")
    credentials = e.credentials.value + (f", signed by {e.credentials_signer}" if e.credentials_signer else "")
    credentials += (f", names clip {e.credentials_clip}" if e.credentials_clip is not None else "")
    credentials += (" (sidecar)" if creds.sidecar else "") + "".join(f"; {p}" for p in e.credentials_problems)
    labels = ", ".join(f"{k}={v}" for k, v in report.tags.items()) or "none"
    presence = f"{e.presence:.3f}" if e.presence is not None else report.notes.get("presence", "not checked")
    payload = ("not checked: " + report.notes.get("payload", "") if e.payload is None
               else "none of ours" if e.payload.serial is None
               else f"clip {e.payload.serial}" + (f", delivery {e.payload.delivery}" if e.payload.delivery else "")
               + f" (confidence {e.payload.confidence:.1f})")
    content = "; ".join(f"clip {clip}: {m.matched_s:.0f} of {m.audible_s:.0f} s found ({m.coverage:.0%})"
                        for clip, m in e.content.items()) or "nothing to compare"
    t = report.verdict.timeline
    timeline = [] if t is None else [
        (f"second by second vs clip {t.clip_id}", f"{t.bar()}  {t.genuine_s} of {t.audible_s} audible s genuine"),
        ("", LEGEND)]
    print_fields(f"Evidence for {report.path.name}", [
        ("sha256", report.sha256), ("registry file", registered), ("content credentials", credentials),
        ("metadata labels (a claim)", labels), ("presence mark", presence), ("payload mark", payload),
        ("audio vs registered master", content), *timeline,
    ])
    altered = report.verdict.outcome is Outcome.ALTERED
    if (clip := report.clip) is not None and altered:  # its text and approvals are the clip's, not this file's
        print_fields(f"Clip {clip.clip_id}, the source of the genuine fragment only", [
            ("state", clip.state), ("statement", f"{clip.statement_id}, revision {clip.revision}"),
            ("voice", f"{clip.voice_name} ({clip.voice_id})"),
            ("text and approvals", "not shown: they vouch for the clip, not for this file"),
        ])
    elif clip is not None:
        approvals = ", ".join(
            f"{a['reviewer']} ({a['stage']}, {a['decision']}{'' if a['signature_valid'] else ', SIGNATURE INVALID'})"
            for a in clip.approvals)
        print_fields(f"Clip {clip.clip_id}", [
            ("state", clip.state), ("statement", f"{clip.statement_id}, revision {clip.revision}"),
            ("text", clip.text if clip.text is not None else "(not released: not shown)"),
            ("voice", f"{clip.voice_name} ({clip.voice_id}), consent of {clip.owner}"),
            *([("consent", "WITNESSED ONLY: " + WITNESS_ONLY_NOTE)] if clip.consent_witness_only else []),
            ("approvals", approvals or "none"), ("released", clip.released_at), ("revoked", clip.revoked_at),
        ])
    v = report.verdict
    console.print(Text.assemble((v.outcome.value, _STYLE[v.outcome]),
                                f"  clip {v.clip_id}" if v.clip_id is not None else ""))
    if v.trace is not None:  # the workspace's own check: the public /verify page never names the recipient
        console.print(Text.assemble("  genuine fragment traced to " if altered else "  traced to ",
                                    (v.trace.recipient, "bold"),
                                    f" (delivery {v.trace.delivery}, by its {v.trace.by})"))
    for reason in v.reasons:
        console.print(Text(f"  - {reason}"), soft_wrap=True)
