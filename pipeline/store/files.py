"""A content-addressed file store: blobs named by their sha256.

Writes go to a temporary file in the same directory, are fsynced and then
renamed, so a crash never leaves a half-written blob under a real name, and
a blob's name is proof of its content (checked again on every read).

A workspace keeps its blobs in `<home>/blobs/` (`FileStore`), or, with
`[files] url = "s3://BUCKET/PREFIX"` in voxgate.toml, in an S3-compatible
object store that several machines share (`pipeline.store.s3.S3FileStore`).
Both offer the same methods; `open_file_store` picks one.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO, Final, Protocol

from pipeline.errors import StoreError
from pipeline.hashing import sha256_file

_CHUNK = 1 << 20
#: Everything inside a workspace: readable by the account that runs voxgate, nobody else.
PRIVATE_MODE: Final = 0o600
PRIVATE_DIR_MODE: Final = 0o700
#: Files handed to a person outside the workspace (an export, a pulled clip), meant to be passed on.
SHARED_MODE: Final = 0o644


def fsync_file(path: Path) -> None:
    with path.open("rb") as handle:
        os.fsync(handle.fileno())


def fsync_dir(directory: Path) -> None:
    """Make a rename durable: a crash after return must not resurrect the old file."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) as folders only their owner can enter, whatever the umask."""
    missing = [p for p in (path, *path.parents) if not p.exists()]
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    for folder in missing:
        os.chmod(folder, PRIVATE_DIR_MODE)
    return path


def make_private(root: Path) -> None:
    """Folders 0700 and files 0600 under `root` (and `root` itself): for files a library wrote with the umask."""
    os.chmod(root, PRIVATE_DIR_MODE if root.is_dir() else PRIVATE_MODE)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), PRIVATE_DIR_MODE, follow_symlinks=False)
        for name in files:
            if not os.path.islink(os.path.join(folder, name)):
                os.chmod(os.path.join(folder, name), PRIVATE_MODE)


@contextmanager
def atomic_output(dest: Path, *, mode: int = PRIVATE_MODE) -> Iterator[Path]:
    """A hidden ``.<name>.*.part`` file beside `dest` to write into, with `mode` from the start.

    On a clean exit it is fsynced and renamed to `dest`, and the rename made
    durable; on any exception it is deleted. So `dest` is either absent (or
    as before) or complete. OSError propagates for the caller to word.
    The mode is set explicitly, whatever the umask: private (0600) by default,
    as everything inside a workspace is; an export for a person passes SHARED_MODE.
    """
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        os.fchmod(fd, mode)
    finally:
        os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        fsync_file(tmp)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dest.parent)


def atomic_write_stream(stream: BinaryIO, dest: Path, *, mode: int = PRIVATE_MODE) -> None:
    """Write everything read from `stream` to `dest` so that `dest` is either absent or complete."""
    if not dest.parent.is_dir():
        private_dir(dest.parent)
    with atomic_output(dest, mode=mode) as tmp, tmp.open("wb") as out:
        shutil.copyfileobj(stream, out, _CHUNK)


def atomic_copy(src: Path, dest: Path, *, mode: int = PRIVATE_MODE) -> None:
    """Copy `src` to `dest` so that `dest` is either absent or complete."""
    with open(src, "rb") as f:
        atomic_write_stream(f, dest, mode=mode)


def check_digest(digest: str) -> str:
    """`digest` if it is a lowercase hex sha256 (a blob's name never comes from anywhere else)."""
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise StoreError(f"{digest!r} is not a sha256 digest.")
    return digest


class BlobStore(Protocol):
    """What services use of a file store, wherever its blobs live."""

    url: str

    def put(self, src: Path) -> str: ...
    def path(self, digest: str) -> Path: ...
    def link(self, digest: str, *, filename: str, media_type: str) -> str | None: ...
    def check(self, digest: str) -> None: ...
    def exists(self, digest: str) -> bool: ...
    def open_checked(self, digest: str) -> Path: ...
    def export(self, digest: str, dest: Path, *, mode: int = PRIVATE_MODE) -> None: ...
    def digests(self) -> Iterator[str]: ...
    def is_empty(self) -> bool: ...


def open_file_store(url: str | None, home: Path) -> BlobStore:
    """The workspace's file store: `<home>/blobs` when `url` is empty, else the object store it names."""
    if not url:
        return FileStore(home / "blobs")
    from pipeline.store.s3 import S3FileStore

    return S3FileStore(url, home / "cache" / "blobs")


#: A blob changed less than this long ago is hashed at every check: a change within the same tick of the kernel's
#: file clock as the one before it would leave its times as they were.
SETTLED_S: Final = 2.0


class FileStore:
    """Blobs in a local folder: `<root>/ab/cdef...`.

    A check hashes the blob, and remembers what its file looked like then (device, inode, size,
    modification and change times). While all of these stay as they were, a check of the same blob
    in the same process does not read it again: any write to the file, or a new file put in its
    place, moves its change time, which no one can set back without setting back the clock.
    """

    def __init__(self, root: Path, *, settled_s: float = SETTLED_S) -> None:
        self.root = root
        self.settled_ns = int(settled_s * 1e9)
        self._matched: dict[str, tuple[int, ...]] = {}  # digest -> its file when its bytes last matched

    @property
    def url(self) -> str:
        return str(self.root)

    def path(self, digest: str) -> Path:
        """Where the blob would be (unchecked: read through `open_checked`)."""
        return self.root / check_digest(digest)[:2] / digest[2:]

    def put(self, src: Path) -> str:
        """Store the file at `src`; return its sha256. Storing the same bytes twice is a no-op."""
        digest = sha256_file(src)
        dest = self.path(digest)
        if not dest.exists():
            try:
                atomic_copy(src, dest)
            except OSError as exc:
                raise StoreError(f"Could not write to the file store at {self.root}: {exc.strerror}.") from exc
        return digest

    def open_checked(self, digest: str) -> Path:
        """The path of a blob whose bytes still match its name; `StoreError` otherwise."""
        path = self.path(digest)
        try:
            found = path.stat()
        except OSError:
            found = None
        if found is None or not stat.S_ISREG(found.st_mode):
            raise StoreError(f"Blob {digest[:12]}… is missing from the file store; restore it from a backup.")
        seen = (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)
        if self._matched.get(digest) == seen:
            return path
        if sha256_file(path) != digest:
            raise StoreError(f"Blob {digest[:12]}… no longer matches its checksum; restore it from a backup.")
        if time.time_ns() - found.st_ctime_ns > self.settled_ns:
            self._matched[digest] = seen
        return path

    def check(self, digest: str) -> None:
        """Refuse a blob that is missing or whose bytes no longer match its name."""
        self.open_checked(digest)

    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def link(self, digest: str, *, filename: str, media_type: str) -> None:
        """A folder has no download links of its own: the portal sends the file (`path`) itself."""
        return None

    def export(self, digest: str, dest: Path, *, mode: int = PRIVATE_MODE) -> None:
        """Copy a verified blob to `dest` atomically."""
        atomic_copy(self.open_checked(digest), dest, mode=mode)

    def digests(self) -> Iterator[str]:
        """Every blob in the folder (by name; `open_checked` each to trust it)."""
        if not self.root.is_dir():
            return
        for folder in sorted(self.root.iterdir()):
            if folder.is_dir() and len(folder.name) == 2:
                for blob in sorted(folder.iterdir()):
                    name = folder.name + blob.name
                    if blob.is_file() and len(name) == 64 and all(c in "0123456789abcdef" for c in name):
                        yield name

    def is_empty(self) -> bool:
        return not self.root.is_dir() or not any(self.root.iterdir())
