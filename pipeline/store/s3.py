"""The content-addressed file store in an S3-compatible object store (SeaweedFS, MinIO, AWS S3, ...).

`files_url = "s3://BUCKET/PREFIX"` in voxgate.toml (`[files] url`). Where to
reach it and with which keys comes from the environment, as for any AWS tool:
AWS_ENDPOINT_URL (not set: AWS itself), AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_REGION (or ~/.aws/credentials, or an instance
role); VOXGATE_S3_PUBLIC_ENDPOINT, when set, is the address distributors'
browsers reach the store at, which presigned download links are signed for.

Blobs are `PREFIX/ab/cdef...` (their sha256), as in a local folder. A blob
never appears half-written under its key: S3 makes an object visible only
when its PUT (or the completion of a multipart upload) succeeds, each body
and part is sent with its Content-MD5 (the store refuses one that does not
match), the store's answer (ETag) is compared with what voxgate computed,
and a multipart upload that fails at any point is aborted, so its parts are
dropped and no object appears. Each object carries its sha256 and MD5 in
metadata. Reads that pass through voxgate (`open_checked`) are hashed again;
a download handed to the object store by presigned URL is checked first
against the object's ETag, size and metadata (`check`): an object changed
or truncated since voxgate wrote it is refused, not handed out. Bit rot
beneath an unchanged object is the store's own check (SeaweedFS and S3
checksum what they read from disk).

Local copies of blobs that voxgate reads (a premaster to mark, a master to
match) are kept in `<home>/cache/blobs/`, private, checked on every use;
the folder may be deleted at any time while no voxgate process runs.
"""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from pipeline.errors import StoreError
from pipeline.store.files import PRIVATE_MODE, atomic_output, check_digest, private_dir

SCHEME: Final = "s3://"
PUBLIC_ENDPOINT_ENV: Final = "VOXGATE_S3_PUBLIC_ENDPOINT"
#: Bodies up to this size go in one PUT; larger ones in parts (S3 allows 5 GiB in one PUT; parts keep retries small).
MULTIPART_THRESHOLD: Final = 64 * 1024 * 1024
PART_SIZE: Final = 16 * 1024 * 1024  # S3's smallest part (but the last) is 5 MiB
#: How long a presigned download link works: long enough to start the download, too short to pass around.
LINK_SECONDS: Final = 60
_CHUNK: Final = 1 << 20


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str  # "" or "some/prefix" (no leading or trailing slash)

    @classmethod
    def parse(cls, url: str) -> Location:
        if not url.startswith(SCHEME):
            raise StoreError(f"files url {url!r} is not s3://BUCKET/PREFIX; fix [files] url in voxgate.toml.")
        bucket, _, prefix = url[len(SCHEME):].partition("/")
        if not bucket or any(c not in "abcdefghijklmnopqrstuvwxyz0123456789.-" for c in bucket):
            raise StoreError(f"files url {url!r} names no valid bucket (lower-case letters, digits, '.', '-'); "
                             "fix [files] url in voxgate.toml.")
        return cls(bucket, prefix.strip("/"))

    def key(self, digest: str) -> str:
        return f"{self.prefix}/{digest[:2]}/{digest[2:]}" if self.prefix else f"{digest[:2]}/{digest[2:]}"

    @property
    def url(self) -> str:
        return f"{SCHEME}{self.bucket}/{self.prefix}" if self.prefix else f"{SCHEME}{self.bucket}"


@dataclass(frozen=True)
class Sums:
    """What voxgate knows of a body before sending it: its sha256, size and the ETag the store must answer."""

    sha256: str
    size: int
    md5: str  # of the whole body (hex)
    parts: tuple[tuple[int, int, bytes], ...]  # (offset, length, md5 digest) per part; one part: a single PUT

    @property
    def etag(self) -> str:
        if len(self.parts) == 1:
            return self.md5
        return hashlib.md5(b"".join(p[2] for p in self.parts)).hexdigest() + f"-{len(self.parts)}"


