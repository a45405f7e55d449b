"""Shared fixtures and the loopback-only network guard for the whole test suite."""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# Make `import tests.helpers...` work however pytest was started (plain `pytest`, another rootdir,
# --import-mode=importlib), not only with `python -m pytest` from the repository root.
_REPO_ROOT = str(Path(__file__).resolve().parent.parent)
if _REPO_ROOT not in sys.path:
    sys.path.insert(0, _REPO_ROOT)

from tests.helpers.apt import AptClient  # noqa: E402
from tests.helpers.archive import Archive, build_archive  # noqa: E402
from tests.helpers.debs import DebOptions, build_deb  # noqa: E402
from tests.helpers.gpgkeys import TestKey, kill_agents, make_key  # noqa: E402
from tests.helpers.httpserver import FaultServer  # noqa: E402
from tests.helpers.tools import missing_message, missing_tools  # noqa: E402

_PROXY_VARS = ("http_proxy", "https_proxy", "all_proxy", "ftp_proxy")
_LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


# -- system tools ----------------------------------------------------------------------------


def pytest_sessionstart(session: pytest.Session) -> None:
    """Stop before the first test when a system tool the suite runs is missing: one message
    naming them all, instead of a FileNotFoundError in whichever test reaches it first."""
    missing = missing_tools()
    if missing:
        pytest.exit(missing_message(missing), returncode=pytest.ExitCode.USAGE_ERROR)


