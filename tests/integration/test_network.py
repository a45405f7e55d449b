"""The network users have, with real parts: Debian's tinyproxy in front of the test archive,
a TLS server with a throwaway CA made by openssl, an upstream that wants HTTP Basic credentials
from an apt auth.conf file. Every server listens on a loopback port and is stopped by the test.

The suite runs with NO_PROXY=* and no proxy variables (tests/conftest.py): a test that wants a
proxy from the environment sets the variables itself.
"""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirrorkit import mirror
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
from mirrorkit.fetch import Fetcher, RetryPolicy
from mirrorkit.models import UpdateResult
from mirrorkit.net.config import NetworkConfig
from mirrorkit.store import Store
from tests.helpers.archive import Archive
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.helpers.proxy import TinyProxy, free_port
from tests.helpers.tls import ThrowawayCA, make_ca
from tests.mk import run_cli

NAME = "up"
FAST = RetryPolicy(base_delay=0.01, max_delay=0.05)  # max_tries stays 5
DIRECT = NetworkConfig(proxy="none")


def add(store: Path, url: str, archive: Archive) -> None:
    # --no-check: these tests count what reaches the upstream and the proxies during updates
    # (test_mirror_edit.py tests what 'mirror add' asks the upstream, through a proxy too).
    r = run_cli(store, "mirror", "add", NAME, url, "stable", "--keyring",
                str(archive.key.public_keyring), "--no-check")  # fmt: skip
    assert r.exit_code == 0, r.output


def update(
    store: Path, network: NetworkConfig, *, max_tries: int = 5, **options: object
) -> UpdateResult:
    retry = RetryPolicy(max_tries=max_tries, base_delay=FAST.base_delay, max_delay=FAST.max_delay)
    opts = mirror.UpdateOptions(retry=retry, network=network, **options)  # type: ignore[arg-type]
    return mirror.update(Store(store), NAME, opts)


def contents(store: Path) -> dict[str, str]:
    """pool/ and meta/ (what a mirror holds, without the record's timestamps): path -> SHA256."""
    out = {}
    for sub in ("pool", "meta"):
        for p in sorted((store / sub).rglob("*")):
            if p.is_file():
                out[p.relative_to(store).as_posix()] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def gets(srv: FaultServer) -> list[str]:
    return [srv.url + p for p in srv.paths()]


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[TinyProxy]:
    with TinyProxy(tmp_path / "proxy") as p:
        yield p


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_upstream(archive: Archive, ca: ThrowawayCA) -> Iterator[FaultServer]:
    with FaultServer(archive.root, tls=ca.server_context()) as srv:
        yield srv


