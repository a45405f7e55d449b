"""Downloads: one httpx.AsyncClient, bounded concurrency, one retry policy, resume, and streaming
verification (size + SHA256) before anything enters the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import quote

import httpx

from mirrorkit._version import __version__
from mirrorkit.errors import FetchError, HTTPStatusError, IntegrityError
from mirrorkit.models import FetchSummary, FileRef
from mirrorkit.net.auth import Credentials
from mirrorkit.net.client import Failure, RoutingTransport, classify, status_failure
from mirrorkit.net.config import NetworkConfig, resolve
from mirrorkit.net.redact import redact_url
from mirrorkit.progress import NullReporter, Reporter
from mirrorkit.store import Pool, storage_error
from mirrorkit.transport import StreamTransport

_CHUNK = 1 << 18
_FLUSH = 1 << 20


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Retry transport errors and 429/5xx with full-jitter exponential backoff.

    A 404 or a hash mismatch is never retried: trying again cannot make it right.
    """

    max_tries: int = 5
    base_delay: float = 0.5
    max_delay: float = 30.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({429, 500, 502, 503, 504}))

    def delay(self, attempt: int, retry_after: str | None = None) -> float:
        if retry_after:
            wait = _parse_retry_after(retry_after)
            if wait is not None:
                # Honour the server, but never sleep longer than we would back off at most.
                return min(max(wait, 0.0), self.max_delay)
        return random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))


def _parse_retry_after(value: str) -> float | None:
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError):
        return None


class _ResumedMismatch(IntegrityError):
    """A hash mismatch on a file that was resumed: maybe two versions of it were joined."""


