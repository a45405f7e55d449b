"""publish s3 against a real S3 server (SeaweedFS on 127.0.0.1), with real apt as the client."""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from mirrorkit import publish
from mirrorkit.errors import PublishError, UsageError
from mirrorkit.publish import s3 as s3mod
from mirrorkit.publish import s3lock
from mirrorkit.store import Store
from tests.helpers.apt import AptClient
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.mk import Result, run_cli
from tests.s3.conftest import FaultProxy, S3Server, anonymous_get

pytestmark = pytest.mark.e2e

SIGNED = ["dists/prod/Release", "dists/prod/Release.gpg", "dists/prod/InRelease"]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Snapshots v1 (hello 1.0) and v2 (hello 1.1) of a small package set with a dependency,
    a version with '+' and '~', and one package big enough for a multipart upload."""
    base = tmp_path_factory.mktemp("s3-store")
    common, h1, h2 = base / "common", base / "h1", base / "h2"
    build_deb(common, "libgreet", "1.0", "amd64", section="libs")
    build_deb(common, "tool", "2.0", "amd64", depends="libgreet | libalt")
    build_deb(common, "greet-data", "1.0", "all")
    build_deb(common, "plus", "1.0+b1~rc1", "amd64")
    build_deb(common, "bigdata", "1.0", "all", payload_size=6 * 1024 * 1024)
    build_deb(h1, "hello", "1.0", "amd64", depends="libgreet (>= 1.0)")
    build_deb(h2, "hello", "1.1", "amd64", depends="libgreet (>= 1.0)")
    st = base / "store"
    for name, extra in (("v1", h1), ("v2", h2)):
        r = run_cli(st, "snapshot", "create", name, "--from-debs", str(common), "--from-debs",
                    str(extra))  # fmt: skip
        assert r.exit_code == 0, r.output
    return st


@pytest.fixture
def prefix() -> str:
    return f"t/{uuid.uuid4().hex[:10]}"


def _publish(
    store: Path, key: TestKey, s3: S3Server, snapshot: str, prefix: str, *extra: str
) -> Result:
    return run_cli(
        store, "publish", "s3", snapshot, f"s3://{s3.bucket}/{prefix}", "--suite", "prod",
        "--key", key.fingerprint, "--endpoint-url", s3.endpoint, *extra,
        gnupghome=key.gnupghome,
    )  # fmt: skip


def _publish_api(
    store: Path, key: TestKey, s3: S3Server, snapshot: str, prefix: str, **kw: Any
) -> publish.Published:
    return publish.publish_s3(
        Store(store), snapshot, f"s3://{s3.bucket}/{prefix}", key=key.fingerprint,
        suite=kw.pop("suite", "prod"), gnupghome=str(key.gnupghome),
        endpoint_url=kw.pop("endpoint_url", s3.endpoint), **kw,
    )  # fmt: skip


def _objects(s3: S3Server, prefix: str, *, state: bool = False) -> dict[str, Any]:
    """The published objects; with ``state``, mirrorkit's own (.mirrorkit/) too."""
    client = s3.client()
    out: dict[str, Any] = {}
    for page in client.get_paginator("list_objects_v2").paginate(
        Bucket=s3.bucket, Prefix=prefix + "/"
    ):
        for item in page.get("Contents") or ():
            rel = item["Key"][len(prefix) + 1 :]
            if state or not rel.startswith(".mirrorkit/"):
                out[rel] = item
    return out


def _body(s3: S3Server, prefix: str, rel: str) -> bytes:
    return bytes(s3.client().get_object(Bucket=s3.bucket, Key=f"{prefix}/{rel}")["Body"].read())


def _candidate(apt: AptClient, pkg: str) -> str:
    out = apt.policy(pkg).stdout
    m = re.search(r"Candidate: (\S+)", out)
    assert m, out
    return m.group(1)


def _apt_for(apt: AptClient, s3: S3Server, prefix: str, tmp_path: Path, key_name: str) -> None:
    status, _, key = anonymous_get(f"{s3.http_url(prefix)}/{key_name}.gpg")
    assert status == 200
    keyfile = tmp_path / f"{key_name}.gpg"
    keyfile.write_bytes(key)
    apt.add_source(s3.http_url(prefix), "prod", ["main"], keyfile)


