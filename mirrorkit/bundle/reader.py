"""One pass over a bundle, as show, verify and import read it: parts -> zstd frame check ->
decompression -> strict tar -> each member checked against the signed manifest while it streams
to a sink (nothing for verify, a staging directory for import).

The manifest and its signature come first; with a keyring the signature is verified before
anything else is read, and only the bytes gpg verified are parsed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Protocol

from mirrorkit import gpg
from mirrorkit.bundle.container import (
    CHUNK,
    CheckedReader,
    DecompressedStream,
    FrameCheck,
    TarMember,
    TarReader,
    show_name,
)
from mirrorkit.bundle.manifest import (
    DAMAGED,
    HOSTILE,
    MANIFEST,
    SIGNATURE,
    Manifest,
    Member,
    parse_manifest,
)
from mirrorkit.bundle.parts import BundleFiles, JoinedReader, locate
from mirrorkit.errors import (
    BundleError,
    IntegrityError,
    MirrorkitError,
    SignatureError,
    UsageError,
)
from mirrorkit.progress import Reporter

_MAX_MANIFEST = 256 << 20  # ~1.5 million members; only a guard against a hostile header
_MAX_SIGNATURE = 64 << 10


class Target(Protocol):
    """Where one member's bytes go while they stream. Its SHA256 is known only at its end, so
    the target learns then whether to ``keep`` them or ``discard`` them."""

    def write(self, data: memoryview) -> None: ...
    def keep(self) -> None: ...
    def discard(self) -> None: ...


class Sink(Protocol):
    """Picks each member's target: verify keeps nothing; import stages what the store lacks."""

    def open(self, member: Member) -> Target: ...


class Discard:
    """A target for bytes that are only checked (verify, or what the store has already)."""

    def write(self, data: memoryview) -> None:
        pass

    def keep(self) -> None:
        pass

    def discard(self) -> None:
        pass


class Problems:
    """Verify collects every problem; import stops at the first."""

    def __init__(self, collect: bool) -> None:
        self.collect = collect
        self.items: list[MirrorkitError] = []

    def add(self, exc: MirrorkitError) -> None:
        if not self.collect:
            raise exc
        self.items.append(exc)


