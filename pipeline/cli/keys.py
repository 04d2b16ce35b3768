"""`voxgate key …`: a person's own signing key, kept in their key folder (never in the workspace)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli.output import HOME_DEFAULT, AsUser, Home, console, handles_errors, print_table, success
from pipeline.errors import IdentityError
from pipeline.identity.personal import (
    PASSPHRASE_ENV, create_key, default_folder, env_passphrases, fingerprint, openssh_line, passphrase_env_name,
)

app = typer.Typer(help="Your own signing key: create it, or take it over from an older workspace.",
                  no_args_is_help=True)

KeysDir = Annotated[Optional[Path], typer.Option(
    "--keys", help="Key folder (default: $VOXGATE_KEYS, else ~/.config/voxgate/keys).", show_default=False)]


def new_passphrase(name: str) -> bytes:
    """A passphrase for a new key: from the environment, else typed twice on the terminal."""
    value = os.environ.get(passphrase_env_name(name)) or os.environ.get(PASSPHRASE_ENV)
    if value:
        return value.encode("utf-8")
    if not sys.stdin.isatty():
        raise IdentityError(f"No passphrase for {name}'s new key: set {passphrase_env_name(name)} or {PASSPHRASE_ENV}, "
                            "or run the command in a terminal to be asked.")
    return typer.prompt(f"New passphrase for {name}'s key", hide_input=True,
                        confirmation_prompt=True).encode("utf-8")


def make_key(name: str, keys: Path | None) -> tuple[Path, bytes]:
    folder = keys or default_folder()
    public = create_key(folder, name, new_passphrase(name))
    return folder, public


@app.command("init")
@handles_errors
def init(name: Annotated[str, typer.Argument(help="Your user name (as the admin registers it).")],
         keys: KeysDir = None) -> None:
    """Create your passphrase-protected signing key and print the public key to give your admin."""
    folder, public = make_key(name, keys)
    console.out(openssh_line(public, f"voxgate:{name}"))
    success(f"Created {name}'s key in {folder} ({fingerprint(public)}). Give {folder / (name + '.pub')} to your "
            f"admin: `voxgate user add {name} --role ROLE --public-key {folder / (name + '.pub')}`.")


@app.command("handover")
@handles_errors
def handover(
    to: Annotated[Path, typer.Option("--to", help="Key folder to write the people's keys into (encrypted).")],
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Move the private keys an older workspace holds (keys/users/*.key) out to their owners, encrypted; audited."""
    from pipeline.services.users import handover as handover_
    from pipeline.services.workspace import open_workspace, utcnow

    done = handover_(open_workspace(home), to, env_passphrases(), actor=as_user, now=utcnow())
    print_table("Keys handed over", ["user", "key file", "fingerprint"], [(h.name, h.path, h.fingerprint) for h in done])
    success(f"Handed over {len(done)} key{'s' if len(done) != 1 else ''}; the workspace holds no private key of a "
            f"person any more. Give each person their .key file and passphrase.")