# -- network guard ---------------------------------------------------------------------------


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        ip = ipaddress.ip_address(host.strip("[]").split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback_host(host: str | bytes | None) -> bool:
    """True for 127.0.0.0/8, ::1 (also IPv4-mapped) and the usual names for them."""
    if host is None:
        return False
    text = host.decode() if isinstance(host, bytes) else str(host)
    ip = _ip(text)
    if ip is not None:
        return ip.is_loopback
    return text.lower().rstrip(".") in _LOOPBACK_NAMES


def _check_address(family: int, address: Any) -> None:
    if family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX (gpg-agent, etc.) is local by definition
    host = address[0] if isinstance(address, tuple) and address else address
    if not is_loopback_host(host):
        raise RuntimeError(f"test tried to reach non-loopback address {address!r}")


def _install_network_guard(mp: pytest.MonkeyPatch) -> None:
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_create_connection = socket.create_connection
    real_getaddrinfo = socket.getaddrinfo
    real_gethostbyname = socket.gethostbyname

    def connect(self: socket.socket, address: Any) -> None:
        _check_address(self.family, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check_address(self.family, address)
        return real_connect_ex(self, address)

    def create_connection(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        # Checked before the real function so a hostname is never even resolved.
        _check_address(socket.AF_INET, address)
        return real_create_connection(address, *args, **kwargs)

    def _name_allowed(host: Any) -> bool:
        # Numeric addresses need no DNS; connect() decides about them. Names other than
        # localhost would cause a DNS query to a non-loopback resolver.
        if host is None:
            return True
        text = host.decode() if isinstance(host, bytes) else str(host)
        return text == "" or _ip(text) is not None or is_loopback_host(text)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if not _name_allowed(host):
            # gaierror, not RuntimeError: the machine simply looks offline, so code under test
            # takes its normal "cannot resolve" path instead of crashing in an odd place.
            raise socket.gaierror(
                socket.EAI_NONAME, f"DNS lookup of {host!r} blocked by the test network guard"
            )
        return real_getaddrinfo(host, *args, **kwargs)

    def gethostbyname(host: str) -> str:
        if not _name_allowed(host):
            raise socket.gaierror(
                socket.EAI_NONAME, f"DNS lookup of {host!r} blocked by the test network guard"
            )
        return real_gethostbyname(host)

    mp.setattr(socket.socket, "connect", connect)
    mp.setattr(socket.socket, "connect_ex", connect_ex)
    mp.setattr(socket, "create_connection", create_connection)
    mp.setattr(socket, "getaddrinfo", getaddrinfo)
    mp.setattr(socket, "gethostbyname", gethostbyname)


@pytest.fixture(scope="session", autouse=True)
def _loopback_only() -> Iterator[None]:
    """Only loopback is reachable from Python, and no proxy is configured, for every test."""
    with pytest.MonkeyPatch.context() as mp:
        for name in _PROXY_VARS:
            mp.delenv(name, raising=False)
            mp.delenv(name.upper(), raising=False)
        # "*" means "never use a proxy" to httpx, urllib and requests alike.
        mp.setenv("no_proxy", "*")
        mp.setenv("NO_PROXY", "*")
        # boto3's credential chain must find neither the host's AWS credentials nor ask the
        # instance metadata service (169.254.169.254): S3 tests set what they need.
        for name in [n for n in os.environ if n.startswith("AWS_")]:
            mp.delenv(name)
        mp.setenv("AWS_EC2_METADATA_DISABLED", "true")
        mp.setenv("AWS_CONFIG_FILE", os.devnull)
        mp.setenv("AWS_SHARED_CREDENTIALS_FILE", os.devnull)
        _install_network_guard(mp)
        yield


# -- builders --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def test_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestKey]:
    key = make_key(tmp_path_factory.mktemp("archive-key"))
    yield key
    kill_agents(key)


# name -> (version, arch, build_deb keyword arguments)
_DEBS: dict[str, tuple[str, str, DebOptions]] = {
    "hello": ("1.0", "amd64", {"depends": "libgreet (>= 1.0)"}),
    "libgreet": ("1.0", "amd64", {"section": "libs"}),
    "greet-data": ("1.0", "all", {}),
    "tool": ("2.0", "amd64", {"depends": "libgreet | libalt"}),
    "libalt": ("1.0", "amd64", {"section": "libs"}),
    "virt-user": ("1.0", "all", {"depends": "mail-transport-agent"}),
    "mta-one": ("1.0", "all", {"provides": "mail-transport-agent", "section": "mail"}),
}


@pytest.fixture(scope="session")
def debs_dir(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The small standard package set, name -> .deb path (built once per session)."""
    out = tmp_path_factory.mktemp("debs")
    return {
        name: build_deb(out, name, version, arch, **kwargs)
        for name, (version, arch, kwargs) in _DEBS.items()
    }


@pytest.fixture
def archive(tmp_path: Path, test_key: TestKey, debs_dir: dict[str, Path]) -> Archive:
    """A signed archive (stable, main, amd64) with the standard packages, at tmp_path/upstream."""
    return build_archive(
        tmp_path / "upstream",
        test_key,
        {"main": list(debs_dir.values())},
        suite="stable",
        codename="stable",
        architectures=["amd64"],
    )


@pytest.fixture
def upstream(archive: Archive) -> Iterator[FaultServer]:
    """A FaultServer serving ``archive.root`` on 127.0.0.1."""
    with FaultServer(archive.root) as srv:
        yield srv


@pytest.fixture
def apt_client(tmp_path: Path) -> AptClient:
    """An isolated apt-get client rooted at tmp_path/aptroot (no sources yet)."""
    return AptClient(tmp_path / "aptroot")


@pytest.fixture
def make_server() -> Iterator[Callable[[Path], FaultServer]]:
    """Factory for extra FaultServers; all of them are stopped at teardown."""
    servers: list[FaultServer] = []

    def factory(root: Path) -> FaultServer:
        srv = FaultServer(root)
        servers.append(srv)
        return srv

    yield factory
    for srv in servers:
        srv.stop()


@pytest.fixture(scope="session")
def publish_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestKey]:
    """The key mirrorkit signs published trees with (not the upstream archive's key)."""
    key = make_key(tmp_path_factory.mktemp("publish-key"), uid="Ops <ops@example.org>")
    yield key
    kill_agents(key)
