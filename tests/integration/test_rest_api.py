"""mirrorkit api serve: aptly's REST API against a real server on a loopback port, driven by
httpx, by the PyPI client aptly-api-client, and checked with real apt and aptly itself (the
oracle of package keys)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aptly_api import Client
from requests.auth import HTTPBasicAuth

from tests.helpers.apiserver import ApiServer
from tests.helpers.apt import AptClient
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli


@pytest.fixture(scope="module")
def srv(
    tmp_path_factory: pytest.TempPathFactory, debs_dir: dict[str, Path], publish_key: TestKey
) -> Iterator[ApiServer]:
    base = tmp_path_factory.mktemp("rest")
    store = base / "store"
    newer = build_deb(base / "newer", "hello", "1.1", "amd64", depends="libgreet (>= 1.0)")
    one = [str(debs_dir[n]) for n in ("hello", "libgreet", "greet-data")]
    for name, paths in (("s1", one), ("s2", [str(newer), *one[1:]])):
        r = run_cli(store, "snapshot", "create", name, "--from-debs", *paths)
        assert r.exit_code == 0, r.output
    args = ["--fs-endpoint", f"web={base / 'web'}", "--key", publish_key.fingerprint,
            "--max-upload", "300000"]  # fmt: skip
    with ApiServer(store, base / "api", args, gnupghome=publish_key.gnupghome) as server:
        yield server


ENDPOINTS = [
    ("GET", "/api/snapshots"),
    ("GET", "/api/snapshots/s1"),
    ("GET", "/api/snapshots/s1/packages"),
    ("POST", "/api/snapshots"),
    ("DELETE", "/api/snapshots/s1"),
    ("GET", "/api/files"),
    ("POST", "/api/files/job"),
    ("DELETE", "/api/files/job"),
    ("GET", "/api/tasks"),
    ("POST", "/api/tasks-clear"),
    ("GET", "/api/publish"),
    ("POST", "/api/publish/:."),
    ("PUT", "/api/publish/:./stable"),
    ("GET", "/api/mirrors"),
    ("GET", "/api/repos"),
    ("GET", "/api/packages/Pamd64%20hello%201.0%2000"),
    ("GET", "/api/graph.dot"),
    ("GET", "/api/no-such-endpoint"),
]


def test_only_version_is_anonymous(srv: ApiServer) -> None:
    with srv.client(None) as anon:
        version = anon.get("/api/version")
        assert version.status_code == 200 and set(version.json()) == {"Version"}
        for method, path in ENDPOINTS:
            r = anon.request(method, path)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json() == {"error": "authentication required"}
        wrong = anon.get("/api/snapshots", auth=("admin", "not-the-password"))
        assert wrong.status_code == 401
        bearer = anon.get("/api/snapshots", headers={"Authorization": "Bearer admin.nope"})
        assert bearer.status_code == 401
        good = anon.get(
            "/api/snapshots", headers={"Authorization": f"Bearer admin.{srv.secrets['admin']}"}
        )
        assert good.status_code == 200
    log = srv.log_file.read_text()
    assert "401 GET /api/snapshots" in log and "wrong credentials for user 'admin'" in log
    assert "not-the-password" not in log and "nope" not in log
    assert all(secret not in log for secret in srv.secrets.values())
    assert srv.secrets["admin"] not in srv.users_file.read_text()


def test_roles_are_checked_per_endpoint(srv: ApiServer) -> None:
    with srv.client("upload") as up, srv.client("read") as rd:
        body = {"SourceKind": "snapshot", "Sources": [{"Name": "s1"}], "Distribution": "x"}
        r = up.post("/api/publish/filesystem:web:denied", json=body)
        assert r.status_code == 403 and "needs publish" in r.json()["error"]
        assert up.post("/api/snapshots/m/merge", json={"Sources": ["s1"]}).status_code == 403
        assert rd.post("/api/files/job", files={"f": ("a.deb", b"x")}).status_code == 403
        assert rd.get("/api/snapshots").status_code == 200
    assert not (srv.base.parent / "web" / "denied").exists()
    assert "403 POST /api/publish/filesystem:web:denied: user upload has role upload" in (
        srv.log_file.read_text()
    )


def _uploaded(srv: ApiServer) -> set[str]:
    root = srv.store / "api" / "upload"
    return {str(p.relative_to(root)) for p in root.rglob("*")} if root.exists() else set()


def test_files_upload_any_field_and_refuse_hostile(
    srv: ApiServer, debs_dir: dict[str, Path]
) -> None:
    deb = debs_dir["hello"].read_bytes()
    with srv.client("upload") as up:
        r = up.post(
            "/api/files/job-1",
            files=[("anything", ("hello_1.0_amd64.deb", deb)), ("x", ("t.deb", deb))],
        )
        assert r.status_code == 200, r.text
        assert sorted(r.json()) == ["job-1/hello_1.0_amd64.deb", "job-1/t.deb"]
        assert sorted(up.get("/api/files/job-1").json()) == ["hello_1.0_amd64.deb", "t.deb"]
        assert "job-1" in up.get("/api/files").json()
        assert up.delete("/api/files/job-1/t.deb").status_code == 200
        before = _uploaded(srv)
        hostile = {
            "parent": [("f", ("../evil.deb", deb))],
            "absolute": [("f", ("/etc/evil.deb", deb))],
            "not a package kind": [("f", ("evil.sh", b"#!/bin/sh\n"))],
            "not a deb inside": [("f", ("fake_1.0_all.deb", b"MZ" + b"\0" * 100))],
            "one bad of two": [("a", ("ok_1.0_all.deb", deb)), ("b", ("bad.dsc", b"\x00\xff"))],
            "oversize": [("f", ("big_1.0_all.deb", deb + b"\0" * 400_000))],
        }
        for what, files in hostile.items():
            r = up.post("/api/files/job-2", files=files)
            assert r.status_code in (400, 413), (what, r.status_code, r.text)
            assert "nothing was stored" in r.json()["error"], what
        assert up.post("/api/files/..", files=[("f", ("a.deb", deb))]).status_code in (400, 404)
        assert up.post("/api/files/job-3", content=b"not multipart").status_code == 400
        assert _uploaded(srv) == before  # no job-2, no staging directory left behind
        assert up.delete("/api/files/job-1").status_code == 200
        assert up.get("/api/files/job-1").status_code == 404


def _aptly_key(tmp: Path, deb: Path) -> str:
    """The key aptly itself gives the package (aptly 1.5, a local repo)."""
    conf = tmp / "aptly.conf"
    conf.write_text(json.dumps({"rootDir": str(tmp / "aptly")}))
    run = ["aptly", f"-config={conf}"]
    subprocess.run([*run, "repo", "create", "r"], check=True, capture_output=True)
    subprocess.run([*run, "repo", "add", "r", str(deb)], check=True, capture_output=True)
    out = subprocess.run(
        [*run, "repo", "search", "-format={{.Key}}", "r", "hello"],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def test_snapshots_packages_and_keys_as_aptly(
    srv: ApiServer, debs_dir: dict[str, Path], tmp_path: Path
) -> None:
    with srv.client("read") as rd:
        names = [s["Name"] for s in rd.get("/api/snapshots", params={"sort": "name"}).json()]
        assert names[:2] == ["s1", "s2"]
        show = rd.get("/api/snapshots/s1").json()
        assert show["Name"] == "s1" and show["SourceKind"] == "local" and show["CreatedAt"]
        assert rd.get("/api/snapshots/nope").status_code == 404
        keys = rd.get("/api/snapshots/s1/packages").json()
        hello_key = _aptly_key(tmp_path, debs_dir["hello"])
        assert hello_key in keys and len(keys) == 3
        assert rd.get("/api/snapshots/s1/packages", params={"q": "hello"}).json() == [hello_key]
        deps = rd.get("/api/snapshots/s1/packages", params={"q": "hello", "withDeps": "1"})
        assert len(deps.json()) == 2
        details = rd.get("/api/snapshots/s1/packages", params={"format": "details"}).json()
        hello = next(p for p in details if p["Package"] == "hello")
        assert hello["Key"] == hello_key and hello["ShortKey"] == "Pamd64 hello 1.0"
        assert hello["FilesHash"] == hello_key.rsplit(" ", 1)[1]
        pkg = rd.get(f"/api/packages/{hello_key}").json()
        assert pkg["Key"] == hello_key and pkg["Version"] == "1.0"
        assert rd.get("/api/packages/Pamd64 hello 1.0 0000").status_code == 404
        diff = rd.get("/api/snapshots/s1/diff/s2").json()
        assert diff == [{"Left": hello_key, "Right": diff[0]["Right"]}]
        assert diff[0]["Right"].startswith("Pamd64 hello 1.1 ")
        dot = rd.get("/api/graph.dot")
        assert dot.status_code == 200 and '"snapshot:s1"' in dot.text


def test_async_tasks_poll_wait_output_and_free(srv: ApiServer) -> None:
    with srv.client("publish") as pub:
        r = pub.post("/api/snapshots/merged/merge", params={"_async": "true"},
                     json={"Sources": ["s1", "s2"]})  # fmt: skip
        assert r.status_code == 202, r.text
        task = r.json()
        assert set(task) == {"Name", "ID", "State", "Resources"}
        done = srv.wait_task(pub, task["ID"])
        assert done["State"] == 2
        assert pub.get(f"/api/tasks/{task['ID']}/wait").json()["State"] == 2
        assert "Task succeeded" in pub.get(f"/api/tasks/{task['ID']}/output").json()
        rv = pub.get(f"/api/tasks/{task['ID']}/return_value").json()
        assert rv["Code"] == 201 and rv["Value"]["Name"] == "merged"
        assert pub.delete(f"/api/tasks/{task['ID']}").status_code == 200
        assert pub.get(f"/api/tasks/{task['ID']}").status_code == 404
        # A task that fails: the same name again.
        again = pub.post("/api/snapshots/merged/merge", params={"_async": "1"},
                         json={"Sources": ["s1"]}).json()  # fmt: skip
        failed = srv.wait_task(pub, again["ID"])
        assert failed["State"] == 3
        assert pub.get(f"/api/tasks/{again['ID']}/return_value").json()["Code"] == 409
        assert "exists already" in pub.get(f"/api/tasks/{again['ID']}/output").json()
        assert pub.get("/api/tasks-wait").status_code == 200
        assert pub.post("/api/tasks-clear").status_code == 200
        assert pub.get("/api/tasks").json() == []
        # Without _async the answer is the result, and no task is left behind.
        sync = pub.post("/api/snapshots/merged2/merge", json={"Sources": ["s1"]})
        assert sync.status_code == 201 and sync.json()["Name"] == "merged2"
        assert pub.get("/api/tasks").json() == []


def test_rename_drop_and_create_from_package_refs(srv: ApiServer) -> None:
    with srv.client("publish") as pub:
        keys = pub.get("/api/snapshots/s2/packages", params={"q": "hello | libgreet"}).json()
        body = {"Name": "picked", "SourceSnapshots": ["s2"], "PackageRefs": keys}
        r = pub.post("/api/snapshots", json=body)
        assert r.status_code == 201, r.text
        assert sorted(pub.get("/api/snapshots/picked/packages").json()) == sorted(keys)
        r = pub.put("/api/snapshots/picked", json={"Name": "picked-renamed"})
        assert r.status_code == 200 and r.json()["Name"] == "picked-renamed"
        assert pub.get("/api/snapshots/picked").status_code == 404
        assert pub.put("/api/snapshots/s1", json={"Name": "s2"}).status_code == 409
        assert pub.delete("/api/snapshots/picked-renamed").status_code == 200
        assert pub.get("/api/snapshots/picked-renamed").status_code == 404


def test_aptly_api_client_publishes_and_switches_to_apt(
    srv: ApiServer, publish_key: TestKey, apt_client: AptClient
) -> None:
    client = Client(srv.url, http_auth=HTTPBasicAuth(*srv.auth("publish")))
    assert client.misc.version()
    assert {s.name for s in client.snapshots.list()} >= {"s1", "s2"}
    assert client.snapshots.show("s1").created_at is not None
    assert any(p.key.startswith("Pamd64 hello 1.0") for p in client.snapshots.list_packages("s1"))
    assert client.snapshots.diff("s1", "s2")
    prefix = "filesystem:web:team/apt_x"
    pub = client.publish.publish(source_kind="snapshot", sources=[{"Name": "s1"}],
                                 architectures=["amd64"], prefix=prefix,
                                 distribution="stable", sign_skip=True)  # fmt: skip
    assert (pub.storage, pub.prefix, pub.distribution) == ("filesystem:web", "team/apt_x", "stable")
    assert pub.sources == [{"Component": "main", "Name": "s1"}]
    tree = srv.base.parent / "web" / "team" / "apt_x"
    key = next(tree.glob("mirrorkit-archive-*.gpg"))
    apt_client.add_source(tree.as_uri(), "stable", ["main"], key)
    assert apt_client.update().returncode == 0
    assert "Inst hello (1.0 " in apt_client.simulate_install("hello").stdout
    # Switch the published suite to s2 (PUT /api/publish/:prefix/:distribution).
    upd = client.publish.update(prefix=prefix, distribution="stable",
                                snapshots=[{"Name": "s2", "Component": "main"}])  # fmt: skip
    assert upd.sources == [{"Component": "main", "Name": "s2"}]
    assert apt_client.update().returncode == 0
    inst = apt_client.simulate_install("hello")
    assert inst.returncode == 0, inst.stdout
    assert "Inst hello (1.1 " in inst.stdout and "Inst libgreet (1.0 " in inst.stdout
    listed = client.publish.list()
    assert [(p.prefix, p.distribution) for p in listed if p.storage == "filesystem:web"] == [
        ("team/apt_x", "stable")
    ]
    with srv.client("read") as rd:
        shown: dict[str, Any] = rd.get("/api/publish/filesystem:web:team_apt__x/stable").json()
        assert shown["Sources"] == [{"Component": "main", "Name": "s2"}]
        assert rd.get("/api/publish/filesystem:web:team_apt__x/other").status_code == 404
        assert rd.get("/api/publish/s3:nowhere:x/stable").status_code == 404


def test_python_aptly_client_flow(srv: ApiServer) -> None:
    """python-aptly's Aptly(url) client as its publisher drives it: snapshots by time, a
    snapshot from package refs, a publish in the default storage, a switch, the list."""
    from aptly.client import Aptly

    client = Aptly(srv.url, auth=srv.auth("publish"))
    assert client.api_version
    by_time = [s["Name"] for s in client.do_get("/snapshots", {"sort": "time"})]
    assert by_time.index("s1") < by_time.index("s2")
    keys = client.do_get("/snapshots/s1/packages")
    minimal = {"Name": "py-min", "SourceSnapshots": [], "Description": "Minimal",
               "PackageRefs": keys[:1]}  # fmt: skip
    client.do_post("/snapshots", minimal)
    assert client.do_get("/snapshots/py-min/packages") == keys[:1]
    sources = [{"Component": "main", "Name": "s1"}]
    client.do_post("/publish/:py", {"Storage": "", "SourceKind": "snapshot", "Distribution": "d",
                                    "Sources": sources, "ForceOverwrite": False,
                                    "SkipContents": True})  # fmt: skip
    switch = {"Snapshots": [{"Component": "main", "Name": "s2"}], "ForceOverwrite": False,
              "SkipContents": True}  # fmt: skip
    switched = client.do_put("/publish/:py/d", switch)
    assert switched["Sources"] == [{"Component": "main", "Name": "s2"}]
    mine = [p for p in client.do_get("/publish") if p["Storage"] == "" and p["Prefix"] == "py"]
    assert [(p["Distribution"], p["Sources"][0]["Name"]) for p in mine] == [("d", "s2")]
    assert (srv.store / "api" / "public" / "py" / "dists" / "d" / "InRelease").exists()
    assert client.do_get("/snapshots/s1/diff/s2")
    client.do_delete("/snapshots/py-min")
    assert "py-min" not in [s["Name"] for s in client.do_get("/snapshots")]


def test_a_task_outlives_its_client(srv: ApiServer) -> None:
    """A synchronous change whose client hangs up at once still runs to the end."""
    import base64
    import socket
    import time

    host, port = srv.url.removeprefix("http://").rsplit(":", 1)
    payload = json.dumps({"Sources": ["s1", "s2"]}).encode()
    token = base64.b64encode(f"publish:{srv.secrets['publish']}".encode()).decode()
    request = (
        f"POST /api/snapshots/after-hangup/merge HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Basic {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    with srv.client("read") as rd:
        deadline = time.monotonic() + 30
        with socket.create_connection((host, int(port))) as sock:
            sock.sendall(request)
            # Hang up once the server holds the request (its task is listed, or done).
            while not any(t["Name"] == "Merge snapshot after-hangup"
                          for t in rd.get("/api/tasks").json()):  # fmt: skip
                if rd.get("/api/snapshots/after-hangup").status_code == 200:
                    break
                assert time.monotonic() < deadline, "the server never started the merge"
        while rd.get("/api/snapshots/after-hangup").status_code != 200:
            assert time.monotonic() < deadline, "the merge did not happen"
            time.sleep(0.05)


def test_tls_and_no_auth_only_on_loopback(
    tmp_path: Path, srv: ApiServer, publish_key: TestKey
) -> None:
    import ssl

    from tests.helpers.tls import make_ca

    r = run_cli(srv.store, "api", "serve", "--listen", "0.0.0.0:0", "--no-auth")
    assert r.exit_code != 0 and "only allowed on a loopback address" in r.output
    ca = make_ca(tmp_path / "ca")
    args = ["--tls-cert", str(ca.server_cert), "--tls-key", str(ca.server_key)]
    tls_server = ApiServer(srv.store, tmp_path / "tls", args, secrets=dict(srv.secrets),
                           shared_users=srv.users_file)  # fmt: skip
    with tls_server as tls:
        assert tls.url.startswith("https://127.0.0.1:")
        with tls.client("read", verify=ssl.create_default_context(cafile=ca.cert)) as rd:
            assert rd.get("/api/snapshots").status_code == 200
            assert rd.get("/api/snapshots", auth=None).status_code == 401


def test_aptly_api_client_repo_flow_to_apt(
    srv: ApiServer, debs_dir: dict[str, Path], apt_client: AptClient, tmp_path: Path
) -> None:
    """aptly-api-client's normal flow, unchanged: create a repo, upload, add, snapshot the
    repo, publish it, update the publish to a new snapshot, list and show everything."""
    client = Client(srv.url, http_auth=HTTPBasicAuth(*srv.auth("publish")))
    repo = client.repos.create("ci", comment="from CI", default_distribution="ci",
                               default_component="main")  # fmt: skip
    assert (repo.name, repo.default_distribution, repo.default_component) == ("ci", "ci", "main")
    client.files.upload("ci-job-1", str(debs_dir["hello"]), str(debs_dir["libgreet"]))
    report = client.repos.add_uploaded_file("ci", "ci-job-1")
    assert report.failed_files == []
    assert sorted(report.report["Added"]) == ["hello_1.0_amd64 added", "libgreet_1.0_amd64 added"]
    assert "ci-job-1" not in client.files.list()  # taken from the upload directory
    keys = [p.key for p in client.repos.search_packages("ci")]
    assert len(keys) == 2 and all(k.startswith("Pamd64 ") for k in keys)
    client.snapshots.create_from_repo("ci", "ci-1")
    prefix = "filesystem:web:ci"
    client.publish.publish(source_kind="snapshot", sources=[{"Name": "ci-1"}],
                           architectures=["amd64"], prefix=prefix, distribution="ci",
                           sign_skip=True)  # fmt: skip
    newer = build_deb(tmp_path, "hello", "1.2", "amd64", depends="libgreet (>= 1.0)")
    client.files.upload("ci-job-2", str(newer))
    client.repos.add_uploaded_file("ci", "ci-job-2")
    client.snapshots.create_from_repo("ci", "ci-2")
    client.publish.update(prefix=prefix, distribution="ci", snapshots=[{"Name": "ci-2"}])
    tree = srv.base.parent / "web" / "ci"
    key = next(tree.glob("mirrorkit-archive-*.gpg"))
    apt_client.add_source(tree.as_uri(), "ci", ["main"], key)
    assert apt_client.update().returncode == 0
    assert "Inst hello (1.2 " in apt_client.simulate_install("hello").stdout
    assert "ci" in [r.name for r in client.repos.list()]
    assert client.repos.show("ci").comment == "from CI"
    assert {"ci-1", "ci-2"} <= {s.name for s in client.snapshots.list()}
    assert ("ci", "ci") in [(p.prefix, p.distribution) for p in client.publish.list()]
    # Packages by key: out of the repo and back in.
    hello_key = next(k for k in keys if k.startswith("Pamd64 hello 1.0 "))
    client.repos.delete_packages_by_key("ci", hello_key)
    assert hello_key not in [p.key for p in client.repos.search_packages("ci")]
    client.repos.add_packages_by_key("ci", hello_key)
    assert hello_key in [p.key for p in client.repos.search_packages("ci")]


CI_SCRIPT = r"""
set -euo pipefail
API=$1; AUTH=$2; DEB=$3; JOB=$4
json() { python3 -c "import json, sys; print(json.load(sys.stdin)$1)"; }
curl -fsS -u "$AUTH" -F "file=@$DEB" "$API/api/files/$JOB" >/dev/null
id=$(curl -fsS -u "$AUTH" -X POST "$API/api/repos/team/file/$JOB?_async=true" | json '["ID"]')
while :; do
  state=$(curl -fsS -u "$AUTH" "$API/api/tasks/$id" | json '["State"]')
  [ "$state" = 2 ] && break
  [ "$state" = 3 ] && { curl -sS -u "$AUTH" "$API/api/tasks/$id/output"; exit 1; }
  sleep 0.1
