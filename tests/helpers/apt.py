"""Real ``apt-get`` as a client, fully isolated from the host's APT configuration and state.

Every call gets ``APT_CONFIG`` pointing at a private apt.conf that relocates Dir::Etc, Dir::State,
Dir::Cache and Dir::Log below ``root``. The host's trusted keys are not trusted (sources carry an
explicit ``Signed-By``), no proxy is used, and nothing needs root-owned locks.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

__all__ = ["AptClient", "signature_problems"]

# Messages apt prints when it could not verify a repository; used as a second line of defence in
# update() (see its docstring).
_SIGNATURE_RE = re.compile(
    r"^(?:W|E): .*(?:GPG error|signature|NO_PUBKEY|BADSIG|is not signed|"
    r"Clearsigned file isn't valid|Release file .* is not valid)",
    re.IGNORECASE | re.MULTILINE,
)


def signature_problems(output: str) -> list[str]:
    """``W:``/``E:`` lines of apt output that are about signatures or Release validity."""
    return [m.group(0) for m in _SIGNATURE_RE.finditer(output)]


def _quote(value: str | Path) -> str:
    text = str(value)
    if '"' in text:
        raise ValueError(f"cannot put a double quote into apt.conf: {text!r}")
    return f'"{text}"'


class AptClient:
    """An apt-get/apt-cache client rooted at ``root`` (amd64 only, no recommends by default)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        etc = self.root / "etc/apt"
        for sub in ("sources.list.d", "preferences.d", "apt.conf.d", "trusted.gpg.d"):
            (etc / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
        (self.root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        (self.root / "var/log/apt").mkdir(parents=True, exist_ok=True)
        (self.root / "var/lib/dpkg").mkdir(parents=True, exist_ok=True)
        self.status_file = self.root / "var/lib/dpkg/status"
        self.status_file.touch()
        (etc / "sources.list").touch()
        # An empty legacy keyring so the host's /etc/apt/trusted.gpg is never consulted.
        (etc / "trusted.gpg").touch()

        self.archives_dir = self.root / "var/cache/apt/archives"
        self.lists_dir = self.root / "var/lib/apt/lists"
        # Outside etc/apt on purpose: apt would read Dir::Etc::main (etc/apt/apt.conf) a second
        # time, and list options such as APT::Architectures would be appended twice.
        self.config = self.root / "apt.conf"
        options: dict[str, str | Path] = {
            "Dir::Etc": etc,
            "Dir::Etc::main": etc / "apt.conf",
            "Dir::Etc::parts": etc / "apt.conf.d",
            "Dir::Etc::sourcelist": etc / "sources.list",
            "Dir::Etc::sourceparts": etc / "sources.list.d",
            "Dir::Etc::trusted": etc / "trusted.gpg",
            "Dir::Etc::trustedparts": etc / "trusted.gpg.d",
            "Dir::Etc::preferences": etc / "preferences",
            "Dir::Etc::preferencesparts": etc / "preferences.d",
            "Dir::State": self.root / "var/lib/apt",
            "Dir::State::status": self.status_file,
            "Dir::Cache": self.root / "var/cache/apt",
            "Dir::Log": self.root / "var/log/apt",
            "APT::Architecture": "amd64",
            "APT::Sandbox::User": "root",
            "Debug::NoLocking": "1",
            "Acquire::Languages": "none",
            "Acquire::Retries": "0",
            # "DIRECT" is apt's documented spelling for "no proxy"; env proxies are removed too.
            "Acquire::http::Proxy": "DIRECT",
            "Acquire::https::Proxy": "DIRECT",
            "Acquire::PDiffs": "false",
            "Acquire::IndexTargets::deb::Contents-deb::DefaultEnabled": "false",
            "Binary::apt-get::Acquire::AllowInsecureRepositories": "false",
            "APT::Install-Recommends": "false",
            "APT::Get::Assume-Yes": "true",
        }
        lines = [f"{key} {_quote(value)};" for key, value in options.items()]
        lines.append('APT::Architectures { "amd64"; };')
        self.config.write_text("\n".join(lines) + "\n")

        self.env = {
            k: v
            for k, v in os.environ.items()
            if k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "ftp_proxy"}
            and not k.startswith("APT_")
        }
        self.env.update({"APT_CONFIG": str(self.config), "LC_ALL": "C", "LANG": "C"})

    # -- configuration -----------------------------------------------------------------------

    def add_source(
        self,
        uri: str,
        suite: str,
        components: list[str],
        signed_by: Path,
        *,
        flat: bool = False,
        name: str | None = None,
        types: str = "deb",
    ) -> Path:
        """Write a deb822 ``.sources`` file; for a flat repo ``suite`` is e.g. ``"flat/"``.
        ``types="deb deb-src"`` adds the source packages."""
        stem = name or re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{uri}_{suite}").strip("_")
        lines = [f"Types: {types}", f"URIs: {uri}", f"Suites: {suite}"]
        if not flat:
            lines.append(f"Components: {' '.join(components)}")
        lines.append(f"Signed-By: {signed_by}")
        path = self.root / "etc/apt/sources.list.d" / f"{stem}.sources"
        path.write_text("\n".join(lines) + "\n")
        return path

    # -- commands ----------------------------------------------------------------------------

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run an apt command with this client's config; stdout+stderr merged, never raises."""
        return subprocess.run(
            list(args),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            check=False,
        )

    def update(self) -> subprocess.CompletedProcess[str]:
        """``apt-get update`` that exits non-zero on any fetch or signature problem.

        How failures are detected (checked against apt 2.6 in tests/integration/test_helpers.py):

        * A bad signature (BADSIG), an unknown key (NO_PUBKEY) or a missing signature already
          makes apt exit 100 on its own ("E: The repository ... is not signed.").
        * ``-o APT::Update::Error-Mode=any`` (= ``--error-on=any``) is passed as well: without
          it a transient failure such as a 503 on InRelease is only a ``W:`` and apt exits 0
          ("old ones used instead"); with it that is an ``E:`` and exit 100.
        * Belt and braces: should apt exit 0 yet print a ``W:``/``E:`` line about signatures
          (see :func:`signature_problems`), the returned returncode is forced to 100.

        Not an error even so: the cosmetic "W: Conflicting distribution" warning.
        """
        proc = self.run("apt-get", "update", "-o", "APT::Update::Error-Mode=any")
        if proc.returncode == 0 and signature_problems(proc.stdout):
            proc.returncode = 100
        return proc

    def install_download_only(self, *pkgs: str) -> subprocess.CompletedProcess[str]:
        return self.run(
            "apt-get", "install", "-y", "--download-only", "--no-install-recommends", *pkgs
        )

    def simulate_install(self, *pkgs: str) -> subprocess.CompletedProcess[str]:
        return self.run("apt-get", "install", "-s", "--no-install-recommends", *pkgs)

    def policy(self, pkg: str) -> subprocess.CompletedProcess[str]:
        return self.run("apt-cache", "policy", pkg)

    def show(self, pkg: str) -> subprocess.CompletedProcess[str]:
        return self.run("apt-cache", "show", pkg)

    def downloaded(self) -> list[str]:
        """Sorted names of the .deb files apt put in its archives cache."""
        return sorted(p.name for p in self.archives_dir.glob("*.deb"))
