"""HTTP/1.1 under mirrorkit's one ``httpx.AsyncClient``, on asyncio streams.

httpx's default transport (httpcore on anyio, h11) spends about 1.3 s of CPU to move 300 MB of
150 kB files over loopback, eight at once: more than aptly's whole mirror update takes. A mirror
needs little of HTTP: GET on keep-alive connections, bodies framed by Content-Length or chunked,
TLS. This transport does that and nothing more, about five times faster; everything above it
(redirects, status handling, the Request/Response API, timeouts' values) stays httpx's. httpcore
stays the oracle: the tests send the same requests through both and compare what comes back.

Direct connections only: a request that goes through a proxy is routed to httpx's own
transport by :class:`mirrorkit.net.client.RoutingTransport`. Not supported, on purpose: HTTP/2,
request bodies that need ``Expect: 100-continue``, pipelining.

Connecting follows RFC 8305 (Happy Eyeballs): the host's addresses, IPv6 and IPv4 interleaved,
are tried in a staggered race, so an address that silently drops packets delays the connection
by 250 ms instead of stopping it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import httpx

_T = TypeVar("_T")

# The StreamReader's buffer: reads hand over up to this much at once, and the socket is paused
# beyond twice that, which bounds memory per connection.
_READ = 1 << 20
_MAX_HEAD = 64 << 10
_NO_BODY = frozenset({204, 304})
_IDEMPOTENT = frozenset({"GET", "HEAD"})
_DEFAULT_PORT = {"http": 80, "https": 443}
# RFC 8305's recommended "Connection Attempt Delay".
_EYEBALLS_DELAY = 0.25

Origin = tuple[str, str, int]


class _Stale(Exception):
    """A reused keep-alive connection turned out closed before any byte of the answer."""


class _Conn:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        # Cheap checks only (no syscall): the event loop has already recorded an EOF or an
        # error it saw on an idle connection. A close it has not seen yet is caught by _Stale.
        return (
            not self.reader.at_eof()
            and self.reader.exception() is None
            and not self.writer.is_closing()
        )

    def close(self) -> None:
        # Never wait to flush: a connection closed here is idle or mid-answer, nothing of ours
        # is left to send.
        self.writer.transport.abort()


async def _within(
    aw: Awaitable[_T],
    seconds: float | None,
    timeout_error: type[httpx.TimeoutException],
    request: httpx.Request,
) -> _T:
    try:
        async with asyncio.timeout(seconds):
            return await aw
    except TimeoutError:
        raise timeout_error(f"no answer within {seconds:g} s", request=request) from None


class StreamTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections, kept idle per origin (newest first) for reuse."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 8,
        ssl_factory: Callable[[], ssl.SSLContext] | None = None,
    ) -> None:
        # Made on the first https connection (``ssl_factory``, else httpx's own: certifi's CA
        # store): loading a CA store takes 12 ms, which an http:// upstream need not pay.
        self._ssl = ssl_context
        self._ssl_factory = ssl_factory
        self._max_idle = max(1, max_idle)
        self._idle: dict[Origin, list[_Conn]] = {}
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in _DEFAULT_PORT:
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        if self._closed:
            raise RuntimeError("the transport is closed")
        timeouts = request.extensions.get("timeout", {})
        origin: Origin = (url.scheme, url.host, url.port or _DEFAULT_PORT[url.scheme])
        method = request.method.upper()
        body = await request.aread()
        head = [b"%s %s HTTP/1.1\r\n" % (method.encode("ascii"), url.raw_path)]
        head += [b"%s: %s\r\n" % (name, value) for name, value in request.headers.raw]
        message = b"".join(head) + b"\r\n" + body

        while True:
            conn = self._checkout(origin)
            reused = conn is not None
            if conn is None:
                conn = await self._connect(origin, timeouts.get("connect"), request)
            try:
                # Sending again after a stale connection is safe only for what may be repeated.
                retryable = reused and method in _IDEMPOTENT
                status, reason, version, headers = await self._exchange(
                    conn, message, timeouts, request, retryable
                )
                length, chunked = _framing(status, method, headers, request)
                break
            except _Stale:
                # The server closed it while it sat idle (its keep-alive timeout): the request
                # never reached it, so sending it again on a new connection is safe. The other
                # idle connections to that server are likely closed too.
                conn.close()
                for other in self._idle.pop(origin, []):
                    other.close()
            except BaseException:
                conn.close()
                raise

        keep_alive = _keep_alive(version, headers) and (length is not None or chunked)
        stream = _Body(
            self, origin, conn, request, timeouts.get("read"), length, chunked, keep_alive
        )
        return httpx.Response(
            status,
            headers=headers,
            stream=stream,
            extensions={"http_version": version, "reason_phrase": reason},
        )

    async def aclose(self) -> None:
        self._closed = True
        for conns in self._idle.values():
            for conn in conns:
                conn.close()
        self._idle.clear()

    # -- connections -------------------------------------------------------------------------

    def _checkout(self, origin: Origin) -> _Conn | None:
        idle = self._idle.get(origin)
        while idle:
            conn = idle.pop()
            if conn.usable():
                return conn
            conn.close()
        return None

    def _checkin(self, origin: Origin, conn: _Conn) -> None:
        idle = self._idle.setdefault(origin, [])
        if self._closed or not conn.usable() or len(idle) >= self._max_idle:
            conn.close()
        else:
            idle.append(conn)

    async def _connect(
        self, origin: Origin, seconds: float | None, request: httpx.Request
    ) -> _Conn:
        scheme, host, port = origin
        tls: ssl.SSLContext | None = None
        if scheme == "https":
            if self._ssl is None:
                factory = self._ssl_factory
                self._ssl = factory() if factory else httpx.create_ssl_context(trust_env=False)
            tls = self._ssl
        try:
            sock = await _within(connect_tcp(host, port), seconds, httpx.ConnectTimeout, request)
        except OSError as exc:
            raise httpx.ConnectError(f"{host}:{port}: {exc}", request=request) from exc
        try:
            reader, writer = await asyncio.open_connection(sock=sock, limit=_READ)
        except BaseException:
            sock.close()
            raise
        if tls is not None:
            # TLS on the connected socket (not open_connection(ssl=...)): if the handshake
            # fails (a certificate we do not trust), this connection is still ours to close.
            try:
                await _within(
                    writer.start_tls(tls, server_hostname=host),
                    seconds,
                    httpx.ConnectTimeout,
                    request,
                )
            except BaseException as exc:
                # abort(), not close(): a failed handshake may leave bytes that will never be
                # sent, and close() would wait for them, keeping the socket open.
                writer.transport.abort()
                if isinstance(exc, OSError):  # ssl.SSLError is one
                    raise httpx.ConnectError(f"{host}:{port}: {exc}", request=request) from exc
                raise
        return _Conn(reader, writer)

    async def _exchange(
        self,
        conn: _Conn,
        message: bytes,
        timeouts: dict[str, float | None],
        request: httpx.Request,
        retryable: bool,
    ) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
        """Send ``message``, read the answer's head. ``_Stale`` (when ``retryable``) if the
        connection was found closed before any byte of an answer."""
        try:
            conn.writer.write(message)
            await _within(conn.writer.drain(), timeouts.get("write"), httpx.WriteTimeout, request)
        except OSError as exc:
            if retryable:
                raise _Stale from exc
            raise httpx.WriteError(str(exc) or type(exc).__name__, request=request) from exc
        while True:
            try:
                raw = await _within(
                    conn.reader.readuntil(b"\r\n\r\n"),
                    timeouts.get("read"),
                    httpx.ReadTimeout,
                    request,
                )
            except asyncio.IncompleteReadError as exc:
                if retryable and not exc.partial:
                    raise _Stale from exc
                raise httpx.RemoteProtocolError(
                    "the server closed the connection without sending a complete response",
                    request=request,
                ) from exc
            except asyncio.LimitOverrunError as exc:
                raise httpx.RemoteProtocolError(
                    "response headers too large", request=request
                ) from exc
            except OSError as exc:
                if retryable:
                    raise _Stale from exc
                raise httpx.ReadError(str(exc) or type(exc).__name__, request=request) from exc
            if len(raw) > _MAX_HEAD:
                raise httpx.RemoteProtocolError("response headers too large", request=request)
            status, reason, version, headers = _parse_head(raw, request)
            if status == 101:  # nothing here asks to switch protocols
                raise httpx.RemoteProtocolError(
                    "unexpected 101 Switching Protocols", request=request
                )
            # Other 1xx (103 Early Hints, a stray 100 Continue) come before the real answer.
            if status >= 200:
                return status, reason, version, headers


async def connect_tcp(host: str, port: int, delay: float = _EYEBALLS_DELAY) -> socket.socket:
    """A connected non-blocking TCP socket to ``host``: its addresses raced as RFC 8305 says.

    Not ``asyncio.open_connection(happy_eyeballs_delay=...)``: in Python 3.11, cancelling that
    race (a failed download cancels the other workers) can drop a connected socket unclosed.
    Here every socket is ours until it is returned, and closed on any way out.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    if not infos:
        raise OSError(f"no address for {host}")
    return await connect_first(_interleave(infos), delay)


