"""Real source packages (``dpkg-source -b``) and udebs (``dpkg-deb``) for tests.

Nothing here imports mirrorkit: the .dsc files, tarballs and the Sources indices that
``apt-ftparchive sources`` writes from them are an independent oracle for what mirrorkit must
accept and publish.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

from tests.helpers.debs import FIXED_MTIME, MAINTAINER, build_deb

__all__ = ["build_source", "build_udeb", "dsc_files"]


def _upstream(version: str) -> str:
    v = version.split(":", 1)[-1]
    return v.rsplit("-", 1)[0] if "-" in v else v


def build_source(
    outdir: Path, name: str, version: str, binaries: list[str], *, size: int = 2000
) -> Path:
    """Build source package ``name`` ``version`` (3.0 (quilt) when the version has a Debian
    revision, else 3.0 (native)) with ``dpkg-source -b`` in ``outdir``; returns the .dsc.
    ``size`` bytes of upstream data make the tarballs a realistic few kilobytes."""
    outdir.mkdir(parents=True, exist_ok=True)
    upstream = _upstream(version)
    native = "-" not in version.split(":", 1)[-1]
    work = outdir / f"{name}-{upstream}"
    if work.exists():
        shutil.rmtree(work)
    (work / "debian" / "source").mkdir(parents=True)
    seed = f"{name} {version}\n".encode()
    (work / "README").write_bytes(seed + (seed * (size // len(seed) + 1))[:size])
    if not native:
        orig = outdir / f"{name}_{upstream}.orig.tar.gz"
        with tarfile.open(orig, "w:gz") as tar:
            info = tarfile.TarInfo(f"{name}-{upstream}/README")
            data = (work / "README").read_bytes()
            info.size, info.mtime = len(data), FIXED_MTIME
            tar.addfile(info, io.BytesIO(data))
    control = [
        f"Source: {name}",
        "Section: misc",
        "Priority: optional",
        f"Maintainer: {MAINTAINER}",
        "Standards-Version: 4.6.2",
        "Build-Depends: debhelper-compat (= 13)",
        "",
    ]
    for binary in binaries:
        arch = "all" if binary.endswith("-data") else "any"
        control += [f"Package: {binary}", f"Architecture: {arch}",
                    f"Description: {binary} for the tests", ""]  # fmt: skip
    (work / "debian" / "control").write_text("\n".join(control))
    (work / "debian" / "changelog").write_text(
        f"{name} ({version}) unstable; urgency=medium\n\n  * Test build.\n\n"
        f" -- {MAINTAINER}  Tue, 14 Nov 2023 22:13:20 +0000\n"
    )
    rules = work / "debian" / "rules"
    rules.write_text("#!/usr/bin/make -f\n%:\n\tdh $@\n")
    rules.chmod(0o755)
    (work / "debian" / "source" / "format").write_text(
        "3.0 (native)\n" if native else "3.0 (quilt)\n"
    )
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(FIXED_MTIME), "LC_ALL": "C"}
    subprocess.run(["dpkg-source", "-b", work.name], cwd=outdir, env=env, check=True,
                   capture_output=True)  # fmt: skip
    shutil.rmtree(work)
    return outdir / f"{name}_{version.split(':', 1)[-1]}.dsc"


def dsc_files(dsc: Path) -> list[Path]:
    """The .dsc and every file it lists (read from its Files field, as dpkg-source does)."""
    names = []
    in_files = False
    for line in dsc.read_text().splitlines():
        if line.startswith("Files:"):
            in_files = True
            continue
        if in_files and line.startswith(" "):
            names.append(line.split()[2])
        else:
            in_files = False
    return [dsc, *(dsc.parent / n for n in names)]


def build_udeb(
    outdir: Path,
    name: str,
    version: str,
    arch: str = "amd64",
    *,
    depends: str | None = None,
    source: str | None = None,
) -> Path:
    """A .udeb: a binary package built by dpkg-deb with ``Package-Type: udeb``, named
    ``name_version_arch.udeb`` as the debian-installer archive names them."""
    deb = build_deb(outdir / "udeb-build", name, version, arch, depends=depends, source=source,
                    section="debian-installer", extra_fields={"Package-Type": "udeb"})  # fmt: skip
    udeb = outdir / deb.name.replace(".deb", ".udeb")
    shutil.move(deb, udeb)
    return udeb


def build_source_set(outdir: Path, *, security: bool = False) -> dict[str, list[Path]]:
    """The packages of the source-package tests: {"debs": [...], "udebs": [...], "dscs": [...]}.

    hello 1.0-1 (source hello, quilt) depends on libgreet; libgreet 2.0-1+b1 is a binNMU of
    source greet 2.0-1 (``Source: greet (2.0-1)``); tool 3.0 (native) stands alone; the udeb
    hello-udeb comes from source hello. ``security``: hello 1.0-1+deb1 (binary and source)."""
    if security:
        version = "1.0-1+deb1"
        return {
            "debs": [build_deb(outdir, "hello", version, "amd64", depends="libgreet")],
            "udebs": [],
            "dscs": [build_source(outdir / "src", "hello", version, ["hello", "hello-udeb"])],
        }
    return {
        "debs": [
            build_deb(outdir, "hello", "1.0-1", "amd64", depends="libgreet"),
            build_deb(outdir, "libgreet", "2.0-1+b1", "amd64", source="greet (2.0-1)"),
            build_deb(outdir, "tool", "3.0", "amd64"),
        ],
        "udebs": [build_udeb(outdir, "hello-udeb", "1.0-1", "amd64", source="hello")],
        "dscs": [
            build_source(outdir / "src", "hello", "1.0-1", ["hello", "hello-udeb"]),
            build_source(outdir / "src", "greet", "2.0-1", ["libgreet"]),
            build_source(outdir / "src", "tool", "3.0", ["tool"]),
        ],
    }
