"""Typed configuration: process settings from options and environment, workspace config from voxgate.toml.

Both are built once at the edge (the CLI callback, or a test) and passed down.
`None` in a per-call setting means "use the default".
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final

from pipeline.errors import StoreError

DEFAULT_HOME: Final = Path("voxgate-data")
CONFIG_FILE: Final = "voxgate.toml"
DEFAULT_MAX_CHARS: Final = 5000
DEFAULT_TARGET_LUFS: Final = -16.0
DEFAULT_TRUE_PEAK_DBTP: Final = -1.5
DEFAULT_SENTENCE_PAUSE_S: Final = 0.35
DEFAULT_DISCLOSURE_GAP_S: Final = 0.6


@dataclass(frozen=True)
class Settings:
    """Who runs the command and on which workspace."""

    home: Path = DEFAULT_HOME
    user: str | None = None


@dataclass(frozen=True)
class ReviewConfig:
    text_reviewers: int = 1
    audio_reviewers: int = 1


@dataclass(frozen=True)
class RenderConfig:
    target_lufs: float = DEFAULT_TARGET_LUFS
    true_peak_dbtp: float = DEFAULT_TRUE_PEAK_DBTP
    sentence_pause_s: float = DEFAULT_SENTENCE_PAUSE_S
    disclosure: str = "before"  # before | after | both | none
    disclosure_gap_s: float = DEFAULT_DISCLOSURE_GAP_S
    disclosure_texts: dict[str, str] = field(default_factory=dict)  # language → template; built-ins otherwise


@dataclass(frozen=True)
class WorkspaceConfig:
    organisation: str
    database_url: str | None = None  # None: the SQLite file inside the workspace
    files_url: str | None = None  # None: <home>/blobs; "s3://bucket/prefix": an S3-compatible object store
    max_chars: int = DEFAULT_MAX_CHARS
    review: ReviewConfig = field(default_factory=ReviewConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    urdu_names: dict[str, str] = field(default_factory=dict)  # [urdu] names: Latin name → Urdu spelling
    recognisers: tuple[Any, ...] = ()  # [recognisers.NAME]: pipeline.quality.recognisers.RecogniserSpec

    @classmethod
    def load(cls, path: Path) -> WorkspaceConfig:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise StoreError(f"No {CONFIG_FILE} in {path.parent}; run `voxgate init --home {path.parent}` first.") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{path} is not valid TOML ({exc}); fix or restore it.") from exc
        return cls.from_dict(raw, where=str(path))

    @classmethod
    def from_dict(cls, raw: dict[str, Any], *, where: str = CONFIG_FILE) -> WorkspaceConfig:
        try:
            org = raw["organisation"]["name"]
            review = _section(ReviewConfig, raw.get("review", {}))
            render = _section(RenderConfig, raw.get("render", {}))
            stmts = raw.get("statements", {})
            cfg = cls(
                organisation=str(org),
                database_url=raw.get("database", {}).get("url") or None,
                files_url=raw.get("files", {}).get("url") or None,
                max_chars=int(stmts.get("max_chars", DEFAULT_MAX_CHARS)),
                review=review,
                render=render,
                urdu_names={str(k): str(v) for k, v in raw.get("urdu", {}).get("names", {}).items()},
                recognisers=_recognisers(raw.get("recognisers", {}), where=where),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise StoreError(f"{where}: invalid or missing setting ({exc}).") from exc
        if cfg.review.text_reviewers < 1 or cfg.review.audio_reviewers < 1:
            raise StoreError(f"{where}: each review stage needs at least one reviewer.")
        if cfg.files_url is not None and not cfg.files_url.startswith("s3://"):
            raise StoreError(f"{where}: [files] url must be empty (the blobs folder) or s3://BUCKET/PREFIX.")
        if cfg.render.disclosure not in ("before", "after", "both", "none"):
            raise StoreError(f"{where}: render.disclosure must be before, after, both or none.")
        return cfg


def _recognisers(raw: dict[str, Any], *, where: str) -> tuple[Any, ...]:
    if not raw:
        return ()
    from pipeline.quality.recognisers import parse  # numpy and the recogniser only when one is configured

    return parse(raw, where=where)


def _section(kind: type, raw: dict[str, Any]) -> Any:
    names = {f.name for f in fields(kind)}
    unknown = set(raw) - names
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    return kind(**raw)


def _toml_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def default_config_text(organisation: str, database_url: str | None = None, files_url: str | None = None) -> str:
    """The voxgate.toml written by `voxgate init`, with every default spelled out."""
    org = _toml_string(organisation)[1:-1]
    url = _toml_string(database_url or "")
    files = _toml_string(files_url or "")
    return f"""# voxgate workspace configuration
[organisation]
name = "{org}"

[database]
# Empty: the SQLite file voxgate.db in this folder. Or PostgreSQL, shared by several machines:
# postgresql+psycopg://user@host/dbname (password from ~/.pgpass or PGPASSWORD, never written here).
url = {url}

[files]
# Empty: the blobs folder in this folder. Or an S3-compatible object store, shared by several machines:
# s3://bucket/prefix (endpoint and keys from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).
url = {files}

[statements]
max_chars = {DEFAULT_MAX_CHARS}

[review]
# Distinct reviewers needed at each stage (never the statement's author).
text_reviewers = 1
audio_reviewers = 1

[render]
target_lufs = {DEFAULT_TARGET_LUFS}
true_peak_dbtp = {DEFAULT_TRUE_PEAK_DBTP}
sentence_pause_s = {DEFAULT_SENTENCE_PAUSE_S}
# Audible disclosure in the announcer voice: before, after, both or none.
disclosure = "before"
disclosure_gap_s = {DEFAULT_DISCLOSURE_GAP_S}

[render.disclosure_texts]
# Per-language templates; {{owner}} and {{organisation}} are filled in.
# en = "The following message is an AI-generated voice, made with the consent of {{owner}}, published by {{organisation}}."

[recognisers]
# Speech recognisers beyond the bundled Whisper tiny.en (English, WER <= 0.25), one table each; for Urdu on a
# GPU machine, a multilingual faster-whisper model (see the README), compared by character error rate:
# [recognisers.whisper-small]
# path = "/opt/models/faster-whisper-small"   # a faster-whisper (CTranslate2) model folder
# sha256 = "..."                               # of its model.bin
# languages = ["ur"]
# measure = "cer"
# threshold = 0.35
# calibrated = false                           # not yet measured on real Urdu speech: say so

[urdu.names]
# Latin-script names allowed inside Urdu statements, with the Urdu spelling spoken for them
# (acronyms such as PTI are spelled letter by letter without an entry).
# Ali = "علی"
"""
