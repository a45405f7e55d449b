"""mirrorkit's HTTP/1.1 transport, with httpx's default transport (httpcore) as the oracle.

Real servers on 127.0.0.1: the FaultServer (a static mirror) and, for what a static server never
does (chunked bodies, bodies that end at close, HTTP/1.0, 1xx, redirects, garbage, silence,
TLS), a scripted socket server that answers each request with the next canned response.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mirrorkit.fetch import Fetcher, RetryPolicy
from mirrorkit.models import FileRef
from mirrorkit.store import Pool
from mirrorkit.transport import StreamTransport
from tests.helpers.archive import Archive
from tests.helpers.httpserver import FaultServer


def run(coro: Any) -> Any:
    return asyncio.run(coro)


async def _exchange(
    transport: httpx.AsyncBaseTransport, requests: list[tuple[str, str, dict[str, str]]]
) -> list[tuple[int, str, dict[str, str], bytes]]:
    """Send ``requests`` one after the other on one client; what came back, comparably."""
    keep = ("content-length", "content-type", "etag", "last-modified", "content-range")
    out = []
    async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
        for method, url, headers in requests:
            resp = await client.request(method, url, headers=headers)
            kept = {k: v for k, v in resp.headers.items() if k in keep}
            out.append((resp.status_code, resp.reason_phrase, kept, resp.content))
    return out


def test_same_answers_as_httpcore(archive: Archive, upstream: FaultServer) -> None:
    debs = sorted(p.relative_to(archive.root) for p in archive.root.rglob("*.deb"))
    first = f"{upstream.url}/{debs[0]}"
    etag = httpx.head(first).headers["etag"]
    requests: list[tuple[str, str, dict[str, str]]] = [
        ("GET", f"{upstream.url}/{d}", {}) for d in debs
    ]
    requests += [
        ("HEAD", first, {}),
        ("GET", first, {"Range": "bytes=10-"}),
        ("GET", first, {"Range": "bytes=10-", "If-Range": '"stale"'}),
        ("GET", first, {"If-None-Match": etag}),
        ("GET", f"{upstream.url}/no/such/file", {}),
        ("GET", f"{upstream.url}/dists/stable/InRelease", {}),
    ]
    upstream.add_fault("*/InRelease", "status", code=503, retry_after="7")
    ours = run(_exchange(StreamTransport(), requests))
    upstream.add_fault("*/InRelease", "status", code=503, retry_after="7")
    oracle = run(_exchange(httpx.AsyncHTTPTransport(), requests))
    assert ours == oracle
    assert [r[0] for r in ours[-6:]] == [200, 206, 200, 304, 404, 503]


def test_keeps_one_connection_alive_and_survives_a_server_hang_up(upstream: FaultServer) -> None:
    url = f"{upstream.url}/dists/stable/Release"

    async def main() -> list[int]:
        statuses = []
        async with httpx.AsyncClient(transport=StreamTransport(), trust_env=False) as client:
            for _ in range(20):
                statuses.append((await client.get(url)).status_code)
            assert upstream.connections == 1
            # The server's keep-alive timeout closes the idle connection; the client does not
            # know yet. The next request must go through on a new connection, not fail.
            assert upstream.hang_up() == 1
            await asyncio.sleep(0.05)
            statuses.append((await client.get(url)).status_code)
        return statuses

    assert run(main()) == [200] * 21
    assert upstream.connections == 2


# -- a scripted server ---------------------------------------------------------------------


class ScriptServer:
    """Answer the n-th request with ``script[n]`` (bytes; a ``None`` entry never answers);
    close the connection after each answer whose script entry ends with ``close``."""

    def __init__(self, script: list[tuple[bytes | None, bool]], tls: ssl.SSLContext | None = None):
        self.script = list(script)
        self.requests: list[bytes] = []
        self.connections = 0
        self._tls = tls
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        accept = threading.Thread(target=self._accept, daemon=True)
        accept.start()
        self._threads.append(accept)

    def _accept(self) -> None:
        self._sock.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            worker = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            worker.start()
            self._threads.append(worker)

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.ExitStack() as stack:
            if self._tls:
                try:
                    conn = self._tls.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    conn.close()
                    return
            stack.callback(conn.close)
            conn.settimeout(5)
            data = b""
            while not self._stop.is_set():
                while b"\r\n\r\n" not in data:
                    try:
                        got = conn.recv(65536)
                    except OSError:
                        return
                    if not got:
                        return
                    data += got
                head, _, data = data.partition(b"\r\n\r\n")
                self.requests.append(head)
                answer, close = self.script.pop(0) if self.script else (None, True)
                if answer is None:
                    self._stop.wait(10)
                    return
                conn.sendall(answer)
                if close:
                    return

    def stop(self) -> None:
        self._stop.set()
        self._sock.close()
        for thread in self._threads:
            thread.join(timeout=5)


@pytest.fixture
def scripted() -> Iterator[Any]:
    servers: list[ScriptServer] = []

    def make(script: list[tuple[bytes | None, bool]], tls: ssl.SSLContext | None = None) -> Any:
        servers.append(ScriptServer(script, tls))
        return servers[-1]

    yield make
    for server in servers:
        server.stop()


def _both(make: Any, script: list[tuple[bytes | None, bool]], path: str = "/f") -> Any:
    """(ours, oracle) for one GET each against identical scripted servers."""

    async def get(transport: httpx.AsyncBaseTransport, url: str) -> Any:
        async with httpx.AsyncClient(
            transport=transport, trust_env=False, follow_redirects=True, timeout=0.5
        ) as client:
            try:
                resp = await client.get(url + path)
            except httpx.TransportError as exc:
                return exc
            return resp.status_code, resp.content, resp.headers.get("x-n")

    ours = run(get(StreamTransport(), make(script).url))
    oracle = run(get(httpx.AsyncHTTPTransport(), make(script).url))
    return ours, oracle


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-N: 1\r\n\r\nhello"


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        pytest.param([(OK, False)], (200, b"hello", "1"), id="content-length"),
        pytest.param(
            [
                (
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nTrailer: x\r\n\r\n",
                    False,
                )
            ],
            (200, b"hello world", None),
            id="chunked-with-extension-and-trailer",
        ),
        pytest.param(
            [(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end", True)],
            (200, b"until the end", None),
            id="body-ends-at-close",
        ),
        pytest.param(
            [(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", True)],
            (200, b"ok", None),
            id="http-1.0",
        ),
        pytest.param(
            [(b"HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n" + OK, False)],
            (200, b"hello", "1"),
            id="1xx-before-the-answer",
        ),
        pytest.param(
            [
                (b"HTTP/1.1 301 Moved\r\nLocation: /g\r\nContent-Length: 0\r\n\r\n", False),
                (OK, False),
            ],
            (200, b"hello", "1"),
            id="redirect-on-the-same-connection",
        ),
        pytest.param(
            [(b"HTTP/1.1 204 No Content\r\n\r\n", False)], (204, b"", None), id="204-no-body"
        ),
        pytest.param(
            [(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", True)],
            httpx.TransportError,
            id="truncated-body",
        ),
        pytest.param(
            [(b"SSH-2.0-OpenSSH_9.2\r\n\r\n", True)],
            httpx.TransportError,
            id="not-http",
        ),
        pytest.param(
            [(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", True)],
            httpx.TransportError,
            id="bad-chunk-size",
        ),
        pytest.param(
            [(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", True)],
            httpx.TransportError,
            id="conflicting-lengths",
        ),
    ],
)
def test_framing_like_httpcore(scripted: Any, script: Any, expected: Any) -> None:
    ours, oracle = _both(scripted, script)
    if isinstance(expected, type):
        assert isinstance(ours, expected), ours
        assert isinstance(oracle, expected), oracle
    else:
        assert ours == expected
        assert oracle == expected


def test_silence_is_a_read_timeout(scripted: Any) -> None:
    ours, oracle = _both(scripted, [(None, True)])
    assert isinstance(ours, httpx.ReadTimeout)
    assert isinstance(oracle, httpx.ReadTimeout)


def test_connection_close_is_honoured(scripted: Any) -> None:
    server = scripted(
        [(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\na", True)] * 3
    )

    async def main() -> list[bytes]:
        async with httpx.AsyncClient(transport=StreamTransport(), trust_env=False) as client:
            return [(await client.get(server.url + "/x")).content for _ in range(3)]

    assert run(main()) == [b"a"] * 3
    assert server.connections == 3


def test_request_head_is_what_httpx_built(scripted: Any) -> None:
    server = scripted([(OK, False)])

    async def main() -> None:
        async with httpx.AsyncClient(
            transport=StreamTransport(), trust_env=False, headers={"User-Agent": "t/1"}
        ) as client:
            await client.get(server.url + "/a%20b/c+d~e?q=1", headers={"Range": "bytes=1-"})

    run(main())
    lines = server.requests[0].split(b"\r\n")
    assert lines[0] == b"GET /a%20b/c+d~e?q=1 HTTP/1.1"
    assert f"Host: 127.0.0.1:{server.port}".encode() in lines
    assert b"User-Agent: t/1" in lines
    assert b"Range: bytes=1-" in lines


# -- TLS -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_tls_verified_against_the_given_ca(scripted: Any, certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    server = scripted([(OK, False), (OK, False)], tls=server_ctx)

    async def get(ctx: ssl.SSLContext | None) -> bytes:
        async with httpx.AsyncClient(
            transport=StreamTransport(ssl_context=ctx), trust_env=False
        ) as client:
            return (await client.get(server.url + "/f")).content

    assert run(get(ssl.create_default_context(cafile=str(cert)))) == b"hello"
    # Not trusted by the default CA store: refused before any request is sent.
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        run(get(None))
    assert len(server.requests) == 1


# -- the Fetcher on both transports ------------------------------------------------------------


def test_pool_downloads_match_the_httpcore_oracle(
    archive: Archive, upstream: FaultServer, tmp_path: Path
) -> None:
    refs = []
    for path in sorted(archive.root.rglob("*.deb")):
        data = path.read_bytes()
        rel = path.relative_to(archive.root).as_posix()
        refs.append(FileRef(rel, len(data), hashlib.sha256(data).hexdigest()))
    # One fault of each kind the pool path handles: a drop mid-body (resumed with Range), a
    # 503 (retried), a corrupt body (refused).
    upstream.add_fault(refs[0].path, "drop", after_bytes=100)
    upstream.add_fault(refs[1].path, "status", code=503)

    def fetch(transport: httpx.AsyncBaseTransport | None, name: str) -> dict[str, bytes]:
        pool = Pool(tmp_path / name / "pool", tmp_path / name / "tmp")

        async def main() -> None:
            policy = RetryPolicy(max_tries=3, base_delay=0.01)
            async with Fetcher(jobs=4, retry=policy, transport=transport) as fetcher:
                summary = await fetcher.fetch_to_pool(
                    upstream.url, refs, pool, tmp_path / name / "partial"
                )
                assert summary.fetched == len(refs)

        run(main())
        return {
            p.name: p.read_bytes() for p in (tmp_path / name / "pool").rglob("*") if p.is_file()
        }

    ours = fetch(None, "ours")
    assert upstream.pending_faults() == []
    upstream.add_fault(refs[0].path, "drop", after_bytes=100)
    upstream.add_fault(refs[1].path, "status", code=503)
    oracle = fetch(httpx.AsyncHTTPTransport(), "oracle")
    assert ours == oracle
    assert set(ours) == {r.sha256 for r in refs}
    resumed = [h for m, p, h in upstream.requests if p.endswith(refs[0].path) and "range" in h]
    assert len(resumed) == 2  # one resume per transport, each after the 100 bytes it kept
    assert all(h["range"] == "bytes=100-" for h in resumed)
    # ... and only if the file is still the one those bytes came from (its ETag, kept beside
    # the partial file when the transfer broke).
    etag = httpx.head(f"{upstream.url}/{refs[0].path}").headers["etag"]
    assert [h.get("if-range") for h in resumed] == [etag, etag]
    # Nothing is left behind once every file is in the pool.
    assert [p.name for p in tmp_path.glob("*/partial/*")] == []


@pytest.mark.parametrize(("method", "sent_again"), [("GET", True), ("POST", False)])
def test_stale_connection_is_retried_only_for_what_may_be_repeated(
    scripted: Any, method: str, sent_again: bool
) -> None:
    # The keep-alive connection dies just as the next request goes out (the server closes it
    # on reading the request, without an answer): the client cannot tell whether the server
    # acted on it, so only a request that may be repeated is sent again.
    server = scripted([(OK, False), (b"", True), (OK, False)])

    async def main() -> Any:
        async with httpx.AsyncClient(transport=StreamTransport(), trust_env=False) as client:
            await client.get(server.url + "/first")
            try:
                return (await client.request(method, server.url + "/second")).content
            except httpx.TransportError as exc:
                return exc

    result = run(main())
    if sent_again:
        assert result == b"hello"
        assert server.connections == 2
    else:
        assert isinstance(result, httpx.TransportError)
        assert server.connections == 1
