"""The S3 target: how the executor's writes land in S3-compatible object storage.

```
s3://BUCKET/PREFIX/
  pool/<component>/<prefix>/<source>/<file>.deb    shared by every suite under PREFIX
  dists/SUITE/<component>/binary-<arch>/Packages{,.gz,.xz} and their by-hash/SHA256/ copies
  dists/SUITE/Release, Release.gpg, InRelease
  KEYNAME.gpg, KEYNAME.asc                         the public key clients pin with Signed-By
  .mirrorkit/pool.sha256                           the pool objects mirrorkit placed here
  .mirrorkit-lock                                  only while a publish runs
```
There is no rename on S3: objects are written in place, and consistency comes from the order
of the writes, which is the executor's (executor.py): pool objects, the indices' by-hash copies
and the indices, then ``Release``, ``Release.gpg`` and ``InRelease`` last, the write that
switches the suite. By-hash objects are content-addressed and pool objects are only added
with the content their name promises, so everything the old ``InRelease`` names stays in place.

Objects already present with the same content are not uploaded again: we store the SHA256 in the
object's metadata (``x-amz-meta-sha256``) and compare it, with the size, from a HEAD request
(for objects uploaded by other tools, the ETag when it is a plain MD5). Re-publishing an
unchanged snapshot therefore uploads only ``Release``, ``Release.gpg`` and ``InRelease``. An
object no suite lists with other content (a failed upload's debris) is replaced.

Two publishers on one prefix are kept apart by a lock object created with a conditional put
(``If-None-Match: *``); ``--break-lock`` removes one a killed publisher left behind, and a
publisher whose lock was broken meanwhile does not switch the suite.

boto3 is imported here and nowhere else; ``mirrorkit.publish`` imports this module only when
publishing to S3, so the other commands do not pay for loading it.
"""

from __future__ import annotations

import email.utils
import hashlib
import re
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import boto3
import boto3.exceptions
import boto3.s3.transfer
import boto3.session
import botocore.config
import botocore.exceptions

from mirrorkit import archive
from mirrorkit._version import __version__
from mirrorkit.errors import FormatError, PublishError, UsageError
from mirrorkit.models import FileRef
from mirrorkit.publish.executor import Item
from mirrorkit.publish.plan import index_files
from mirrorkit.publish.s3lock import LOCK_NAME as LOCK_NAME
from mirrorkit.publish.s3lock import LockInfo, check_lock, publish_lock

# Objects at least this large go up in parts (boto3's TransferConfig); the tests lower it.
MULTIPART_THRESHOLD = 64 * 1024 * 1024
MULTIPART_CHUNKSIZE = 16 * 1024 * 1024

_UNTOUCHED = "the previously published suite is untouched; run the same command again to finish."
_DAMAGED = (
    "a suite in this bucket is damaged, so what it needs is unknown and nothing was deleted; "
    "re-publish that suite (or remove its dists/ directory) and run again."
)
_IMMUTABLE = "public, max-age=31536000, immutable"  # pool and by-hash: content never changes
_REVALIDATE = "no-cache"  # names whose content changes with each publish
_BUCKET_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{1,253}[A-Za-z0-9]$")
_UNSAFE = re.compile(r"[\x00-\x1f\x7f\\]")
_INDEX_RE = re.compile(r"^(.+/binary-[^/]+/Packages|.+/source/Sources)(?:\.(xz|gz|bz2|zst))?$")
_CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "InvalidToken",
        "ExpiredToken",
        "TokenRefreshRequired",
        "AuthorizationHeaderMalformed",
        "InvalidClientTokenId",
    }
)
_DENIED_CODES = frozenset({"AccessDenied", "Forbidden", "403", "AllAccessDisabled"})
_NETWORK_ERRORS: tuple[type[Exception], ...] = (
    botocore.exceptions.EndpointConnectionError,
    botocore.exceptions.ConnectTimeoutError,
    botocore.exceptions.ReadTimeoutError,
    botocore.exceptions.ConnectionClosedError,
    botocore.exceptions.ProxyConnectionError,
    botocore.exceptions.SSLError,
    botocore.exceptions.HTTPClientError,
)


