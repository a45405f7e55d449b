"""An index listed with its correct hash in a signed Release that decompresses to more than
the limit is refused, and nothing is stored (issue 14, item 4)."""

from __future__ import annotations

import hashlib
import re
import time
import zlib
from collections.abc import Callable
from pathlib import Path

from mirrorkit import archive as core_archive
from tests.helpers.archive import build_archive, resign
from tests.helpers.bundles import tree_digest
from tests.helpers.gpgkeys import TestKey
from tests.helpers.httpserver import FaultServer
from tests.mk import run_cli


def test_a_signed_index_that_decompresses_past_the_limit_is_refused(
    tmp_path: Path, test_key: TestKey, debs_dir: dict[str, Path],
    make_server: Callable[[Path], FaultServer],
) -> None:  # fmt: skip
    up = build_archive(tmp_path / "up", test_key, {"main": [debs_dir["hello"]]},
                       compressions=("gz",), by_hash=False)  # fmt: skip
    index = up.dists / "main/binary-amd64/Packages.gz"
    real = zlib.decompress(index.read_bytes(), 47)
    # The real stanzas, then zeros past the limit: a few hundred kB on the wire.
    c = zlib.compressobj(1, zlib.DEFLATED, 31)
    chunk = b"\0" * (8 << 20)
    parts = [c.compress(real + b"\n")]
    parts += [c.compress(chunk) for _ in range(core_archive.MAX_INDEX_SIZE // len(chunk) + 1)]
    bomb = b"".join(parts) + c.flush()
    assert len(bomb) < 2 << 20
    index.write_bytes(bomb)
    rel = "main/binary-amd64/Packages.gz"
    text = up.release.read_text()
    for algo, width in (("md5", 32), ("sha256", 64)):
        digest = hashlib.new(algo, bomb).hexdigest()
        line = rf"^ [0-9a-f]{{{width}}} +\d+ {rel}$"
        text = re.sub(line, f" {digest} {len(bomb)} {rel}", text, flags=re.M)
    assert hashlib.sha256(bomb).hexdigest() in text
    up.release.write_text(text)
    resign(up)

    srv = make_server(up.root)
    store = tmp_path / "store"
    r = run_cli(store, "mirror", "add", "up", srv.url, "stable",
                "--keyring", str(test_key.public_keyring))  # fmt: skip
    assert r.exit_code == 0, r.output
    before = tree_digest(store)
    started = time.monotonic()
    r = run_cli(store, "mirror", "update", "up")
    assert r.exit_code == 1, r.output
    assert f"{rel}: decompresses to more than 256 MiB, the limit for an index" in r.stderr
    assert "hint: " in r.stderr and "Nothing was stored" in r.stderr
    assert time.monotonic() - started < 30
    assert tree_digest(store) == before