class Reading:
    """One pass over a bundle: parts -> zstd frame check -> decompression -> strict tar."""

    def __init__(self, files: BundleFiles, *, collect: bool = False) -> None:
        self.files = files
        self.what = files.what
        self.joined = JoinedReader(files.parts, collect=collect)
        self.frames = FrameCheck()
        self.raw = CheckedReader(self.joined, self.frames)
        self.tar = TarReader(DecompressedStream(self.raw))
        self.manifest_bytes = b""

    def close(self) -> None:
        self.joined.close()

    def _wrap(self, exc: BundleError) -> BundleError:
        if exc.message.startswith(self.what):
            return exc  # names a part of the bundle already
        err = BundleError(f"{self.what}: {exc.message}", exc.hint or DAMAGED)
        err.__cause__ = exc
        return err

    @contextmanager
    def naming_parts(self) -> Iterator[None]:
        """A problem found in the middle of a damaged part becomes the error naming the part
        (the part is read to its end and checked first): that is what the user can act on."""
        try:
            yield
        except (BundleError, IntegrityError, SignatureError) as exc:
            damaged = self.joined.blame()
            if damaged is None:
                raise
            raise BundleError(f"{damaged.message} ({exc.message})", damaged.hint) from exc

    def next(self) -> TarMember | None:
        try:
            return self.tar.next()
        except BundleError as exc:
            raise self._wrap(exc) from exc

    def chunks(self, member: TarMember) -> Iterator[memoryview]:
        try:
            yield from self.tar.chunks(member)
        except BundleError as exc:
            raise self._wrap(exc) from exc

    def _read_small(self, member: TarMember, limit: int) -> bytes:
        if member.size > limit:
            raise BundleError(
                f"{self.what}: {show_name(member.name)}: {member.size} bytes, too large for it",
                HOSTILE,
            )
        return b"".join(bytes(c) for c in self.chunks(member))

    def _expect(self, name: str, limit: int) -> bytes:
        member = self.next()
        found = "nothing" if member is None else show_name(member.name)
        if member is None or member.name != name or not member.regular:
            kind = f" ({member.kind})" if member is not None and member.kind else ""
            raise BundleError(
                f"{self.what}: not a mirrorkit bundle: {name} expected, found {found}{kind}",
                "give the file 'mirrorkit bundle export' wrote (or the first part or index of "
                "a split bundle).",
            )
        return self._read_small(member, limit)

    def head(self, keyring: Path | None) -> tuple[Manifest, tuple[str, ...] | None]:
        """Read the manifest and its signature; with a keyring, verify the signature first and
        parse only the bytes gpg verified."""
        manifest = self._expect(MANIFEST, _MAX_MANIFEST)
        signature = self._expect(SIGNATURE, _MAX_SIGNATURE)
        self.manifest_bytes = manifest
        signers: tuple[str, ...] | None = None
        if keyring is not None:
            verified = verify_signature(manifest, signature, keyring, f"{self.what}: {MANIFEST}")
            manifest, signers = verified.payload, verified.signers
        return parse_manifest(manifest, self.what), signers

    def members(
        self, manifest: Manifest, sink: Sink, problems: Problems, reporter: Reporter
    ) -> int:
        """Stream every member after the signature through ``sink``, checking each against
        the manifest. Returns how many members verified."""
        expected = {m.path: m for m in manifest.members}
        # The member order is fixed (docs/bundle-format.md): each member must come after the
        # ones the signed manifest lists before it. One left out is reported as missing.
        position = {m.path: i for i, m in enumerate(manifest.members)}
        last: str | None = None
        seen = {MANIFEST, SIGNATURE}
        good = 0
        while (member := self.next()) is not None:
            try:
                entry = self._check(member, expected, seen)
                if last is not None and position[entry.path] < position[last]:
                    raise BundleError(
                        f"{self.what}: {show_name(entry.path)}: refused: out of order (the signed "
                        f"manifest lists it before {show_name(last)}, which came first; the "
                        "member order is fixed)",
                        HOSTILE,
                    )
            except BundleError as exc:
                problems.add(exc)
                if member.name in expected:
                    seen.add(member.name)  # refused, not missing: one problem, not two
                continue  # next() skips its data
            seen.add(entry.path)
            last = entry.path
            target = sink.open(entry)
            hasher = hashlib.sha256()
            try:
                for chunk in self.chunks(member):
                    hasher.update(chunk)
                    target.write(chunk)
                    reporter.advance(0, len(chunk))
            except BaseException:
                with suppress(MirrorkitError):  # the writer's own error is on its way up
                    target.discard()
                raise
            got = hasher.hexdigest()
            if got != entry.sha256:
                target.discard()
                problems.add(
                    IntegrityError(f"{self.what}: {entry.path}", entry.sha256, got, hint=DAMAGED)
                )
            else:
                target.keep()
                good += 1
            reporter.advance(1, 0)
        missing = [m.path for m in manifest.members if m.path not in seen]
        if missing:
            listed = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            problems.add(
                BundleError(
                    f"{self.what}: {len(missing)} member(s) of the signed manifest are missing "
                    f"from the bundle: {listed}",
                    DAMAGED,
                )
            )
        return good

    def _check(self, member: TarMember, expected: dict[str, Member], seen: set[str]) -> Member:
        name = member.name
        shown = f"{self.what}: {show_name(name)}"
        if name.startswith("/"):
            raise BundleError(f"{shown}: refused: absolute path", HOSTILE)
        if ".." in name.split("/"):
            raise BundleError(f"{shown}: refused: the path contains '..'", HOSTILE)
        if not member.regular:
            raise BundleError(f"{shown}: refused: {member.kind}, not a regular file", HOSTILE)
        if name in seen:
            raise BundleError(f"{shown}: refused: the name appears twice in the bundle", HOSTILE)
        entry = expected.get(name)
        if entry is None:
            raise BundleError(f"{shown}: refused: not listed in the signed manifest", HOSTILE)
        if member.size != entry.size:
            raise BundleError(
                f"{shown}: size mismatch ({member.size} bytes in the bundle, {entry.size} in "
                "the signed manifest)",
                DAMAGED,
            )
        return entry

    def finish(self, problems: Problems) -> None:
        """After the end-of-archive marker: zero padding only, then the end of the zstd frame
        and of the file(s), every part checked."""
        try:
            if not self.tar.rest_is_zeros():
                raise BundleError("data after the end of the tar archive", HOSTILE)
            while self.raw.read(CHUNK):  # what the decompressor did not need
                pass
            if not self.frames.done:
                raise BundleError("the compressed stream is incomplete: the bundle is truncated")
            if self.frames.trailing:
                raise BundleError(
                    f"{self.frames.trailing} bytes follow the end of the compressed stream",
                    HOSTILE,
                )
        except BundleError as exc:
            problems.add(self._wrap(exc))
        problems.items.extend(self.joined.problems)


def verify_signature(data: bytes, signature: bytes, keyring: Path, what: str) -> gpg.Verified:
    if not keyring.is_file():
        raise UsageError(f"{keyring}: no such keyring file", "give the signer's public key.")
    try:
        return gpg.verify_detached(data, signature, keyring, what=what)
    except SignatureError as exc:
        raise SignatureError(
            exc.message,
            "the bundle was altered after it was signed, or --keyring does not hold the key "
            "that signed it; nothing was imported.",
        ) from exc


@contextmanager
def open_reading(path: Path, *, collect: bool = False, complete: bool = True) -> Iterator[Reading]:
    reading = Reading(locate(path, complete=complete), collect=collect)
    try:
        yield reading
    finally:
        reading.close()
