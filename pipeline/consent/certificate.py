"""The consent certificate: one readable HTML page with the terms, the checks and the signatures.

Pure: takes the dict `pipeline.services.enrollment.consent_details` returns
and gives back HTML. No scripts, no external resources, every value escaped,
so the page can be archived, printed or mailed as it is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Any

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1b1b;max-width:52em;margin:2em auto;padding:0 1em}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.4em 0 .4em;border-bottom:1px solid #ccc}
.status{display:inline-block;padding:.1em .6em;border-radius:.3em;font-weight:600;color:#fff}
.active{background:#2e7d32}.revoked,.expired,.problem{background:#c62828}.other{background:#6d6d6d}
table{border-collapse:collapse;width:100%}td,th{text-align:left;vertical-align:top;padding:.2em .5em;border-bottom:1px solid #eee}
th{width:12em;font-weight:600}blockquote{margin:.4em 0;padding:.5em 1em;background:#f6f6f6;border-left:4px solid #999}
.pass{color:#2e7d32;font-weight:600}.fail{color:#c62828;font-weight:600}code{font-size:.85em;word-break:break-all}
.small{color:#555;font-size:.9em}@media print{body{margin:0}}
"""


def _v(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return escape(f"{value:%Y-%m-%d %H:%M} UTC")
    if isinstance(value, (list, tuple, frozenset, set)):
        return escape(", ".join(str(x) for x in value)) or "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return escape(str(value))


def _rows(pairs: Iterable[tuple[str, Any]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td>{v if isinstance(v, _Html) else _v(v)}</td></tr>" for k, v in pairs)


class _Html(str):
    """Already-escaped markup."""


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Html) else _v(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _mark(ok: bool) -> _Html:
    return _Html('<span class="pass">✓ pass</span>' if ok else '<span class="fail">✗ fail</span>')


def _code(text: str | None) -> _Html:
    return _Html(f"<code>{escape(text)}</code>" if text else "—")


def render_certificate(d: dict[str, Any]) -> str:
    """The certificate page for one voice's current consent record."""
    c, voice, enrollment = d["consent"], d["voice"], d["enrollment"]
    status = c["status"] if c["verified"] else "record does not verify"
    cls = "active" if status == "active" else ("other" if status == "not yet valid" else "revoked")
    parts = [
        f"<h1>Consent certificate — voice {_v(voice['id'])}</h1>",
        f'<p><span class="status {cls}">{_v(status)}</span> '
        f'<span class="small">record {c["id"]} ({_v(c["kind"])}), generated {_v(d["generated_at"])}</span></p>',
        "<h2>Who consents, to whom</h2>",
        "<table>" + _rows([
            ("Owner", c["owner"]), ("Owner's account", c["owner_account"]), ("Organisation", c["organisation"]),
            ("Voice", f"{voice['name']} ({voice['id']}), {voice['state']}"),
        ]) + "</table>",
        "<h2>Statement</h2>",
        f"<blockquote>{_v(c['statement'])}</blockquote>",
        "<h2>Scope</h2>",
        "<table>" + _rows([
            ("Purposes", c["purposes"]), ("Channels", c["channels"]), ("Languages", c["languages"]),
            ("Valid from", c["valid_from"]), ("Valid until", c["valid_until"]),
            ("Approval policy", "each statement approved by " + ", ".join(c["approvers"])
             if c["policy"] == "per_statement" else "blanket, inside the scope"),
        ]) + "</table>",
    ]
    if c["revoked_at"]:
        parts.append(f'<p class="fail">Revoked on {_v(c["revoked_at"])} by {_v(c["revoked_by"])}: '
                     f'{_v(c["revoked_reason"])}. Nothing may be rendered or released in this voice.</p>')
    if enrollment:
        parts += [
            "<h2>Checks</h2>",
            f'<p class="small">Enrollment {enrollment["id"]} by {_v(enrollment["operator"])} on '
            f'{_v(enrollment["created_at"])}; speech recognition: {_v(enrollment["speech_recognition"])}; '
            f'challenge phrase: <b>{_v(enrollment["challenge"])}</b>.</p>',
            _table(["check", "result", "figure", "needs"],
                   [(ch["name"], _mark(ch["passed"]), ch["detail"] or ch["figure"], ch["limit"])
                    for ch in enrollment["checks"]]),
        ]
        if enrollment["transcript"]:
            parts.append(f'<p class="small">Heard: “{_v(enrollment["transcript"])}”</p>')
        recs = enrollment["recordings"]
        parts += [
            "<h2>Files the record relies on</h2>",
            _table(["file", "sha256"], [(f"consent audio ({enrollment['consent_audio']['name']})",
                                         _code(enrollment["consent_audio"]["sha256"]))]
                   + [(f"{r['name']} ({r['duration_s']:.1f} s, similarity {r['similarity']:.2f})", _code(r["sha256"]))
                      for r in recs[:12]]),
        ]
        if len(recs) > 12:
            parts.append(f'<p class="small">… and {len(recs) - 12} more recordings '
                         f'({enrollment["recordings_s"]:.0f} s in all); `voxgate consent show --json` lists them all.</p>')
    elif c["evidence"]:
        parts += ["<h2>Evidence</h2>", "<table>" + _rows((k, v) for k, v in c["evidence"].items()) + "</table>"]
    parts += [
        "<h2>Signatures</h2>",
        _table(["signer", "capacity", "Ed25519 public key", "verifies"],
               [(s["signer"], s["capacity"], _code(s["public_key"]), _mark(s["valid"])) for s in d["signatures"]])
        if d["signatures"] else "<p>No signatures (a record from before signed consent records).</p>",
        (f'<p class="fail"><strong>Witnessed only:</strong> {_v(c["witness_only_note"])}.</p>'
         if c.get("witness_only") else ""),
        f'<p class="small">Record sha256 {_code(c["record_sha256"])}'
        + (f' — <span class="fail">{_v(c["problem"])}</span>' if c["problem"] else "") + "</p>",
    ]
    if len(d["history"]) > 1:
        parts += ["<h2>History</h2>", _table(
            ["record", "kind", "created", "valid until", "purposes", "revoked"],
            [(("→ " if h["current"] else "") + str(h["id"]), h["kind"], h["created_at"], h["valid_until"], h["purposes"],
              h["revoked_at"]) for h in d["history"]])]
    body = "\n".join(parts)
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>Consent certificate — {_v(voice['id'])}</title><style>{_CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")
