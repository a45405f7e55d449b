"""One error hierarchy. Every error says what went wrong and, where possible, what to do.

The CLI prints ``error: <message>`` and ``hint: <hint>`` and exits with ``exit_code``.
Third-party exceptions are wrapped at the boundary (``raise FetchError(...) from exc``).
"""

from __future__ import annotations

from mirrorkit.net.redact import redact_url


class MirrorkitError(Exception):
    """Root of every error mirrorkit reports to a user."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        # Whatever a message quotes, a URL's user:password@ never reaches the user.
        message, hint = redact_url(message), redact_url(hint) if hint else hint
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(MirrorkitError):
    """The user asked for something that cannot be done as asked (bad name, missing option)."""

    exit_code = 2


class ProfileError(MirrorkitError):
    """A profile file is malformed: names the file, the key and what is expected."""


class NotFoundError(MirrorkitError):
    """A mirror, snapshot or channel that does not exist."""


class ConflictError(MirrorkitError):
    """The object exists already, or something else still needs it."""


class StoreLockedError(MirrorkitError):
    """Another mirrorkit command (a process, or a thread of this one) holds a lock this one
    needs: ``resource`` is what it needed (``"store"`` for the whole store, else e.g.
    ``"mirror/NAME"``)."""

    resource: str | None = None


class FetchError(MirrorkitError):
    """A download failed after every retry (network, HTTP status)."""

    def __init__(self, url: str, reason: str, hint: str | None = None) -> None:
        super().__init__(f"{url}: {reason}", hint)
        self.url = url
        self.reason = reason


class IntegrityError(MirrorkitError):
    """Bytes do not match what the signed index promises (size or SHA256)."""

    def __init__(
        self, what: str, expected: str, got: str, *, kind: str = "SHA256", hint: str | None = None
    ) -> None:
        super().__init__(
            f"{what}: {kind} mismatch (expected {expected}, got {got})",
            hint
            or "the upstream may be mid-sync or the download was tampered with; "
            "nothing was stored. Run the update again later.",
        )
        self.what = what
        self.expected = expected
        self.got = got


class SignatureError(MirrorkitError):
    """A signature is missing, bad, or made by a key the mirror does not trust."""


class ReleaseError(MirrorkitError):
    """A Release file is expired, older than the last accepted one, or does not fit the mirror."""


class FormatError(MirrorkitError):
    """Malformed repository metadata (Release, Packages) or a hostile path in it."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(
            message,
            hint
            or "the upstream's metadata is malformed; nothing was stored. Try again later, "
            "or report it to the archive's maintainers.",
        )


class PublishError(MirrorkitError):
    """Publishing a tree failed; the previously published suite is still in place."""


class StorageError(MirrorkitError):
    """The disk refused a write (full, read-only, permissions)."""


class InsufficientSpaceError(StorageError):
    """An update would not fit on the store's filesystem (checked before downloading)."""


class EmptyResultError(MirrorkitError):
    """A filter or query matched nothing where an empty result is almost surely a mistake."""


class BundleError(MirrorkitError):
    """A bundle is damaged, incomplete, hostile, or not what its signed manifest says."""


class StoreFormatError(MirrorkitError):
    """The store, or a record in it, is in a format newer than this mirrorkit knows."""


# -- the network, by cause (every one a FetchError: callers that catch that keep working) ----


class NetworkConfigError(UsageError):
    """A proxy, CA bundle or auth file that cannot be used as given."""


class DNSError(FetchError):
    """The upstream's (or the proxy's) host name does not resolve."""


class ConnectionFailedError(FetchError):
    """No connection: refused, unreachable, or reset before an answer."""


class NetworkTimeoutError(FetchError):
    """The server or the network did not answer in time."""


class TLSError(FetchError):
    """The TLS handshake failed: most often a certificate that no trusted CA signed."""


class ProxyError(FetchError):
    """The proxy is unreachable or refused the request (407 Proxy Authentication Required,
    403 from the proxy, a CONNECT tunnel it would not open)."""


class AuthError(FetchError):
    """The upstream asks for credentials (401) or refuses the ones it was given."""


class HTTPStatusError(FetchError):
    """The upstream answered with an HTTP error status (4xx, 5xx)."""

    def __init__(
        self, url: str, reason: str, hint: str | None = None, *, status: int | None = None
    ) -> None:
        super().__init__(url, reason, hint)
        self.status = status
