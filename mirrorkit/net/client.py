"""The HTTP client's routing (direct or through a proxy, with credentials) and failures by cause.

:class:`RoutingTransport` decides per request, redirects included: a direct origin goes to the
fast :class:`~mirrorkit.transport.StreamTransport`; a proxied one to httpx's own transport with
that proxy (plain forwarding for http://, a CONNECT tunnel for https://, the proxy's
``user:pass@`` sent as Proxy-Authorization). httpx's ``mounts`` route by URL pattern only, which
cannot say "every IP in 10.0.0.0/8" or "a name and its subdomains" as NO_PROXY does; the router
asks :class:`~mirrorkit.net.config.ProxyRules` instead. Credentials from auth files are added
here, per request URL, so that a redirect to another host gets that host's credentials or none.

:func:`classify` names why a request failed (DNS, refused, timeout, TLS, proxy) and whether
trying again can help.
"""

from __future__ import annotations

import errno
import socket
import ssl
from dataclasses import dataclass

import httpx

from mirrorkit.errors import (
    AuthError,
    ConnectionFailedError,
    DNSError,
    FetchError,
    HTTPStatusError,
    NetworkTimeoutError,
    ProxyError,
    TLSError,
)
from mirrorkit.net.auth import Credentials
from mirrorkit.net.config import Network
from mirrorkit.net.redact import redact_url

_PROXY_MAX_CONNECTIONS = 64


class RoutingTransport(httpx.AsyncBaseTransport):
    """Send each request direct or through its proxy; add auth-file credentials."""

    def __init__(
        self,
        network: Network,
        direct: httpx.AsyncBaseTransport,
        credentials: Credentials,
        max_idle: int = 8,
    ) -> None:
        self.network = network
        self._direct = direct
        self._credentials = credentials
        self._max_idle = max_idle
        self._proxied: dict[str, httpx.AsyncBaseTransport] = {}
        self._ssl: ssl.SSLContext | None = None

    def proxy_for(self, url: httpx.URL) -> str | None:
        return self.network.proxies.proxy_for(url.scheme, url.host)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._credentials and "authorization" not in request.headers:
            value = self._credentials.authorization(str(request.url))
            if value is not None:
                request.headers["Authorization"] = value
        proxy = self.proxy_for(request.url)
        transport = self._direct if proxy is None else self._through(proxy)
        return await transport.handle_async_request(request)

    def _through(self, proxy: str) -> httpx.AsyncBaseTransport:
        transport = self._proxied.get(proxy)
        if transport is None:
            if self._ssl is None:
                self._ssl = self.network.ssl_context()
            transport = httpx.AsyncHTTPTransport(
                proxy=httpx.Proxy(proxy),
                verify=self._ssl,
                trust_env=False,
                limits=httpx.Limits(
                    max_connections=_PROXY_MAX_CONNECTIONS,
                    max_keepalive_connections=self._max_idle,
                ),
            )
            self._proxied[proxy] = transport
        return transport

    async def aclose(self) -> None:
        await self._direct.aclose()
        for transport in self._proxied.values():
            await transport.aclose()


# -- failures by cause -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Failure:
    """What a transport error means: the error to raise and whether to try again first."""

    kind: type[FetchError]
    reason: str
    hint: str
    retry: bool


