"""mirrorkit serve: real apt installs from it; it never serves anything outside the tree."""

from __future__ import annotations

import email.utils
import http.client
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mirrorkit import serve
from tests.helpers.apt import AptClient
from tests.helpers.gpgkeys import TestKey
from tests.mk import run_cli

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory, debs_dir: dict[str, Path],
         publish_key: TestKey) -> Path:  # fmt: skip
    """A tree published by 'publish fs' (suite prod), with a secret next to it."""
    base = tmp_path_factory.mktemp("serve")
    store, out = base / "store", base / "tree"
    debs = str(next(iter(debs_dir.values())).parent)
    r = run_cli(store, "snapshot", "create", "s", "--from-debs", debs)
    assert r.exit_code == 0, r.output
    r = run_cli(store, "publish", "fs", "s", str(out), "--suite", "prod", "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    (base / "secret.txt").write_text("outside the tree\n")
    (out / "escape").symlink_to(base)  # a symlink pointing outside: never followed
    (out / "escape-file").symlink_to(base / "secret.txt")
    return out


@pytest.fixture(scope="module")
def server(tree: Path) -> Iterator[serve.TreeServer]:
    srv = serve.make_server(tree, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()
        thread.join(5)


def _request(
    srv: serve.TreeServer, path: str, method: str = "GET", **headers: str
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_port, timeout=10)
    try:
        # http.client sends the path as given: no normalisation of '..' or '%2e'.
        conn.request(method, path, headers={k.replace("_", "-"): v for k, v in headers.items()})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_apt_installs_from_serve(
    tree: Path, server: serve.TreeServer, apt_client: AptClient
) -> None:
    key = next(tree.glob("mirrorkit-archive-*.gpg"))
    apt_client.add_source(server.url, "prod", ["main"], key)
    upd = apt_client.update()
    assert upd.returncode == 0, upd.stdout
    inst = apt_client.install_download_only("hello", "tool")
    assert inst.returncode == 0, inst.stdout
    assert apt_client.downloaded() == ["hello_1.0_amd64.deb", "libgreet_1.0_amd64.deb",
                                       "tool_2.0_amd64.deb"]  # fmt: skip
    # A second update: If-Modified-Since, answered 304, so apt says "Hit".
    again = apt_client.update()
    assert again.returncode == 0 and "Hit:" in again.stdout, again.stdout


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/../secret.txt", 403),
        ("/%2e%2e/secret.txt", 403),
        ("/%2E%2E/secret.txt", 403),
        ("/dists/prod/%2e%2e/%2e%2e/%2e%2e/secret.txt", 403),
        ("/pool/..%2f..%2fsecret.txt", 403),
        ("/escape/secret.txt", 403),
        ("/escape-file", 403),
        ("//etc/passwd", 404),  # an absolute path is taken relative to the tree
        ("/etc/passwd", 404),
        ("http://127.0.0.1/../secret.txt", 400),
        ("/dists/prod/InRelease%00", 400),
        ("/dists/prod/", 404),  # no directory listings
        ("/", 404),
        ("/pool", 404),
    ],
)
def test_nothing_outside_the_tree_and_no_listings(
    server: serve.TreeServer, path: str, status: int
) -> None:
    code, _, body = _request(server, path)
    assert code == status, body
    assert b"outside the tree" not in body and b"root:" not in body


def test_symlinked_suite_is_followed_and_types_are_right(server: serve.TreeServer) -> None:
    code, headers, body = _request(server, "/dists/prod/InRelease")
    assert code == 200 and body.startswith(b"-----BEGIN PGP SIGNED MESSAGE-----")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == str(len(body))
    for path, ctype in [
        ("/dists/prod/Release", "text/plain; charset=utf-8"),
        ("/dists/prod/Release.gpg", "application/pgp-signature"),
        ("/dists/prod/main/binary-amd64/Packages.gz", "application/gzip"),
        ("/dists/prod/main/binary-amd64/Packages.xz", "application/x-xz"),
        ("/pool/main/h/hello/hello_1.0_amd64.deb", "application/vnd.debian.binary-package"),
    ]:
        code, headers, _ = _request(server, path, "HEAD")
        assert (code, headers["content-type"]) == (200, ctype), path
    code, headers, body = _request(server, "/dists/prod/InRelease", "HEAD")
    assert code == 200 and body == b"" and int(headers["content-length"]) > 0


