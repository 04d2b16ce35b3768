"""The consent certificate: one readable HTML page with the terms, the checks and the signatures.

Pure: takes the dict `pipeline.services.consent_certificate.consent_details` returns
and gives back HTML. No scripts, no external resources, every value escaped,
so the page can be archived, printed or mailed as it is. The page is in the
consent's language (an Urdu consent statement gives an Urdu, right-to-left
page, messages from `pipeline.i18n`); names, hashes and keys stay as recorded.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from html import escape
from typing import Any

from pipeline.i18n import direction, t

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1b1b1b;max-width:52em;margin:2em auto;padding:0 1em}
h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.05em;margin:1.4em 0 .4em;border-bottom:1px solid #ccc}
.status{display:inline-block;padding:.1em .6em;border-radius:.3em;font-weight:600;color:#fff}
.active{background:#2e7d32}.revoked,.expired,.problem{background:#c62828}.other{background:#6d6d6d}
table{border-collapse:collapse;width:100%}td,th{text-align:left;vertical-align:top;padding:.2em .5em;border-bottom:1px solid #eee}
th{width:12em;font-weight:600}blockquote{margin:.4em 0;padding:.5em 1em;background:#f6f6f6;border-left:4px solid #999}
.pass{color:#2e7d32;font-weight:600}.fail{color:#c62828;font-weight:600}code{font-size:.85em;word-break:break-all}
.small{color:#555;font-size:.9em}@media print{body{margin:0}}
[dir=rtl] td,[dir=rtl] th{text-align:right}[dir=rtl] blockquote{border-left:0;border-right:4px solid #999}
:lang(ur){font-family:"Noto Nastaliq Urdu",system-ui,sans-serif;line-height:2}code,.ltr{direction:ltr;unicode-bidi:isolate}
"""


def consent_language(statement: str) -> str:
    """The language the consent was given in: Urdu when its statement is written in Urdu script."""
    return "ur" if any("\u0600" <= ch <= "\u06ff" for ch in statement) else "en"


def _v(value: Any, lang: str = "en") -> str:
    if value is None:
        return "—"
    if isinstance(value, datetime):
        return escape(f"{value:%Y-%m-%d %H:%M} UTC")
    if isinstance(value, (list, tuple, frozenset, set)):
        return escape(", ".join(str(x) for x in value)) or "—"
    if isinstance(value, bool):
        return t(lang, "cert.yes" if value else "cert.no")
    return escape(str(value))


def _rows(pairs: Iterable[tuple[str, Any]], lang: str = "en") -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td dir=\"auto\">{v if isinstance(v, _Html) else _v(v, lang)}</td></tr>"
                   for k, v in pairs)


class _Html(str):
    """Already-escaped markup."""


def _table(head: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c if isinstance(c, _Html) else _v(c)}</td>" for c in row) + "</tr>"
                   for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _mark(ok: bool, lang: str = "en") -> _Html:
    return _Html(f'<span class="pass">{escape(t(lang, "cert.pass"))}</span>' if ok
                 else f'<span class="fail">{escape(t(lang, "cert.fail"))}</span>')


def _code(text: str | None) -> _Html:
    return _Html(f"<code>{escape(text)}</code>" if text else "—")