@pytest.fixture
def puts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every object write mirrorkit sends (PutObject, multipart starts), seen by botocore's own
    event hooks: a count independent of what the publisher reports about itself."""
    seen: list[str] = []
    real = s3mod.connect

    def connect(target: s3mod.S3Target, *, jobs: int = 8) -> s3mod.Bucket:
        bucket = real(target, jobs=jobs)

        def record(params: dict[str, Any], **_: Any) -> None:
            seen.append(target.rel(params["Key"]))

        for op in ("PutObject", "CreateMultipartUpload"):
            bucket.client.meta.events.register(f"before-parameter-build.s3.{op}", record)
        return bucket

    monkeypatch.setattr(s3mod, "connect", connect)
    return seen


def _uploads(puts: list[str]) -> list[str]:
    """What was published: not the lock, nor mirrorkit's record of what it placed."""
    return [k for k in puts if k != s3mod.LOCK_NAME and not k.startswith(".mirrorkit/")]


# -- (a) real apt reads the suite from the S3 endpoint ---------------------------------------


def test_apt_installs_from_s3_over_http(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str, apt_client: AptClient,
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    # Lower the multipart threshold so the 6 MiB package goes up in parts.
    monkeypatch.setattr(s3mod, "MULTIPART_THRESHOLD", 5 * 1024 * 1024)
    monkeypatch.setattr(s3mod, "MULTIPART_CHUNKSIZE", 5 * 1024 * 1024)
    r = _publish(store, publish_key, s3_env, "v1", prefix)
    assert r.exit_code == 0, r.output
    uri = s3_env.http_url(prefix) + "/"
    assert f"URIs: {uri}" in r.stdout and "Suites: prod" in r.stdout
    m = re.search(r"Signed-By: /etc/apt/keyrings/(mirrorkit-archive-[0-9a-f]{16})\.gpg", r.stdout)
    assert m, r.stdout
    assert f"public key: {uri}{m.group(1)}.gpg" in r.stderr
    assert re.search(r"in s3://apt/\S+ \(\d+ objects uploaded, 0 already there\)", r.stderr)

    objects = _objects(s3_env, prefix)
    assert s3mod.LOCK_NAME not in objects  # released
    big = "pool/main/b/bigdata/bigdata_1.0_all.deb"
    local = s3mod.Obj(big, 0, "", path=store.parent / "common" / "bigdata_1.0_all.deb")
    assert objects[big]["ETag"].strip('"') == local.multipart_etag(5 * 1024 * 1024)  # 2 parts
    assert local.multipart_etag(5 * 1024 * 1024).endswith("-2")
    head = s3_env.client().head_object(Bucket=s3_env.bucket, Key=f"{prefix}/{big}")
    assert head["Metadata"]["sha256"] == hashlib.sha256(_body(s3_env, prefix, big)).hexdigest()
    assert head["ContentType"] == "application/vnd.debian.binary-package"

    _apt_for(apt_client, s3_env, prefix, tmp_path, m.group(1))
    upd = apt_client.update()
    assert upd.returncode == 0, upd.stdout
    inst = apt_client.install_download_only("hello", "tool", "plus", "bigdata")
    assert inst.returncode == 0, inst.stdout
    assert apt_client.downloaded() == [
        "bigdata_1.0_all.deb", "hello_1.0_amd64.deb", "libgreet_1.0_amd64.deb",
        "plus_1.0+b1~rc1_amd64.deb", "tool_2.0_amd64.deb",
    ]  # fmt: skip
    # The multipart object arrived intact (apt checked its SHA256 against the signed index).


# -- (b) the same layout as publish fs -------------------------------------------------------


def _fs_files(root: Path) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if d != ".mirrorkit"]
        for name in filenames:
            path = Path(dirpath) / name
            files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def _signed_payload(inrelease: bytes) -> bytes:
    return inrelease.split(b"\n\n", 1)[1].split(b"-----BEGIN PGP SIGNATURE-----")[0]


