"""download: a few thousand .debs of random payload served on 127.0.0.1: mirrorkit's update
beside curl, httpx alone and aptly, each into an empty target; and an unchanged update."""

from __future__ import annotations

import re
import shutil
import statistics

from benchmarks.archives import payload_archive
from benchmarks.bench import Bench
from benchmarks.common import (
    JOBS,
    UNCHANGED_TARGET_S,
    BenchError,
    Row,
    ratio,
    render_table,
    run,
    self_cmd,
)
from benchmarks.sendfile import SendfileServer
from tests.helpers.httpserver import FaultServer


def run_section(bench: Bench) -> None:
    count = 200 if bench.quick else 2000
    print(f"\n== download: {count} .debs of random payload, {JOBS} at a time ==")
    if shutil.which("curl") is None:
        print("SKIPPED: curl is needed for the reference.")
        return
    work = bench.tmp / "download"
    root = work / "www"
    root.mkdir(parents=True)
    bench.log("  building the payload archive (build_deb, build_archive)...")
    files, total = payload_archive(root, work, count, bench.key)
    mb = total / 1e6
    sizes = sorted(s for _, s in files)
    print(
        f"payload: {count} files, {mb:.1f} MB (sizes {sizes[0] / 1e3:.0f}-"
        f"{sizes[-1] / 1e3:.0f} kB, median {statistics.median(sizes) / 1e3:.0f} kB)"
    )
    keyring = str(bench.key.public_keyring)

    fast = bench.stack.enter_context(SendfileServer(root))
    slow = bench.stack.enter_context(FaultServer(root))
    curl_slow = Row("curl x8 <- tests' FaultServer (Python threads)", mbytes=mb)
    curl = Row("curl --parallel-max 8 (reference)", mbytes=mb)
    floor = Row("httpx x8 alone on httpcore: no hash, no write", mbytes=mb)
    floor_ours = Row("httpx x8 alone on mirrorkit's transport", mbytes=mb)
    mk = Row("mirrorkit mirror add + update --jobs 8", mbytes=mb)
    aptly = Row("aptly 1.5 mirror create + update, 8 at once", mbytes=mb)
    rows = [curl_slow, curl, floor, floor_ours, mk] + ([aptly] if bench.have_aptly else [])
    url_list = work / "urls.txt"
    url_list.write_text("".join(f"{fast.url}/{rel}\n" for rel, _ in files))
    counter = iter(range(1_000_000))

    def attempt(row: Row) -> None:
        target = work / f"run-{next(counter)}"
        target.mkdir()
        try:
            if row is floor or row is floor_ours:
                which = "httpx" if row is floor else "httpx-ours"
                proc = run(self_cmd("_child", which, str(url_list))).check()
                if proc.json()["bytes"] != total:
                    raise BenchError(f"httpx fetched {proc.json()['bytes']} bytes, not {total}")
                row.seconds.append(proc.seconds)
                row.rss_mb.append(proc.rss_mb)
            elif row is curl or row is curl_slow:
                url = fast.url if row is curl else slow.url
                proc = bench.curl_all(url, files, target)
                got = sum(p.stat().st_size for p in target.glob("*.deb"))
                if got != total:
                    raise BenchError(f"curl fetched {got} bytes, not {total}")
                row.seconds.append(proc.seconds)
                row.rss_mb.append(proc.rss_mb)
            elif row is mk:
                procs = bench.mirrorkit_cli(target / "store", fast.url, keyring, again=True)
                summary = procs[1].stdout
                match = re.search(r"fetched (\d+) files.*\(([\d.]+) MB/s\)", summary)
                if match is None or int(match.group(1)) != count:
                    raise BenchError(f"mirrorkit did not fetch {count} files: {summary}")
                if "unchanged" not in procs[2].stdout:
                    raise BenchError(f"the second update was not unchanged: {procs[2].stdout}")
                row.seconds.append(sum(p.seconds for p in procs[:2]))
                row.rss_mb.append(max(p.rss_mb for p in procs[:2]))
                row.extra.append(
                    {"fetch_mb_s": float(match.group(2)), "unchanged": procs[2].seconds}
                )
            else:
                procs, _ = bench.aptly_mirror(target, fast.url, "bench", keyring, again=True)
                pool = [p for p in (target / "aptly" / "pool").rglob("*") if p.is_file()]
                if len(pool) != count:
                    raise BenchError(f"aptly's pool holds {len(pool)} files, not {count}")
                row.seconds.append(sum(p.seconds for p in procs[:2]))
                row.rss_mb.append(max(p.rss_mb for p in procs[:2]))
                row.extra.append({"unchanged": procs[2].seconds})
        finally:
            shutil.rmtree(target, ignore_errors=True)

    bench.measure(rows, attempt)
    headers = ["", "runs", "seconds", "min-max", "MB/s", "peak RSS MB", "mirrorkit/this*"]
    table = []
    for row in rows:
        if not row.ok:
            table.append([row.name, "-", "error", "", "", "", ""])
            continue
        table.append(
            [
                row.name,
                str(len(row.seconds)),
                f"{row.median:.2f}",
                row.spread(),
                f"{row.mb_s:.0f}",
                f"{max(row.rss_mb):.0f}",
                ratio(mk.mb_s, row.mb_s) if mk.ok else "-",
            ]
        )
    print(render_table(headers, table))
    print(
        "seconds: median wall time of the whole commands (mirrorkit and aptly: both "
        "processes, start-up,\n  signature check, index download and parse included); "
        "MB/s = payload MB / seconds.\n* MB/s ratio: above 1, mirrorkit is faster than "
        "that row."
    )
    if mk.ok:
        fetch = statistics.median(e["fetch_mb_s"] for e in mk.extra)
        print(f"mirrorkit's own summary of its fetch phase (median): {fetch:.0f} MB/s")
    if curl.ok and curl_slow.ok:
        print(
            f"servers: curl reaches {curl.mb_s:.0f} MB/s on the sendfile server used for "
            f"every other row,\n  {curl_slow.mb_s:.0f} MB/s on the tests' FaultServer "
            "(too slow to measure a client against:\n  hence the sendfile server)."
        )
    if mk.ok and curl.ok:
        print(f"mirrorkit/curl MB/s: {mk.mb_s / curl.mb_s:.2f}")
    if mk.ok:
        unchanged = statistics.median(e["unchanged"] for e in mk.extra)
        verdict = "MET" if unchanged < UNCHANGED_TARGET_S else "MISSED"
        line = f"mirrorkit {unchanged:.2f} s (target < {UNCHANGED_TARGET_S} s: {verdict})"
        if aptly.ok:
            theirs = statistics.median(e["unchanged"] for e in aptly.extra)
            line += f", aptly {theirs:.2f} s"
        print(
            "unchanged update (the same 'mirror update' again, nothing new upstream; "
            f"median, whole command):\n  {line}"
        )
    if mk.ok and aptly.ok:
        verdict = "MET" if mk.mb_s >= aptly.mb_s else "MISSED"
        if bench.quick:
            verdict = "not judged: --quick's 200 files are mostly start-up"
        print(
            f"mirrorkit/aptly MB/s: {mk.mb_s / aptly.mb_s:.2f} "
            f"(target mirrorkit >= aptly: {verdict})"
        )
    print(
        "durability: mirrorkit verifies SHA256 and makes everything durable with one "
        "syncfs before it\n  commits its state (inside its timing); aptly verifies "
        "checksums but does not fsync; curl\n  neither verifies nor fsyncs. Each run "
        "starts from an empty target after a sync; the served\n  files are in the page "
        "cache (dropping caches is not possible here; one warm-up run each)."
    )


# --- bundle ------------------------------------------------------------------------------