# -- where -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3Target:
    """``s3://BUCKET/PREFIX`` and how to reach it. ``prefix`` has no leading or trailing slash."""

    bucket: str
    prefix: str
    endpoint_url: str | None = None
    region: str | None = None

    @classmethod
    def parse(
        cls, url: str, *, endpoint_url: str | None = None, region: str | None = None
    ) -> S3Target:
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
            odd = " ('?' and '#' cannot be in a prefix)" if parts.query or parts.fragment else ""
            raise UsageError(
                f"invalid S3 target {url!r}{odd}",
                "write it as s3://BUCKET/PREFIX, e.g. s3://apt/debian",
            )
        bucket = parts.netloc
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise UsageError(
                f"invalid bucket name {bucket!r} in {url!r}",
                "bucket names are 3-255 letters, digits, '.', '-' or '_' (AWS: 3-63, lower case).",
            )
        segments = [s for s in parts.path.split("/") if s]
        if any(s in (".", "..") or _UNSAFE.search(s) for s in segments):
            raise UsageError(
                f"invalid prefix in {url!r}",
                "the prefix may not have '.' or '..' segments, backslashes or control characters.",
            )
        endpoint = None
        if endpoint_url:
            ep = urlsplit(endpoint_url)
            if ep.scheme not in ("http", "https") or not ep.hostname or ep.query or ep.fragment:
                raise UsageError(
                    f"invalid endpoint URL {endpoint_url!r}",
                    "give the S3 server's base URL, e.g. http://127.0.0.1:8333",
                )
            endpoint = endpoint_url.rstrip("/")
        return cls(bucket, "/".join(segments), endpoint, region or None)

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def where(self) -> str:
        """For messages: the URL, and the server when it is not AWS."""
        return f"{self.url} (at {self.endpoint_url})" if self.endpoint_url else self.url

    def key(self, rel: str) -> str:
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def rel(self, key: str) -> str:
        return key[len(self.prefix) + 1 :] if self.prefix else key

    def http_url(self, region: str | None = None) -> str:
        """The URL apt reads the tree from (anonymous HTTP GET on the objects)."""
        path = quote(self.prefix, safe="/-._~+")
        if self.endpoint_url:
            # Path-style, as S3-compatible servers (MinIO, Ceph, SeaweedFS) serve it.
            return f"{self.endpoint_url}/{quote(self.bucket)}/{path}".rstrip("/") + "/"
        region = region or self.region
        host = (
            f"s3.{region}.amazonaws.com" if region and region != "us-east-1" else "s3.amazonaws.com"
        )
        if "." in self.bucket:
            # A dotted bucket name does not match the *.s3 wildcard certificate: path-style.
            return f"https://{host}/{self.bucket}/{path}".rstrip("/") + "/"
        return f"https://{self.bucket}.{host}/{path}".rstrip("/") + "/"


# -- errors at the boundary --------------------------------------------------------------------


def _client_error_fields(exc: botocore.exceptions.ClientError) -> tuple[str, int | None, str]:
    response: dict[str, Any] = exc.response or {}
    error = response.get("Error") or {}
    status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
    return str(error.get("Code") or ""), status, str(error.get("Message") or "")


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, botocore.exceptions.ClientError):
        return _client_error_fields(exc)[1]
    return None


def s3_error(target: S3Target, exc: BaseException, action: str) -> PublishError:
    """One mapping from botocore's exceptions to a PublishError a user can act on."""
    if isinstance(exc, boto3.exceptions.S3UploadFailedError) and isinstance(
        exc.__context__, botocore.exceptions.ClientError
    ):
        exc = exc.__context__  # boto3's transfer wraps the real ClientError without a cause
    where = target.where
    if isinstance(
        exc, botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError
    ):
        return PublishError(
            f"{where}: no S3 credentials found ({exc})",
            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a profile in "
            "~/.aws/credentials (the standard AWS credential chain).",
        )
    if isinstance(exc, _NETWORK_ERRORS):
        server = target.endpoint_url or "AWS S3"
        return PublishError(
            f"{where}: cannot reach the S3 server {server} while {action} ({exc})",
            "check --endpoint-url (or the profile's endpoint_url) and that the server is up; "
            + _UNTOUCHED,
        )
    if isinstance(exc, botocore.exceptions.ClientError):
        code, status, message = _client_error_fields(exc)
        detail = f"{code}: {message}" if message and message != code else code or str(status)
        if code in _CREDENTIAL_CODES:
            return PublishError(
                f"{where}: the S3 server rejected the credentials while {action} ({detail})",
                "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and --region "
                "for AWS.",
            )
        if code in _DENIED_CODES or status == 403:
            return PublishError(
                f"{where}: access denied while {action} ({detail})",
                "check the credentials; they need s3:ListBucket on the bucket and "
                "s3:GetObject, s3:PutObject and s3:DeleteObject on the prefix.",
            )
        if code == "NoSuchBucket":
            return PublishError(
                f"{where}: no such bucket {target.bucket!r}",
                "create the bucket first, or check its name, --endpoint-url and --region.",
            )
        return PublishError(f"{where}: {action} failed ({detail or exc})", _UNTOUCHED)
    return PublishError(f"{where}: {action} failed ({exc})", _UNTOUCHED)


