"""Throwaway OpenPGP keys and signatures made with the gpg CLI.

Everything runs with an explicit ``--homedir`` so the user's keyring is never read or written.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

__all__ = ["TestKey", "clearsign", "detach_sign", "kill_agents", "make_key"]

# gpg-agent puts its sockets in the home dir when /run/user/<uid> is missing, and a Unix socket
# path must fit in ~108 bytes ("S.gpg-agent.browser" is the longest name), so keep homes short.
_MAX_HOME_LEN = 80


@dataclass
class TestKey:
    # Tell pytest this is not a test class; otherwise importing it into a test module produces a
    # PytestCollectionWarning, which `filterwarnings = error` turns into a failure.
    __test__: ClassVar[bool] = False

    gnupghome: Path
    fingerprint: str
    uid: str
    public_keyring: Path  # binary keyring file (gpg --export), usable as apt's Signed-By
    public_armored: Path  # gpg --armor --export


def _gpg(home: Path, *args: str, data: bytes | None = None) -> bytes:
    proc = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--no-tty",
            "--yes",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            *args,
        ],
        input=data,
        capture_output=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"gpg {' '.join(args)} failed ({proc.returncode}): "
            f"{proc.stderr.decode(errors='replace')}"
        )
    return proc.stdout


def make_key(base: Path, uid: str = "Test Archive <archive@example.org>") -> TestKey:
    """Create a GNUPGHOME with a fresh ed25519 signing key (no passphrase, no expiry).

    The public key is exported to ``base/keyring.gpg`` (binary) and ``base/key.asc`` (armored).
    """
    base.mkdir(parents=True, exist_ok=True)
    home = base / "gnupg"
    if len(str(home.resolve())) > _MAX_HOME_LEN:
        # Deliberately not cleaned up: it is a few KiB in /tmp and the agent may still hold it.
        home = Path(tempfile.mkdtemp(prefix="mk-gpg-", dir="/tmp"))
    home.mkdir(mode=0o700, exist_ok=True)
    os.chmod(home, 0o700)  # gpg warns about "unsafe permissions" otherwise

    _gpg(home, "--quick-gen-key", uid, "ed25519", "sign", "never")
    listing = _gpg(home, "--with-colons", "--list-secret-keys", uid).decode()
    fingerprint = next(
        line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")
    )

    keyring = base / "keyring.gpg"
    armored = base / "key.asc"
    keyring.write_bytes(_gpg(home, "--export", fingerprint))
    armored.write_bytes(_gpg(home, "--armor", "--export", fingerprint))
    return TestKey(
        gnupghome=home,
        fingerprint=fingerprint,
        uid=uid,
        public_keyring=keyring,
        public_armored=armored,
    )


def clearsign(key: TestKey, data: bytes) -> bytes:
    """Return ``data`` clearsigned by ``key`` (the InRelease format)."""
    return _gpg(
        key.gnupghome,
        "--local-user",
        key.fingerprint,
        "--digest-algo",
        "SHA512",
        "--clearsign",
        data=data,
    )


def detach_sign(key: TestKey, data: bytes) -> bytes:
    """Return an armored detached signature over ``data`` (the Release.gpg format)."""
    return _gpg(
        key.gnupghome,
        "--local-user",
        key.fingerprint,
        "--digest-algo",
        "SHA512",
        "--armor",
        "--detach-sign",
        data=data,
    )


def kill_agents(key: TestKey) -> None:
    """Stop the gpg-agent (and friends) gpg started for ``key``'s home; call it at teardown."""
    subprocess.run(
        ["gpgconf", "--homedir", str(key.gnupghome), "--kill", "all"],
        capture_output=True,
        check=False,
    )
