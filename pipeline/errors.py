"""voxgate's one exception hierarchy.

Our exception hierarchy:

* VoxgateError            -- anything the operator can fix; the CLI prints it as one line.
  + InputError            -- a command got invalid input (text, file, option value).
  + NotFoundError         -- a named voice, user, statement or clip does not exist.
  + PermissionError_      -- the acting user lacks the role or right for this action.
  + IdentityError         -- the acting person's key is missing, locked, or not the one registered.
  + TransitionError       -- a statement cannot move from its current state by this event.
  + ConsentError          -- consent is missing, revoked, expired or does not cover the request.
  + ApprovalError         -- approvals are missing, invalid, stale or self-given.
  + EngineError           -- a synthesis engine failed to load or to synthesise.
  + AudioError            -- decoding, loudness, joining or encoding audio failed.
  + ProvenanceError       -- a watermark, label or credential could not be applied or verified.
  + StoreError            -- the workspace, database or file store is missing, unwritable or corrupt.
  + AuditError            -- the audit chain is broken or could not be written.

Third-party errors are wrapped at the boundary with `map_exceptions`, chained
with ``from exc`` so the cause is kept for debugging.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping


class VoxgateError(Exception):
    """Base class: an error the operator can act on, shown as one line."""


class InputError(VoxgateError):
    """Raised when a command gets invalid input (text, file or option value)."""


class NotFoundError(VoxgateError):
    """Raised when a named voice, user, statement or clip does not exist."""


class PermissionError_(VoxgateError):
    """Raised when the acting user lacks the role or right for an action."""


class IdentityError(VoxgateError):
    """Raised when the acting person's key is missing, cannot be unlocked, or is not their registered key."""


class TransitionError(VoxgateError):
    """Raised when a statement cannot move from its current state by an event."""


class ConsentError(VoxgateError):
    """Raised when consent is missing, revoked, expired or out of scope."""


class ApprovalError(VoxgateError):
    """Raised when approvals are missing, invalid, stale or self-given."""


class EngineError(VoxgateError):
    """Raised when a synthesis engine fails to load or to synthesise."""


class AudioError(VoxgateError):
    """Raised when decoding, loudness, joining or encoding audio fails."""


class ProvenanceError(VoxgateError):
    """Raised when a watermark, label or credential cannot be applied or verified."""


class StoreError(VoxgateError):
    """Raised when the workspace, database or file store is missing, unwritable or corrupt."""


class AuditError(VoxgateError):
    """Raised when the audit chain is broken or cannot be written."""


@contextlib.contextmanager
def map_exceptions(mapping: Mapping[type[BaseException], type[VoxgateError]], message: str) -> Iterator[None]:
    """Re-raise third-party exceptions as our own, keeping the cause.

    We want to map to the most specific exception we can find, so the first
    matching entry of `mapping` (in order) wins.
    """
    try:
        yield
    except VoxgateError:
        raise
    except BaseException as exc:  # noqa: BLE001 - filtered by mapping below
        for source, target in mapping.items():
            if isinstance(exc, source):
                raise target(f"{message}: {exc}") from exc
        raise
