"""OpenPGP, through python-gnupg. The only module that imports ``gnupg``.

Verification happens in a private, throwaway GNUPGHOME that holds only the mirror's keyring, so
the user's own trust database never decides what a mirror trusts.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import gnupg

from mirrorkit.errors import SignatureError, StorageError, UsageError


@dataclass(frozen=True, slots=True)
class Verified:
    """The payload gpg verified, and who signed it (primary key fingerprints, sorted)."""

    payload: bytes
    signers: tuple[str, ...]

    @property
    def signer(self) -> str:
        return self.signers[0]


def normalize_fingerprint(fpr: str) -> str:
    return fpr.replace(" ", "").upper()


@contextmanager
def _private_home() -> Iterator[str]:
    # A short path under the system temp dir: gpg-agent sockets have a ~108 byte path limit.
    try:
        home = tempfile.mkdtemp(prefix="mk-gpg-")
    except OSError as exc:  # a full or read-only /tmp: say so, not a traceback
        raise StorageError(
            f"{tempfile.gettempdir()}: cannot create a directory for gpg ({exc.strerror or exc})",
            "free space there (or set TMPDIR to a writable directory) and run the command again.",
        ) from exc
    try:
        os.chmod(home, 0o700)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def _load_keyring(gpg: gnupg.GPG, keyring: Path) -> set[str]:
    try:
        data = keyring.read_bytes()
    except OSError as exc:
        raise SignatureError(
            f"{keyring}: cannot read keyring ({exc.strerror})",
            "install the archive's keyring package (e.g. 'apt-get install debian-archive-keyring')"
            " or point the mirror at the right keyring file.",
        ) from exc
    result = gpg.import_keys(data)
    fingerprints = {normalize_fingerprint(f) for f in result.fingerprints if f}
    if not fingerprints:
        raise SignatureError(
            f"{keyring}: no OpenPGP public keys found in this file",
            "give a keyring in binary (.gpg) or ASCII-armored (.asc) OpenPGP format.",
        )
    return fingerprints


def keyring_fingerprints(keyring: Path) -> frozenset[str]:
    """The primary-key fingerprints a keyring file holds; SignatureError if it holds none (a
    file that is not a keyring is caught when a mirror is added, not at its first update)."""
    with _private_home() as home:
        return frozenset(_load_keyring(gnupg.GPG(gnupghome=home), keyring))


def _accepted_signers(
    result: gnupg.Verify | gnupg.Crypt, what: str, allowed: frozenset[str]
) -> tuple[str, ...]:
    """Decide from gpg's per-signature status, not from the order-dependent ``.valid`` alone.

    Real archives sign with several keys (Debian: the archive key of this and the next release
    plus the release key); like apt, we accept when at least one good signature comes from an
    allowed key and no signature is *bad*. A signature by a key the keyring lacks is ignored.
    """
    for problem in result.problems:
        if problem.get("status") == "signature bad":
            raise SignatureError(
                f"{what}: BAD signature by key {problem.get('keyid', '?')}: the file was altered",
                "do not use this upstream until it serves correctly signed files; "
                "nothing was stored.",
            )
    good: set[str] = set()
    others: set[str] = set()
    for info in result.sig_info.values():
        if info.get("status") != "signature valid":
            continue
        primary = normalize_fingerprint(info.get("pubkey_fingerprint") or info["fingerprint"])
        subkey = normalize_fingerprint(info["fingerprint"])
        if primary in allowed or subkey in allowed:
            good.add(primary)
        else:
            others.add(primary)
    if not good and others:
        raise SignatureError(
            f"{what}: signed by {', '.join(sorted(others))}, which is not in the mirror's "
            "fingerprint allow-list",
            "if that key is the archive's, add it to the fingerprints; otherwise do not use "
            "this upstream. Nothing was stored.",
        )
    if not good:
        reasons = sorted({str(p.get("status")) for p in result.problems}) or ["no signature"]
        raise SignatureError(
            f"{what}: no valid signature from a trusted key ({', '.join(reasons)})",
            "check that the mirror's keyring (and fingerprint allow-list) holds the key that "
            "signs this archive; nothing was stored.",
        )
    return tuple(sorted(good))


def _allowed(keyring_fprs: set[str], fingerprints: tuple[str, ...]) -> frozenset[str]:
    if not fingerprints:
        return frozenset(keyring_fprs)
    return frozenset(normalize_fingerprint(f) for f in fingerprints)


def verify_clearsigned(
    data: bytes, keyring: Path, fingerprints: tuple[str, ...] = (), what: str = "InRelease"
) -> Verified:
    """Verify a clearsigned file (InRelease) and return the payload gpg itself extracted.

    Parsing gpg's output, never the input, means text outside the signed block can never
    sneak into what we trust.
    """
    if b"-----BEGIN PGP SIGNED MESSAGE-----" not in data:
        raise SignatureError(
            f"{what}: not a clearsigned file (no PGP signed message header)",
            "the upstream served something other than an InRelease file; check the URL and suite.",
        )
    with _private_home() as home:
        gpg = gnupg.GPG(gnupghome=home)
        allowed = _allowed(_load_keyring(gpg, keyring), fingerprints)
        result = gpg.decrypt(data, extra_args=["--trust-model", "always"])
        signers = _accepted_signers(result, what, allowed)
        return Verified(payload=bytes(result.data), signers=signers)


def verify_detached(
    data: bytes,
    signature: bytes,
    keyring: Path,
    fingerprints: tuple[str, ...] = (),
    what: str = "Release",
) -> Verified:
    """Verify ``data`` against a detached signature (Release + Release.gpg)."""
    with _private_home() as home:
        gpg = gnupg.GPG(gnupghome=home)
        allowed = _allowed(_load_keyring(gpg, keyring), fingerprints)
        sig_path = Path(home) / "data.sig"
        sig_path.write_bytes(signature)
        result = gpg.verify_data(str(sig_path), data, extra_args=["--trust-model", "always"])
        signers = _accepted_signers(result, what, allowed)
        return Verified(payload=data, signers=signers)


def _signing_gpg(gnupghome: str | None) -> gnupg.GPG:
    home = gnupghome or os.environ.get("GNUPGHOME")
    if home and not Path(home).is_dir():
        where = "--gnupghome" if gnupghome else "$GNUPGHOME"
        raise UsageError(
            f"{where} {home}: no such directory",
            "point it at the GnuPG home that holds your signing key ('gpg --list-secret-keys').",
        )
    return gnupg.GPG(gnupghome=home) if home else gnupg.GPG()


def resolve_signing_key(key: str | None, gnupghome: str | None = None) -> str:
    """The fingerprint of the secret key ``key`` (id, fingerprint or user id) names; with no
    ``key``, of the only secret key there is (as aptly and gpg use a default key). Several
    keys and no ``key`` is an error: signing with a key the user did not mean is worse."""
    gpg = _signing_gpg(gnupghome)
    home = gnupghome or os.environ.get("GNUPGHOME") or "~/.gnupg"
    matches = gpg.list_keys(secret=True, keys=[key]) if key else gpg.list_keys(secret=True)
    if not matches:
        if key is None:
            raise UsageError(
                f"no secret key in {home} to sign with",
                "create one with 'gpg --quick-gen-key', or pass --key KEYID (and "
                "--gnupghome/GNUPGHOME for the keyring that holds it).",
            )
        raise UsageError(
            f"no secret key matches {key!r} in {home}",
            "list your keys with 'gpg --list-secret-keys' and pass one with --key, "
            "or set --gnupghome/GNUPGHOME to the keyring that holds it.",
        )
    if len(matches) > 1:
        if key is None:
            listed = ", ".join(str(m["fingerprint"]) for m in matches)
            raise UsageError(
                f"{len(matches)} secret keys in {home} ({listed}): which one should sign?",
                "pass one with --key KEYID.",
            )
        raise UsageError(
            f"{key!r} matches {len(matches)} secret keys",
            "pass the full fingerprint with --key.",
        )
    return str(matches[0]["fingerprint"])


def sign_release(
    release: bytes, fingerprint: str, gnupghome: str | None = None
) -> tuple[bytes, bytes]:
    """Return (InRelease, Release.gpg) for ``release``, signed by ``fingerprint``."""
    gpg = _signing_gpg(gnupghome)
    args = ["--digest-algo", "SHA512", "--pinentry-mode", "loopback"]
    clear = gpg.sign(release, keyid=fingerprint, clearsign=True, extra_args=args)
    detached = gpg.sign(release, keyid=fingerprint, detach=True, clearsign=False, extra_args=args)
    for result in (clear, detached):
        if not result.data:
            raise SignatureError(
                f"signing Release with key {fingerprint} failed ({result.status or 'no output'})",
                "check that the key has no passphrase or that gpg-agent can supply it.",
            )
    return bytes(clear.data), bytes(detached.data)


def sign_detached(
    data: bytes, fingerprint: str, gnupghome: str | None = None, what: str = "data"
) -> bytes:
    """An armored detached signature over exactly ``data``, by ``fingerprint``."""
    gpg = _signing_gpg(gnupghome)
    args = ["--digest-algo", "SHA512", "--pinentry-mode", "loopback"]
    result = gpg.sign(data, keyid=fingerprint, detach=True, clearsign=False, extra_args=args)
    if not result.data:
        raise SignatureError(
            f"signing {what} with key {fingerprint} failed ({result.status or 'no output'})",
            "check that the key has no passphrase or that gpg-agent can supply it.",
        )
    return bytes(result.data)


def export_public_key(fingerprint: str, gnupghome: str | None = None) -> tuple[bytes, bytes]:
    """(binary, armored) public key, for the published tree and the client's Signed-By."""
    gpg = _signing_gpg(gnupghome)
    armored = gpg.export_keys(fingerprint, armor=True)
    binary = gpg.export_keys(fingerprint, armor=False)
    if not armored:
        raise SignatureError(f"cannot export public key {fingerprint}")
    return bytes(binary), armored.encode()
