"""aptly's package query language, parsed into a predicate over packages.

Grammar (aptly-compatible, so users' existing filters work unchanged)::

    query   := and ('|' and)*                    lowest precedence
    and     := not (',' not)*
    not     := '!' not | primary
    primary := '(' query ')' | term
    term    := FIELD ['(' [op] value ')']        FIELD starts with an uppercase letter or '$'
             | name_version_arch                 a package reference
             | NAME ['(' [op] version ')'] ['{' arch '}']   dependency style, Provides too
    op      := '<<' | '<=' | '<' | '=' | '>=' | '>' | '>>' | '%' (glob) | '~' (regex)

``<`` and ``>`` mean ``<=`` and ``>=``, as in old Debian relations. Values may be quoted with
``"`` or ``'`` and backslash escapes. Unlike aptly, ``nginx(>= 1.0)`` (no space) parses.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from debian.debian_support import version_compare

from mirrorkit.errors import MirrorkitError
from mirrorkit.models import Package


class QueryError(MirrorkitError):
    """A query that does not parse: says where, with a caret, and what was expected."""

    exit_code = 2

    def __init__(self, query: str, column: int, expected: str) -> None:
        caret = " " * column + "^"
        super().__init__(
            f"query: {expected} at column {column + 1}\n  {query}\n  {caret}",
            "see the query syntax in 'mirrorkit snapshot search --help', e.g. "
            "'nginx | curl (>= 7.88), Priority (required)'.",
        )
        self.column = column


class Fields(Protocol):
    """What a query needs to know about packages beyond the Package dataclass."""

    def field(self, pkg: Package, name: str) -> str | None: ...

    def provides(self, pkg: Package) -> list[tuple[str, str | None]]: ...


RELATIONS = ("<<", "<=", "<", "=", ">=", ">", ">>")
_OPERATORS = ("<<", "<=", ">=", ">>", "=", "<", ">", "%", "~")
_REF = re.compile(r"^[^_\s]+_[^_\s]+_[^_\s]+$")


def version_matches(version: str, op: str | None, wanted: str | None) -> bool:
    """Debian relation semantics; ``<``/``>`` are the old spellings of ``<=``/``>=``."""
    if op is None or wanted is None:
        return True
    cmp = _compare(version, wanted)
    return {
        "<<": cmp < 0,
        "<=": cmp <= 0,
        "<": cmp <= 0,
        "=": cmp == 0,
        ">=": cmp >= 0,
        ">": cmp >= 0,
        ">>": cmp > 0,
    }[op]


@lru_cache(maxsize=65536)
def _compare(a: str, b: str) -> int:
    return int(version_compare(a, b))


class Query:
    """A parsed query; ``matches`` is the predicate."""

    def matches(self, pkg: Package, fields: Fields) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Or(Query):
    left: Query
    right: Query

    def matches(self, pkg: Package, fields: Fields) -> bool:
        return self.left.matches(pkg, fields) or self.right.matches(pkg, fields)


@dataclass(frozen=True)
class And(Query):
    left: Query
    right: Query

    def matches(self, pkg: Package, fields: Fields) -> bool:
        return self.left.matches(pkg, fields) and self.right.matches(pkg, fields)


@dataclass(frozen=True)
class Not(Query):
    inner: Query

    def matches(self, pkg: Package, fields: Fields) -> bool:
        return not self.inner.matches(pkg, fields)


@dataclass(frozen=True)
class PackageRef(Query):
    """``name_version_arch``."""

    name: str
    version: str
    arch: str

    def matches(self, pkg: Package, fields: Fields) -> bool:
        return (pkg.name, pkg.version, pkg.architecture) == (self.name, self.version, self.arch)


@dataclass(frozen=True)
class Dependency(Query):
    """``name [(op version)] [{arch}]``: the package itself or one that Provides the name."""

    name: str
    op: str | None = None
    version: str | None = None
    arch: str | None = None

    def matches(self, pkg: Package, fields: Fields) -> bool:
        if self.arch is not None and pkg.architecture not in (self.arch, "all"):
            return False
        if pkg.name == self.name and version_matches(pkg.version, self.op, self.version):
            return True
        for name, provided in fields.provides(pkg):
            if name != self.name:
                continue
            if self.op is None:
                return True
            # An unversioned Provides never satisfies a versioned dependency (Debian policy).
            if provided is not None and version_matches(provided, self.op, self.version):
                return True
        return False


@dataclass(frozen=True)
class Field(Query):
    """``Field``, ``Field (value)``, ``Field (op value)``; ``$Source``, ``$Version``,
    ``$Architecture``, ``$PackageType`` and ``Name`` are computed fields."""

    name: str
    op: str | None = None
    value: str | None = None

    def _value(self, pkg: Package, fields: Fields) -> str | None:
        special: dict[str, Callable[[], str]] = {
            "Name": lambda: pkg.name,
            "$Source": lambda: pkg.source,
            "$Version": lambda: pkg.version,
            "$Architecture": lambda: pkg.architecture,
            "$PackageType": lambda: "udeb" if pkg.filename.endswith(".udeb") else "deb",
        }
        if self.name in special:
            return special[self.name]()
        return fields.field(pkg, self.name)

    def matches(self, pkg: Package, fields: Fields) -> bool:
        actual = self._value(pkg, fields)
        if actual is None:
            return False
        if self.value is None:
            return True
        if self.op in (None, "="):
            if self.name == "$Architecture" and actual == "all":
                return True  # aptly: arch-independent packages install on every architecture
            if self.name == "$Version":
                return _compare(actual, self.value) == 0
            return actual == self.value
        if self.op == "%":
            return fnmatch.fnmatchcase(actual, self.value)
        if self.op == "~":
            return _regex(self.value).search(actual) is not None
        return version_matches(actual, self.op, self.value)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def fail(self, expected: str, at: int | None = None) -> QueryError:
        return QueryError(self.text, self.pos if at is None else at, expected)

    def skip(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def parse(self) -> Query:
        if not self.text.strip():
            raise self.fail("empty query: expected a package name or a field")
        query = self.parse_or()
        if self.peek():
            raise self.fail(f"unexpected {self.peek()!r}: expected ',', '|' or the end")
        return query

    def parse_or(self) -> Query:
        left = self.parse_and()
        while self.peek() == "|":
            self.pos += 1
            left = Or(left, self.parse_and())
        return left

    def parse_and(self) -> Query:
        left = self.parse_not()
        while self.peek() == ",":
            self.pos += 1
            left = And(left, self.parse_not())
        return left

    def parse_not(self) -> Query:
        if self.peek() == "!":
            self.pos += 1
            return Not(self.parse_not())
        return self.parse_primary()

    def parse_primary(self) -> Query:
        ch = self.peek()
        if ch == "(":
            self.pos += 1
            inner = self.parse_or()
            if self.peek() != ")":
                raise self.fail("expected ')'")
            self.pos += 1
            return inner
        if ch in ("", ")", "|", ",", "{", "}"):
            what = "the end" if ch == "" else repr(ch)
            raise self.fail(f"unexpected {what}: expected a package name, a field or '('")
        start = self.pos
        word = self.word()
        if word[0].isupper() or word[0] == "$":
            if self.peek() == "(":
                return Field(word, *self.condition(field=True))
            return Field(word)
        if _REF.match(word) and self.peek() not in ("(", "{"):
            return PackageRef(*word.split("_"))
        if not re.match(r"^[a-z0-9][a-z0-9+.-]*$", word):
            raise self.fail(f"{word!r} is not a package name", start)
        op: str | None = None
        version: str | None = None
        arch: str | None = None
        if self.peek() == "(":
            op, version = self.condition(field=False)
            op = op or "="  # "nginx (1.22)" means exactly that version
        if self.peek() == "{":
            self.pos += 1
            arch = self.word()
            if self.peek() != "}":
                raise self.fail("expected '}'")
            self.pos += 1
        return Dependency(word, op, version, arch)

    def word(self) -> str:
        self.skip()
        if self.peek() in ('"', "'"):
            return self.quoted()
        start = self.pos
        while self.pos < len(self.text) and not (
            self.text[self.pos].isspace() or self.text[self.pos] in "()|,!{}\"'"
        ):
            self.pos += 1
        if self.pos == start:
            raise self.fail("expected a word")
        return self.text[start : self.pos]

    def quoted(self) -> str:
        quote = self.text[self.pos]
        start = self.pos
        self.pos += 1
        out = []
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "\\" and self.pos + 1 < len(self.text):
                out.append(self.text[self.pos + 1])
                self.pos += 2
                continue
            if ch == quote:
                self.pos += 1
                return "".join(out)
            out.append(ch)
            self.pos += 1
        raise self.fail(f"unterminated string: expected a closing {quote}", start)

    def condition(self, *, field: bool) -> tuple[str | None, str]:
        """``( [op] value )`` after a field or package name."""
        self.pos += 1  # '('
        self.skip()
        op = next((o for o in _OPERATORS if self.text.startswith(o, self.pos)), None)
        if op is not None:
            if not field and op in ("%", "~"):
                raise self.fail(f"'{op}' works on fields only: expected one of {RELATIONS}")
            self.pos += len(op)
        self.skip()
        if self.peek() in ('"', "'"):
            value = self.quoted()
        else:
            start = self.pos
            while self.pos < len(self.text) and self.text[self.pos] != ")":
                self.pos += 1
            value = self.text[start : self.pos].strip()
        if self.peek() != ")":
            raise self.fail("expected ')'")
        if not value:
            raise self.fail("expected a value before ')'")
        self.pos += 1
        return op, value


def parse(text: str) -> Query:
    """Parse a query; raises QueryError pointing at the column where it went wrong."""
    return _Parser(text).parse()