@pytest.fixture
def no_env_proxy(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No NO_PROXY=*: proxies given to the test apply (it sets any variable it needs)."""
    for name in ("no_proxy", "NO_PROXY", "SSL_CERT_FILE", "SSL_CERT_DIR"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# -- a real forward proxy ------------------------------------------------------------------------


@pytest.mark.parametrize("variable", ["http_proxy", "HTTP_PROXY", "ALL_PROXY"])
def test_every_request_goes_through_the_proxy_and_the_mirror_is_the_direct_one(
    tmp_path: Path,
    archive: Archive,
    upstream: FaultServer,
    proxy: TinyProxy,
    no_env_proxy: pytest.MonkeyPatch,
    variable: str,
) -> None:
    direct, proxied = tmp_path / "direct", tmp_path / "proxied"
    add(direct, upstream.url, archive)
    add(proxied, upstream.url, archive)
    update(direct, DIRECT)
    assert proxy.requests() == []
    upstream.clear_log()

    no_env_proxy.setenv(variable, proxy.url)
    result = update(proxied, NetworkConfig())
    assert result.summary.fetched == len(archive.debs)
    # The proxy's own log lists every request the archive served, and nothing else.
    assert sorted(proxy.requests()) == sorted(("GET", url) for url in gets(upstream))
    assert any(url.endswith(".deb") for _m, url in proxy.requests())
    assert contents(proxied) == contents(direct)


def test_proxy_credentials_from_the_proxy_url(
    tmp_path: Path, archive: Archive, upstream: FaultServer, no_env_proxy: pytest.MonkeyPatch
) -> None:
    secret = "pr0xy-Secret"
    with TinyProxy(tmp_path / "proxy", auth=("mk", secret)) as proxy:
        store = tmp_path / "store"
        add(store, upstream.url, archive)
        with pytest.raises(ProxyError) as info:
            update(store, NetworkConfig(proxy=proxy.url))
        err = info.value
        assert "407" in err.message and f"127.0.0.1:{proxy.port}" in err.message
        assert err.hint and "USER:PASSWORD@" in err.hint
        assert len(proxy.requests()) == 1  # refused: not retried
        assert upstream.paths() == []

        wrong = proxy.url_with("mk", "not-it")
        with pytest.raises(ProxyError) as info:
            update(store, NetworkConfig(proxy=wrong))
        assert "not-it" not in str(info.value) + str(info.value.hint)

        result = update(store, NetworkConfig(proxy=proxy.url_with("mk", secret)))
        assert result.summary.fetched == len(archive.debs)
        assert sorted(u for _m, u in proxy.requests()[2:]) == sorted(gets(upstream))
    assert not _grep(store, secret)


def test_a_tunnel_through_a_proxy_that_wants_credentials(
    tmp_path: Path,
    archive: Archive,
    tls_upstream: FaultServer,
    ca: ThrowawayCA,
    no_env_proxy: pytest.MonkeyPatch,
) -> None:
    with TinyProxy(tmp_path / "proxy", auth=("mk", "tunnel-Secret")) as proxy:
        store = tmp_path / "store"
        add(store, tls_upstream.url, archive)
        with pytest.raises(ProxyError) as info:
            update(store, NetworkConfig(proxy=proxy.url, ca_bundle=ca.cert))
        assert (
            "407" in info.value.message and info.value.hint and "USER:PASSWORD@" in info.value.hint
        )
        assert len(proxy.requests()) == 1 and tls_upstream.connections == 0
        good = NetworkConfig(proxy=proxy.url_with("mk", "tunnel-Secret"), ca_bundle=ca.cert)
        assert update(store, good).summary.fetched == len(archive.debs)
        assert {m for m, _u in proxy.requests()} == {"CONNECT"}


@pytest.mark.parametrize(
    "no_proxy", ["127.0.0.1", "127.0.0.0/8", ".example.org, 127.0.0.1", "localhost,*"]
)
def test_no_proxy_bypasses_the_proxy(
    tmp_path: Path,
    archive: Archive,
    upstream: FaultServer,
    proxy: TinyProxy,
    no_env_proxy: pytest.MonkeyPatch,
    no_proxy: str,
) -> None:
    no_env_proxy.setenv("HTTP_PROXY", proxy.url)
    no_env_proxy.setenv("no_proxy", no_proxy)
    store = tmp_path / "store"
    add(store, upstream.url, archive)
    update(store, NetworkConfig())
    assert proxy.requests() == []
    assert upstream.count("*.deb") == len(archive.debs)


def test_a_proxy_that_refuses_the_client_is_a_clear_error(
    tmp_path: Path, archive: Archive, upstream: FaultServer, no_env_proxy: pytest.MonkeyPatch
) -> None:
    with TinyProxy(tmp_path / "proxy", allow=("192.0.2.1",)) as proxy:
        store = tmp_path / "store"
        add(store, upstream.url, archive)
        no_env_proxy.setenv("http_proxy", proxy.url)
        with pytest.raises(ProxyError) as info:
            update(store, NetworkConfig())
        assert "HTTP 403" in info.value.message and f":{proxy.port}" in info.value.message
        assert info.value.hint and "administrator" in info.value.hint
    assert upstream.paths() == []


def test_the_proxy_apt_is_configured_with(
    tmp_path: Path,
    archive: Archive,
    upstream: FaultServer,
    proxy: TinyProxy,
    no_env_proxy: pytest.MonkeyPatch,
) -> None:
    conf = tmp_path / "apt.conf"
    conf.write_text(f'Acquire::http::Proxy "{proxy.url}";\n')
    no_env_proxy.setenv("APT_CONFIG", str(conf))
    store = tmp_path / "store"
    add(store, upstream.url, archive)
    update(store, NetworkConfig(proxy="apt"))
    assert sorted(u for _m, u in proxy.requests()) == sorted(gets(upstream))
    # apt's per-host DIRECT wins over its proxy.
    conf.write_text(
        f'Acquire::http::Proxy "{proxy.url}";\nAcquire::http::Proxy::127.0.0.1 "DIRECT";\n'
    )
    before = len(proxy.requests())
    update(tmp_path / "store", NetworkConfig(proxy="apt"))
    assert len(proxy.requests()) == before


def test_a_proxy_whose_name_does_not_resolve(
    tmp_path: Path, archive: Archive, upstream: FaultServer, no_env_proxy: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    add(store, upstream.url, archive)
    with pytest.raises(ProxyError) as info:
        update(store, NetworkConfig(proxy="http://proxy.invalid:3128"))
    assert "proxy.invalid" in info.value.message and "tries" not in info.value.message
    assert upstream.paths() == []


def test_an_unreachable_proxy_is_named(
    tmp_path: Path, archive: Archive, upstream: FaultServer, no_env_proxy: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    add(store, upstream.url, archive)
    dead = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ProxyError) as info:
        update(store, NetworkConfig(proxy=dead), max_tries=2)
    assert dead.removeprefix("http://") in info.value.message
    assert info.value.hint and "proxy" in info.value.hint
    assert upstream.paths() == []


# -- TLS with a private CA -------------------------------------------------------------------


def test_an_untrusted_certificate_is_refused_once_and_named(
    tmp_path: Path, archive: Archive, tls_upstream: FaultServer, no_env_proxy: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    add(store, tls_upstream.url, archive)
    with pytest.raises(TLSError) as info:
        update(store, NetworkConfig())
    err = info.value
    assert f"127.0.0.1:{tls_upstream.port}" in err.message
    assert "certificate" in err.message and "unable to get local issuer" in err.message
    assert err.hint and "--ca-bundle" in err.hint and "SSL_CERT_FILE" in err.hint
    # Not retried as if transient: one handshake for the one URL tried (InRelease), not five.
    assert tls_upstream.connections == 1
    assert tls_upstream.paths() == []


@pytest.mark.parametrize("how", ["ca_bundle", "SSL_CERT_FILE"])
def test_the_private_ca_is_trusted_when_given(
    tmp_path: Path,
    archive: Archive,
    upstream: FaultServer,
    tls_upstream: FaultServer,
    ca: ThrowawayCA,
    no_env_proxy: pytest.MonkeyPatch,
    how: str,
) -> None:
    direct, tls = tmp_path / "plain", tmp_path / "tls"
    add(direct, upstream.url, archive)
    add(tls, tls_upstream.url, archive)
    update(direct, DIRECT)
    if how == "ca_bundle":
        network = NetworkConfig(ca_bundle=ca.cert)
    else:
        no_env_proxy.setenv("SSL_CERT_FILE", str(ca.cert))
        network = NetworkConfig()
    result = update(tls, network)
    assert result.summary.fetched == len(archive.debs)
    assert contents(tls) == contents(direct)


def test_https_through_the_proxy_is_a_connect_tunnel(
    tmp_path: Path,
    archive: Archive,
    tls_upstream: FaultServer,
    proxy: TinyProxy,
    ca: ThrowawayCA,
    no_env_proxy: pytest.MonkeyPatch,
) -> None:
    store = tmp_path / "store"
    add(store, tls_upstream.url, archive)
    no_env_proxy.setenv("https_proxy", proxy.url)
    # http_proxy alone must not be used for an https:// upstream.
    no_env_proxy.setenv("http_proxy", f"http://127.0.0.1:{free_port()}")
    result = update(store, NetworkConfig(ca_bundle=ca.cert))
    assert result.summary.fetched == len(archive.debs)
    seen = proxy.requests()
    assert seen and all(r == ("CONNECT", f"127.0.0.1:{tls_upstream.port}") for r in seen)
    assert tls_upstream.count("*.deb") == len(archive.debs)
    # Through the tunnel the origin's certificate is still checked.
    other = tmp_path / "other"
    add(other, tls_upstream.url, archive)
    with pytest.raises(TLSError):
        update(other, NetworkConfig())


def test_a_proxy_that_refuses_the_tunnel_is_a_clear_error(
    tmp_path: Path,
    archive: Archive,
    tls_upstream: FaultServer,
    ca: ThrowawayCA,
    no_env_proxy: pytest.MonkeyPatch,
) -> None:
    # As most real proxies: CONNECT to port 443 only.
    with TinyProxy(tmp_path / "proxy", connect_ports=(443,)) as proxy:
        store = tmp_path / "store"
        add(store, tls_upstream.url, archive)
        with pytest.raises(ProxyError) as info:
            update(store, NetworkConfig(proxy=proxy.url, ca_bundle=ca.cert))
        assert "403" in info.value.message and "proxy" in info.value.message
        assert info.value.hint and "NO_PROXY" in info.value.hint
        assert len(proxy.requests()) == 1
    assert tls_upstream.connections == 0


# -- an upstream that wants credentials ----------------------------------------------------------


PASSWORD = "upstream-Pa55word"


def _grep(where: Path, needle: str) -> list[str]:
    found = subprocess.run(
        ["grep", "-r", "-l", "-a", "-F", needle, str(where)], capture_output=True, text=True
    )
    return found.stdout.splitlines()


def test_basic_auth_from_an_auth_conf_file_and_no_trace_of_it(
    tmp_path: Path,
    archive: Archive,
    ca: ThrowawayCA,
    no_env_proxy: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with FaultServer(archive.root, tls=ca.server_context(), auth=("mk", PASSWORD)) as srv:
        store = tmp_path / "store"
        add(store, srv.url, archive)
        with pytest.raises(AuthError) as info:
            update(store, NetworkConfig(ca_bundle=ca.cert, auth_files=()))
        assert "HTTP 401" in info.value.message
        assert info.value.hint and f"machine 127.0.0.1:{srv.port} login USER" in info.value.hint
        assert srv.count("*/InRelease") == 1  # not retried

        auth = tmp_path / "auth.conf"
        auth.write_text(
            "# another repository first: its entry must not be used\n"
            f"machine 127.0.0.1:{srv.port}/elsewhere login other password wrong\n"
            f"machine 127.0.0.1:{srv.port}\nlogin mk\npassword {PASSWORD}\n"
        )
        auth.chmod(0o600)
        result = update(store, NetworkConfig(ca_bundle=ca.cert, auth_files=(auth,)))
        assert result.summary.fetched == len(archive.debs)
        for args in (("mirror", "list"), ("mirror", "show", NAME), ("mirror", "show", NAME,
                     "--json")):  # fmt: skip
            r = run_cli(store, *args)
            assert r.exit_code == 0 and PASSWORD not in r.output
        snap = run_cli(store, "snapshot", "create", "s1", "--from-mirror", NAME)
        assert snap.exit_code == 0, snap.output
        assert PASSWORD not in snap.output

        # Wrong credentials: refused, named, not retried, the secret not shown.
        auth.write_text(f"machine 127.0.0.1 login mk password not-{PASSWORD}\n")
        with pytest.raises(AuthError) as info:
            update(store, NetworkConfig(ca_bundle=ca.cert, auth_files=(auth,)), max_tries=3)
        assert "refused the credentials" in str(info.value.hint)
    assert not _grep(store, PASSWORD)
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err


def test_credentials_without_a_scheme_are_never_sent_over_http(
    tmp_path: Path, archive: Archive, no_env_proxy: pytest.MonkeyPatch
) -> None:
    # apt_auth.conf(5): a machine entry without a protocol matches https only.
    with FaultServer(archive.root, auth=("mk", PASSWORD)) as srv:
        store = tmp_path / "store"
        add(store, srv.url, archive)
        auth = tmp_path / "auth.conf"
        auth.write_text(f"machine 127.0.0.1:{srv.port} login mk password {PASSWORD}\n")
        with pytest.raises(AuthError):
            update(store, NetworkConfig(auth_files=(auth,)))
        assert all("authorization" not in h for _m, _p, h in srv.requests)
        auth.write_text(f"machine http://127.0.0.1:{srv.port} login mk password {PASSWORD}\n")
        update(store, NetworkConfig(auth_files=(auth,)))
        assert srv.count("*.deb") == len(archive.debs)
    assert not _grep(store, PASSWORD)


def test_credentials_in_the_url_stay_out_of_records_output_and_errors(
    tmp_path: Path,
    archive: Archive,
    ca: ThrowawayCA,
    publish_key: TestKey,
    capfd: pytest.CaptureFixture[str],
) -> None:
    with FaultServer(archive.root, tls=ca.server_context(), auth=("mk", PASSWORD)) as srv:
        store = tmp_path / "store"
        url = srv.url.replace("https://", f"https://mk:{PASSWORD}@")
        r = run_cli(store, "mirror", "add", NAME, url, "stable", "--keyring",
                    str(archive.key.public_keyring))  # fmt: skip
        assert r.exit_code == 0 and PASSWORD not in r.output
        result = update(store, NetworkConfig(ca_bundle=ca.cert, auth_files=()))
        assert result.summary.fetched == len(archive.debs)
        assert all("authorization" in h for _m, _p, h in srv.requests)
        outputs = [
            run_cli(store, *args).output
            for args in (("mirror", "list"), ("mirror", "show", NAME, "--json"))
        ]
        assert all(PASSWORD not in o and f"https://127.0.0.1:{srv.port}" in o for o in outputs)
        assert run_cli(store, "snapshot", "create", "s1", "--from-mirror", NAME).exit_code == 0
        # The one place that holds them: the store's auth file, readable by its owner only.
        auth = store / "auth.conf"
        assert _grep(store, PASSWORD) == [str(auth)]
        assert auth.stat().st_mode & 0o777 == 0o600
        # Neither a published tree nor a bundle (its tar, decompressed) carries them.
        tree, bundle = tmp_path / "published", tmp_path / "out.bundle"
        for args in (
            ("publish", "fs", "s1", str(tree)),
            ("bundle", "export", "s1", "-o", str(bundle)),
        ):
            r = run_cli(store, *args, "--key", publish_key.fingerprint,
                        gnupghome=publish_key.gnupghome)  # fmt: skip
            assert r.exit_code == 0 and PASSWORD not in r.output, r.output
        assert any(tree.rglob("InRelease")) and not _grep(tree, PASSWORD)
        tar = subprocess.run(["zstd", "-dc", str(bundle)], capture_output=True, check=True).stdout
        assert b"snapshot.json" in tar and PASSWORD.encode() not in tar

        # A URL that is wrong: the error shows it without the credentials.
        other = tmp_path / "other"
        add(other, url + "/nothing-here", archive)
        with pytest.raises(HTTPStatusError) as info:
            update(other, NetworkConfig(ca_bundle=ca.cert, auth_files=()))
        text = f"{info.value} {info.value.hint} {info.value.url}"
        assert PASSWORD not in text and f"https://127.0.0.1:{srv.port}/nothing-here" in text
    out, err = capfd.readouterr()
    assert PASSWORD not in out + err


def test_an_error_never_shows_the_password_of_a_url() -> None:
    err = HTTPStatusError(f"https://mk:{PASSWORD}@h/x", "HTTP 404 Not Found", status=404)
    assert PASSWORD not in str(err) and "https://***@h/x" in str(err)


# -- errors by cause -----------------------------------------------------------------------------


def test_404_says_which_part_of_the_url_to_check(
    tmp_path: Path, archive: Archive, upstream: FaultServer
) -> None:
    store = tmp_path / "store"
    r = run_cli(store, "mirror", "add", NAME, upstream.url, "stabel", "--keyring",
                str(archive.key.public_keyring))  # fmt: skip
    assert r.exit_code == 1 and "there is no suite 'stabel'" in r.stderr  # asked at once
    assert "--no-check" in r.stderr and upstream.count("*/Release") == 1
    r = run_cli(store, "mirror", "add", NAME, upstream.url, "stabel", "--keyring",
                str(archive.key.public_keyring), "--no-check")  # fmt: skip
    assert r.exit_code == 0, r.output
    with pytest.raises(HTTPStatusError) as info:
        update(store, DIRECT)
    assert info.value.status == 404
    hint = str(info.value.hint)
    assert "suite 'stabel'" in hint and "mid-sync" not in hint
    assert upstream.count("*/Release") == 2  # a 404 is not retried (one at add, one now)

    # A file the signed index names but the server lacks: that is mid-sync.
    store2 = tmp_path / "store2"
    add(store2, upstream.url, archive)
    upstream.add_fault("*.deb", "not_found", times=-1)
    with pytest.raises(HTTPStatusError) as info:
        update(store2, DIRECT)
    assert "mid-sync" in str(info.value.hint)


def test_connection_refused_is_named_and_retried(tmp_path: Path, archive: Archive) -> None:
    store = tmp_path / "store"
    port = free_port()
    add(store, f"http://127.0.0.1:{port}", archive)
    with pytest.raises(ConnectionFailedError) as info:
        update(store, DIRECT, max_tries=2)
    assert "gave up after 2 tries" in info.value.message
    assert info.value.hint and f"nothing accepts connections on 127.0.0.1:{port}" in info.value.hint


def test_an_unknown_host_is_a_dns_error_at_once(tmp_path: Path, archive: Archive) -> None:
    store = tmp_path / "store"
    add(store, "http://mirror.invalid/debian", archive)
    with pytest.raises(DNSError) as info:
        update(store, DIRECT)
    assert "mirror.invalid" in info.value.message and "tries" not in info.value.message
    assert info.value.hint and "--proxy" in info.value.hint


def test_a_silent_server_is_a_timeout(upstream: FaultServer) -> None:
    upstream.add_fault("*/InRelease", "slow", delay=2.0, times=-1)

    async def main() -> None:
        policy = RetryPolicy(max_tries=2, base_delay=0.01)
        async with Fetcher(retry=policy, timeout=0.3, network=DIRECT) as fetcher:
            await fetcher.get_bytes(f"{upstream.url}/dists/stable/InRelease")

    with pytest.raises(NetworkTimeoutError) as info:
        asyncio.run(main())
    assert "ReadTimeout" in info.value.message and "gave up after 2 tries" in info.value.message
    assert info.value.hint and "did not answer in time" in info.value.hint


def test_server_errors_are_retried_then_typed(
    tmp_path: Path, archive: Archive, upstream: FaultServer
) -> None:
    store = tmp_path / "store"
    add(store, upstream.url, archive)
    upstream.add_fault("*/InRelease", "status", code=502, times=-1)
    with pytest.raises(HTTPStatusError) as info:
        update(store, DIRECT, max_tries=3)
    assert info.value.status == 502 and upstream.count("*/InRelease") == 3
    assert isinstance(info.value, FetchError) and "--max-tries" in str(info.value.hint)


# -- the command line and profiles -------------------------------------------------------------


def test_cli_options_proxy_ca_bundle_auth_file(
    tmp_path: Path, archive: Archive, ca: ThrowawayCA, no_env_proxy: pytest.MonkeyPatch
) -> None:
    with (
        FaultServer(archive.root, tls=ca.server_context(), auth=("mk", PASSWORD)) as srv,
        TinyProxy(tmp_path / "proxy") as proxy,
    ):
        store = tmp_path / "store"
        add(store, srv.url, archive)
        auth = tmp_path / "auth.conf"
        auth.write_text(f"machine 127.0.0.1 login mk password {PASSWORD}\n")
        r = run_cli(store, "mirror", "update", NAME, "--max-tries", "1")
        assert r.exit_code == 1 and "TLS" in r.stderr and "--ca-bundle" in r.stderr
        # Global options before the command or after it.
        r = run_cli(store, "--ca-bundle", str(ca.cert), "mirror", "update", NAME, "--proxy",
                    proxy.url, "--auth-file", str(tmp_path / "empty.conf"))  # fmt: skip
        assert r.exit_code == 2 and "empty.conf: cannot read the auth file" in r.stderr
        r = run_cli(store, "--ca-bundle", str(ca.cert), "mirror", "update", NAME, "--proxy",
                    proxy.url, "--auth-file", str(auth))  # fmt: skip
        assert r.exit_code == 0, r.output
        assert PASSWORD not in r.output
        assert proxy.requests() and {m for m, _u in proxy.requests()} == {"CONNECT"}
        assert srv.count("*.deb") == len(archive.debs)


def test_profile_network_table(
    tmp_path: Path,
    archive: Archive,
    ca: ThrowawayCA,
    proxy: TinyProxy,
    no_env_proxy: pytest.MonkeyPatch,
) -> None:
    with FaultServer(archive.root, tls=ca.server_context(), auth=("mk", PASSWORD)) as srv:
        profiles = tmp_path / "profiles"
        profiles.mkdir()
        (profiles / "ca.pem").write_bytes(ca.cert.read_bytes())
        (profiles / "auth.conf").write_text(f"machine 127.0.0.1 login mk password {PASSWORD}\n")
        profile = profiles / "net.toml"
        profile.write_text(
            f'[[upstream]]\nname = "base"\nurl = "{srv.url}"\nsuite = "stable"\n'
            f'keyring = "{archive.key.public_keyring}"\n\n'
            f'[network]\nproxy = "{proxy.url}"\nca_bundle = "ca.pem"\nauth_file = ["auth.conf"]\n'
        )
        store = tmp_path / "store"
        r = run_cli(store, "sync", str(profile), "--no-publish")
        assert r.exit_code == 0, r.output
        assert srv.count("*.deb") == len(archive.debs)
        tunnels = len(proxy.requests())
        assert tunnels and {m for m, _u in proxy.requests()} == {"CONNECT"}
        # The command line wins over the profile: no proxy this time.
        srv.clear_log()
        r = run_cli(store, "--proxy", "none", "sync", str(profile), "--no-publish")
        assert r.exit_code == 0, r.output
        assert len(proxy.requests()) == tunnels and srv.count("*/InRelease") == 1

        profile.write_text(profile.read_text() + 'timeout = "5"\n')
        r = run_cli(store, "sync", str(profile), "--no-publish")
        assert r.exit_code == 1 and "network.timeout" in r.stderr


def test_python_api_takes_the_network_options(
    tmp_path: Path,
    archive: Archive,
    upstream: FaultServer,
    proxy: TinyProxy,
    no_env_proxy: pytest.MonkeyPatch,
) -> None:
    import mirrorkit

    store = tmp_path / "store"
    add(store, upstream.url, archive)
    result = mirrorkit.mirror_update(NAME, proxy=proxy.url, auth_file=[], store=store)
    assert result.summary.fetched == len(archive.debs)
    assert sorted(u for _m, u in proxy.requests()) == sorted(gets(upstream))


def test_a_record_from_before_shows_no_credentials(tmp_path: Path, archive: Archive) -> None:
    # Records written before URL credentials moved to the store's auth file still hold them:
    # what mirror list and show print is redacted all the same.
    store = tmp_path / "store"
    add(store, "https://127.0.0.1:9/debian", archive)
    record = store / "mirrors" / f"{NAME}.json"
    record.write_text(
        record.read_text().replace("https://127.0.0.1:9", f"https://mk:{PASSWORD}@127.0.0.1:9")
    )
    assert PASSWORD in record.read_text()
    for args in (("mirror", "list"), ("mirror", "show", NAME), ("mirror", "show", NAME, "--json")):
        r = run_cli(store, *args)
        assert r.exit_code == 0 and PASSWORD not in r.output and "***@127.0.0.1:9" in r.output
