"""Proxy selection, NO_PROXY, apt's auth.conf matching rules, redaction, Happy Eyeballs."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirrorkit.errors import FetchError, MirrorkitError, NetworkConfigError
from mirrorkit.net.auth import Credentials, parse
from mirrorkit.net.config import NetworkConfig, bypassed, network_config, resolve
from mirrorkit.net.redact import redact_url
from mirrorkit.transport import connect_first

# -- redaction -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("https://user:secret@deb.example.org/debian", "https://***@deb.example.org/debian"),
        ("https://TOKEN@packages.example/x", "https://***@packages.example/x"),
        ("https://token:@h/x", "https://***@h/x"),
        ("http://u:p@ss@h:8080/a", "http://***@h:8080/a"),
        (
            "fetch https://a:b@h/x failed; proxy http://c:d@p:3128",
            "fetch https://***@h/x failed; proxy http://***@p:3128",
        ),
        ("https://h/pool/a@b.deb", "https://h/pool/a@b.deb"),
        ("mail root@example.org", "mail root@example.org"),
    ],
)
def test_redact_url(text: str, shown: str) -> None:
    assert redact_url(text) == shown


def test_every_error_message_is_redacted() -> None:
    err = FetchError(
        "https://u:hunter2@h/dists/x/InRelease", "HTTP 404 Not Found", "see http://a:b@c"
    )
    assert "hunter2" not in str(err) and "a:b" not in str(err.hint)
    assert "hunter2" not in MirrorkitError("at https://u:hunter2@h").message


def test_network_config_repr_hides_the_proxy_password() -> None:
    assert "pw" not in repr(NetworkConfig(proxy="http://u:pw@proxy:3128"))


# -- proxies -------------------------------------------------------------------------------------


def rules(config: NetworkConfig, **env: str) -> dict[str, str | None]:
    net = resolve(NetworkConfig(config.proxy, auth_files=()), env)
    return {
        url: net.proxies.proxy_for(*url.split("://"))
        for url in ("http://deb.example.org", "https://deb.example.org")
    }


def test_environment_lower_case_wins_as_in_curl() -> None:
    got = rules(
        NetworkConfig(),
        http_proxy="http://lower:1",
        HTTP_PROXY="http://upper:1",
        HTTPS_PROXY="upper-s:3128",
    )
    assert got == {
        "http://deb.example.org": "http://lower:1",
        "https://deb.example.org": "http://upper-s:3128",  # no scheme: http://, as curl
    }


def test_all_proxy_is_the_fallback_for_both() -> None:
    got = rules(NetworkConfig(), ALL_PROXY="http://all:3128", https_proxy="http://s:1")
    assert got == {
        "http://deb.example.org": "http://all:3128",
        "https://deb.example.org": "http://s:1",
    }


def test_explicit_proxy_and_none() -> None:
    env = {"https_proxy": "http://env:1"}
    assert set(rules(NetworkConfig(proxy="http://p:3128"), **env).values()) == {"http://p:3128"}
    assert set(rules(NetworkConfig(proxy="none"), **env).values()) == {None}
    untrusted = resolve(NetworkConfig(trust_env=False, auth_files=()), env)
    assert untrusted.proxies.proxy_for("https", "deb.example.org") is None


def test_unsupported_proxy_scheme_is_refused_without_showing_its_password() -> None:
    with pytest.raises(NetworkConfigError) as info:
        resolve(NetworkConfig(proxy="socks5://u:secret@p:1080", auth_files=()), {})
    assert "secret" not in info.value.message and "socks5" in info.value.message


@pytest.mark.parametrize(
    ("host", "entries", "bypass"),
    [
        ("deb.example.org", "*", True),
        ("deb.example.org", "example.org", True),
        ("example.org", ".example.org", True),
        ("deb.example.org", ".example.org", True),
        ("badexample.org", "example.org", False),
        ("deb.example.org", "other.org, deb.example.org:8080", True),
        ("10.1.2.3", "10.0.0.0/8", True),
        ("11.1.2.3", "10.0.0.0/8", False),
        ("10.1.2.3", "10.1.2.3", True),
        ("::1", "[::1]", True),
        ("fd00::5", "fd00::/8", True),
        ("DEB.Example.ORG.", "example.org", True),
        ("deb.example.org", "", False),
    ],
)
def test_no_proxy_as_curl_reads_it(host: str, entries: str, bypass: bool) -> None:
    parsed = tuple(e.strip().lower() for e in entries.split(",") if e.strip())
    assert bypassed(host, parsed) is bypass


def test_proxy_from_apt_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "apt.conf"
    conf.write_text(
        'Acquire::http::Proxy "http://aptproxy:3142";\n'
        'Acquire::http::Proxy::internal.example "DIRECT";\n'
        'Acquire::https::Proxy::secure.example "http://other:8080";\n'
    )
    monkeypatch.setenv("APT_CONFIG", str(conf))
    net = resolve(NetworkConfig(proxy="apt", auth_files=()), {"https_proxy": "http://env:1"})
    p = net.proxies.proxy_for
    assert p("http", "deb.debian.org") == "http://aptproxy:3142"
    # Acquire::https::* defaults to Acquire::http::*, as apt-transport-https(1) says.
    assert p("https", "deb.debian.org") == "http://aptproxy:3142"
    assert p("http", "internal.example") is None
    assert p("https", "internal.example") is None
    assert p("https", "secure.example") == "http://other:8080"


def test_apt_without_a_proxy_falls_back_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "apt.conf"
    conf.write_text('APT::Get::Assume-Yes "true";\n')
    monkeypatch.setenv("APT_CONFIG", str(conf))
    net = resolve(NetworkConfig(proxy="apt", auth_files=()), {"https_proxy": "http://env:1"})
    assert net.proxies.proxy_for("https", "deb.debian.org") == "http://env:1"
    assert net.proxies.proxy_for("http", "deb.debian.org") is None


# -- CA store --------------------------------------------------------------------------------


def test_missing_ca_bundle_is_named(tmp_path: Path) -> None:
    with pytest.raises(NetworkConfigError) as info:
        resolve(NetworkConfig(ca_bundle=tmp_path / "nope.pem"), {})
    assert "nope.pem" in info.value.message and info.value.hint and "--ca-bundle" in info.value.hint


def test_ssl_cert_file_and_dir_are_read(tmp_path: Path) -> None:
    pem = tmp_path / "ca.pem"
    pem.write_text("")
    net = resolve(NetworkConfig(auth_files=()), {"SSL_CERT_FILE": str(pem), "SSL_CERT_DIR": "/x"})
    assert (net.ca_file, net.ca_dir) == (str(pem), "/x")
    # An explicit bundle wins over the environment.
    net = resolve(NetworkConfig(ca_bundle=pem, auth_files=()), {"SSL_CERT_DIR": "/x"})
    assert (net.ca_file, net.ca_dir) == (str(pem), None)


# -- auth.conf -----------------------------------------------------------------------------------


def creds(text: str) -> Credentials:
    return Credentials(parse(text, "auth.conf"))


@pytest.mark.parametrize(
    "entry",
    [
        "machine example.org login apt password debian",
        "machine example.org\nlogin apt\npassword debian",
        "machine example.org/deb login apt password debian",
        "machine example.org/debian login apt password debian",
        "machine example.org/debian/ login apt password debian",
        "machine https://example.org login apt password debian",
    ],
)
def test_apt_auth_conf_man_page_entries_that_apply(entry: str) -> None:
    # apt_auth.conf(5)'s EXAMPLE for "deb https://example.org/debian bookworm main".
    found = creds(entry).find("https://example.org/debian/dists/bookworm/InRelease")
    assert found is not None and (found.login, found.password) == ("apt", "debian")


@pytest.mark.parametrize(
    "entry",
    [
        "machine example.org:443 login apt password debian",
        "machine example.org/deb/ login apt password debian",
        "machine example.org/ubuntu login apt password debian",
        "machine example.orga login apt password debian",
        "machine example.net login apt password debian",
    ],
)
def test_apt_auth_conf_man_page_entries_that_do_not(entry: str) -> None:
    assert creds(entry).find("https://example.org/debian/dists/bookworm/InRelease") is None


def test_an_entry_without_a_protocol_matches_https_only() -> None:
    c = creds("machine example.org login apt password debian")
    assert c.find("http://example.org/debian/x") is None
    assert c.find("tor+https://example.org/debian/x") is not None
    explicit = creds("machine http://example.org login apt password debian")
    assert explicit.find("http://example.org/debian/x") is not None
    assert explicit.find("https://example.org/debian/x") is None


def test_ports_paths_and_the_first_match() -> None:
    c = creds(
        "# comments and unknown tokens are skipped\n"
        "machine example.org:8443/a login one password 1 account x\n"
        "machine example.org login two password 2 # trailing comment\n"
    )
    first = c.find("https://example.org:8443/a/b")
    second = c.find("https://example.org:8443/b")
    assert first is not None and first.login == "one"
    assert second is not None and second.login == "two"
    assert "1" not in repr(first) and "password" not in repr(first)


def test_netrc_default_and_macdef_give_no_credentials() -> None:
    c = creds("default login anon password x\nmacdef init\ncd /\n\nmachine h login u password p")
    assert c.find("https://elsewhere/x") is None
    found = c.find("https://h/x")
    assert found is not None and found.login == "u"


def test_an_unreadable_auth_file_is_an_error_only_when_named(tmp_path: Path) -> None:
    missing = tmp_path / "auth.conf"
    with pytest.raises(NetworkConfigError) as info:
        Credentials.load([missing], required=True)
    assert str(missing) in info.value.message
    assert not Credentials.load([missing], required=False)


# -- Happy Eyeballs --------------------------------------------------------------------------


@pytest.fixture
def blackhole() -> Iterator[tuple[str, int]]:
    """A listening socket whose accept queue is full: the kernel drops further SYNs, as a
    firewall that drops packets does; a connect to it hangs."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(0)
    filler: list[socket.socket] = []
    try:
        for _ in range(4):  # fill the queue (Linux accepts backlog + 1)
            s = socket.socket()
            s.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                s.connect(lsock.getsockname())
            filler.append(s)
        time.sleep(0.05)
        yield lsock.getsockname()
    finally:
        for s in filler:
            s.close()
        lsock.close()


