"""SHA-256 of files, streamed.

Voice models are tens of megabytes and exported clips can be long, so files
are hashed in blocks (`hashlib.file_digest`) rather than read into memory whole.
"""

from __future__ import annotations

import hashlib
from pathlib import Path


def sha256_file(path: Path) -> str:
    """Return the lowercase hex SHA-256 of the file at `path`."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()
