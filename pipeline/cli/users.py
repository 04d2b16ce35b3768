"""`voxgate user …`: people and their keys."""

from __future__ import annotations

from typing import Annotated

import typer

from pipeline.cli.output import (
    HOME_DEFAULT, AsJson, AsUser, Home, console, handles_errors, print_json, print_table, success,
)
from pipeline.domain import Role
from pipeline.services.users import add_user, list_users
from pipeline.services.workspace import open_workspace, utcnow

app = typer.Typer(help="Manage users: roles and signing keys.", no_args_is_help=True)


@app.command("add")
@handles_errors
def add(
    name: Annotated[str, typer.Argument(help="User name (lower case).")],
    role: Annotated[str, typer.Option(help=f"One of: {', '.join(r.value for r in Role)}.")],
    home: Home = HOME_DEFAULT,
    as_user: AsUser = None,
) -> None:
    """Add a user with an Ed25519 key pair (the first user must be an admin)."""
    ws = open_workspace(home)
    user = add_user(ws, name, role, actor=as_user, now=utcnow())
    success(f"Added {user.name} ({user.role}); private key at {ws.user_key_path(user.name)} (mode 0600).")


@app.command("list")
@handles_errors
def list_(home: Home = HOME_DEFAULT, as_json: AsJson = False) -> None:
    """List users, their roles and public keys."""
    users = list_users(open_workspace(home))
    if as_json:
        print_json([{"name": u.name, "role": u.role, "public_key": u.public_key, "created_at": u.created_at} for u in users])
        return
    print_table("Users", ["name", "role", "public key", "added"],
                [(u.name, u.role, u.public_key.hex()[:16] + "…", f"{u.created_at:%Y-%m-%d %H:%M}") for u in users])


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
    """Print a one-time link for NAME to register a passkey in the portal (only its hash is kept)."""
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