def test_range_requests(server: serve.TreeServer, tree: Path) -> None:
    deb = "/pool/main/h/hello/hello_1.0_amd64.deb"
    data = (tree / deb.lstrip("/")).read_bytes()
    size = len(data)
    code, headers, body = _request(server, deb, Range="bytes=10-19")
    assert (code, body, headers["content-range"]) == (206, data[10:20], f"bytes 10-19/{size}")
    code, _, body = _request(server, deb, Range="bytes=100-")
    assert (code, body) == (206, data[100:])
    code, _, body = _request(server, deb, Range="bytes=-7")
    assert (code, body) == (206, data[-7:])
    code, _, body = _request(server, deb, Range=f"bytes=0-{size * 2}")
    assert (code, body) == (206, data)
    code, headers, _ = _request(server, deb, Range=f"bytes={size}-")
    assert (code, headers["content-range"]) == (416, f"bytes */{size}")
    code, _, body = _request(server, deb, Range="bytes=0-1,5-6")  # several ranges: whole file
    assert (code, body) == (200, data)
    code, _, body = _request(server, deb, Range="lines=1-2")
    assert (code, body) == (200, data)
    # If-Range: the range only for the version the client has.
    _, headers, _ = _request(server, deb, "HEAD")
    code, _, body = _request(server, deb, Range="bytes=0-3", If_Range=headers["etag"])
    assert (code, body) == (206, data[:4])
    code, _, body = _request(server, deb, Range="bytes=0-3", If_Range='"other"')
    assert (code, body) == (200, data)
    code, _, body = _request(server, deb, Range="bytes=0-3", If_Range=headers["last-modified"])
    assert (code, body) == (206, data[:4])


def test_if_modified_since(server: serve.TreeServer, tree: Path) -> None:
    path = "/dists/prod/InRelease"
    mtime = int((tree / "dists/prod/InRelease").stat().st_mtime)
    code, headers, _ = _request(server, path)
    assert headers["last-modified"] == email.utils.formatdate(mtime, usegmt=True)
    code, headers, body = _request(server, path, If_Modified_Since=headers["last-modified"])
    assert (code, body) == (304, b"") and "etag" in headers
    older = email.utils.formatdate(mtime - 10, usegmt=True)
    code, _, body = _request(server, path, If_Modified_Since=older)
    assert code == 200 and body
    code, _, _ = _request(server, path, If_None_Match=headers["etag"])
    assert code == 304
    code, _, _ = _request(server, path, If_Modified_Since="not a date")
    assert code == 200


def test_serve_cli_on_port_0_logs_requests(tree: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "mirrorkit", "serve", str(tree), "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith(f"serving {tree} at http://127.0.0.1:"), line
        port = int(line.split("http://127.0.0.1:")[1].split("/")[0])
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.request("GET", "/dists/prod/Release")
        resp = conn.getresponse()
        assert resp.status == 200 and b"Suite: prod" in resp.read()
        conn.close()
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert '"GET /dists/prod/Release HTTP/1.1" 200' in err


def test_serve_help_and_missing_dir(tmp_path: Path) -> None:
    r = run_cli(tmp_path / "store", "serve", "--help")
    assert r.exit_code == 0 and "nginx" in r.stdout
    r = run_cli(tmp_path / "store", "serve", str(tmp_path / "nope"), "--port", "0")
    assert r.exit_code == 1 and "no such directory" in r.stderr
