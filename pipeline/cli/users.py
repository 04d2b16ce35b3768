"""`voxgate user …`: people and their keys."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from pipeline.cli.output import (
    HOME_DEFAULT, AsJson, AsUser, Home, console, handles_errors, print_json, print_table, success,
)
from pipeline.domain import Role
from pipeline.errors import InputError
from pipeline.identity.personal import fingerprint, read_public_key
from pipeline.services import users as svc
from pipeline.services.users import add_user, list_users
from pipeline.services.workspace import open_workspace, utcnow

app = typer.Typer(help="Manage users: roles and signing keys.", no_args_is_help=True)


PublicKey = Annotated[Optional[Path], typer.Option(
    "--public-key", help="The person's public key file (from `voxgate key init NAME`: NAME.pub).")]


@app.command("add")
@handles_errors
def add(
    name: Annotated[str, typer.Argument(help="User name (lower case).")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(r.value for r in Role)}.")],
    public_key: PublicKey = None,
    from_keys: Annotated[bool, typer.Option(
        "--from-keys", help="Use the person's key in your key folder (created there if absent): a person at this "
                            "machine.")] = False,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Register a person and their public key (the first user must be an admin); their private key stays with them."""
    if (public_key is None) == (not from_keys):
        raise InputError("Give the person's --public-key FILE (made with `voxgate key init NAME`), or --from-keys.")
    ws = open_workspace(home)
    if from_keys:
        from pipeline.cli.keys import new_passphrase

        user = svc.add_user_from_keys(ws, name, role, actor=as_user, now=utcnow(), new_passphrase=new_passphrase)
    else:
        user = add_user(ws, name, role, public_key=read_public_key(public_key), actor=as_user,  # type: ignore[arg-type]
                        now=utcnow())
    success(f"Added {user.name} ({user.role}) with key {fingerprint(user.public_key)}.")


@app.command("rotate-key")
@handles_errors
def rotate_key(
    name: Annotated[str, typer.Argument(help="The person whose key is replaced.")],
    public_key: Annotated[Path, typer.Option("--public-key", help="Their new public key file.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Register a new key for a person (lost or replaced); what the old key signed still verifies against it."""
    public = read_public_key(public_key)
    user = svc.rotate_key(open_workspace(home), name, public, reason=reason, actor=as_user, now=utcnow())
    success(f"{user.name} now signs with {fingerprint(public)}; earlier signatures keep verifying with their old key.")


@app.command("disable")
@handles_errors
def disable(
    name: Annotated[str, typer.Argument(help="The person who may no longer act.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Disable a person: nothing they do or sign from now on counts; their earlier approvals stay as history."""
    user = svc.disable_user(open_workspace(home), name, reason=reason, actor=as_user, now=utcnow())
    success(f"Disabled {user.name}; their portal tokens are revoked and no approval of theirs from now on counts.")


@app.command("role")
@handles_errors
def role(
    name: Annotated[str, typer.Argument(help="The person.")],
    new_role: Annotated[str, typer.Argument(metavar="ROLE", help=f"One of: {', '.join(r.value for r in Role)}.")],
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Change a person's role (audited)."""
    user = svc.set_role(open_workspace(home), name, new_role, actor=as_user, now=utcnow())
    success(f"{user.name} is now a {user.role}.")


@app.command("keys")
@handles_errors
def keys(name: Annotated[str, typer.Argument(help="The person.")], home: Home = HOME_DEFAULT) -> None:
    """A person's key history: each key and the audit events it was valid between."""
    rows = svc.key_history(open_workspace(home), name)
    print_table(f"Keys of {name}", ["fingerprint", "from event", "until event"],
                [(k.fingerprint, k.from_seq or "before 0005", k.until_seq or "now") for k in rows])


@app.command("list")
@handles_errors
def list_(home: Home = HOME_DEFAULT, as_json: AsJson = False) -> None:
    """List users, their roles and public keys."""
    users = list_users(open_workspace(home))
    if as_json:
        print_json([{"name": u.name, "role": u.role, "public_key": u.public_key, "fingerprint": fingerprint(u.public_key),
                     "created_at": u.created_at, "disabled_at": u.disabled_at} for u in users])
        return
    print_table("Users", ["name", "role", "key", "added", "disabled"],
                [(u.name, u.role, fingerprint(u.public_key), f"{u.created_at:%Y-%m-%d %H:%M}",
                  f"{u.disabled_at:%Y-%m-%d} ({u.disabled_reason})" if u.disabled_at else "") for u in users])


@app.command("token")
@handles_errors
def token(
    name: Annotated[str, typer.Argument(help="The distributor (or other user) the token is for.")],
    days: Annotated[int, typer.Option(help="Days until the token expires.")] = 30,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Issue an access token for the portal and `voxgate pull` (shown once; only its hash is kept)."""
    from pipeline.services.tokens import issue_token

    raw = issue_token(open_workspace(home), name, days=days, actor=as_user, now=utcnow())
    console.out(raw)


@app.command("revoke-tokens")
@handles_errors
def revoke_tokens(
    name: Annotated[str, typer.Argument(help="The user whose access ends now.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Revoke every live portal token of a user at once, e.g. when a leaked copy is traced to them."""
    from pipeline.services.tokens import revoke_tokens as revoke

    count = revoke(open_workspace(home), name, reason=reason, actor=as_user, now=utcnow())
    success(f"Revoked {count} token{'s' if count != 1 else ''} of {name}; they can no longer sign in or pull.")


@app.command("invite")
@handles_errors
def invite(
    name: Annotated[str, typer.Argument(help="The reviewer, owner or delegate who will approve in the portal.")],
    url: Annotated[str, typer.Option(envvar="VOXGATE_PORTAL", help="The portal's public address (its --origin).")]
    = "http://localhost:8000",
    hours: Annotated[int, typer.Option(help="Hours until the link expires.")] = 72,
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Print a one-time link for NAME to register a passkey in the portal (only its hash is kept).

    An admin invites anyone; NAME may invite themselves (--as NAME), so their own key vouches for the passkey.
    """
    from pipeline.services.passkeys import invite as make_invitation

    raw = make_invitation(open_workspace(home), name, hours=hours, actor=as_user, now=utcnow())
    console.out(f"{url.rstrip('/')}/invite/{raw}")


@app.command("disable-passkeys")
@handles_errors
def disable_passkeys(
    name: Annotated[str, typer.Argument(help="The person whose passkeys stop working now.")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit log).")] = "",
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Disable every passkey of a user: no sign-in, and no approval signed after this counts."""
    from pipeline.services.passkeys import disable_passkeys as disable

    count = disable(open_workspace(home), name, reason=reason, actor=as_user, now=utcnow())
    success(f"Disabled {count} passkey{'s' if count != 1 else ''} of {name}; earlier approvals stay on record.")
