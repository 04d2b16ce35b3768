"""`voxgate registry …`: the signed public registry, for mirrors that outlive the publisher's server."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli.output import HOME_DEFAULT, AsJson, Home, handles_errors, print_fields, print_json, success

app = typer.Typer(help="The public registry: export a signed, mirrorable view of the audit chain.",
                  no_args_is_help=True)


@app.command("export")
@handles_errors
def export(
    folder: Annotated[Path, typer.Argument(help="Folder to write the registry to (created if missing).",
                                           show_default=False)],
    home: Home = HOME_DEFAULT,
    as_json: AsJson = False,
) -> None:
    """Write the signed public registry (released clips, copies handed out, revocations) for anyone to mirror.

    Post the key fingerprint it prints on your own channels: `voxgate verify FILE --registry DIR
    --registry-key FINGERPRINT` refuses a mirror signed by any other key.
    """
    from pipeline.services.registry import export_registry
    from pipeline.services.workspace import open_workspace, utcnow

    head = export_registry(open_workspace(home), folder, now=utcnow())
    if as_json:
        print_json(head)
        return
    print_fields(f"Registry in {folder}", [("entries", head["size"]), ("Merkle root", head["root"]),
                                           ("audit head", head["audit"]), ("key fingerprint", head["fingerprint"])])
    success(f"Publish the key fingerprint {head['fingerprint']} where people know it is yours.")