done
curl -fsS -u "$AUTH" -X PUT -H 'Content-Type: application/json' \
  -d '{"Signing": {"Skip": true}}' "$API/api/publish/filesystem:web:team/stable" >/dev/null
"""


def test_ci_curl_script_eight_jobs_at_once_lose_nothing(
    srv: ApiServer, tmp_path: Path, apt_client: AptClient
) -> None:
    debs = [build_deb(tmp_path / "debs", f"job{n}", "1.0", "amd64") for n in range(9)]
    with srv.client("publish") as pub:
        assert pub.post("/api/repos", json={"Name": "team"}).status_code == 201
        assert pub.post("/api/files/seed", files={"f": (debs[0].name, debs[0].read_bytes())})
        assert pub.post("/api/repos/team/file/seed").status_code == 200
        body = {"SourceKind": "local", "Sources": [{"Name": "team"}], "Distribution": "stable"}
        r = pub.post("/api/publish/filesystem:web:team", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["SourceKind"] == "local"
        assert r.json()["Sources"] == [{"Component": "main", "Name": "team"}]
    script = tmp_path / "ci.sh"
    script.write_text(CI_SCRIPT)
    auth = ":".join(srv.auth("publish"))
    jobs = [
        subprocess.Popen(
            ["bash", str(script), srv.url, auth, str(deb), f"ci-{n}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for n, deb in enumerate(debs[1:], 1)
    ]
    for job in jobs:
        out, _ = job.communicate(timeout=120)
        assert job.returncode == 0, out
    with srv.client("read") as rd:
        held = rd.get("/api/repos/team/packages").json()
        assert sorted(k.split()[1] for k in held) == [f"job{n}" for n in range(9)]
        assert rd.get("/api/files").json() == [
            d for d in rd.get("/api/files").json() if not d.startswith("ci-")
        ]
    # Adds that wait for the repo together are committed together (one history entry).
    assert 2 <= len(api_history(srv, "team")) <= 9
    tree = srv.base.parent / "web" / "team"
    apt_client.add_source(
        tree.as_uri(), "stable", ["main"], next(tree.glob("mirrorkit-archive-*.gpg"))
    )
    assert apt_client.update().returncode == 0
    sim = apt_client.simulate_install(*(f"job{n}" for n in range(9)))
    assert sim.returncode == 0 and sim.stdout.count("Inst job") == 9, sim.stdout


def api_history(srv: ApiServer, repo: str) -> tuple[Any, ...]:
    from mirrorkit import api

    return api.repo_history(repo, store=srv.store)


def test_publish_drop_removes_the_suite_and_only_its_pool_files(srv: ApiServer) -> None:
    body = {"SourceKind": "snapshot", "Sources": [{"Name": "s1"}], "Distribution": "one"}
    with srv.client("publish") as pub:
        assert pub.post("/api/publish/filesystem:web:dropme", json=body).status_code == 201
        body2 = {**body, "Sources": [{"Name": "s2"}], "Distribution": "two"}
        assert pub.post("/api/publish/filesystem:web:dropme", json=body2).status_code == 201
        tree = srv.base.parent / "web" / "dropme"
        pool = {p.name for p in (tree / "pool").rglob("*.deb")}
        assert {"hello_1.0_amd64.deb", "hello_1.1_amd64.deb"} <= pool
        r = pub.delete("/api/publish/filesystem:web:dropme/one")
        assert r.status_code == 200, r.text
        assert not (tree / "dists" / "one").exists() and (tree / "dists" / "two").is_symlink()
        left = {p.name for p in (tree / "pool").rglob("*.deb")}
        assert "hello_1.0_amd64.deb" not in left  # only suite one used it
        assert {"hello_1.1_amd64.deb", "libgreet_1.0_amd64.deb"} <= left  # two lists them
        assert pub.get("/api/publish/filesystem:web:dropme/one").status_code == 404
        assert pub.delete("/api/publish/filesystem:web:dropme/one").status_code == 404
        assert [p["Distribution"] for p in pub.get("/api/publish").json()
                if p["Prefix"] == "dropme"] == ["two"]  # fmt: skip


def test_mirrors_create_update_snapshot_edit_drop(
    srv: ApiServer, upstream: FaultServer, test_key: TestKey
) -> None:
    with srv.client("admin") as adm:
        body = {"Name": "up", "ArchiveURL": upstream.url, "Distribution": "stable",
                "Components": ["main"], "Architectures": ["amd64"],
                "Keyrings": [str(test_key.public_keyring)]}  # fmt: skip
        r = adm.post("/api/mirrors", json=body)
        assert r.status_code == 201, r.text
        assert r.json()["Name"] == "up" and r.json()["Distribution"] == "stable"
        assert adm.post("/api/mirrors", json={**body, "IgnoreSignatures": True}).status_code == 400
        assert "up" in [m["Name"] for m in adm.get("/api/mirrors").json()]
        assert adm.get("/api/mirrors/up/packages").status_code == 404  # not updated yet
        r = adm.put("/api/mirrors/up", params={"_async": "true"}, json={})
        assert r.status_code == 202
        assert srv.wait_task(adm, r.json()["ID"])["State"] == 2
        keys = adm.get("/api/mirrors/up/packages", params={"q": "hello"}).json()
        assert len(keys) == 1 and keys[0].startswith("Pamd64 hello 1.0 ")
        r = adm.post("/api/mirrors/up/snapshots", json={"Name": "from-up"})
        assert r.status_code == 201 and r.json()["SourceKind"] == "repo"
        r = adm.post("/api/mirrors/up", json={"Filter": "hello", "FilterWithDeps": True})
        assert r.status_code == 200, r.text
        assert r.json()["Filter"] == "hello" and r.json()["FilterWithDeps"] is True
        with srv.client("publish") as pub:
            assert pub.delete("/api/mirrors/up").status_code == 403
        assert adm.delete("/api/mirrors/up").status_code == 200
        assert adm.get("/api/mirrors/up").status_code == 404