def _causes(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def _host(url: httpx.URL | str) -> str:
    u = httpx.URL(str(url)) if not isinstance(url, httpx.URL) else url
    return f"{u.host}:{u.port}" if u.port else u.host


_RETRY_HINT = "run the command again later (completed files are kept), or raise --max-tries."


def classify(url: str, exc: httpx.TransportError, proxy: str | None) -> Failure:
    """The cause of ``exc`` (raised for a request to ``url``, sent through ``proxy`` or
    direct), as a typed error class, a reason, a hint, and whether to retry."""
    reason = f"{type(exc).__name__}: {redact_url(str(exc))}"
    shown_proxy = redact_url(proxy) if proxy else None
    host = _host(url)
    causes = _causes(exc)
    verify = next((c for c in causes if isinstance(c, ssl.SSLCertVerificationError)), None)
    if verify is not None:
        what = verify.verify_message or verify.reason or str(verify)
        return Failure(
            TLSError,
            f"TLS: the certificate of {host} is not trusted ({what})",
            "if the server (or a proxy that intercepts TLS) uses a private CA, give its "
            "certificate with --ca-bundle FILE or SSL_CERT_FILE; check the URL's host name.",
            retry=False,
        )
    if isinstance(exc, httpx.ProxyError):
        # httpcore: the proxy answered the CONNECT with an error status.
        return _proxy_refused(reason, shown_proxy or "the proxy", str(exc))
    tls = next(
        (c for c in causes if isinstance(c, ssl.SSLError) and not isinstance(c, ssl.SSLEOFError)),
        None,
    )
    if tls is not None:
        return Failure(
            TLSError,
            f"TLS handshake with {host} failed ({tls.reason or tls})",
            "the server does not speak TLS as expected: check http:// versus https:// and the "
            "port in the URL (or the proxy's TLS settings).",
            retry=False,
        )
    gai = next((c for c in causes if isinstance(c, socket.gaierror)), None)
    if gai is not None:
        name = shown_proxy or host
        temporary = gai.errno == socket.EAI_AGAIN
        return Failure(
            ProxyError if proxy else DNSError,
            f"cannot resolve the host name of {name}: {gai.strerror or gai}",
            "check the host name in the URL"
            + (" of the proxy" if proxy else "")
            + "; on a network that reaches the outside only through a proxy, give it with "
            "--proxy or HTTPS_PROXY/HTTP_PROXY." + (" " + _RETRY_HINT if temporary else ""),
            retry=temporary,
        )
    if isinstance(exc, httpx.TimeoutException):
        if proxy and isinstance(exc, httpx.ConnectTimeout):
            return Failure(
                ProxyError,
                f"{reason} (connecting to the proxy {shown_proxy})",
                f"the proxy {shown_proxy} does not answer: check its address, or whether it "
                "is up; " + _RETRY_HINT,
                retry=True,
            )
        return Failure(
            NetworkTimeoutError,
            reason,
            f"{host} did not answer in time: the server is slow or overloaded, or a firewall "
            "drops the packets (a proxy may be needed: --proxy, HTTPS_PROXY); " + _RETRY_HINT,
            retry=True,
        )
    refused = next((c for c in causes if isinstance(c, ConnectionRefusedError)), None)
    if isinstance(exc, httpx.ConnectError):
        oserr = next((c for c in causes if isinstance(c, OSError) and c.errno), None)
        if proxy:
            return Failure(
                ProxyError,
                f"{reason} (connecting to the proxy {shown_proxy})",
                f"cannot reach the proxy {shown_proxy}: check its host and port, or whether "
                "it is up (or pass --proxy none / unset HTTPS_PROXY to connect directly); "
                + _RETRY_HINT,
                retry=True,
            )
        if refused is not None or (oserr is not None and oserr.errno == errno.ECONNREFUSED):
            hint = (
                f"nothing accepts connections on {host}: check the host and port in the URL, "
                "or whether the server is up; "
            )
        else:
            hint = (
                f"{host} cannot be reached (the network, a firewall, or a missing proxy: "
                "--proxy, HTTPS_PROXY); "
            )
        return Failure(ConnectionFailedError, reason, hint + _RETRY_HINT, retry=True)
    # Reads and writes that broke mid-answer, protocol errors: the network's hiccups.
    return Failure(
        FetchError,
        reason,
        "the server or network is failing; " + _RETRY_HINT,
        retry=True,
    )


def _proxy_refused(reason: str, proxy: str, text: str) -> Failure:
    if "407" in text:
        hint = (
            f"the proxy {proxy} wants credentials: put USER:PASSWORD@ before the host in the "
            "proxy's URL (--proxy, HTTPS_PROXY), or check the ones given."
        )
    elif "401" in text:
        hint = (
            f"the proxy {proxy} refused the credentials in its URL: check the USER:PASSWORD@ "
            "given with --proxy or HTTPS_PROXY/HTTP_PROXY."
        )
    else:
        hint = (
            f"the proxy {proxy} refused the request (its access rules, or the port: many "
            "proxies tunnel only to port 443); ask its administrator, or bypass it for this "
            "host with NO_PROXY."
        )
    return Failure(ProxyError, f"{reason} (from the proxy {proxy})", hint, retry=False)


def status_failure(
    url: str,
    status: int,
    phrase: str,
    *,
    proxy: str | None,
    sent_credentials: bool,
    from_proxy: bool,
) -> Failure:
    """What an HTTP error status means for ``url``; ``from_proxy``: the answer did not pass
    through the proxy (no ``Via``), so the proxy itself refused."""
    reason = f"HTTP {status} {phrase}".rstrip()
    host = _host(url)
    # A proxy's own refusal carries no Via (nothing was forwarded); tinyproxy answers wrong
    # proxy credentials with 401.
    if status == 407 or (status in (401, 403) and proxy and from_proxy):
        return _proxy_refused(reason, redact_url(proxy) if proxy else "a proxy", reason)
    if status == 401 or (status == 403 and sent_credentials):
        if sent_credentials:
            hint = (
                f"{host} refused the credentials sent: check the login and password of the "
                "auth file entry that matches this URL (or the URL's user:password)."
            )
        else:
            hint = (
                f"{host} wants credentials: add 'machine {host}{_dir(url)} login USER password "
                "SECRET' to an auth file (--auth-file, /etc/apt/auth.conf.d/NAME.conf; an entry "
                "without http:// matches https only), or put them in the URL."
            )
        return Failure(AuthError, reason, hint, retry=False)
    if status == 404:
        return Failure(HTTPStatusError, reason, _not_found_hint(url), retry=False)
    if status == 429 or status >= 500:
        return Failure(
            HTTPStatusError,
            reason,
            f"{host} is failing or overloaded (HTTP {status}); " + _RETRY_HINT,
            retry=True,
        )
    if status == 403:
        hint = f"{host} refuses access to this URL: check the URL, or whether it needs credentials."
    elif status == 410:
        hint = "the upstream removed this file or suite for good: check the URL and suite."
    else:
        hint = f"{host} refused the request (HTTP {status}): check the URL."
    return Failure(HTTPStatusError, reason, hint, retry=False)


def _dir(url: str) -> str:
    path = httpx.URL(url).path
    return path[: path.index("/dists/")] if "/dists/" in path else ""


def _not_found_hint(url: str) -> str:
    """Which part of a mirror's URL to check for a 404 (none of them for a pool file: the
    signed index names it, so the upstream is mid-sync)."""
    path = httpx.URL(url).path
    name = path.rsplit("/", 1)[-1]
    if "/dists/" in path:
        base, _, rest = path.rpartition("/dists/")
        parts = rest.split("/")
        if name in ("InRelease", "Release", "Release.gpg"):
            suite = "/".join(parts[:-1])
            return (
                f"there is no suite {suite!r} at this URL: check the mirror's URL (the archive "
                f"root, which holds dists/: ...{base or '/'}) and its suite (the directories "
                "under dists/ are the suites)."
            )
        if len(parts) >= 3:
            return (
                f"no index for component {parts[1]!r} / {parts[2]!r} in suite {parts[0]!r}: "
                "check the mirror's components and architectures against the Release's "
                "Components and Architectures; if they are listed, the upstream is mid-sync: "
                "try again later."
            )
    if name in ("InRelease", "Release", "Release.gpg"):
        return "no Release here: check the mirror's URL (for a flat repository, its directory)."
    if "/pool/" in path or path.endswith(".deb"):
        return (
            "the signed index lists this file but the server does not have it: the upstream "
            "is mid-sync; run the update again later (completed files are kept)."
        )
    return "check the URL (the mirror's URL, suite, component and architecture)."
