"""A threaded HTTP/1.1 file server on 127.0.0.1 with scriptable faults.

It behaves like a plain static mirror (keep-alive, Content-Length on every response that has a
body, ETag/Last-Modified, single byte ranges with If-Range, conditional GET) until a test asks it
to misbehave with :meth:`FaultServer.add_fault`::

    with FaultServer(archive.root) as srv:
        srv.add_fault("*.deb", "drop", after_bytes=100)
        srv.add_fault("*/InRelease", "status", code=503, times=2, retry_after="1")
        ...
        assert srv.count("*/InRelease") == 3

Fault kinds (``times`` counts requests the fault was applied to; ``-1`` means forever):

``status``        answer ``code`` (default 503) with an optional ``Retry-After: retry_after``
                  and ``Location: location`` (a redirect).
``not_found``     answer 404.
``slow``          wait ``delay`` seconds (default 1.0) before answering; combines with one other
                  fault that matches the same request.
``drop``          GET only: send headers with the full Content-Length, then only ``after_bytes``
                  bytes of body (default half), then close the connection.
``corrupt``       GET only: flip one byte of the body (at ``offset``, default the middle byte);
                  the length is unchanged.
``truncate``      GET only: send a shorter body (``after_bytes`` bytes, default half) with a
                  matching, shorter Content-Length.
``ignore_range``  Range requests only: answer 200 with the full body.

``srv.hold(glob)`` makes matching requests wait, unanswered, until ``srv.release()`` (or
``stop()``): how a test keeps a client busy mid-download for as long as it needs.

``FaultServer(root, tls=ctx)`` serves HTTPS (each accepted socket wrapped with the server-side
``ssl.SSLContext``; a failed handshake still counts in ``connections``);
``FaultServer(root, auth=("user", "password"))`` answers 401 to every request without those
HTTP Basic credentials.

Matching: a pattern with ``*``, ``?`` or ``[`` is an fnmatch glob on the URL path (decoded, no
query); a glob that does not start with ``/`` or ``*`` is anchored at a path-segment boundary
(``"dists/*/InRelease"`` matches ``/debian/dists/stable/InRelease``). A pattern without glob
characters matches the whole path or a trailing run of path segments (``"InRelease"`` matches
``/dists/stable/InRelease`` but not ``/dists/stable/xInRelease``).
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import fnmatch
import http.server
import posixpath
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["FAULT_KINDS", "FaultServer", "path_matches"]

FAULT_KINDS: dict[str, frozenset[str]] = {
    "status": frozenset({"code", "retry_after", "location"}),
    "drop": frozenset({"after_bytes"}),
    "corrupt": frozenset({"offset"}),
    "truncate": frozenset({"after_bytes"}),
    "ignore_range": frozenset(),
    "slow": frozenset({"delay"}),
    "not_found": frozenset(),
}
_BODY_FAULTS = frozenset({"drop", "corrupt", "truncate"})
_NO_BODY_STATUS = frozenset({204, 304})


def path_matches(pattern: str, path: str) -> bool:
    """Whether URL ``path`` matches ``pattern`` (see the module docstring for the rules)."""
    if any(c in pattern for c in "*?["):
        if not pattern.startswith(("/", "*")):
            return fnmatch.fnmatchcase(path, "*/" + pattern)
        return fnmatch.fnmatchcase(path, pattern)
    if path == pattern:
        return True
    return path.endswith(pattern if pattern.startswith("/") else "/" + pattern)


class _Headers(dict[str, str]):
    """Request headers with case-insensitive lookups (keys are stored lower-case)."""

    def __getitem__(self, key: str) -> str:
        return super().__getitem__(key.lower())

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and super().__contains__(key.lower())

    def get(self, key: str, default: Any = None) -> Any:
        return super().get(key.lower(), default)


@dataclass
class _Fault:
    pattern: str
    kind: str
    times: int
    params: dict[str, Any] = field(default_factory=dict)

    def applies(self, method: str, path: str, has_range: bool) -> bool:
        if self.times == 0 or not path_matches(self.pattern, path):
            return False
        if self.kind in _BODY_FAULTS:
            return method == "GET"
        if self.kind == "ignore_range":
            return has_range
        return True


class _Server(http.server.ThreadingHTTPServer):
    # Not daemon threads: server_close() joins only non-daemon handler threads, and no thread
    # may outlive the fixture. stop() ends them all (see FaultServer._track).
    daemon_threads = False
    # socketserver's default backlog of 5 drops connection attempts when a client opens 8 at
    # once, and the client then stalls a whole second before retrying.
    request_queue_size = 128
    # ThreadingMixIn's default: server_close() joins the handler threads; stop() first shuts
    # down idle keep-alive sockets so that the joins end.
    block_on_close = True

    def __init__(self, owner: FaultServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup we neither need
        # nor want (it can be slow and it is not a loopback-only operation).
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def get_request(self) -> tuple[socket.socket, Any]:
        conn, addr = super().get_request()
        tls = self.owner.tls
        if tls is not None:
            # The handshake runs in the handler's thread (setup), not in the accept loop.
            conn = tls.wrap_socket(conn, server_side=True, do_handshake_on_connect=False)
        return conn, addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hanging up mid-response (and our own "drop" faults) are expected in tests;
        # file-system errors are handled in the handler, so any OSError here is socket-level.
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handle_error(request, client_address)


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Idle keep-alive connections are closed after this many seconds (socket timeout).
    timeout = 30
    server_version = "mirrorkit-test/1"
    sys_version = ""

    def setup(self) -> None:
        super().setup()
        self.server.owner._track(self.connection)
        if isinstance(self.connection, ssl.SSLSocket):
            try:
                self.connection.do_handshake()
            except OSError:
                self.server.owner._untrack(self.connection)
                raise

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.owner._untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the request log lives in FaultServer.requests; stderr noise helps nobody

    def do_GET(self) -> None:
        self._serve("GET")

    def do_HEAD(self) -> None:
        self._serve("HEAD")

    # -- helpers -----------------------------------------------------------------------------

    def _send(
        self,
        code: int,
        body: bytes,
        method: str,
        headers: dict[str, str] | None = None,
        *,
        content_length: int | None = None,
        send_bytes: int | None = None,
    ) -> None:
        self.send_response(code)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if code not in _NO_BODY_STATUS:
            length = len(body) if content_length is None else content_length
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if method != "GET" or code in _NO_BODY_STATUS:
            return
        self.wfile.write(body if send_bytes is None else body[:send_bytes])

    def _plain(self, code: int, method: str, extra: dict[str, str] | None = None) -> None:
        text = f"{code} {self.responses.get(code, ('',))[0]}\n".encode()
        self._send(code, text, method, {"Content-Type": "text/plain", **(extra or {})})

    def _serve(self, method: str) -> None:
        owner = self.server.owner
        raw_path = urllib.parse.urlsplit(self.path).path
        path = urllib.parse.unquote(raw_path)
        headers = _Headers((k.lower(), v) for k, v in self.headers.items())
        owner._log(method, path, headers)
        if owner.auth is not None and headers.get("authorization") != owner.auth:
            self._plain(401, method, {"WWW-Authenticate": 'Basic realm="mirrorkit-test"'})
            return
        with owner._in_flight(path):
            self._answer(method, path, headers)

    def _answer(self, method: str, path: str, headers: _Headers) -> None:
        owner = self.server.owner
        owner._wait_if_held(path)
        faults = owner._take_faults(method, path, "range" in headers)
        other: _Fault | None = None
        for fault in faults:
            if fault.kind == "slow":
                owner._sleep(float(fault.params.get("delay", 1.0)))
            else:
                other = fault

        if other is not None and other.kind == "status":
            code = int(other.params.get("code", 503))
            extra = {}
            if other.params.get("retry_after") is not None:
                extra["Retry-After"] = str(other.params["retry_after"])
            if other.params.get("location") is not None:
                extra["Location"] = str(other.params["location"])
            self._plain(code, method, extra)
            return
        if other is not None and other.kind == "not_found":
            self._plain(404, method)
            return

        norm = posixpath.normpath(path)
        if ".." in norm.split("/"):
            self._plain(404, method)
            return
        file = owner.root / norm.lstrip("/")
        try:
            data = file.read_bytes()
            st = file.stat()
        except (IsADirectoryError, FileNotFoundError, NotADirectoryError, PermissionError):
            self._plain(404, method)
            return

        etag = f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
        last_modified = email.utils.formatdate(st.st_mtime, usegmt=True)
        meta = {
            "Content-Type": "application/octet-stream",
            "ETag": etag,
            "Last-Modified": last_modified,
            "Accept-Ranges": "bytes",
        }

        # Last-Modified has one-second resolution and tests rewrite files within a second, so a
        # date is trusted as a validator only if it is unambiguous (see _date_validator_ok).
        date_ok = owner._date_validator_ok(path, last_modified, etag, st.st_mtime)
        owner._issued_validator(path, last_modified, etag)

        if self._not_modified(headers, etag, int(st.st_mtime), date_ok):
            self._send(304, b"", method, meta)
            return

        code = 200
        body = data
        rng = headers.get("range")
        if rng is not None and not (other is not None and other.kind == "ignore_range"):
            if_range = headers.get("if-range")
            if if_range is None or if_range == etag or (if_range == last_modified and date_ok):
                parsed = _parse_range(rng, len(data))
                if parsed == "unsatisfiable":
                    self._send(416, b"", method, {**meta, "Content-Range": f"bytes */{len(data)}"})
                    return
                if isinstance(parsed, tuple):
                    start, end = parsed
                    code = 206
                    body = data[start : end + 1]
                    meta["Content-Range"] = f"bytes {start}-{end}/{len(data)}"

        kind = other.kind if other is not None else None
        params = other.params if other is not None else {}
        if kind == "corrupt" and body:
            offset = int(params.get("offset", len(body) // 2))
            mutable = bytearray(body)
            mutable[offset % len(body)] ^= 0xFF
            body = bytes(mutable)
        elif kind == "truncate":
            body = body[: int(params.get("after_bytes", len(body) // 2))]
        elif kind == "drop":
            keep = int(params.get("after_bytes", len(body) // 2))
            self._send(code, body, method, meta, send_bytes=keep)
            self.wfile.flush()
            # Abrupt end: the client was promised more bytes than it will ever get.
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(code, body, method, meta)

    @staticmethod
    def _not_modified(headers: _Headers, etag: str, mtime: int, date_ok: bool) -> bool:
        inm = headers.get("if-none-match")
        if inm is not None:
            return inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]
        ims = headers.get("if-modified-since")
        if ims is not None and date_ok:
            try:
                when = email.utils.parsedate_to_datetime(ims)
            except (TypeError, ValueError):
                return False
            return mtime <= int(when.timestamp())
        return False


def _parse_range(value: str, size: int) -> tuple[int, int] | str | None:
    """Parse a single byte range; None means "ignore the header and send 200"."""
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # multiple ranges are legal to ignore, and nobody in apt-land sends them
    first, dash, last = spec.strip().partition("-")
    if not dash:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return "unsatisfiable"
            return (max(0, size - suffix), size - 1) if size else "unsatisfiable"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


class FaultServer:
    """Serve ``root`` over HTTP/1.1 on 127.0.0.1 (random port) until :meth:`stop`.

    The server starts in the constructor; ``with FaultServer(root) as srv:`` stops it on exit.
    ``root`` may be reassigned while running to serve another tree.
    """

    def __init__(
        self,
        root: Path,
        *,
        tls: ssl.SSLContext | None = None,
        auth: tuple[str, str] | None = None,
    ) -> None:
        self.root = Path(root)
        self.tls = tls
        self.auth = (
            "Basic " + base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            if auth is not None
            else None
        )
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._faults: list[_Fault] = []
        self._conns: set[socket.socket] = set()
        self.connections = 0  # accepted so far
        self._stopping = threading.Event()
        self._holds: list[str] = []  # globs of requests that wait for release()
        self._released = threading.Event()
        self._issued: dict[tuple[str, str], set[str]] = {}
        self._answering: list[str] = []  # paths of the requests being answered now
        self._concurrent: list[tuple[str, ...]] = []  # _answering as each request started
        self._server = _Server(self)
        self.host, self.port = "127.0.0.1", self._server.server_port
        self.url = f"{'https' if tls else 'http'}://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"FaultServer:{self.port}",
            daemon=True,
        )
        self._thread.start()
        self._stopped = False

    # -- public API --------------------------------------------------------------------------

    def add_fault(
        self, path_suffix_or_glob: str, kind: str, *, times: int = 1, **params: Any
    ) -> None:
        """Misbehave on matching requests ``times`` times (``-1`` = forever)."""
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; known: {sorted(FAULT_KINDS)}")
        unknown = set(params) - FAULT_KINDS[kind]
        if unknown:
            raise TypeError(f"fault {kind!r} does not take {sorted(unknown)}")
        if times == 0 or times < -1:
            raise ValueError("times must be positive or -1")
        with self._lock:
            self._faults.append(_Fault(path_suffix_or_glob, kind, times, dict(params)))

    def hold(self, glob: str) -> None:
        """Requests matching ``glob`` wait, unanswered, until :meth:`release`."""
        with self._lock:
            self._holds.append(glob)
            self._released.clear()

    def release(self) -> None:
        """Answer the held requests, and hold none from now on."""
        with self._lock:
            self._holds.clear()
            self._released.set()

    def _wait_if_held(self, path: str) -> None:
        with self._lock:
            held = any(path_matches(g, path) for g in self._holds)
        while held and not self._released.wait(0.05) and not self._stopping.is_set():
            pass

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending_faults(self) -> list[tuple[str, str, int]]:
        """(pattern, kind, times left) of faults not used up yet."""
        with self._lock:
            return [(f.pattern, f.kind, f.times) for f in self._faults if f.times != 0]

    def clear_log(self) -> None:
        with self._lock:
            self.requests.clear()
            self._concurrent.clear()

    def count(self, glob: str, method: str = "GET") -> int:
        """Number of logged ``method`` requests whose path matches ``glob``."""
        with self._lock:
            return sum(1 for m, p, _h in self.requests if m == method and path_matches(glob, p))

    def max_in_flight(self, glob: str = "*") -> int:
        """The most requests matching ``glob`` the server was answering at the same time
        (from reading the request line to the end of the response, a ``slow`` wait included):
        how a test sees that a client overlaps its downloads, and bounds them."""
        with self._lock:
            return max(
                (sum(path_matches(glob, p) for p in seen) for seen in self._concurrent),
                default=0,
            )

    def paths(self, method: str = "GET") -> list[str]:
        """Logged paths of ``method`` requests, in order."""
        with self._lock:
            return [p for m, p, _h in self.requests if m == method]

    def hang_up(self) -> int:
        """Close every open (idle keep-alive) connection from the server side, as a server's
        keep-alive timeout does, without telling the client. Returns how many."""
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        return len(conns)

    def stop(self) -> None:
        """Stop serving, close open connections and join every thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()
        self._server.shutdown()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            # Wakes handler threads blocked reading the next keep-alive request.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- used by the handler -----------------------------------------------------------------

    def _log(self, method: str, path: str, headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append((method, path, headers))

    @contextlib.contextmanager
    def _in_flight(self, path: str) -> Iterator[None]:
        with self._lock:
            self._answering.append(path)
            self._concurrent.append(tuple(self._answering))
        try:
            yield
        finally:
            with self._lock:
                self._answering.remove(path)

    def _take_faults(self, method: str, path: str, has_range: bool) -> list[_Fault]:
        """Consume at most one "slow" and one other fault matching this request."""
        taken: list[_Fault] = []
        with self._lock:
            for want_slow in (True, False):
                for fault in self._faults:
                    if (fault.kind == "slow") == want_slow and fault.applies(
                        method, path, has_range
                    ):
                        if fault.times > 0:
                            fault.times -= 1
                        taken.append(fault)
                        break
        return taken

    def _issued_validator(self, path: str, last_modified: str, etag: str) -> None:
        with self._lock:
            self._issued.setdefault((path, last_modified), set()).add(etag)

    def _date_validator_ok(self, path: str, last_modified: str, etag: str, mtime: float) -> bool:
        """Whether a client's Last-Modified date for ``path`` still identifies the content.

        True if every response that carried this date also carried the current ETag. For a date
        this server never sent, only if the file is older than 2 s (a same-second rewrite is
        impossible to tell apart; RFC 9110 calls such dates weak validators).
        """
        with self._lock:
            issued = self._issued.get((path, last_modified))
        if issued is not None:
            return issued == {etag}
        return time.time() - mtime >= 2.0

    def _sleep(self, delay: float) -> None:
        # An Event instead of time.sleep so that stop() does not wait out a long "slow" fault.
        self._stopping.wait(delay)

    def _track(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.add(conn)
            self.connections += 1
        if self._stopping.is_set():
            # Accepted just before stop() and tracked after it looked: stop() would wait for
            # this handler's idle timeout otherwise.
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def _untrack(self, conn: socket.socket) -> None:
        with self._lock:
            self._conns.discard(conn)