def test_an_address_that_drops_packets_does_not_stop_the_next(
    blackhole: tuple[str, int],
) -> None:
    good = socket.create_server(("127.0.0.1", 0))
    try:
        addrs = [
            (socket.AF_INET, socket.SOCK_STREAM, 6, blackhole),
            (socket.AF_INET, socket.SOCK_STREAM, 6, good.getsockname()),
        ]

        async def main() -> tuple[str, int]:
            # The black hole's connect never completes (its SYNs are dropped until the kernel
            # gives up, about two minutes): the good address can only win if its attempt
            # started while the first one was still pending. The bound only stops a hang.
            sock = await asyncio.wait_for(connect_first(addrs, delay=0.1), 60)
            try:
                peer: tuple[str, int] = sock.getpeername()
                return peer
            finally:
                sock.close()

        assert asyncio.run(main()) == good.getsockname()
    finally:
        good.close()


def test_every_address_refused_reports_them(tmp_path: Path) -> None:
    ports = []
    for _ in range(2):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            ports.append(s.getsockname()[1])
    addrs = [(socket.AF_INET, socket.SOCK_STREAM, 6, ("127.0.0.1", p)) for p in ports]
    with pytest.raises(OSError) as info:
        asyncio.run(connect_first(addrs, delay=0.05))
    assert info.value.errno is not None


def test_options_override_the_profile() -> None:
    profile = NetworkConfig(proxy="http://p:1", ca_bundle=Path("/ca.pem"), auth_files=(Path("/a"),))
    assert network_config(base=profile) == profile
    got = network_config("none", "/other.pem", ["/b", "/c"], base=profile)
    assert got == NetworkConfig("none", Path("/other.pem"), (Path("/b"), Path("/c")))
    assert network_config(auth_file="/x").auth_files == (Path("/x"),)


def test_profile_network_table_paths_are_relative_to_the_profile(tmp_path: Path) -> None:
    from mirrorkit.profile import load_profile

    profile = tmp_path / "p.toml"
    profile.write_text(
        '[[upstream]]\nname = "u"\nurl = "https://h/debian"\nsuite = "stable"\n'
        'keyring = "k.gpg"\n[network]\nproxy = "apt"\nca_bundle = "ca.pem"\n'
        'auth_file = "~/auth.conf"\n'
    )
    net = load_profile(profile).network
    assert net.proxy == "apt" and net.ca_bundle == tmp_path / "ca.pem"
    assert net.auth_files == (Path.home() / "auth.conf",)