_BOUNDARY: tuple[type[Exception], ...] = (
    botocore.exceptions.BotoCoreError,
    botocore.exceptions.ClientError,
    boto3.exceptions.Boto3Error,
)

_CONNECT_ERRORS: tuple[type[Exception], ...] = (*_BOUNDARY, ValueError)  # ValueError: bad URL


# -- the object store --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Obj(Item):
    """An item with the digests S3 reports for it (its ETag)."""

    def md5(self) -> str:
        return md5(self)

    def multipart_etag(self, part_size: int) -> str:
        return multipart_etag(self, part_size)


def md5(item: Item) -> str:
    """The ETag S3 gives a single-part upload (without SSE-KMS/SSE-C): the MD5 of the bytes."""
    h = hashlib.md5(usedforsecurity=False)
    for block in item.blocks(1 << 20):
        h.update(block)
    return h.hexdigest()


def multipart_etag(item: Item, part_size: int) -> str:
    """The ETag S3 gives a multipart upload: MD5 of the parts' MD5s, ``-`` part count."""
    digests = [hashlib.md5(b, usedforsecurity=False).digest() for b in item.blocks(part_size)]
    return f"{hashlib.md5(b''.join(digests), usedforsecurity=False).hexdigest()}-{len(digests)}"


def _headers(item: Item) -> dict[str, Any]:
    """Content-Type and Cache-Control by what the item is; its SHA256 as metadata."""
    if item.kind == "key":
        content_type = "application/pgp-keys"
    elif item.kind in ("state", "intent"):
        content_type = "text/plain"
    elif item.kind == "by-hash":
        content_type = "application/octet-stream"
    else:
        content_type = archive.content_type(item.rel)
    immutable = item.kind in ("pool", "by-hash")  # content never changes under these names
    return {
        "ContentType": content_type,
        "CacheControl": _IMMUTABLE if immutable else _REVALIDATE,
        "Metadata": {"sha256": item.sha256},
    }


def same_content(head: dict[str, Any], obj: Item) -> bool | None:
    """Whether the object ``head`` describes holds ``obj``'s bytes: True, False, or None when
    the server's answer cannot tell (no sha256 metadata and an ETag that is not an MD5)."""
    if int(head.get("ContentLength", -1)) != obj.size:
        return False
    meta = {k.lower(): v for k, v in (head.get("Metadata") or {}).items()}
    if sha := meta.get("sha256"):
        return bool(sha.strip().lower() == obj.sha256)
    etag = str(head.get("ETag", "")).strip('"').lower()
    # A multipart ETag ("<md5>-<parts>") and an SSE-KMS/SSE-C ETag are not the MD5 of the bytes.
    encrypted = head.get("ServerSideEncryption") == "aws:kms" or "SSECustomerAlgorithm" in head
    if re.fullmatch(r"[0-9a-f]{32}", etag) and not encrypted:
        return etag == md5(obj)
    return None


