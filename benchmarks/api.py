"""api: aptly's REST API, ``mirrorkit api serve`` beside ``aptly api serve`` on the same data,
driven by the same HTTP calls (a keep-alive httpx client per worker, on 127.0.0.1).

Rows: the latency of ``GET /api/snapshots`` (sequential, over 20 snapshots), of a one-package
round trip as CI does it (upload to a job's directory, add the directory to a repo, ``PUT``
the publish), and the throughput of 8 concurrent uploaders (upload + add, each its own job
directory; one publish at the end). aptly publishes unsigned (``Signing.Skip``); mirrorkit
always signs (a throwaway key), so its publishes include gpg's time.
"""

from __future__ import annotations

import json
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench import Bench
from benchmarks.common import APTLY, child_env, render_table
from tests.helpers.debs import build_deb

SNAPSHOTS = 20
WORKERS = 8


class _Server:
    def __init__(self, name: str, url: str, proc: subprocess.Popen[str], auth: Any) -> None:
        self.name, self.url, self.proc, self.auth = name, url, proc, auth

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=self.auth, timeout=120)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _start_mirrorkit(bench: Bench, work: Path) -> _Server:
    from mirrorkit import api

    store = work / "mk-store"
    users = work / "mk-users"
    secret = api.api_user_add("bench", role="admin", users=users, store=store).secret
    cmd = [
        *(sys.executable, "-m", "mirrorkit", "--store", str(store)),
        *("--gnupghome", str(bench.key.gnupghome), "api", "serve", "--listen", "127.0.0.1:0"),
        *("--users", str(users), "--public-dir", str(work / "mk-public")),
        *("--key", bench.key.fingerprint, "-q"),
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=child_env())
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if " at " not in line:
        proc.kill()
        raise RuntimeError(f"mirrorkit api serve did not start: {line!r}")
    url = line.split(" at ", 1)[1].split()[0]
    return _Server("mirrorkit api serve", url, proc, ("bench", secret))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _start_aptly(bench: Bench, work: Path) -> _Server:
    port = _free_port()
    conf = work / "aptly.conf"
    conf.write_text(json.dumps({"rootDir": str(work / "aptly"), "gpgDisableSign": True}))
    cmd = [APTLY, f"-config={conf}", "api", "serve", f"-listen=127.0.0.1:{port}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            httpx.get(url + "/api/version", timeout=1)
            break
        except httpx.TransportError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise RuntimeError("aptly api serve did not start") from None
            time.sleep(0.1)
    return _Server("aptly api serve", url, proc, None)


def _ok(r: httpx.Response) -> Any:
    if r.status_code >= 300:
        raise RuntimeError(f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text}")
    return r.json()


def _add(client: httpx.Client, deb: Path, job: str) -> None:
    _ok(client.post(f"/api/files/{job}", files={"file": (deb.name, deb.read_bytes())}))
    _ok(client.post(f"/api/repos/bench/file/{job}"))


def _publish(client: httpx.Client) -> None:
    _ok(client.put("/api/publish/:./stable", json={"Signing": {"Skip": True}}))


def _setup(server: _Server, debs: list[Path]) -> None:
    with server.client() as c:
        _ok(c.post("/api/repos", json={"Name": "bench", "DefaultDistribution": "stable"}))
        _add(c, debs[0], "setup")
        body = {"SourceKind": "local", "Sources": [{"Name": "bench", "Component": "main"}],
                "Distribution": "stable", "Signing": {"Skip": True}}  # fmt: skip
        _ok(c.post("/api/publish/:.", json=body))
        for n in range(SNAPSHOTS):
            _ok(c.post("/api/repos/bench/snapshots", json={"Name": f"snap-{n:02d}"}))


def _ms(values: list[float]) -> str:
    return f"{statistics.median(values) * 1000:.1f}"


def _p95(values: list[float]) -> str:
    ordered = sorted(values)
    return f"{ordered[int(0.95 * (len(ordered) - 1))] * 1000:.1f}"


def _measure(server: _Server, debs: list[Path], rounds: int, per_worker: int) -> dict[str, str]:
    out: dict[str, str] = {}
    with server.client() as c:
        lat = []
        for _ in range(200 if rounds > 3 else 50):
            t = time.perf_counter()
            _ok(c.get("/api/snapshots"))
            lat.append(time.perf_counter() - t)
        out["list"], out["list95"] = _ms(lat), _p95(lat)
        trip = []
        for n in range(rounds):
            t = time.perf_counter()
            _add(c, debs[1 + n], f"trip-{n}")
            _publish(c)
            trip.append(time.perf_counter() - t)
        out["trip"] = _ms(trip)
    start = 1 + rounds
    errors: list[str] = []

    def worker(w: int) -> None:
        try:
            with server.client() as c:
                for k in range(per_worker):
                    _add(c, debs[start + w * per_worker + k], f"w{w}-{k}")
        except Exception as exc:  # reported below
            errors.append(str(exc))

    t = time.perf_counter()
    threads = [threading.Thread(target=worker, args=(w,)) for w in range(WORKERS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    with server.client() as c:
        _publish(c)
        held = len(_ok(c.get("/api/repos/bench/packages")))
    seconds = time.perf_counter() - t
    if errors:
        raise RuntimeError(f"{len(errors)} uploader(s) failed: {errors[0]}")
    expected = start + WORKERS * per_worker
    if held != expected and "mirrorkit" in server.name:
        raise RuntimeError(f"the repo holds {held} packages, {expected} were added")
    out["rate"] = f"{WORKERS * per_worker / seconds:.1f}"
    # aptly 1.5 loses concurrent adds to one repo (a read-modify-write race): say how many.
    out["lost"] = str(expected - held)
    return out


def run_section(bench: Bench) -> None:
    rounds = 3 if bench.quick else 10
    per_worker = 3 if bench.quick else 10
    print(f"\n== api: REST API, {SNAPSHOTS} snapshots; {rounds} round trips; {WORKERS} uploaders "
          f"x {per_worker} packages ==")  # fmt: skip
    if not bench.have_aptly or shutil.which("gpg") is None:
        print("SKIPPED: aptly (Debian's package) and gpg are needed.")
        return
    work = bench.tmp / "api"
    work.mkdir()
    bench.log("  building the packages (build_deb)...")
    count = 1 + rounds + WORKERS * per_worker
    debs = [build_deb(work / "debs", f"pkg{n:03d}", "1.0", "amd64") for n in range(count)]
    results: dict[str, dict[str, str]] = {}
    for start in (_start_mirrorkit, _start_aptly):
        (work / start.__name__).mkdir()
        server = start(bench, work / start.__name__)
        try:
            bench.log(f"  {server.name}: setting up, then measuring")
            _setup(server, debs)
            results[server.name] = _measure(server, debs, rounds, per_worker)
        except RuntimeError as exc:
            print(f"FAILED: {server.name}: {exc}")
            if "mirrorkit" in server.name:
                bench.failed = True
        finally:
            server.stop()
    headers = ["server", "GET /api/snapshots ms (median, p95)", "upload+add+publish ms",
               f"{WORKERS} uploaders, packages/s", "packages lost"]  # fmt: skip
    rows = [
        [name, f"{r['list']} / {r['list95']}", r["trip"], r["rate"], r["lost"]]
        for name, r in results.items()
    ]
    if rows:
        print(render_table(headers, rows))
