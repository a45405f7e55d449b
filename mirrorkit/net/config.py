"""Which proxy, which CA store: the network a user has, from options, apt and the environment.

Stdlib only (no httpx): :mod:`mirrorkit.mirror` puts a :class:`NetworkConfig` in its options
without paying for the HTTP client's import. :func:`resolve` turns the config into the
:class:`Network` that the client uses for every request.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import ssl
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mirrorkit.errors import NetworkConfigError
from mirrorkit.net.redact import redact_url

# --proxy values that are not a URL.
PROXY_FROM_APT = "apt"
PROXY_NONE = frozenset({"none", "direct", "off"})
_PROXY_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """How mirrorkit reaches upstreams.

    ``proxy``: a proxy URL for every request (``http://user:pass@proxy:3128``); ``"apt"`` for
    apt's own ``Acquire::http(s)::Proxy`` (per-host entries and ``DIRECT`` included), the
    environment where apt has none; ``"none"`` for no proxy at all; ``None`` (default) for the
    environment's ``http_proxy``/``https_proxy``/``all_proxy``/``no_proxy`` (either case,
    lower case first, as curl reads them).
    ``ca_bundle``: the CA certificates (PEM) that verify servers, instead of the default store;
    else ``SSL_CERT_FILE``/``SSL_CERT_DIR`` when set.
    ``auth_files``: apt auth.conf-format files with credentials; ``None`` (default) for
    ``/etc/apt/auth.conf``, ``/etc/apt/auth.conf.d/*.conf`` (when readable) and ``~/.netrc``.
    ``trust_env``: read the variables above at all.
    """

    proxy: str | None = None
    ca_bundle: Path | None = None
    auth_files: tuple[Path, ...] | None = None
    trust_env: bool = True
    # Read before ``auth_files`` and skipped when absent: the store's own auth file, which holds
    # the credentials given in mirror URLs (so that records never do).
    extra_auth_files: tuple[Path, ...] = ()

    def __repr__(self) -> str:  # a proxy URL may carry credentials
        return (
            f"NetworkConfig(proxy={redact_url(self.proxy) if self.proxy else None!r}, "
            f"ca_bundle={self.ca_bundle!r}, auth_files={self.auth_files!r}, "
            f"trust_env={self.trust_env!r}, extra_auth_files={self.extra_auth_files!r})"
        )


def network_config(
    proxy: str | None = None,
    ca_bundle: str | os.PathLike[str] | None = None,
    auth_file: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    *,
    base: NetworkConfig | None = None,
) -> NetworkConfig:
    """The config for command-line options (``--proxy``, ``--ca-bundle``, ``--auth-file``, one
    or several), each one given overriding ``base`` (a profile's ``[network]`` table)."""
    base = base or NetworkConfig()
    files: tuple[Path, ...] | None = base.auth_files
    if auth_file is not None:
        many = [auth_file] if isinstance(auth_file, str | os.PathLike) else list(auth_file)
        files = tuple(Path(f) for f in many) or files
    return NetworkConfig(
        proxy=proxy if proxy is not None else base.proxy,
        ca_bundle=Path(ca_bundle) if ca_bundle is not None else base.ca_bundle,
        auth_files=files,
        trust_env=base.trust_env,
        extra_auth_files=base.extra_auth_files,
    )


@dataclass(frozen=True, slots=True)
class ProxyRules:
    """Proxy per scheme, per-host overrides (apt's ``Proxy::host``) and NO_PROXY entries."""

    by_scheme: Mapping[str, str | None] = field(default_factory=dict)
    by_host: Mapping[tuple[str, str], str | None] = field(default_factory=dict)
    no_proxy: tuple[str, ...] = ()

    def proxy_for(self, scheme: str, host: str) -> str | None:
        """The proxy URL for a request to ``scheme://host``, or None for a direct connection."""
        host = host.lower().strip("[]").rstrip(".")
        if (scheme, host) in self.by_host:
            return self.by_host[(scheme, host)]
        proxy = self.by_scheme.get(scheme)
        if proxy is None or bypassed(host, self.no_proxy):
            return None
        return proxy


@dataclass(frozen=True, slots=True)
class Network:
    """A resolved :class:`NetworkConfig`: what the HTTP client needs, read once per run."""

    proxies: ProxyRules
    ca_file: str | None  # None with ca_dir None too: the default store (certifi's)
    ca_dir: str | None
    auth_files: tuple[Path, ...]
    auth_files_required: bool  # given by the user: an unreadable one is an error
    extra_auth_files: tuple[Path, ...] = ()  # read first; skipped when absent

    def ssl_context(self) -> ssl.SSLContext:
        """A verifying client context on the configured CA store (made on first need)."""
        if self.ca_file is None and self.ca_dir is None:
            import certifi  # httpx's default store; a dependency of httpx

            return ssl.create_default_context(cafile=certifi.where())
        try:
            return ssl.create_default_context(cafile=self.ca_file, capath=self.ca_dir)
        except (OSError, ssl.SSLError) as exc:
            where = self.ca_file or self.ca_dir
            raise NetworkConfigError(
                f"{where}: cannot load CA certificates: {exc}",
                "give a PEM file of CA certificates (--ca-bundle, SSL_CERT_FILE) or a "
                "directory hashed by c_rehash (SSL_CERT_DIR).",
            ) from exc


def resolve(config: NetworkConfig, environ: Mapping[str, str] | None = None) -> Network:
    """Read the environment (and apt, for ``proxy="apt"``) once and check what was given."""
    env: Mapping[str, str] = (
        (os.environ if environ is None else environ) if config.trust_env else {}
    )
    ca_file: str | None = None
    ca_dir: str | None = None
    if config.ca_bundle is not None:
        if not Path(config.ca_bundle).is_file():
            raise NetworkConfigError(
                f"{config.ca_bundle}: CA bundle not found (or not a file)",
                "give a PEM file of CA certificates with --ca-bundle (or the profile's "
                "[network] ca_bundle).",
            )
        ca_file = str(config.ca_bundle)
    else:
        ca_file = env.get("SSL_CERT_FILE") or None
        ca_dir = env.get("SSL_CERT_DIR") or None
        if ca_file is not None and not Path(ca_file).is_file():
            raise NetworkConfigError(
                f"{ca_file}: SSL_CERT_FILE names no file",
                "point SSL_CERT_FILE at a PEM file of CA certificates, or unset it.",
            )
    if config.auth_files is not None:
        auth_files, required = tuple(Path(p) for p in config.auth_files), True
    else:
        auth_files, required = _default_auth_files(env), False
    extra = tuple(p for p in config.extra_auth_files if Path(p).exists())
    return Network(_proxy_rules(config, env), ca_file, ca_dir, auth_files, required, extra)


def _default_auth_files(env: Mapping[str, str]) -> tuple[Path, ...]:
    etc = Path("/etc/apt")
    files = [etc / "auth.conf"]
    parts = etc / "auth.conf.d"
    if parts.is_dir():
        files += sorted(p for p in parts.glob("*.conf") if p.is_file())
    home = env.get("HOME") or os.environ.get("HOME")
    if home:
        files.append(Path(home) / ".netrc")
    return tuple(files)


# -- proxies ---------------------------------------------------------------------------------


def _env(env: Mapping[str, str], name: str) -> str | None:
    # curl's order: the lower-case name first, then the upper-case one.
    value = env.get(name.lower())
    if value is None:
        value = env.get(name.upper())
    return value.strip() if value is not None else None


def _proxy_rules(config: NetworkConfig, env: Mapping[str, str]) -> ProxyRules:
    proxy = config.proxy.strip() if config.proxy is not None else None
    if proxy is not None and (proxy == "" or proxy.lower() in PROXY_NONE):
        return ProxyRules()
    no_proxy = tuple(
        e.strip().lower() for e in (_env(env, "no_proxy") or "").split(",") if e.strip()
    )
    from_env: dict[str, str | None] = {}
    every = _env(env, "all_proxy") or None
    for scheme in ("http", "https"):
        value = _env(env, f"{scheme}_proxy") or every
        from_env[scheme] = _proxy_url(value, f"{scheme}_proxy") if value else None
    if proxy is None:
        return ProxyRules(from_env, {}, no_proxy)
    if proxy.lower() == PROXY_FROM_APT:
        by_scheme, by_host = _apt_proxies()
        # Where apt sets nothing, apt itself uses the environment.
        merged = {s: by_scheme[s] if s in by_scheme else from_env[s] for s in ("http", "https")}
        return ProxyRules(merged, by_host, no_proxy)
    url = _proxy_url(proxy, "--proxy")
    return ProxyRules({"http": url, "https": url}, {}, no_proxy)


def _proxy_url(value: str, what: str) -> str:
    url = value if "://" in value else f"http://{value}"
    scheme = url.split("://", 1)[0].lower()
    if scheme not in _PROXY_SCHEMES:
        raise NetworkConfigError(
            f"{what}: unsupported proxy {redact_url(url)!r} (scheme {scheme!r})",
            "give an http:// or https:// proxy URL, e.g. http://proxy.example:3128 (--proxy "
            "URL overrides the environment; --proxy none connects directly).",
        )
    return url


_APT_LINE = re.compile(r'^Acquire::(https?)::Proxy(?:::(\S+))?\s+"(.*)";$', re.IGNORECASE)


def _apt_proxies() -> tuple[dict[str, str | None], dict[tuple[str, str], str | None]]:
    """apt's proxy settings from ``apt-config dump``: per scheme and per host (``DIRECT`` =
    none). ``Acquire::https::*`` defaults to ``Acquire::http::*``, as apt documents."""
    exe = shutil.which("apt-config")
    if exe is None:
        raise NetworkConfigError(
            "--proxy apt: apt-config is not installed",
            "give the proxy URL with --proxy, or set HTTPS_PROXY/HTTP_PROXY.",
        )
    try:
        dump = subprocess.run(
            [exe, "dump"], capture_output=True, text=True, check=True, timeout=30
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise NetworkConfigError(
            f"--proxy apt: apt-config dump failed: {exc}",
            "check apt's configuration (apt-config dump), or give the proxy with --proxy.",
        ) from exc
    found: dict[tuple[str, str | None], str | None] = {}
    for line in dump.splitlines():
        m = _APT_LINE.match(line.strip())
        if m is None or not m[3]:
            continue
        scheme, host, value = m[1].lower(), m[2], m[3]
        proxy = None if value.upper() == "DIRECT" else _proxy_url(value, "Acquire::Proxy")
        found[(scheme, host.lower() if host else None)] = proxy
    by_scheme: dict[str, str | None] = {}
    by_host: dict[tuple[str, str], str | None] = {}
    for (scheme, host), proxy in found.items():
        if host is None:
            by_scheme[scheme] = proxy
        else:
            by_host[(scheme, host)] = proxy
    if "https" not in by_scheme and "http" in by_scheme:
        by_scheme["https"] = by_scheme["http"]
    for (scheme, host), proxy in list(by_host.items()):
        if scheme == "http":
            by_host.setdefault(("https", host), proxy)
    return by_scheme, by_host


def bypassed(host: str, no_proxy: tuple[str, ...]) -> bool:
    """Whether NO_PROXY entries exempt ``host`` from the proxy, as curl reads them: ``*``;
    a name matches itself and its subdomains (a leading dot is ignored); an IP address
    matches itself or a CIDR range holding it. A ``:port`` suffix on an entry is ignored."""
    host = host.lower().strip("[]").rstrip(".")
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    for entry in no_proxy:
        if entry == "*":
            return True
        entry = entry.strip().lower()
        if entry.startswith("["):  # [v6] or [v6]:port
            entry = entry[1:].split("]", 1)[0]
        elif entry.count(":") == 1:  # name:port or v4:port
            entry = entry.split(":", 1)[0]
        entry = entry.lstrip(".").rstrip(".")
        if not entry:
            continue
        if ip is not None:
            try:
                if ip in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        if host == entry or host.endswith("." + entry):
            return True
    return False