class Bucket:
    """The S3 operations publishing needs, each wrapped into a PublishError at the boundary."""

    def __init__(self, target: S3Target, client: Any, *, jobs: int = 8) -> None:
        self.target = target
        self.client = client
        self.jobs = jobs
        self.lock_token: str | None = None  # s3lock.publish_lock's, while it is held
        self._transfer: Any = None
        self._transfer_lock = threading.Lock()

    @contextmanager
    def _boundary(self, action: str) -> Iterator[None]:
        try:
            yield
        except _BOUNDARY as exc:
            raise s3_error(self.target, exc, action) from exc

    @property
    def region(self) -> str | None:
        return str(self.client.meta.region_name or "") or None

    def check(self) -> None:
        """Fail early and clearly: wrong credentials, no such bucket, server unreachable."""
        with self._boundary("listing the bucket"):
            self.client.list_objects_v2(
                Bucket=self.target.bucket, Prefix=self.target.key(""), MaxKeys=1
            )

    def head(self, rel: str) -> dict[str, Any] | None:
        with self._boundary(f"checking {rel}"):
            try:
                return dict(
                    self.client.head_object(Bucket=self.target.bucket, Key=self.target.key(rel))
                )
            except botocore.exceptions.ClientError as exc:
                if _status(exc) == 404:
                    return None
                raise

    def get(self, rel: str) -> bytes | None:
        with self._boundary(f"reading {rel}"):
            try:
                response = self.client.get_object(
                    Bucket=self.target.bucket, Key=self.target.key(rel)
                )
            except botocore.exceptions.ClientError as exc:
                code, status, _ = _client_error_fields(exc)
                if code == "NoSuchKey" or (status == 404 and code != "NoSuchBucket"):
                    return None
                raise
            return bytes(response["Body"].read())

    def put(self, obj: Item) -> None:
        extra = _headers(obj)
        with self._boundary(f"uploading {obj.rel}"):
            if obj.data is not None:
                response = self.client.put_object(
                    Bucket=self.target.bucket, Key=self.target.key(obj.rel), Body=obj.data, **extra
                )
            elif obj.size >= MULTIPART_THRESHOLD:
                assert obj.path is not None
                self._transfer_manager().upload_file(
                    str(obj.path), self.target.bucket, self.target.key(obj.rel), extra_args=extra
                )
                response = self.head(obj.rel) or {}
            else:
                assert obj.path is not None
                with obj.path.open("rb") as body:
                    response = self.client.put_object(
                        Bucket=self.target.bucket,
                        Key=self.target.key(obj.rel),
                        Body=body,
                        ContentLength=obj.size,
                        **extra,
                    )
        self._verify_etag(obj, response)

    def _verify_etag(self, obj: Item, response: dict[str, Any]) -> None:
        """Check the MD5 the server computed over what it stored against our bytes, before any
        Release names the object (the SDK's CRC checks only the transfer, where the server
        supports it). Servers whose ETag is not an MD5 (SSE-KMS, SSE-C) are not checked."""
        etag = str(response.get("ETag", "")).strip('"').lower()
        m = re.fullmatch(r"[0-9a-f]{32}(-\d+)?", etag)
        encrypted = response.get("ServerSideEncryption") == "aws:kms" or (
            "SSECustomerAlgorithm" in response
        )
        if not m or encrypted:
            return
        expected = multipart_etag(obj, MULTIPART_CHUNKSIZE) if m.group(1) else md5(obj)
        if etag != expected:
            raise PublishError(
                f"{self.target.where}: {obj.rel}: the server stored other bytes than were sent "
                f"(ETag {etag}, expected {expected})",
                "the upload was corrupted on the way; " + _UNTOUCHED,
            )

    def _transfer_manager(self) -> Any:
        # One S3Transfer (boto3's multipart machinery) for the whole publish, shared by the
        # upload threads; its part concurrency is bounded too.
        with self._transfer_lock:
            if self._transfer is None:
                config = boto3.s3.transfer.TransferConfig(
                    multipart_threshold=MULTIPART_THRESHOLD,
                    multipart_chunksize=MULTIPART_CHUNKSIZE,
                    max_concurrency=max(1, min(self.jobs, 4)),
                    use_threads=True,
                )
                self._transfer = boto3.s3.transfer.S3Transfer(self.client, config)
            return self._transfer

    def put_exclusive(self, rel: str, data: bytes) -> bool:
        """Create ``rel`` only if it does not exist; False if it exists already."""
        key = self.target.key(rel)
        with self._boundary(f"creating {rel}"):
            try:
                self.client.put_object(
                    Bucket=self.target.bucket,
                    Key=key,
                    Body=data,
                    ContentType="application/json",
                    CacheControl=_REVALIDATE,
                    IfNoneMatch="*",
                )
                return True
            except botocore.exceptions.ClientError as exc:
                code, status, _ = _client_error_fields(exc)
                if status in (409, 412) or code in (
                    "PreconditionFailed",
                    "ConditionalRequestConflict",
                ):
                    return False
                if status != 501 and code != "NotImplemented":
                    raise
            # The server rejects conditional writes (older MinIO, Ceph before Squid): fall back
            # to check-then-put. Two publishers starting within one round trip could both pass
            # the check; the caller's read-back of the lock narrows that window further.
            if self.head(rel) is not None:
                return False
            self.client.put_object(
                Bucket=self.target.bucket,
                Key=key,
                Body=data,
                ContentType="application/json",
                CacheControl=_REVALIDATE,
            )
            return True

    def delete(self, rels: Sequence[str]) -> None:
        for start in range(0, len(rels), 1000):  # DeleteObjects takes at most 1000 keys
            chunk = rels[start : start + 1000]
            with self._boundary(f"deleting {len(chunk)} objects"):
                response = self.client.delete_objects(
                    Bucket=self.target.bucket,
                    Delete={"Objects": [{"Key": self.target.key(r)} for r in chunk], "Quiet": True},
                )
            if errors := response.get("Errors"):
                first = errors[0]
                raise PublishError(
                    f"{self.target.where}: could not delete {len(errors)} objects, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message', '')}".rstrip(),
                    "check that the credentials allow s3:DeleteObject.",
                )

    def list(self, rel_prefix: str) -> Iterator[tuple[str, int]]:
        """(name below the target prefix, size) of every object under ``rel_prefix``."""
        with self._boundary(f"listing {rel_prefix or '/'}"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.target.bucket, Prefix=self.target.key(rel_prefix)
            )
            for page in pages:
                for item in page.get("Contents") or ():
                    yield self.target.rel(str(item["Key"])), int(item.get("Size", 0))