def _interleave(infos: Sequence[tuple[int, int, int, str, tuple[Any, ...]]]) -> list[_Addr]:
    """Addresses alternating between families, the first family (the resolver's pick) first."""
    by_family: dict[int, list[_Addr]] = {}
    for family, type_, proto, _name, sockaddr in infos:
        addr = (family, type_, proto, sockaddr)
        if addr not in by_family.setdefault(family, []):
            by_family[family].append(addr)
    queues = list(by_family.values())
    out: list[_Addr] = []
    while any(queues):
        for queue in queues:
            if queue:
                out.append(queue.pop(0))
    return out


_Addr = tuple[int, int, int, tuple[Any, ...]]


async def _attempt(addr: _Addr) -> socket.socket:
    family, type_, proto, sockaddr = addr
    sock = socket.socket(family, type_, proto)
    try:
        sock.setblocking(False)
        # One write per request; never let Nagle hold it back waiting for an ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        await asyncio.get_running_loop().sock_connect(sock, sockaddr)
    except BaseException:
        sock.close()
        raise
    return sock


async def connect_first(addrs: Sequence[_Addr], delay: float = _EYEBALLS_DELAY) -> socket.socket:
    """Start one attempt per address, the next one ``delay`` s after the previous (or at once
    when it fails); the first connected socket wins, every other one is closed."""
    todo = list(addrs)
    running: set[asyncio.Task[socket.socket]] = set()
    errors: list[BaseException] = []
    winner: socket.socket | None = None
    try:
        while winner is None and (todo or running):
            if todo:
                running.add(asyncio.create_task(_attempt(todo.pop(0))))
            done, running = await asyncio.wait(
                running,
                timeout=delay if todo else None,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in done:
                exc = task.exception()
                if exc is not None:
                    errors.append(exc)
                elif winner is None:
                    winner = task.result()
                else:
                    task.result().close()  # two connected at once: keep one
    except BaseException:
        if winner is not None:
            winner.close()
        raise
    finally:
        for task in running:
            task.cancel()
        for task in running:
            # Wait for each cancelled attempt to close its socket; one that connected before
            # its cancellation landed is closed here.
            with contextlib.suppress(BaseException):
                (await task).close()
    if winner is None:
        first = errors[0]
        if len(errors) > 1 and isinstance(first, OSError):
            raise OSError(first.errno, "; ".join(str(e) for e in errors)) from first
        raise first
    return winner


def _parse_head(
    raw: bytes, request: httpx.Request
) -> tuple[int, bytes, bytes, list[tuple[bytes, bytes]]]:
    lines = raw[:-4].split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if (
        len(parts) < 2
        or not parts[0].startswith(b"HTTP/1.")
        or len(parts[1]) != 3
        or not parts[1].isdigit()
    ):
        raise httpx.RemoteProtocolError(f"malformed status line {lines[0][:80]!r}", request=request)
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise httpx.RemoteProtocolError(f"malformed header line {line[:80]!r}", request=request)
        headers.append((name, value.strip(b" \t")))
    return int(parts[1]), parts[2] if len(parts) > 2 else b"", parts[0], headers


def _values(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [v for k, v in headers if k.lower() == name]


def _tokens(headers: list[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    return [t.strip().lower() for v in _values(headers, name) for t in v.split(b",") if t.strip()]


def _framing(
    status: int, method: str, headers: list[tuple[bytes, bytes]], request: httpx.Request
) -> tuple[int | None, bool]:
    """(Content-Length or None, chunked?) per RFC 9112 section 6.3; (None, False) = until close."""
    if method == "HEAD" or status in _NO_BODY or status < 200:
        return 0, False
    codings = _tokens(headers, b"transfer-encoding")
    if codings:
        # Transfer-Encoding wins over Content-Length; without chunked last, the body ends
        # when the connection does.
        return None, codings[-1] == b"chunked"
    lengths = {v.strip() for v in _values(headers, b"content-length") for v in v.split(b",")}
    if not lengths:
        return None, False
    if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
        raise httpx.RemoteProtocolError(f"bad Content-Length {sorted(lengths)!r}", request=request)
    return int(lengths.pop()), False


def _keep_alive(version: bytes, headers: list[tuple[bytes, bytes]]) -> bool:
    tokens = _tokens(headers, b"connection")
    if b"close" in tokens:
        return False
    return version != b"HTTP/1.0" or b"keep-alive" in tokens


class _Body(httpx.AsyncByteStream):
    """The response body, read as it arrives; the connection goes back idle once it is all read."""

    def __init__(
        self,
        transport: StreamTransport,
        origin: Origin,
        conn: _Conn,
        request: httpx.Request,
        read_timeout: float | None,
        length: int | None,
        chunked: bool,
        keep_alive: bool,
    ) -> None:
        self._transport = transport
        self._origin = origin
        self._conn: _Conn | None = conn
        self._request = request
        self._timeout = read_timeout
        self._length = length
        self._chunked = chunked
        self._complete = length == 0
        self._keep_alive = keep_alive

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._complete:
            return
        if self._chunked:
            parts = self._read_chunked()
        elif self._length is not None:
            parts = self._read_length(self._length)
        else:
            parts = self._read_to_eof()
        try:
            async for part in parts:
                yield part
        except asyncio.LimitOverrunError as exc:
            raise httpx.RemoteProtocolError(
                "malformed chunked body", request=self._request
            ) from exc
        except OSError as exc:
            raise httpx.ReadError(str(exc) or type(exc).__name__, request=self._request) from exc
        self._complete = True

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._complete and self._keep_alive:
            self._transport._checkin(self._origin, conn)
        else:
            # Unread body (the caller stopped early, an error, a cancellation): the connection
            # is mid-message and cannot carry another request.
            conn.close()

    async def _read(self, n: int) -> bytes:
        assert self._conn is not None
        return await _within(
            self._conn.reader.read(n), self._timeout, httpx.ReadTimeout, self._request
        )

    async def _read_length(self, left: int) -> AsyncIterator[bytes]:
        expected = left
        while left:
            data = await self._read(min(left, _READ))
            if not data:
                raise httpx.RemoteProtocolError(
                    f"the server closed the connection after {expected - left} of "
                    f"{expected} body bytes",
                    request=self._request,
                )
            left -= len(data)
            yield data

    async def _read_to_eof(self) -> AsyncIterator[bytes]:
        while data := await self._read(_READ):
            yield data

    async def _read_chunked(self) -> AsyncIterator[bytes]:
        assert self._conn is not None
        reader = self._conn.reader
        while True:
            line = await self._line(reader)
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                size = -1
            if size < 0 or not size_text:
                raise httpx.RemoteProtocolError(
                    f"malformed chunk size {line[:40]!r}", request=self._request
                )
            if size == 0:
                while await self._line(reader):  # trailer fields, up to the empty line
                    pass
                return
            async for part in self._read_length(size):
                yield part
            if await self._line(reader):
                raise httpx.RemoteProtocolError(
                    "a chunk is longer than its size", request=self._request
                )

    async def _line(self, reader: asyncio.StreamReader) -> bytes:
        try:
            line = await _within(
                reader.readuntil(b"\r\n"), self._timeout, httpx.ReadTimeout, self._request
            )
        except asyncio.IncompleteReadError as exc:
            raise httpx.RemoteProtocolError(
                "the server closed the connection inside a chunked body", request=self._request
            ) from exc
        return line[:-2]