def render_certificate(d: dict[str, Any], lang: str | None = None) -> str:
    """The certificate page for one voice's current consent record, in `lang` (default: the consent's language)."""
    c, voice, enrollment = d["consent"], d["voice"], d["enrollment"]
    lang = lang or consent_language(c["statement"] or "")

    def m(key: str, **kw: Any) -> str:
        return escape(t(lang, key, **kw))

    status = c["status"] if c["verified"] else "record does not verify"
    cls = "active" if status == "active" else ("other" if status == "not yet valid" else "revoked")
    policy = (t(lang, "cert.policy.per_statement", approvers=", ".join(c["approvers"]))
              if c["policy"] == "per_statement" else t(lang, "cert.policy.blanket"))
    parts = [
        f"<h1>{m('cert.title', voice=voice['id'])}</h1>",
        f'<p><span class="status {cls}">{m("cert.status." + status)}</span> '
        f'<span class="small">{m("cert.record", id=c["id"], kind=c["kind"], when=_v(d["generated_at"]))}</span></p>',
        f"<h2>{m('cert.who')}</h2>",
        "<table>" + _rows([
            (t(lang, "cert.owner"), c["owner"]), (t(lang, "cert.owner_account"), c["owner_account"]),
            (t(lang, "cert.organisation"), c["organisation"]),
            (t(lang, "cert.voice"), f"{voice['name']} ({voice['id']}), {voice['state']}"),
        ], lang) + "</table>",
        f"<h2>{m('cert.statement')}</h2>",
        f'<blockquote dir="auto">{_v(c["statement"])}</blockquote>',
        f"<h2>{m('cert.scope')}</h2>",
        "<table>" + _rows([
            (t(lang, "cert.purposes"), c["purposes"]), (t(lang, "cert.channels"), c["channels"]),
            (t(lang, "cert.languages"), c["languages"]), (t(lang, "cert.valid_from"), c["valid_from"]),
            (t(lang, "cert.valid_until"), c["valid_until"]), (t(lang, "cert.policy"), policy),
        ], lang) + "</table>",
    ]
    if c["revoked_at"]:
        parts.append(f'<p class="fail">{m("cert.revoked", when=_v(c["revoked_at"]), who=c["revoked_by"], reason=c["revoked_reason"])}</p>')
    if enrollment:
        parts += [
            f"<h2>{m('cert.checks')}</h2>",
            f'<p class="small">{m("cert.enrollment", id=enrollment["id"], operator=enrollment["operator"], when=_v(enrollment["created_at"]), asr=enrollment["speech_recognition"])} '
            f'<b dir="auto">{_v(enrollment["challenge"])}</b>.</p>',
            _table([t(lang, k) for k in ("cert.check", "cert.result", "cert.figure", "cert.needs")],
                   [(ch["name"], _mark(ch["passed"], lang), ch["detail"] or ch["figure"], ch["limit"])
                    for ch in enrollment["checks"]]),
        ]
        if enrollment["transcript"]:
            parts.append(f'<p class="small">{m("cert.heard")} “<span dir="auto">{_v(enrollment["transcript"])}</span>”</p>')
        recs = enrollment["recordings"]
        parts += [
            f"<h2>{m('cert.files')}</h2>",
            _table([t(lang, "cert.file"), "sha256"],
                   [(t(lang, "cert.consent_audio", name=enrollment["consent_audio"]["name"]),
                     _code(enrollment["consent_audio"]["sha256"]))]
                   + [(f"{r['name']} ({r['duration_s']:.1f} s, similarity {r['similarity']:.2f})", _code(r["sha256"]))
                      for r in recs[:12]]),
        ]
        if len(recs) > 12:
            seconds = f"{enrollment['recordings_s']:.0f}"
            parts.append(f'<p class="small">{m("cert.more_recordings", n=len(recs) - 12, seconds=seconds)}</p>')
    elif c["evidence"]:
        parts += [f"<h2>{m('cert.evidence')}</h2>", "<table>" + _rows(c["evidence"].items(), lang) + "</table>"]
    parts += [
        f"<h2>{m('cert.signatures')}</h2>",
        _table([t(lang, k) for k in ("cert.signer", "cert.capacity", "cert.public_key", "cert.verifies")],
               [(s["signer"], s["capacity"], _code(s["public_key"]), _mark(s["valid"], lang)) for s in d["signatures"]])
        if d["signatures"] else f"<p>{m('cert.no_signatures')}</p>",
        (f'<p class="fail"><strong>{m("cert.witness_only")}</strong> {m("cert.witness_only_note")}.</p>'
         if c.get("witness_only") else ""),
        f'<p class="small">{m("cert.record_sha256")} {_code(c["record_sha256"])}'
        + (f' — <span class="fail">{_v(c["problem"])}</span>' if c["problem"] else "") + "</p>",
    ]
    if len(d["history"]) > 1:
        parts += [f"<h2>{m('cert.history')}</h2>", _table(
            ["#", t(lang, "cert.kind"), t(lang, "cert.created"), t(lang, "cert.valid_until"), t(lang, "cert.purposes"),
             t(lang, "cert.revoked_col")],
            [(("→ " if h["current"] else "") + str(h["id"]), h["kind"], h["created_at"], h["valid_until"], h["purposes"],
              h["revoked_at"]) for h in d["history"]])]
    body = "\n".join(parts)
    return (f'<!doctype html>\n<html lang="{lang}" dir="{direction(lang)}"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width,initial-scale=1">'
            f"<title>{m('cert.title', voice=voice['id'])}</title><style>{_CSS}</style></head>"
            f"<body>\n{body}\n</body></html>\n")
