"""A local repo published to S3 (real SeaweedFS on 127.0.0.1), as deb-s3 and repoman users
do: the suite follows the repo, --publish takes a new build to apt in one step, and the client
stanza can be the s3:// form Debian's apt-transport-s3 reads."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from tests.helpers.apt import AptClient
from tests.helpers.debs import build_deb
from tests.helpers.gpgkeys import TestKey
from tests.mk import run_cli
from tests.s3.conftest import S3Server, anonymous_get

pytestmark = pytest.mark.e2e


def _candidate(apt: AptClient, pkg: str) -> str:
    m = re.search(r"Candidate: (\S+)", apt.policy(pkg).stdout)
    assert m
    return m.group(1)


def test_repo_to_s3_and_apt(
    tmp_path: Path, s3_env: S3Server, publish_key: TestKey, apt_client: AptClient
) -> None:
    store, debs = tmp_path / "store", tmp_path / "debs"
    prefix = f"repo/{uuid.uuid4().hex[:8]}"
    url = f"s3://{s3_env.bucket}/{prefix}"

    def ok(*args: str) -> str:
        r = run_cli(store, *args, gnupghome=publish_key.gnupghome)
        assert r.exit_code == 0, r.output
        return r.stdout + r.stderr

    ok("repo", "create", "ourapps", "--distribution", "prod")
    ok("repo", "add", "ourapps", str(build_deb(debs, "app", "1.0", "amd64")))
    text = ok("publish", "s3", "ourapps", url, "--key", publish_key.fingerprint,
              "--endpoint-url", s3_env.endpoint, "--client-url", "s3")  # fmt: skip
    assert f"URIs: {url}/\n" in text and "Suites: prod" in text

    key_name = re.search(r"(mirrorkit-archive-[0-9a-f]+)\.gpg", text)
    assert key_name
    status, _, key = anonymous_get(f"{s3_env.http_url(prefix)}/{key_name.group(1)}.gpg")
    assert status == 200
    keyfile = tmp_path / "key.gpg"
    keyfile.write_bytes(key)
    # apt-transport-s3 is not installed here: the same tree over plain HTTP.
    apt_client.add_source(s3_env.http_url(prefix), "prod", ["main"], keyfile)
    assert apt_client.update().returncode == 0
    assert _candidate(apt_client, "app") == "1.0"

    text = ok("repo", "add", "ourapps", str(build_deb(debs, "app", "1.1", "amd64")), "--publish")
    assert f"as suite prod in {url}" in text and f"URIs: {url}/" in text
    assert apt_client.update().returncode == 0
    assert _candidate(apt_client, "app") == "1.1"
    inst = apt_client.install_download_only("app")
    assert inst.returncode == 0 and apt_client.downloaded() == ["app_1.1_amd64.deb"]
