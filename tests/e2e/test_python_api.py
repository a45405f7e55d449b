"""The Python API as a program uses it: nothing but ``import mirrorkit``, run in a process of its
own (the worktree alone on its path), on a fresh store; once plainly and once inside a running
asyncio loop. Then real apt, with signature checking on, installs from what it published."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.apt import AptClient
from tests.helpers.archive import Archive
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]

PROGRAM = r"""
import asyncio, gc, json, sys
import mirrorkit

url, keyring, store, out, bundle, key, gnupghome, mode = sys.argv[1:]
before = (sys.getswitchinterval(), gc.isenabled(), gc.get_freeze_count())
done = {}


def first_steps():
    added = mirrorkit.mirror_add("up", url, "stable", components=["main"],
                                 architectures=["amd64"], keyring=keyring, store=store)
    done["added"] = [m.spec.name for m in added.mirrors]


def last_steps():
    snap = mirrorkit.snapshot_create(None, from_mirror="up", store=store)
    done["snapshot"] = [snap.name, snap.packages]
    web = mirrorkit.snapshot_filter(snap.name, "web", "hello", with_deps=True, store=store)
    done["filtered"] = sorted(p.ref for p in web.packages)
    pub = mirrorkit.publish_fs("web", out, suite="prod", key=key, store=store,
                               gnupghome=gnupghome)
    done["published"] = [pub.result.suite, pub.key_location]
    exported = mirrorkit.bundle_export(["web"], output=bundle, key=key, store=store,
                                       gnupghome=gnupghome)
    done["bundle"] = [str(p.path) for p in exported.files]
    try:
        mirrorkit.snapshot_show("no-such-snapshot", store=store)
    except mirrorkit.NotFoundError as exc:
        done["not_found"] = exc.message


if mode == "plain":
    first_steps()
    done["update"] = mirrorkit.mirror_update("up", store=store).packages
    last_steps()
else:
    async def main():
        ticks = 0

        async def ticker():  # the caller's loop keeps running while the downloads do
            nonlocal ticks
            while True:
                await asyncio.sleep(0.001)
                ticks += 1

        task = asyncio.create_task(ticker())
        first_steps()  # the sync API, called from a running loop
        done["update"] = (await mirrorkit.mirror_update_async("up", store=store)).packages
        done["update_again"] = mirrorkit.mirror_update("up", store=store).changed
        last_steps()
        task.cancel()
        done["ticked"] = ticks > 0

    asyncio.run(main())
done["state_restored"] = before == (sys.getswitchinterval(), gc.isenabled(), gc.get_freeze_count())
print(json.dumps(done))
"""


def _run_program(tmp_path: Path, mode: str, upstream: FaultServer, archive: Archive,
                 publish_key: TestKey) -> dict[str, object]:  # fmt: skip
    script = tmp_path / "program.py"
    script.write_text(PROGRAM)
    store, out, bundle = tmp_path / f"store-{mode}", tmp_path / f"out-{mode}", tmp_path / "b"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MIRRORKIT_HOME")}
    env["PYTHONPATH"] = str(REPO)
    proc = subprocess.run(
        [sys.executable, str(script), upstream.url,
         str(archive.key.public_keyring), str(store), str(out), f"{bundle}-{mode}.bundle",
         publish_key.fingerprint, str(publish_key.gnupghome), mode],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # the API prints nothing
    result: dict[str, object] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("mode", ["plain", "in-a-running-loop"])
def test_a_program_drives_mirrorkit_through_its_python_api(
    tmp_path: Path, mode: str, upstream: FaultServer, archive: Archive, publish_key: TestKey,
    apt_client: AptClient,
) -> None:  # fmt: skip
    done = _run_program(tmp_path, mode, upstream, archive, publish_key)
    assert done["added"] == ["up"] and done["update"] == 7
    assert done["snapshot"][1] == 7  # type: ignore[index]
    assert done["filtered"] == ["hello_1.0_amd64", "libgreet_1.0_amd64"]
    assert done["bundle"] == [f"{tmp_path / 'b'}-{mode}.bundle"]
    assert "no-such-snapshot" in str(done["not_found"])
    assert done["state_restored"] is True
    if mode != "plain":
        assert done["update_again"] is False and done["ticked"] is True

    published = done["published"]
    assert isinstance(published, list)
    suite, key_file = str(published[0]), str(published[1])
    with FaultServer(tmp_path / f"out-{mode}") as srv:
        apt_client.add_source(srv.url, suite, ["main"], Path(key_file))
        upd = apt_client.update()
        assert upd.returncode == 0, upd.stdout
        inst = apt_client.install_download_only("hello")
        assert inst.returncode == 0, inst.stdout
        assert apt_client.downloaded() == ["hello_1.0_amd64.deb", "libgreet_1.0_amd64.deb"]
        assert apt_client.install_download_only("tool").returncode != 0  # filtered out