class _Retryable(Exception):
    def __init__(
        self,
        reason: str,
        retry_after: str | None = None,
        failure: Failure | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after
        self.failure = failure  # the cause, for the error raised when the tries run out
        self.status = status


def join_url(base: str, path: str) -> str:
    # Pool file names may contain '%' (an escaped epoch colon), '+' and '~': quote all but '/'.
    return base.rstrip("/") + "/" + quote(path, safe="/+~")


class _RateLimit:
    """One shared byte budget per second across all transfers (``--limit-rate``)."""

    def __init__(self, bytes_per_s: float) -> None:
        self.rate = bytes_per_s
        self.start = time.monotonic()
        self.sent = 0

    async def take(self, n: int) -> None:
        self.sent += n
        ahead = self.sent / self.rate - (time.monotonic() - self.start)
        if ahead > 0:
            await asyncio.sleep(ahead)


def _append(path: Path, mode: str, hasher: Any, data: bytes) -> None:
    with path.open(mode) as fh:
        fh.write(data)
    hasher.update(data)


def _seal(path: Path, mode: str, hasher: Any, data: bytes, pool: Pool, sha256: str) -> str:
    """The last bytes of a download, then its digest; into the pool if the digest is right."""
    _append(path, mode, hasher, data)
    digest: str = hasher.hexdigest()
    if digest == sha256:
        pool.commit(path, sha256)
    return digest


def _hash_file(path: Path) -> Any:
    hasher = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            hasher.update(block)
    return hasher


class _NoCookies(httpx.Cookies):
    """Cookies a mirror never has: httpx would otherwise run every response through
    http.cookiejar (about 7% of the event loop's time on an archive of small files)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        pass


class _Client(httpx.AsyncClient):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._no_cookies = _NoCookies()

    @property
    def cookies(self) -> httpx.Cookies:
        return self._no_cookies

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        raise TypeError("mirrorkit's HTTP client keeps no cookies")


class Fetcher:
    """Use as ``async with Fetcher(...) as f:``; every request goes through one client.

    ``network``: proxies, CA store and credentials (default: the environment's, apt's auth
    files). ``transport`` replaces mirrorkit's own HTTP/1.1 transport for direct connections
    (tests pass httpx's default one, the oracle).
    """

    def __init__(
        self,
        *,
        jobs: int = 8,
        retry: RetryPolicy | None = None,
        reporter: Reporter | None = None,
        limit_rate: float | None = None,
        timeout: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
        network: NetworkConfig | None = None,
    ) -> None:
        self.jobs = max(1, jobs)
        self.retry = retry or RetryPolicy()
        self.reporter = reporter or NullReporter()
        self._rate = _RateLimit(limit_rate) if limit_rate else None
        net = resolve(network or NetworkConfig())
        credentials = Credentials.load(
            net.extra_auth_files + net.auth_files, required=net.auth_files_required
        )
        direct = transport or StreamTransport(max_idle=self.jobs, ssl_factory=net.ssl_context)
        self._router = RoutingTransport(net, direct, credentials, max_idle=self.jobs)
        self._client = _Client(
            transport=self._router,
            timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
            follow_redirects=True,
            # identity: sizes and hashes are of the file itself, never of a transfer encoding.
            headers={"User-Agent": f"mirrorkit/{__version__}", "Accept-Encoding": "identity"},
            # The router reads the environment (proxies, CA store) through NetworkConfig.
            trust_env=False,
        )
        self.bytes_transferred = 0

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def _with_retries(self, url: str, attempt_fn: Any) -> Any:
        attempt = 0
        while True:
            attempt += 1
            try:
                return await attempt_fn()
            except _Retryable as exc:
                if attempt >= self.retry.max_tries:
                    failure = exc.failure
                    reason = f"{exc.reason} (gave up after {attempt} tries)"
                    hint = (
                        failure.hint
                        if failure is not None
                        else "the server or network is failing; run the command again later "
                        "(completed files are kept), or raise --max-tries."
                    )
                    if failure is not None and failure.kind is HTTPStatusError:
                        raise HTTPStatusError(
                            redact_url(url), reason, hint, status=exc.status
                        ) from exc
                    kind = failure.kind if failure is not None else FetchError
                    raise kind(redact_url(url), reason, hint) from exc
                await asyncio.sleep(self.retry.delay(attempt, exc.retry_after))
            except httpx.TooManyRedirects as exc:
                raise FetchError(
                    url,
                    f"too many redirects ({exc})",
                    "the server redirects in a loop; check the mirror's URL.",
                ) from exc
            except (httpx.HTTPError, httpx.InvalidURL) as exc:  # not the network's fault: no retry
                raise FetchError(
                    redact_url(url), f"{type(exc).__name__}: {redact_url(str(exc))}"
                ) from exc

    def _check_status(self, url: str, resp: httpx.Response) -> None:
        status = resp.status_code
        if status < 400 and status not in self.retry.statuses:
            return
        proxy = self._router.proxy_for(resp.request.url)
        failure = status_failure(
            url,
            status,
            resp.reason_phrase,
            proxy=proxy,
            sent_credentials="authorization" in resp.request.headers,
            from_proxy=proxy is not None and "via" not in resp.headers,
        )
        if status in self.retry.statuses:
            raise _Retryable(f"HTTP {status}", resp.headers.get("Retry-After"), failure, status)
        if failure.kind is HTTPStatusError:
            raise HTTPStatusError(redact_url(url), failure.reason, failure.hint, status=status)
        raise failure.kind(redact_url(url), failure.reason, failure.hint)

    def _transport_failure(self, url: str, exc: httpx.TransportError) -> Exception:
        """What to raise for a failed request: ``_Retryable`` if trying again may help, else
        the typed error at once (an untrusted certificate stays untrusted)."""
        failure = classify(url, exc, self._router.proxy_for(httpx.URL(url)))
        if failure.retry:
            return _Retryable(failure.reason, failure=failure)
        return failure.kind(redact_url(url), failure.reason, failure.hint)

    async def get_bytes(
        self, url: str, *, max_size: int = 256 << 20, missing_ok: bool = False
    ) -> bytes | None:
        """A small file into memory (Release, InRelease). ``None`` on 404 when ``missing_ok``."""

        async def attempt() -> bytes | None:
            try:
                async with self._client.stream("GET", url) as resp:
                    if resp.status_code == 404 and missing_ok:
                        return None
                    self._check_status(url, resp)
                    body = bytearray()
                    async for chunk in resp.aiter_raw(_CHUNK):
                        body += chunk
                        if len(body) > max_size:
                            raise FetchError(
                                redact_url(url), f"larger than {max_size} bytes; refusing it"
                            )
                    self.bytes_transferred += len(body)
                    return bytes(body)
            except httpx.TransportError as exc:
                raise self._transport_failure(url, exc) from exc

        result: bytes | None = await self._with_retries(url, attempt)
        return result

    async def get_verified(self, url: str, ref: FileRef, what: str) -> bytes:
        """A file the signed Release lists, checked for size and SHA256 before it is returned."""

        async def attempt() -> bytes:
            try:
                async with self._client.stream("GET", url) as resp:
                    self._check_status(url, resp)
                    hasher = hashlib.sha256()
                    body = bytearray()
                    async for chunk in resp.aiter_raw(_CHUNK):
                        body += chunk
                        if len(body) > ref.size:
                            raise IntegrityError(what, str(ref.size), "more", kind="size")
                        hasher.update(chunk)
                    self.bytes_transferred += len(body)
            except httpx.TransportError as exc:
                raise self._transport_failure(url, exc) from exc
            if len(body) != ref.size:
                raise IntegrityError(what, str(ref.size), str(len(body)), kind="size")
            digest = hasher.hexdigest()
            if digest != ref.sha256:
                raise IntegrityError(what, ref.sha256, digest)
            return bytes(body)

        result: bytes = await self._with_retries(url, attempt)
        return result

    async def fetch_to_pool(
        self,
        base_url: str,
        items: Sequence[FileRef],
        pool: Pool,
        partial_dir: Path,
        label: str = "packages",
    ) -> FetchSummary:
        """Download every ``items`` file the pool lacks, ``jobs`` at a time, into the pool.

        Fails fast: the first file that cannot be fetched or verified cancels the rest; files
        already verified stay in the pool and partial files stay for the next run to resume.
        """
        started = time.monotonic()
        unique: dict[str, FileRef] = {}
        for ref in items:
            unique.setdefault(ref.sha256, ref)
        todo = [ref for sha, ref in unique.items() if not pool.has(sha)]
        reused = len(unique) - len(todo)
        # Largest first: the long transfers start early and the tail stays short.
        todo.sort(key=lambda r: (-r.size, r.path))
        partial_dir.mkdir(parents=True, exist_ok=True)
        self.reporter.start(label, len(todo), sum(r.size for r in todo))
        queue = iter(todo)
        moved = 0

        async def worker() -> None:
            nonlocal moved
            for ref in queue:
                # Await first, then add: "moved += await ..." reads ``moved`` before the await
                # and so loses what the other workers added meanwhile.
                got = await self._fetch_file(join_url(base_url, ref.path), ref, pool, partial_dir)
                moved += got
                self.reporter.advance(1, 0)

        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.jobs, len(todo))):
                    group.create_task(worker())
        except BaseExceptionGroup as eg:
            # Report the first real failure, not the group wrapper.
            first = eg.exceptions[0]
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from None
        finally:
            self.reporter.finish()
        return FetchSummary(
            fetched=len(todo),
            reused=reused,
            bytes=moved,
            seconds=time.monotonic() - started,
        )

    async def _fetch_file(self, url: str, ref: FileRef, pool: Pool, partial_dir: Path) -> int:
        """Download ``ref`` into the pool, resuming its partial file, which only one download
        writes at a time: updates of two mirrors (processes, or threads of one) may want the
        same object at once. The first holds ``<sha256>.lock`` (flock) while it downloads; the
        other waits, then finds the object in the pool."""
        lock = partial_dir / f"{ref.sha256}.lock"
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise storage_error(lock, exc) from exc
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(0.2)
            if pool.has(ref.sha256):
                return 0  # the other download finished it
            moved = await self._fetch_claimed(url, ref, pool, part=partial_dir / ref.sha256)
            # Removed only once the object is in the pool: whoever still locks the old file,
            # or a new one at this path, finds the object there and downloads nothing.
            lock.unlink(missing_ok=True)
            return moved
        finally:
            os.close(fd)

    async def _fetch_claimed(self, url: str, ref: FileRef, pool: Pool, *, part: Path) -> int:
        partial_dir = part.parent
        validator_file = partial_dir / f"{ref.sha256}.validator"
        restarted = False
        moved = 0
        while True:
            try:

                async def attempt() -> int:
                    return await self._download(url, ref, part, validator_file, pool)

                got: int = await self._with_retries(url, attempt)
                moved += got
                return moved
            except IntegrityError as exc:
                # A resumed file that fails its hash may have joined two versions of the file
                # (upstream changed between runs): start over once from byte zero.
                part.unlink(missing_ok=True)
                validator_file.unlink(missing_ok=True)
                if not isinstance(exc, _ResumedMismatch):
                    raise  # keep its kind: a size mismatch must not be reported as SHA256
                if restarted:
                    raise IntegrityError(exc.what, exc.expected, exc.got) from None
                restarted = True

    async def _download(
        self, url: str, ref: FileRef, part: Path, validator_file: Path, pool: Pool
    ) -> int:
        """One attempt: resume ``part`` if it exists, verify, and commit it to the pool.

        The file system work of a transfer (write, hash, and at the end chmod + rename into the
        pool) runs in a worker thread, off the event loop that serves every connection.
        """
        try:
            offset = os.stat(part).st_size
        except FileNotFoundError:
            offset = 0
        if offset >= ref.size:
            part.unlink()
            offset = 0
        headers: dict[str, str] = {}
        hasher: Any = hashlib.sha256()
        resuming = bool(offset)
        if resuming:
            hasher = await asyncio.to_thread(_hash_file, part)
            headers["Range"] = f"bytes={offset}-"
            if validator_file.exists():
                headers["If-Range"] = validator_file.read_text()
        received = 0
        resumed = False
        mode = "wb"
        validator: str | None = None
        pending: list[bytes] = []
        pending_size = 0

        async def flush() -> None:
            # Chunks are gathered and handed to a thread about a MiB at a time (one hand-off
            # per typical .deb): the loop does not pay a thread switch per network read.
            nonlocal pending, pending_size, mode
            data = b"".join(pending)
            pending, pending_size = [], 0
            try:
                await asyncio.to_thread(_append, part, mode, hasher, data)
            except OSError as exc:
                raise storage_error(part, exc) from exc
            mode = "ab"

        try:
            async with self._client.stream("GET", url, headers=headers) as resp:
                self._check_status(url, resp)
                if resp.status_code == 206 and offset:
                    content_range = resp.headers.get("Content-Range", "")
                    if not content_range.startswith(f"bytes {offset}-"):
                        part.unlink(missing_ok=True)
                        raise _Retryable(f"bad Content-Range {content_range!r} for a resume")
                    mode, resumed = "ab", True
                elif resp.status_code == 200:
                    # The server ignored Range (or the file changed, per If-Range): the body is
                    # the whole file, so start over rather than append it to the partial one.
                    offset, mode, hasher = 0, "wb", hashlib.sha256()
                else:
                    raise FetchError(
                        redact_url(url), f"unexpected HTTP {resp.status_code} for a download"
                    )
                validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
                if validator and validator.startswith("W/"):
                    validator = None
                length = resp.headers.get("Content-Length")
                if length is not None and length.isdigit() and offset + int(length) != ref.size:
                    part.unlink(missing_ok=True)
                    raise IntegrityError(url, str(ref.size), str(offset + int(length)), kind="size")
                try:
                    async for chunk in resp.aiter_raw():
                        received += len(chunk)
                        if offset + received > ref.size:
                            raise IntegrityError(
                                url, str(ref.size), f"more than {ref.size}", kind="size"
                            )
                        pending.append(chunk)
                        pending_size += len(chunk)
                        self.reporter.advance(0, len(chunk))
                        if pending_size >= _FLUSH:
                            await flush()
                        if self._rate:
                            await self._rate.take(len(chunk))
                except httpx.TransportError:
                    # What did arrive is good (TCP): keep it, so the retry resumes after it.
                    await flush()
                    raise
        except httpx.TransportError as exc:
            self.bytes_transferred += received
            self._keep_validator(validator, validator_file, mode)
            raise self._transport_failure(url, exc) from exc
        except BaseException:
            # Ctrl-C or a failure: what was written stays for the next run to resume.
            self._keep_validator(validator, validator_file, mode)
            raise
        self.bytes_transferred += received
        total = offset + received
        if total != ref.size:
            # A short body with a matching Content-Length: the server is lying, not flaky.
            part.unlink(missing_ok=True)
            raise IntegrityError(url, str(ref.size), str(total), kind="size")
        data = b"".join(pending)
        try:
            digest = await asyncio.to_thread(_seal, part, mode, hasher, data, pool, ref.sha256)
        except OSError as exc:
            raise storage_error(part, exc) from exc
        if digest != ref.sha256:
            error = _ResumedMismatch if resumed else IntegrityError
            raise error(url, ref.sha256, digest)
        if resuming:
            validator_file.unlink(missing_ok=True)
        return received

    @staticmethod
    def _keep_validator(validator: str | None, validator_file: Path, mode: str) -> None:
        """Remember the response's ETag/Last-Modified beside a partial file (for If-Range)."""
        if validator and mode == "ab":
            with contextlib.suppress(OSError):
                validator_file.write_text(validator)