def connect(target: S3Target, *, jobs: int = 8) -> Bucket:
    """A client from the standard AWS credential chain (environment, ~/.aws, instance role)."""
    config = botocore.config.Config(
        # S3-compatible servers are addressed path-style (bucket in the path, not the host name).
        s3={"addressing_style": "path"} if target.endpoint_url else {},
        max_pool_connections=max(10, jobs * 2),
        connect_timeout=10,
        read_timeout=120,
        user_agent_extra=f"mirrorkit/{__version__}",
    )
    try:
        session = boto3.session.Session(region_name=target.region)
        client = session.client("s3", endpoint_url=target.endpoint_url, config=config)
    except _CONNECT_ERRORS as exc:
        error = s3_error(target, exc, "setting up the S3 client")
        error.hint = "check the AWS configuration: AWS_* environment variables, ~/.aws/config."
        raise error from exc
    return Bucket(target, client, jobs=jobs)


# -- what the bucket publishes -----------------------------------------------------------------


def published_pool(bucket: Bucket) -> dict[str, str]:
    """Pool path -> SHA256 of every file some suite in the bucket lists.

    Every ``Release`` and ``InRelease`` below ``dists/`` counts (a suite whose publish stopped
    between the two is counted with both; nested suites and other tools' suites too), except
    the per-index ``binary-*/Release`` and ``source/Release`` files some archives carry.
    Anything unreadable raises: pruning on a partial picture could delete what a suite needs."""
    listed: dict[str, str] = {}
    seen: set[str] = set()
    releases = []
    for rel, _ in bucket.list("dists/"):
        parent, _, name = rel.rpartition("/")
        index_dir = parent.rpartition("/")[2]
        if name in ("Release", "InRelease") and not (
            index_dir.startswith("binary-") or index_dir == "source"
        ):
            releases.append(rel)
    for rel_path in sorted(releases):
        suite_dir = rel_path.rpartition("/")[0]
        data = bucket.get(rel_path)
        if data is None:
            continue  # replaced meanwhile (cannot happen under the lock); nothing to read
        try:
            release = archive.parse_release(data, rel_path)
            bases = {m.group(1) for name in release.files if (m := _INDEX_RE.match(name))}
            for base in sorted(bases):
                picked = _pick_plain_first(release, base)
                if picked is None or picked[1].sha256 in seen:
                    continue
                comp, ref = picked
                seen.add(ref.sha256)
                text = archive.decompress(_read_index(bucket, suite_dir, ref), comp, ref.path)
                name = base.rpartition("/")[2]
                listed.update(index_files(text, name, f"{suite_dir}/{base}"))
        except FormatError as exc:
            raise PublishError(f"{bucket.target.url}: {exc.message}", _DAMAGED) from exc
    return listed


def _pick_plain_first(release: archive.Release, base: str) -> tuple[str, FileRef] | None:
    for comp in ("", "xz", "gz", "bz2", "zst"):
        ref = release.files.get(f"{base}.{comp}" if comp else base)
        if ref is not None:
            return comp, ref
    return None


def _read_index(bucket: Bucket, suite_dir: str, ref: FileRef) -> bytes:
    for rel in (
        f"{suite_dir}/{archive.by_hash_path(ref.path, ref.sha256)}",
        f"{suite_dir}/{ref.path}",
    ):
        data = bucket.get(rel)
        if data is not None and hashlib.sha256(data).hexdigest() == ref.sha256:
            return data
    raise PublishError(
        f"{bucket.target.url}: {suite_dir}/{ref.path} is missing or does not match its Release",
        _DAMAGED,
    )


