"""proxy: the download payload fetched direct and through a real forward proxy (Debian's
tinyproxy on 127.0.0.1), mirrorkit beside curl through the same proxy in the same run.

Through a proxy, mirrorkit's requests go to httpx's own transport (the fast one is for direct
connections only); the proxy forwards one request per connection (tinyproxy speaks HTTP/1.0 to
its clients), so every file costs a new connection to the proxy and from it to the server.
"""

from __future__ import annotations

import re
import shutil
import sys

from benchmarks.archives import payload_archive
from benchmarks.bench import Bench
from benchmarks.common import JOBS, BenchError, Proc, Row, child_env, ratio, render_table, run
from benchmarks.sendfile import SendfileServer
from tests.helpers.proxy import TinyProxy


def run_section(bench: Bench) -> None:
    count = 200 if bench.quick else 2000
    print(f"\n== proxy: {count} .debs of random payload, {JOBS} at a time, direct and proxied ==")
    if shutil.which("curl") is None or shutil.which("tinyproxy") is None:
        print("SKIPPED: curl and tinyproxy are needed.")
        return
    work = bench.tmp / "proxy"
    root = work / "www"
    root.mkdir(parents=True)
    bench.log("  building the payload archive (build_deb, build_archive)...")
    files, total = payload_archive(root, work, count, bench.key)
    mb = total / 1e6
    keyring = str(bench.key.public_keyring)
    server = bench.stack.enter_context(SendfileServer(root))
    proxy = bench.stack.enter_context(TinyProxy(work / "tinyproxy"))
    via = {"http_proxy": proxy.url}

    curl_direct = Row("curl --parallel-max 8, direct", mbytes=mb)
    curl_proxy = Row("curl --parallel-max 8, via tinyproxy", mbytes=mb)
    mk_direct = Row("mirrorkit mirror add + update, direct", mbytes=mb)
    mk_proxy = Row("mirrorkit mirror add + update, via tinyproxy", mbytes=mb)
    rows = [curl_direct, curl_proxy, mk_direct, mk_proxy]
    counter = iter(range(1_000_000))

    def curl(target_env: dict[str, str], target: str) -> Proc:
        config = work / f"curl-{target.rsplit('/', 1)[-1]}.conf"
        with config.open("w") as fh:
            for rel, _ in files:
                name = rel.rsplit("/", 1)[1]
                fh.write(f'url = "{server.url}/{rel}"\noutput = "{target}/{name}"\n')
        cmd = ["curl", "--parallel", "--parallel-immediate", "--parallel-max", str(JOBS)]
        cmd += ["-sS", "--fail", "--config", str(config)]
        if "http_proxy" in target_env:
            cmd += ["--proxy", target_env["http_proxy"]]
        else:
            cmd += ["--noproxy", "*"]
        return run(cmd).check()

    def mirrorkit(store: str, extra: dict[str, str]) -> list[Proc]:
        env = child_env(extra)
        cli = [sys.executable, "-m", "mirrorkit", "--store", store, "-q", "mirror"]
        add = run([*cli, "add", "bench", server.url, "bench", "--keyring", keyring], env=env)
        update = run([*cli, "update", "bench", "--jobs", str(JOBS)], env=env)
        return [add.check(), update.check()]

    def attempt(row: Row) -> None:
        target = work / f"run-{next(counter)}"
        target.mkdir()
        try:
            before = len(proxy.requests())
            if row in (curl_direct, curl_proxy):
                proc = curl(via if row is curl_proxy else {}, str(target))
                got = sum(p.stat().st_size for p in target.glob("*.deb"))
                if got != total:
                    raise BenchError(f"curl fetched {got} bytes, not {total}")
                row.seconds.append(proc.seconds)
                row.rss_mb.append(proc.rss_mb)
            else:
                procs = mirrorkit(str(target / "store"), via if row is mk_proxy else {})
                match = re.search(r"fetched (\d+) files", procs[1].stdout)
                if match is None or int(match.group(1)) != count:
                    raise BenchError(f"mirrorkit did not fetch {count} files: {procs[1].stdout}")
                row.seconds.append(sum(p.seconds for p in procs))
                row.rss_mb.append(max(p.rss_mb for p in procs))
            through = len(proxy.requests()) - before
            proxied = row in (curl_proxy, mk_proxy)
            if (proxied and through < count) or (not proxied and through):
                raise BenchError(f"{row.name}: {through} requests went through the proxy")
        finally:
            shutil.rmtree(target, ignore_errors=True)

    bench.measure(rows, attempt)
    headers = ["", "runs", "seconds", "min-max", "MB/s", "peak RSS MB", "mirrorkit/curl*"]
    table = []
    for row in rows:
        if not row.ok:
            table.append([row.name, "-", "error", "", "", "", ""])
            continue
        peer = {mk_direct.name: curl_direct, mk_proxy.name: curl_proxy}.get(row.name)
        table.append(
            [
                row.name,
                str(len(row.seconds)),
                f"{row.median:.2f}",
                row.spread(),
                f"{row.mb_s:.0f}",
                f"{max(row.rss_mb):.0f}",
                ratio(row.mb_s, peer.mb_s) if peer is not None and peer.ok else "",
            ]
        )
    print(render_table(headers, table))
    print(
        "seconds: median wall time (mirrorkit: mirror add + update, start-up, signature check,\n"
        "  indices, SHA256 and one syncfs included; curl: the downloads only).\n"
        "* MB/s ratio against curl on the same path (direct or via the same tinyproxy).\n"
        "Every run checks the proxy's log: all requests through it, or none."
    )
