"""Serve a published tree over HTTP: for tests and small sites, not a replacement for nginx.

What apt needs and nothing more: GET and HEAD, a single byte range (206, or 416 when it cannot
be satisfied; apt resumes downloads with ``Range`` + ``If-Range``), ``Last-Modified`` /
``If-Modified-Since`` and ``ETag`` / ``If-None-Match`` (304: ``apt-get update`` then transfers
nothing), keep-alive, and the right content types. It follows the ``dists/SUITE`` symlinks the fs
publisher makes, but refuses every path that leads outside the tree: ``..`` segments (also
percent-encoded), and symlinks that point outside. It never lists directories.

In production put nginx or Apache (or an object store) in front of the tree: this server has no
TLS, no access control, no rate limits, and one thread per connection.
"""

from __future__ import annotations

import email.utils
import errno
import os
import re
import socket
import sys
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import unquote

from mirrorkit import archive
from mirrorkit._version import __version__
from mirrorkit.errors import MirrorkitError, NotFoundError

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 1 << 18

Log = Callable[[str], None]


def resolve(root: str, request_target: str) -> Path | HTTPStatus:
    """The file below ``root`` (a real path) that ``request_target`` names, or why not.

    Refused with 403: ``.`` or ``..`` segments after percent-decoding, and paths whose real
    location (all symlinks resolved) is outside ``root``. 404: anything that is not a regular
    file, directories included (no listings). 400: not an absolute path, NUL, backslash."""
    path = request_target.split("?", 1)[0].split("#", 1)[0]
    if not path.startswith("/"):
        return HTTPStatus.BAD_REQUEST  # absolute-form ("http://host/...") or garbage
    try:
        decoded = unquote(path, errors="strict")
    except UnicodeDecodeError:
        return HTTPStatus.BAD_REQUEST
    if "\x00" in decoded or "\\" in decoded:
        return HTTPStatus.BAD_REQUEST
    parts = [p for p in decoded.split("/") if p]
    if any(p in (".", "..") for p in parts):
        return HTTPStatus.FORBIDDEN
    real = os.path.realpath(os.path.join(root, *parts))
    if real != root and not real.startswith(root.rstrip(os.sep) + os.sep):
        return HTTPStatus.FORBIDDEN
    if not os.path.isfile(real):
        return HTTPStatus.NOT_FOUND
    return Path(real)


def parse_range(header: str, size: int) -> tuple[int, int] | HTTPStatus | None:
    """(first, last) byte of a single ``bytes=`` range; None to ignore the header (malformed, or
    several ranges: answering 200 with the whole file is allowed); 416 when unsatisfiable."""
    m = _RANGE.match(header.strip())
    if not m or (not m.group(1) and not m.group(2)):
        return None
    first, last = m.group(1), m.group(2)
    if not first:  # a suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            return HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # syntactically invalid: ignored
    if start >= size:
        return HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE
    return start, min(end, size - 1)


def _http_date(value: str | None) -> int | None:
    if not value:
        return None
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return int(parsed.timestamp())


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: apt fetches many files over one connection
    server_version = f"mirrorkit-serve/{__version__}"
    sys_version = ""
    timeout = 60  # an idle keep-alive connection frees its thread after a minute
    server: TreeServer

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def log_message(self, format: str, *args: object) -> None:
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} - {format % args}")

    def _plain(self, status: HTTPStatus, body: bool, extra: dict[str, str] | None = None) -> None:
        text = f"{status.value} {status.phrase}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(text)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(text)

    def _respond(self, body: bool) -> None:
        found = resolve(self.server.root, self.path)
        if isinstance(found, HTTPStatus):
            self._plain(found, body)
            return
        try:
            fh = found.open("rb")
        except OSError:
            self._plain(HTTPStatus.NOT_FOUND, body)
            return
        with fh:
            st = os.fstat(fh.fileno())
            size, mtime = st.st_size, int(st.st_mtime)
            etag = f'"{st.st_ino:x}-{size:x}-{st.st_mtime_ns:x}"'
            validators = {
                "ETag": etag,
                "Last-Modified": email.utils.formatdate(mtime, usegmt=True),
            }
            if self._not_modified(etag, mtime):
                self.send_response(HTTPStatus.NOT_MODIFIED)
                for name, value in validators.items():
                    self.send_header(name, value)
                self.end_headers()
                return
            span = self._range(size, etag, mtime)
            if span is HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE:
                self._plain(span, body, {"Content-Range": f"bytes */{size}", **validators})
                return
            first, last = span if isinstance(span, tuple) else (0, size - 1)
            self.send_response(HTTPStatus.PARTIAL_CONTENT if span else HTTPStatus.OK)
            self.send_header("Content-Type", archive.content_type(found.name))
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Accept-Ranges", "bytes")
            if span:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            for name, value in validators.items():
                self.send_header(name, value)
            self.end_headers()
            if body:
                self._copy(fh, first, last - first + 1)

    def _not_modified(self, etag: str, mtime: int) -> bool:
        # If-None-Match wins over If-Modified-Since when both are sent (RFC 9110 13.2.2).
        if (inm := self.headers.get("If-None-Match")) is not None:
            tags = [t.strip().removeprefix("W/") for t in inm.split(",")]
            return "*" in tags or etag in tags
        since = _http_date(self.headers.get("If-Modified-Since"))
        return since is not None and mtime <= since

    def _range(self, size: int, etag: str, mtime: int) -> tuple[int, int] | HTTPStatus | None:
        header = self.headers.get("Range")
        if header is None:
            return None
        # With If-Range, the range applies only to the version the client has: the same ETag,
        # or exactly the same date.
        if_range = self.headers.get("If-Range")
        if if_range is not None and if_range.strip() != etag and _http_date(if_range) != mtime:
            return None
        return parse_range(header, size)

    def _copy(self, fh: BinaryIO, offset: int, length: int) -> None:
        fh.seek(offset)
        try:
            while length > 0:
                block = fh.read(min(_CHUNK, length))
                if not block:
                    break  # the file shrank under us; the client sees a short body
                self.wfile.write(block)
                length -= len(block)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client went away; nothing to report


class TreeServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, root: Path, address: tuple[str, int], log: Log | None) -> None:
        self.root = os.path.realpath(root)
        self.log = log
        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, _Handler)

    def handle_error(
        self, request: socket.socket | tuple[bytes, socket.socket], client_address: Any
    ) -> None:
        # A client that goes away mid-response is normal (apt cancels, curl is interrupted):
        # one log line, not a traceback.
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            if self.log is not None:
                self.log(f"{client_address}: connection closed early ({exc})")
            return
        super().handle_error(request, client_address)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        host = host.decode() if isinstance(host, bytes) else str(host)
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


def make_server(
    root: Path, bind: str = "127.0.0.1", port: int = 8080, *, log: Log | None = None
) -> TreeServer:
    """A server for ``root`` listening on ``bind``:``port`` (0: any free port; see ``.url``).
    Run it with ``serve_forever()``; ``log`` gets one line per request."""
    if not root.is_dir():
        raise NotFoundError(
            f"{root}: no such directory", "give the directory 'mirrorkit publish fs' wrote."
        )
    try:
        return TreeServer(root, (bind, port), log)
    except OSError as exc:
        hint = "choose another --port, or stop what listens there."
        if exc.errno in (errno.EACCES, errno.EPERM):
            hint = "ports below 1024 need privileges; choose a --port above 1024."
        elif exc.errno == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
            hint = "--bind must be an address of this machine, e.g. 127.0.0.1."
        raise MirrorkitError(
            f"cannot listen on {bind}:{port} ({exc.strerror or exc})", hint
        ) from exc