# -- the result and the switch ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class S3PublishResult:
    target: S3Target
    suite: str
    uploaded: tuple[str, ...]  # names below the prefix, in the order they were written
    reused: int  # objects that were there already with the same content
    removed: tuple[str, ...] = ()  # with prune: objects no suite needs any more
    http_url: str = ""  # what clients put in their URIs
    key_name: str = ""
    broken_lock: LockInfo | None = None

    @property
    def key_url(self) -> str:
        return f"{self.http_url}{self.key_name}.gpg"


def _server_time(head: dict[str, Any]) -> datetime | None:
    date = ((head.get("ResponseMetadata") or {}).get("HTTPHeaders") or {}).get("date")
    try:
        return email.utils.parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None


def _wait_past_old_release(bucket: Bucket, dists: str, limit: float = 3.0) -> None:
    """Make sure the new signed files get a later Last-Modified than the old InRelease.

    S3 keeps Last-Modified to the second and answers apt's If-Modified-Since with it: an
    InRelease replaced within the second in which a client fetched the old one would be
    "304 Not Modified" to that client, which would keep the old suite until the next publish.
    So wait (at most a second or two, and only right after a previous publish) until the
    server's clock has moved past the old InRelease."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        head = bucket.head(f"{dists}/InRelease")
        if head is None:
            return
        old, now = head.get("LastModified"), _server_time(head)
        if not isinstance(old, datetime) or now is None or now > old:
            return
        time.sleep(0.25)


# -- the target the executor writes to -------------------------------------------------------


class BucketTarget:
    """A publish target under an S3 prefix (see the module's docstring)."""

    replaces_unlisted = True  # an object no suite lists is debris (say, a failed upload's)

    def __init__(self, bucket: Bucket, *, break_lock: bool = False) -> None:
        self.bucket = bucket
        self.break_lock = break_lock
        self.broken: LockInfo | None = None  # the lock break_lock removed
        # Name -> size of every object under the prefix, listed once (one request per 1000
        # objects): a HEAD is needed only where an object of the same size exists already.
        self._sizes: dict[str, int] | None = None
        self._sizes_lock = threading.Lock()

    @property
    def label(self) -> str:
        return f"upload to {self.bucket.target.url}"

    @property
    def jobs(self) -> int:
        return self.bucket.jobs

    @contextmanager
    def lock(self, suite: str) -> Iterator[None]:
        with publish_lock(self.bucket, suite=suite, break_lock=self.break_lock) as broken:
            self.broken = broken
            yield

    def check_lock(self) -> None:
        check_lock(self.bucket)

    def get(self, rel: str) -> bytes | None:
        return self.bucket.get(rel)

    def compare(self, item: Item, recorded: str | None) -> bool | None:
        with self._sizes_lock:
            if self._sizes is None:
                self._sizes = dict(self.bucket.list(""))
            size = self._sizes.get(item.rel)
        if size is None:
            return None
        if size != item.size:
            return False  # certainly other content
        head = self.bucket.head(item.rel)
        return None if head is None else bool(same_content(head, item))

    def put(self, item: Item) -> None:
        self.bucket.put(item)

    def list(self, rel_prefix: str) -> Iterator[str]:
        for rel, _ in self.bucket.list(rel_prefix):
            yield rel

    def delete(self, rels: Sequence[str]) -> None:
        self.bucket.delete(rels)

    def listed_pool(self) -> dict[str, str]:
        return published_pool(self.bucket)

    def conflict(self, item: Item, listed: str | None, recorded: str | None) -> PublishError:
        theirs = f"SHA256 {listed[:12]}…" if listed else "other content"
        return PublishError(
            f"{self.bucket.target.url}: {item.rel} exists with different contents "
            f"({theirs}, this snapshot has {item.sha256[:12]}…)",
            "another build of this package version is published here; give the rebuild a "
            "new version, or publish to another prefix.",
        )

    def begin_suite(self, suite: str, carry: set[str]) -> None:
        pass  # written in place: the previous generation's objects stay until pruned

    def prepare_switch(self, suite: str) -> None:
        _wait_past_old_release(self.bucket, f"dists/{suite}")

    def switch(self, suite: str) -> None:
        pass  # the InRelease just written was the switch

    def abort_suite(self, suite: str) -> None:
        pass  # nothing refers to what was written: a rerun reuses it
