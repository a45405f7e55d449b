"""Translations and Contents as bytes: parsing (bad input is a FormatError naming the file),
filtering, and Contents rendered column for column as apt-ftparchive writes them."""

from __future__ import annotations

import hashlib

import pytest

from mirrorkit import archive, extras
from mirrorkit.errors import FormatError


def test_contents_columns_follow_apt_ftparchive() -> None:
    # Measured with apt-ftparchive 2.6: tabs up to column 56, four spaces; longer paths get
    # spaces up to column 60, at least one.
    cases = ((7, "\t" * 7 + "    "), (8, "\t" * 6 + "    "), (47, "\t\t    "), (48, "\t    "),
             (55, "\t    "), (56, "    "), (59, " "), (70, " "))  # fmt: skip
    for length, pad in cases:
        path = "x" * length
        assert extras.render_contents([(path, "p")]) == f"{path}{pad}p\n".encode()
    pairs = [("usr/bin/b", "utils/b"), ("usr/bin/a", "a"), ("usr/bin/a", "0")]
    text = extras.render_contents(pairs)
    assert text == b"usr/bin/a\t\t\t\t\t\t    0,a\nusr/bin/b\t\t\t\t\t\t    utils/b\n"


def test_contents_lines_are_checked() -> None:
    ok = b"usr/bin/a b\t\t  admin/x,contrib/net/y\n"
    assert extras.parse_contents(ok, "C") == [("usr/bin/a b", ["admin/x", "contrib/net/y"])]
    header = b"junk\nFILE                 LOCATION\nusr/bin/z  z\n"
    assert extras.parse_contents(header, "C") == [("usr/bin/z", ["z"])]
    for bad in (b"lonely\n", b"usr/bin/a x,,y\n", b"usr/bin/a x/\n", b"   x\n"):
        with pytest.raises(FormatError, match=r"^C: line 1: not 'path section/package"):
            extras.parse_contents(bad, "C")
    kept = extras.filter_contents(extras.parse_contents(ok, "C"), {"y"})
    assert kept == [("usr/bin/a b", ["contrib/net/y"])]


def test_translations_are_checked_and_matched_by_name_and_md5() -> None:
    md5 = hashlib.md5(b"short\n long\n").hexdigest()
    text = (
        f"Package: a\nDescription-md5: {md5}\nDescription-en: short\n long\n\n"
        f"Package: a\nDescription-md5: {'0' * 32}\nDescription-en: older\n\n"
    ).encode()
    entries = extras.parse_translation(text, "T")
    (pkg,) = archive.parse_packages(
        b"Package: a\nVersion: 1\nArchitecture: all\nFilename: a.deb\nSize: 1\n"
        b"SHA256: " + b"0" * 64 + b"\nDescription: short\n long\n", "main"
    )  # fmt: skip
    assert extras.description_md5(pkg) == md5  # computed as apt does, without the field
    kept = extras.filter_translation(entries, extras.translation_keys([pkg]))
    assert [(n, m) for n, m, _ in kept] == [("a", md5)]
    for bad in (b"Package: a\nDescription-en: x\n", b"Package: a\nDescription-md5: xyz\n"
                b"Description-en: x\n", b"Description-md5: " + b"0" * 32 + b"\n"):  # fmt: skip
        with pytest.raises(FormatError, match=r"^T: stanza 1"):
            extras.parse_translation(bad, "T")