def sums(path: Path, *, threshold: int, part_size: int) -> Sums:
    """Hash `path` once: sha256, MD5, and the MD5 of each part it will be sent in (one part up to `threshold`)."""
    size = path.stat().st_size
    step = max(size if size <= threshold else part_size, 1)
    sha, whole, parts = hashlib.sha256(), hashlib.md5(), []
    with path.open("rb") as f:
        for offset in range(0, max(size, 1), step):
            part, length = hashlib.md5(), min(step, size - offset)
            left = length
            while left > 0:
                block = f.read(min(_CHUNK, left))
                if not block:
                    raise StoreError(f"{path} changed while it was being stored; try again.")
                sha.update(block)
                whole.update(block)
                part.update(block)
                left -= len(block)
            parts.append((offset, length, part.digest()))
    return Sums(sha.hexdigest(), size, whole.hexdigest(), tuple(parts))


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _client(*, endpoint: str | None = None) -> Any:
    import boto3
    from botocore.config import Config

    endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL") or None
    # Path-style addressing for a self-hosted store (no per-bucket DNS names); AWS picks its own.
    style = "path" if endpoint else "auto"
    return boto3.client("s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_REGION") or
                        os.environ.get("AWS_DEFAULT_REGION") or "us-east-1",
                        config=Config(signature_version="s3v4", s3={"addressing_style": style},
                                      retries={"max_attempts": 3, "mode": "standard"}))


