"""bundle: a snapshot of a few thousand .debs exported and imported by mirrorkit, beside
``tar | zstd`` and ``sha256sum`` over the same files."""

from __future__ import annotations

import shutil
import sys

from benchmarks.archives import payload_archive
from benchmarks.bench import Bench
from benchmarks.common import BenchError, Row, child_env, render_table, run
from benchmarks.sendfile import SendfileServer


def run_section(bench: Bench) -> None:
    count = 200 if bench.quick else 2000
    print(f"\n== bundle: a snapshot of {count} .debs of random payload ==")
    missing = [t for t in ("tar", "zstd", "sha256sum") if shutil.which(t) is None]
    if missing:
        print(f"SKIPPED: {', '.join(missing)} needed for the reference.")
        return
    work = bench.tmp / "bundle"
    root = work / "www"
    root.mkdir(parents=True)
    bench.log("  building the payload archive and a store with its snapshot...")
    _, total = payload_archive(root, work, count, bench.key)
    mb = total / 1e6
    store = work / "store"
    with SendfileServer(root) as server:
        bench.mirrorkit_cli(store, server.url, str(bench.key.public_keyring))
    cli = [sys.executable, "-m", "mirrorkit", "--store", str(store), "-q"]
    run([*cli, "snapshot", "create", "snap", "--from-mirror", "bench"]).check()
    key_env = child_env({"GNUPGHOME": str(bench.key.gnupghome)})
    print(f"payload: {count} pool objects, {mb:.1f} MB (random payload: incompressible)")

    exp = Row("mirrorkit bundle export (CLI)", mbytes=mb)
    exp_ref = Row("tar -cf - pool | zstd -T0 -3 (reference)", mbytes=mb)
    exp_ref1 = Row("tar -cf - pool | zstd -T0 -1 (mirrorkit's level)", mbytes=mb)
    exp_ref_h = Row("the -3 reference + sha256sum of every file", mbytes=mb)
    imp = Row("mirrorkit bundle import (CLI)", mbytes=mb)
    imp_ref = Row("zstd -d | tar -x + sha256sum (reference)", mbytes=mb)
    bundle = work / "snap.bundle"
    tarball = work / "pool.tar.zst"
    counter = iter(range(1_000_000))

    def attempt(row: Row) -> None:
        if row is exp:
            bundle.unlink(missing_ok=True)
            cmd = [*cli, "bundle", "export", "snap", "-o", str(bundle)]
            proc = run([*cmd, "--key", bench.key.fingerprint], env=key_env).check()
            row.extra.append({"size": bundle.stat().st_size})
        elif row in (exp_ref, exp_ref1, exp_ref_h):
            tarball.unlink(missing_ok=True)
            level = "-1" if row is exp_ref1 else "-3"
            script = f'tar -cf - -C "$1" pool | zstd -q -T0 {level} -o "$2"'
            if row is exp_ref_h:  # mirrorkit re-hashes every object as it goes out
                hashes = 'find "$1/pool" -type f -print0 | xargs -0 sha256sum >/dev/null'
                script = f"{hashes} & {script}; wait $!"
            proc = run(["bash", "-c", script, "-", str(store), str(tarball)]).check()
            row.extra.append({"size": tarball.stat().st_size})
        elif row is imp:
            target = work / f"import-{next(counter)}"
            try:
                into = [sys.executable, "-m", "mirrorkit", "--store", str(target), "-q"]
                keyring = str(bench.key.public_keyring)
                proc = run([*into, "bundle", "import", str(bundle), "--keyring", keyring])
                proc.check()
                got = sum(1 for p in (target / "pool").rglob("*") if p.is_file())
                if got != count:
                    raise BenchError(f"bundle import stored {got} objects, not {count}")
            finally:
                shutil.rmtree(target, ignore_errors=True)
        else:
            target = work / f"untar-{next(counter)}"
            target.mkdir()
            script = (
                'zstd -q -d -c "$1" | tar -x -C "$2" && '
                'find "$2" -type f -print0 | xargs -0 sha256sum > /dev/null'
            )
            try:
                proc = run(["bash", "-c", script, "-", str(tarball), str(target)]).check()
            finally:
                shutil.rmtree(target, ignore_errors=True)
        row.seconds.append(proc.seconds)
        row.rss_mb.append(proc.rss_mb)

    # Exports before imports within a round: each import reads the export just written.
    # The -1 reference goes first: the import reference reads the -3 one's tarball.
    bench.measure([exp, exp_ref1, exp_ref_h, exp_ref, imp, imp_ref], attempt)
    headers = ["", "runs", "seconds", "min-max", "MB/s", "peak RSS MB", "output MB"]
    table = []
    for row in (exp, exp_ref, exp_ref1, exp_ref_h, imp, imp_ref):
        if not row.ok:
            table.append([row.name, "-", "error", "", "", "", ""])
            continue
        size = f"{row.extra[-1]['size'] / 1e6:.1f}" if row.extra else ""
        table.append(
            [
                row.name,
                str(len(row.seconds)),
                f"{row.median:.2f}",
                row.spread(),
                f"{row.mb_s:.0f}",
                f"{max(row.rss_mb):.0f}",
                size,
            ]
        )
    print(render_table(headers, table))
    print(
        "seconds: median wall time of the whole command (mirrorkit: start-up, snapshot "
        "load, signing or\n  verification included). MB/s = payload MB / seconds."
    )
    for name, ours, ref in (("export", exp, exp_ref), ("import", imp, imp_ref)):
        if ours.ok and ref.ok:
            share = ref.median / ours.median
            verdict = "MET" if share >= 0.9 else "MISSED"
            if bench.quick:
                verdict = "not judged: --quick's 30 MB are mostly start-up"
            peak = max(ours.rss_mb)
            print(
                f"{name}: mirrorkit/reference throughput {share:.2f} (target >= 0.9: "
                f"{verdict}); peak RSS {peak:.0f} MB (target < 200: "
                f"{'MET' if peak < 200 else 'MISSED'})"
            )
    if exp.ok and exp_ref_h.ok:
        print(
            "export like for like (the reference also hashing every file, as mirrorkit "
            f"does): {exp_ref_h.median / exp.median:.2f}; not the issue's target"
        )
