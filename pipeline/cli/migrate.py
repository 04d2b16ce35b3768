"""`voxgate migrate`: move an embedded workspace to PostgreSQL and/or an S3-compatible object store."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from pipeline.cli.output import HOME_DEFAULT, Home, handles_errors, success


@handles_errors
def migrate(
    to: Annotated[Optional[str], typer.Option(
        "--to", help="An empty PostgreSQL database for the store: postgresql://USER@HOST/DBNAME (password from "
                     "~/.pgpass or PGPASSWORD).")] = None,
    files: Annotated[Optional[str], typer.Option(
        "--files", help="An empty bucket prefix for the files: s3://BUCKET/PREFIX (endpoint and keys from "
                        "AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY).")] = None,
    home: Home = HOME_DEFAULT,
) -> None:
    """Copy a workspace's SQLite store and blobs folder to PostgreSQL and/or an object store, check, then switch."""
    from pipeline.services.migrate import migrate_workspace

    report = migrate_workspace(home, to_database=to, to_files=files, say=lambda m: success(m + "."))
    moved = " and ".join(p for p in (f"{sum(report.rows.values())} rows to the database" if to else "",
                                      f"{report.blobs} blobs to {files}" if files else "") if p)
    success(f"Moved {moved}; voxgate.toml now names the new places (the old one is voxgate.toml.before-migrate). "
            "The old voxgate.db and blobs/ are untouched: remove them once `voxgate audit verify` and a download "
            "work. Restart `voxgate serve` and every worker.")