class S3FileStore:
    """Blobs named by their sha256 in one bucket and prefix; see the module docstring."""

    def __init__(self, url: str, cache: Path, *, client: Any = None, multipart_threshold: int = MULTIPART_THRESHOLD,
                 part_size: int = PART_SIZE) -> None:
        self.where = Location.parse(url)
        self.cache = cache
        self._client = client
        self._presigner: Any = None
        self.multipart_threshold, self.part_size = multipart_threshold, part_size

    @property
    def url(self) -> str:
        return self.where.url

    def __repr__(self) -> str:
        return f"S3FileStore({self.url!r})"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _client()
        return self._client

    def _fail(self, doing: str, exc: Exception) -> StoreError:
        from botocore.exceptions import ClientError

        if isinstance(exc, ClientError):
            code = exc.response.get("Error", {}).get("Code", "?")
            message = exc.response.get("Error", {}).get("Message", "") or code
            if code in ("NoSuchBucket",):
                return StoreError(f"The object store has no bucket {self.where.bucket!r}; create it, or fix "
                                  "[files] url in voxgate.toml.")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "403"):
                return StoreError(f"The object store refused voxgate's keys while {doing} ({message}); check "
                                  "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.")
            return StoreError(f"The object store at {self.url} failed while {doing}: {message}.")
        return StoreError(f"Could not reach the object store at {self.url} while {doing} ({exc}); check "
                          "AWS_ENDPOINT_URL and that the store is running.")

    # --- writing -----------------------------------------------------------

    def put(self, src: Path) -> str:
        """Store the file at `src`; return its sha256. Storing the same bytes twice is a no-op."""
        from botocore.exceptions import BotoCoreError, ClientError

        expected = sums(src, threshold=self.multipart_threshold, part_size=self.part_size)
        key = self.where.key(expected.sha256)
        try:
            if self._matches(self._head(key), expected.sha256) is None:
                return expected.sha256  # already there, intact
            with src.open("rb") as body:
                if len(expected.parts) == 1:
                    answer = self.client.put_object(Bucket=self.where.bucket, Key=key, Body=body,
                                                    ContentLength=expected.size, ContentMD5=_b64(bytes.fromhex(expected.md5)),
                                                    Metadata=self._metadata(expected))
                    etag = answer.get("ETag", "").strip('"')
                    if etag and etag != expected.etag:  # a store that ignored Content-MD5: take it away again
                        self.client.delete_object(Bucket=self.where.bucket, Key=key)
                        raise StoreError(f"The object store kept other bytes than voxgate sent for blob "
                                         f"{expected.sha256[:12]}…; nothing was stored, try again.")
                else:
                    self._put_parts(key, body, expected)
            problem = self._matches(self._head(key), expected.sha256, expected)
        except (BotoCoreError, ClientError, OSError) as exc:  # OSError: a connection dropped under botocore
            raise self._fail(f"storing blob {expected.sha256[:12]}…", exc) from exc
        if problem is not None:
            raise StoreError(f"Blob {expected.sha256[:12]}… did not arrive intact in the object store ({problem}); "
                             "try again.")
        return expected.sha256

    def _metadata(self, expected: Sums) -> dict[str, str]:
        return {"sha256": expected.sha256, "etag": expected.etag}

    def _put_parts(self, key: str, body: Any, expected: Sums) -> None:
        """A multipart upload whose parts are each checked; any failure aborts it, so no object appears."""
        bucket = self.where.bucket
        upload = self.client.create_multipart_upload(Bucket=bucket, Key=key, Metadata=self._metadata(expected))
        upload_id = upload["UploadId"]
        try:
            done = []
            for number, (offset, length, md5) in enumerate(expected.parts, start=1):
                body.seek(offset)
                chunk = body.read(length)
                answer = self.client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number,
                                                 Body=chunk, ContentLength=length, ContentMD5=_b64(md5))
                if answer.get("ETag", "").strip('"') not in ("", md5.hex()):
                    raise StoreError(f"The object store kept other bytes than voxgate sent for part {number} of "
                                     f"blob {expected.sha256[:12]}…; nothing was stored, try again.")
                done.append({"PartNumber": number, "ETag": answer["ETag"]})
            self.client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                                  MultipartUpload={"Parts": done})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            except Exception:  # noqa: BLE001 - the first failure is the one to report; stale parts expire
                pass
            raise

    # --- checking and reading ------------------------------------------------

    def _head(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        try:
            return self.client.head_object(Bucket=self.where.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise

    @staticmethod
    def _matches(head: dict[str, Any] | None, digest: str, expected: Sums | None = None) -> str | None:
        """None when the object is there and agrees with what voxgate wrote; else what is wrong."""
        if head is None:
            return "missing"
        meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
        etag = str(head.get("ETag", "")).strip('"')
        if meta.get("sha256") != digest:
            return "its recorded sha256 differs"
        if meta.get("etag") != etag:
            return "its bytes changed since voxgate wrote them"
        if expected is not None and (etag != expected.etag or head.get("ContentLength") != expected.size):
            return "its size or checksum differs from what was sent"
        return None

    def check(self, digest: str) -> None:
        """Refuse a blob that is missing or no longer the object voxgate wrote (before handing out a link to it)."""
        from botocore.exceptions import BotoCoreError, ClientError

        check_digest(digest)
        try:
            problem = self._matches(self._head(self.where.key(digest)), digest)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"checking blob {digest[:12]}…", exc) from exc
        if problem == "missing":
            raise StoreError(f"Blob {digest[:12]}… is missing from the object store; restore it from a backup.")
        if problem is not None:
            raise StoreError(f"Blob {digest[:12]}… in the object store is not as voxgate wrote it ({problem}); "
                             "restore it from a backup.")

    def exists(self, digest: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return self._head(self.where.key(check_digest(digest))) is not None
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"looking for blob {digest[:12]}…", exc) from exc

    def open_checked(self, digest: str) -> Path:
        """A local path holding the blob's bytes, hashed and matching its name; `StoreError` otherwise."""
        from pipeline.hashing import sha256_file

        local = self.cache / check_digest(digest)[:2] / digest[2:]
        if local.is_file():
            if sha256_file(local) == digest:
                return local
            local.unlink()  # a damaged cached copy: fetch it again
        private_dir(local.parent)
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            with atomic_output(local, mode=PRIVATE_MODE) as tmp:
                sha = hashlib.sha256()
                try:
                    answer = self.client.get_object(Bucket=self.where.bucket, Key=self.where.key(digest))
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                        raise StoreError(f"Blob {digest[:12]}… is missing from the object store; restore it "
                                         "from a backup.") from None
                    raise
                with tmp.open("wb") as out:
                    for block in answer["Body"].iter_chunks(_CHUNK):
                        sha.update(block)
                        out.write(block)
                if sha.hexdigest() != digest:  # deleted with the temp file: a bad copy never lands in the cache
                    raise StoreError(f"Blob {digest[:12]}… in the object store no longer matches its checksum; "
                                     "restore it from a backup.")
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"reading blob {digest[:12]}…", exc) from exc
        except OSError as exc:
            raise StoreError(f"Could not write to the blob cache {self.cache}: {exc.strerror}.") from exc
        return local

    def verify_bytes(self, digest: str) -> None:
        """Read the object through and hash it (nothing kept): `voxgate migrate`'s check of each blob it copied."""
        from botocore.exceptions import BotoCoreError, ClientError

        sha = hashlib.sha256()
        try:
            answer = self.client.get_object(Bucket=self.where.bucket, Key=self.where.key(check_digest(digest)))
            for block in answer["Body"].iter_chunks(_CHUNK):
                sha.update(block)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail(f"reading blob {digest[:12]}… back", exc) from exc
        if sha.hexdigest() != digest:
            raise StoreError(f"Blob {digest[:12]}… read back from the object store does not match its checksum.")

    def path(self, digest: str) -> Path:
        """A local path holding the blob: its verified copy in the cache (fetched now if not there)."""
        return self.open_checked(digest)

    def export(self, digest: str, dest: Path, *, mode: int = PRIVATE_MODE) -> None:
        """Copy a verified blob to `dest` atomically."""
        from pipeline.store.files import atomic_copy

        atomic_copy(self.open_checked(digest), dest, mode=mode)

    def link(self, digest: str, *, filename: str, media_type: str, seconds: int = LINK_SECONDS) -> str:
        """A presigned GET for the blob, good for `seconds`, naming the download; check the blob first (`check`)."""
        from botocore.exceptions import BotoCoreError

        if self._presigner is None:
            public = os.environ.get(PUBLIC_ENDPOINT_ENV)
            self._presigner = _client(endpoint=public) if public else self.client
        disposition = f"attachment; filename=\"{filename}\"; filename*=UTF-8''{quote(filename)}"
        try:
            return self._presigner.generate_presigned_url(
                "get_object", ExpiresIn=seconds,
                Params={"Bucket": self.where.bucket, "Key": self.where.key(check_digest(digest)),
                        "ResponseContentDisposition": disposition, "ResponseContentType": media_type})
        except BotoCoreError as exc:
            raise self._fail("signing a download link", exc) from exc

    # --- listing ---------------------------------------------------------------

    def digests(self) -> Iterator[str]:
        """Every blob stored under the prefix (by name; `check` or `open_checked` each to trust it)."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = f"{self.where.prefix}/" if self.where.prefix else ""
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.where.bucket,
                                                                             Prefix=prefix):
                for item in page.get("Contents", []):
                    rest = item["Key"][len(prefix):]
                    name = rest.replace("/", "")
                    if len(rest) == 65 and rest[2] == "/" and len(name) == 64:
                        yield name
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("listing blobs", exc) from exc

    def is_empty(self) -> bool:
        """Nothing at all under the prefix (blob or not): a store `voxgate migrate` may fill."""
        from botocore.exceptions import BotoCoreError, ClientError

        prefix = f"{self.where.prefix}/" if self.where.prefix else ""
        try:
            answer = self.client.list_objects_v2(Bucket=self.where.bucket, Prefix=prefix, MaxKeys=1)
        except (BotoCoreError, ClientError) as exc:
            raise self._fail("looking into the bucket", exc) from exc
        return not answer.get("KeyCount", len(answer.get("Contents", [])))