def test_layout_equals_the_fs_publish(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1800000000")
    out = tmp_path / "fs"
    r = run_cli(store, "publish", "fs", "v1", str(out), "--suite", "prod", "--key",
                publish_key.fingerprint, gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 0, r.output
    assert _publish(store, publish_key, s3_env, "v1", prefix).exit_code == 0
    fs_files = _fs_files(out)
    objects = _objects(s3_env, prefix)
    assert sorted(objects) == sorted(fs_files)
    for rel, data in fs_files.items():
        body = _body(s3_env, prefix, rel)
        if rel.endswith(("InRelease", "Release.gpg")):
            continue  # signatures carry their own timestamp
        assert body == data, rel
    assert _signed_payload(_body(s3_env, prefix, "dists/prod/InRelease")) == _signed_payload(
        fs_files["dists/prod/InRelease"]
    )
    assert fs_files["dists/prod/Release"] in _body(s3_env, prefix, "dists/prod/InRelease")


# -- (c) re-publishing an unchanged snapshot -------------------------------------------------


def _next_second() -> None:
    """Wait for the clock's next second: the next Release gets a later Date."""
    second = int(time.time())
    while int(time.time()) == second:
        time.sleep(0.02)


def test_republish_unchanged_uploads_only_the_signed_release_files(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str, puts: list[str]
) -> None:
    first = _publish_api(store, publish_key, s3_env, "v1", prefix)
    assert isinstance(first.result, s3mod.S3PublishResult)
    assert sorted(_uploads(puts)) == sorted(first.result.uploaded)
    assert len(first.result.uploaded) == len(_objects(s3_env, prefix))
    assert _uploads(puts)[-3:] == SIGNED  # Release, Release.gpg, InRelease last
    puts.clear()

    before = _objects(s3_env, prefix)
    # Within the same second an unchanged snapshot gives the same signed files (the Release
    # Date is the publish time to the second), and nothing at all is uploaded; a second
    # later, only those three.
    _next_second()
    r = _publish(store, publish_key, s3_env, "v1", prefix)
    assert r.exit_code == 0, r.output
    assert _uploads(puts) == SIGNED
    assert f"(3 objects uploaded, {len(first.result.uploaded) - 3} already there)" in r.stderr
    after = _objects(s3_env, prefix)
    assert {k for k in after if after[k]["ETag"] != before[k]["ETag"]} == set(SIGNED)
    # Within the same second, too, the new InRelease is newer for If-Modified-Since.
    inrelease = "dists/prod/InRelease"
    assert after[inrelease]["LastModified"] > before[inrelease]["LastModified"]

    # The store remembers the bucket; gc leaves S3 targets alone and keeps the record.
    records = publish.published_records(Store(store))
    mine = [rec for rec in records if rec.get("s3") == f"s3://apt/{prefix}"]
    assert mine == [{"s3": f"s3://apt/{prefix}", "endpoint_url": s3_env.endpoint,
                     "suites": {"prod": "v1"}}]  # fmt: skip
    assert run_cli(store, "gc", "--dry-run").exit_code == 0
    assert mine[0] in publish.published_records(Store(store))


# -- pool objects: reused when equal, never replaced under a suite that lists them -----------


def test_pool_objects_are_reused_when_equal_and_never_replaced_under_a_suite(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str, tmp_path: Path
) -> None:
    hello, libgreet = (
        "pool/main/h/hello/hello_1.0_amd64.deb",
        "pool/main/libg/libgreet/libgreet_1.0_amd64.deb",
    )
    client = s3_env.client()
    # Put there by another tool: the same bytes without our metadata (the ETag is their MD5) ...
    good = (store.parent / "h1" / "hello_1.0_amd64.deb").read_bytes()
    client.put_object(Bucket=s3_env.bucket, Key=f"{prefix}/{hello}", Body=good)
    # ... and debris no suite lists, with other bytes.
    client.put_object(Bucket=s3_env.bucket, Key=f"{prefix}/{libgreet}", Body=b"debris")
    pub = _publish_api(store, publish_key, s3_env, "v1", prefix)
    assert isinstance(pub.result, s3mod.S3PublishResult)
    assert hello not in pub.result.uploaded and libgreet in pub.result.uploaded
    assert (
        _body(s3_env, prefix, libgreet)
        == (store.parent / "common" / "libgreet_1.0_amd64.deb").read_bytes()
    )

    # A rebuild of hello 1.0 (other bytes, same file name) must not replace what prod lists.
    rebuilt = build_deb(
        tmp_path / "rebuilt", "hello", "1.0", "amd64", extra_fields={"X-Rebuilt": "yes"}
    )
    r = run_cli(store, "snapshot", "create", f"rebuilt-{prefix[2:]}", "--from-debs", str(rebuilt))
    assert r.exit_code == 0, r.output
    r = run_cli(store, "publish", "s3", f"rebuilt-{prefix[2:]}", f"s3://apt/{prefix}", "--suite",
                "staging", "--key", publish_key.fingerprint, "--endpoint-url", s3_env.endpoint,
                gnupghome=publish_key.gnupghome)  # fmt: skip
    assert r.exit_code == 1, r.output
    assert f"{hello} exists with different contents" in r.stderr
    assert _body(s3_env, prefix, hello) == good
    assert "dists/staging/InRelease" not in _objects(s3_env, prefix)


# -- (d) a publish that fails half-way -------------------------------------------------------

# v1 -> v2 writes 10 objects: hello_1.1 (1), the by-hash copies of Packages{,.gz,.xz} (3),
# the indices under their names (3), Release, Release.gpg, InRelease (3).
V2_UPLOADS = 10


def _publish_failing(
    store: Path, key: TestKey, s3: S3Server, proxy: FaultProxy, prefix: str, fail_after: int,
    monkeypatch: pytest.MonkeyPatch, **kw: Any,
) -> PublishError:  # fmt: skip
    """Publish v2 through the proxy, whose uploads after the first ``fail_after`` lose their
    connection (one attempt each: the proxy would drop botocore's retries too)."""
    proxy.fail_uploads_after = fail_after
    with monkeypatch.context() as mp:
        mp.setenv("AWS_MAX_ATTEMPTS", "1")
        with pytest.raises(PublishError) as err:
            _publish_api(store, key, s3, "v2", prefix, endpoint_url=proxy.endpoint, **kw)
    assert proxy.failed  # the failure was the proxy's, on a real connection
    return err.value


@pytest.mark.parametrize("fail_after", [0, 4, 8, 9])
def test_failed_publish_leaves_the_old_suite_usable_and_a_rerun_finishes(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str, apt_client: AptClient,
    tmp_path: Path, puts: list[str], fail_after: int, s3_proxy: FaultProxy,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    first = _publish_api(store, publish_key, s3_env, "v1", prefix)
    assert isinstance(first.result, s3mod.S3PublishResult)
    _apt_for(apt_client, s3_env, prefix, tmp_path, first.result.key_name)
    assert apt_client.update().returncode == 0
    assert _candidate(apt_client, "hello") == "1.0"
    puts.clear()

    err = _publish_failing(store, publish_key, s3_env, s3_proxy, prefix, fail_after, monkeypatch)
    assert "cannot reach" in err.message and s3_proxy.endpoint in err.message
    assert "untouched" in (err.hint or "")
    assert len(_uploads(s3_proxy.uploads)) == fail_after  # what reached the server
    assert s3mod.LOCK_NAME not in _objects(s3_env, prefix)  # released on failure too

    upd = apt_client.update()
    assert upd.returncode == 0, upd.stdout
    assert _candidate(apt_client, "hello") == "1.0"
    inst = apt_client.install_download_only("hello")
    assert inst.returncode == 0, inst.stdout
    assert "hello_1.0_amd64.deb" in apt_client.downloaded()

    puts.clear()
    _next_second()
    again = _publish_api(store, publish_key, s3_env, "v2", prefix)
    assert isinstance(again.result, s3mod.S3PublishResult)
    # Only what is still missing, plus the signed files (their Date moved on).
    assert len(again.result.uploaded) == V2_UPLOADS - min(fail_after, V2_UPLOADS - 3)
    assert _uploads(puts)[-3:] == SIGNED
    assert apt_client.update().returncode == 0
    assert _candidate(apt_client, "hello") == "1.1"
    inst = apt_client.install_download_only("hello")
    assert inst.returncode == 0, inst.stdout
    assert "hello_1.1_amd64.deb" in apt_client.downloaded()


# -- (e) errors a user can act on ------------------------------------------------------------


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "message", "hint"),
    [
        ("wrong-secret", "rejected the credentials", "AWS_SECRET_ACCESS_KEY"),
        ("no-credentials", "no S3 credentials found", "AWS_ACCESS_KEY_ID"),
        ("no-bucket", "no such bucket 'no-such-bucket'", "create the bucket"),
        ("unreachable", "cannot reach the S3 server", "--endpoint-url"),
    ],
)
def test_s3_errors_are_clear_and_exit_1(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str,
    monkeypatch: pytest.MonkeyPatch, case: str, message: str, hint: str,
) -> None:  # fmt: skip
    bucket, endpoint = s3_env.bucket, s3_env.endpoint
    if case == "wrong-secret":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret")
    elif case == "no-credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    elif case == "no-bucket":
        bucket = "no-such-bucket"
    else:
        endpoint = f"http://127.0.0.1:{_closed_port()}"
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    r = run_cli(
        store, "publish", "s3", "v1", f"s3://{bucket}/{prefix}", "--key",
        publish_key.fingerprint, "--endpoint-url", endpoint, gnupghome=publish_key.gnupghome,
    )  # fmt: skip
    assert r.exit_code == 1, r.output
    assert "Traceback" not in r.output
    assert f"error: s3://{bucket}/{prefix}" in r.stderr and message in r.stderr, r.stderr
    assert "hint: " in r.stderr and hint in r.stderr, r.stderr
    assert _objects(s3_env, prefix) == {}


# -- (f) two publishers ----------------------------------------------------------------------


def test_lock_held_is_a_clear_error_and_break_lock_removes_a_stale_one(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str
) -> None:
    stale = {"holder": "alice@build1 (pid 4242)", "created": "2026-01-02 03:04:05 UTC",
             "suite": "prod", "token": "0" * 32}  # fmt: skip
    s3_env.client().put_object(
        Bucket=s3_env.bucket, Key=f"{prefix}/{s3mod.LOCK_NAME}", Body=json.dumps(stale).encode()
    )
    r = _publish(store, publish_key, s3_env, "v1", prefix)
    assert r.exit_code == 1, r.output
    assert "is locked by alice@build1 (pid 4242) since 2026-01-02 03:04:05 UTC" in r.stderr
    assert "--break-lock" in r.stderr
    assert sorted(_objects(s3_env, prefix)) == [s3mod.LOCK_NAME]  # nothing was written

    r = _publish(store, publish_key, s3_env, "v1", prefix, "--break-lock")
    assert r.exit_code == 0, r.output
    assert "removed the lock of alice@build1 (pid 4242)" in r.stderr
    objects = _objects(s3_env, prefix)
    assert s3mod.LOCK_NAME not in objects and "dists/prod/InRelease" in objects


def test_a_running_publisher_holds_the_lock(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str
) -> None:
    bucket = s3mod.connect(s3mod.S3Target.parse(f"s3://apt/{prefix}", endpoint_url=s3_env.endpoint))
    with s3lock.publish_lock(bucket, suite="staging"):
        # The conditional put itself refuses a second lock (If-None-Match: *).
        assert bucket.put_exclusive(s3mod.LOCK_NAME, b"{}") is False
        r = _publish(store, publish_key, s3_env, "v1", prefix)
        assert r.exit_code == 1, r.output
        assert re.search(r"is locked by \S+@\S+ \(pid \d+\) since .* publishing suite staging",
                         r.stderr)  # fmt: skip
    assert s3mod.LOCK_NAME not in _objects(s3_env, prefix)
    assert _publish(store, publish_key, s3_env, "v1", prefix).exit_code == 0


def test_a_publisher_whose_lock_was_broken_does_not_switch_the_suite(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _publish_api(store, publish_key, s3_env, "v1", prefix)
    before = _body(s3_env, prefix, "dists/prod/InRelease")
    real_wait = s3mod._wait_past_old_release

    def broken_meanwhile(bucket: s3mod.Bucket, dists: str, limit: float = 3.0) -> None:
        # Another publisher ran with --break-lock while this one uploaded.
        s3_env.client().put_object(
            Bucket=s3_env.bucket, Key=f"{prefix}/{s3mod.LOCK_NAME}",
            Body=b'{"holder": "bob@ci (pid 7)", "created": "now", "token": "theirs"}',
        )  # fmt: skip
        real_wait(bucket, dists, limit)

    monkeypatch.setattr(s3mod, "_wait_past_old_release", broken_meanwhile)
    with pytest.raises(PublishError) as err:
        _publish_api(store, publish_key, s3_env, "v2", prefix)
    assert "the lock was broken by bob@ci (pid 7)" in err.value.message
    assert "the suite was not switched" in err.value.message
    assert _body(s3_env, prefix, "dists/prod/InRelease") == before
    # Their lock is left alone.
    assert b"theirs" in _body(s3_env, prefix, s3mod.LOCK_NAME)


# -- (g) prune -------------------------------------------------------------------------------


def test_prune_removes_only_unreferenced_pool_objects_after_the_new_inrelease(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str, apt_client: AptClient,
    tmp_path: Path, s3_proxy: FaultProxy, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    hello10, hello11 = (
        "pool/main/h/hello/hello_1.0_amd64.deb",
        "pool/main/h/hello/hello_1.1_amd64.deb",
    )
    first = _publish_api(store, publish_key, s3_env, "v1", prefix)
    _publish_api(store, publish_key, s3_env, "v2", prefix, suite="staging")
    stray = "pool/main/s/stray/stray_0.1_all.deb"
    s3_env.client().put_object(Bucket=s3_env.bucket, Key=f"{prefix}/{stray}", Body=b"junk")
    # A per-index Release (as Debian and aptly write them) is not a suite: it does not stop pruning.
    s3_env.client().put_object(
        Bucket=s3_env.bucket,
        Key=f"{prefix}/dists/staging/main/binary-amd64/Release",
        Body=b"Archive: staging\nComponent: main\nArchitecture: amd64\n",
    )
    old_by_hash = {
        k for k in _objects(s3_env, prefix) if k.startswith("dists/prod/main/binary-amd64/by-hash/")
    }

    # Fails just before the new InRelease (hello_1.1 is there already, from staging; then the
    # 3 by-hash copies, 3 indices, Release, Release.gpg): nothing may be pruned yet.
    _publish_failing(store, publish_key, s3_env, s3_proxy, prefix, 8, monkeypatch, prune=True)
    assert s3_proxy.failed == [f"{prefix}/dists/prod/InRelease"]
    objects = _objects(s3_env, prefix)
    assert hello10 in objects and stray in objects

    r = _publish(store, publish_key, s3_env, "v2", prefix, "--prune")
    assert r.exit_code == 0, r.output
    assert "removed 1 object no suite needs any more" in r.stderr, r.stderr
    objects = _objects(s3_env, prefix)
    assert hello10 not in objects and hello11 in objects
    # mirrorkit did not put the stray object there (another tool, or a hand): it stays.
    assert stray in objects
    assert isinstance(first.result, s3mod.S3PublishResult)
    v1_pool = {k for k in first.result.uploaded if k.startswith("pool/")}
    assert {k for k in objects if k.startswith("pool/")} == v1_pool - {hello10} | {hello11, stray}
    record = _body(s3_env, prefix, ".mirrorkit/pool.sha256").decode()
    assert hello11 in record and hello10 not in record and stray not in record
    # The previous generation's by-hash indices stay for clients that read its InRelease.
    assert old_by_hash <= set(objects)

    _apt_for(apt_client, s3_env, prefix, tmp_path, first.result.key_name)
    assert apt_client.update().returncode == 0
    assert _candidate(apt_client, "hello") == "1.1"
    inst = apt_client.install_download_only("hello", "tool", "plus")
    assert inst.returncode == 0, inst.stdout


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (
            "Suite: broken\nSHA256:\n " + "ab" * 32 + " 123 main/binary-amd64/Packages\n",
            "dists/broken/main/binary-amd64/Packages is missing",
        ),
        ("Suite: broken\nnot a release file\n", "dists/broken/Release: "),
    ],
)
def test_prune_refuses_when_a_suite_cannot_be_read(
    store: Path, publish_key: TestKey, s3_env: S3Server, prefix: str, broken: str, message: str
) -> None:
    _publish_api(store, publish_key, s3_env, "v1", prefix)
    s3_env.client().put_object(
        Bucket=s3_env.bucket, Key=f"{prefix}/dists/broken/Release", Body=broken.encode()
    )
    before = {k for k in _objects(s3_env, prefix) if k.startswith("pool/")}
    r = _publish(store, publish_key, s3_env, "v2", prefix, "--prune")
    assert r.exit_code == 1, r.output
    assert "suite prod is published, but pruning stopped" in r.stderr
    assert message in r.stderr and "nothing was deleted" in r.stderr
    after = {k for k in _objects(s3_env, prefix) if k.startswith("pool/")}
    assert before <= after  # nothing was deleted


# -- sync publishes to S3 as the profile says ------------------------------------------------


def test_sync_publishes_to_s3(
    tmp_path: Path, s3_env: S3Server, prefix: str, publish_key: TestKey,
    upstream: Any, archive: Any, apt_client: AptClient,
) -> None:  # fmt: skip
    profile = tmp_path / "p.toml"
    profile.write_text(
        f"""
[[upstream]]
name = "base"
url = "{upstream.url}"
suite = "stable"
keyring = "{archive.key.public_keyring}"

[publish]
s3 = "s3://{s3_env.bucket}/{prefix}"
endpoint_url = "{s3_env.endpoint}"
suite = "prod"
key = "{publish_key.fingerprint}"
"""
    )
    r = run_cli(tmp_path / "store", "sync", str(profile), gnupghome=publish_key.gnupghome)
    assert r.exit_code == 0, r.output
    assert f"URIs: {s3_env.http_url(prefix)}/" in r.stdout
    key = re.search(r"keyrings/(mirrorkit-archive-[0-9a-f]+)\.gpg", r.stdout)
    assert key, r.stdout
    _apt_for(apt_client, s3_env, prefix, tmp_path, key.group(1))
    assert apt_client.update().returncode == 0
    inst = apt_client.install_download_only("hello")
    assert inst.returncode == 0, inst.stdout


def test_target_parsing_refuses_bad_urls() -> None:
    t = s3mod.S3Target.parse("s3://apt//a/b/", endpoint_url="http://127.0.0.1:9000/")
    assert (t.bucket, t.prefix, t.endpoint_url) == ("apt", "a/b", "http://127.0.0.1:9000")
    assert t.http_url() == "http://127.0.0.1:9000/apt/a/b/"
    assert s3mod.S3Target.parse("s3://apt").http_url("eu-west-1") == (
        "https://apt.s3.eu-west-1.amazonaws.com/"
    )
    for bad in ("apt/x", "s3://", "s3://a/../x", "s3://a_b!/x", "s3://apt/x?y=1"):
        with pytest.raises(UsageError, match="invalid"):
            s3mod.S3Target.parse(bad)


def test_an_upload_the_server_stored_differently_is_caught() -> None:
    bucket = s3mod.Bucket(s3mod.S3Target.parse("s3://apt/x"), client=None)
    obj = s3mod.Obj.from_bytes("pool/main/a/a/a_1_all.deb", b"the bytes we sent")
    bucket._verify_etag(obj, {"ETag": f'"{obj.md5()}"'})
    with pytest.raises(PublishError, match="stored other bytes than were sent"):
        bucket._verify_etag(obj, {"ETag": '"' + "0" * 32 + '"'})
    with pytest.raises(PublishError, match="stored other bytes"):
        bucket._verify_etag(obj, {"ETag": '"' + "0" * 32 + '-1"'})
    # An ETag that is not an MD5 (SSE-KMS) cannot be checked.
    bucket._verify_etag(obj, {"ETag": '"' + "0" * 32 + '"', "ServerSideEncryption": "aws:kms"})


def test_same_content_decisions() -> None:
    obj = s3mod.Obj.from_bytes("x", b"abc")
    md5 = obj.md5()
    assert s3mod.same_content({"ContentLength": 3, "Metadata": {"sha256": obj.sha256}}, obj)
    assert s3mod.same_content({"ContentLength": 3, "Metadata": {"sha256": "0" * 64}}, obj) is False
    assert (
        s3mod.same_content({"ContentLength": 4, "Metadata": {"sha256": obj.sha256}}, obj) is False
    )
    assert s3mod.same_content({"ContentLength": 3, "ETag": f'"{md5}"'}, obj) is True
    assert s3mod.same_content({"ContentLength": 3, "ETag": '"' + "1" * 32 + '"'}, obj) is False
    assert s3mod.same_content({"ContentLength": 3, "ETag": f'"{md5}-1"'}, obj) is None
