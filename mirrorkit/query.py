r"""aptly's package query language, parsed into a predicate over packages.

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

As in aptly (Go): ``%`` is ``filepath.Match`` (``*`` and ``?`` stop at ``/``, ``[^...]``
negates, ``\`` escapes), ``~`` is RE2 (POSIX classes such as ``[[:digit:]]``; no lookaround), a
field a package lacks compares as ``""``, and relations compare any two strings the way dpkg
compares versions. Unlike aptly 1.5, versioned ``Provides`` are honoured (Debian policy).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

from debian.debian_support import Version

from mirrorkit.archive import compare_versions
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
    cmp = compare_versions(version, wanted)
    return {
        "<<": cmp < 0,
        "<=": cmp <= 0,
        "<": cmp <= 0,
        "=": cmp == 0,
        ">=": cmp >= 0,
        ">": cmp >= 0,
        ">>": cmp > 0,
    }[op]


def _go_glob(pattern: str) -> re.Pattern[str] | None:
    """Go's ``filepath.Match`` as a Python regex, or None where Go says ErrBadPattern."""
    out, i, n = [], 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\":
            if i + 1 == n:
                return None
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[":
            i += 1
            negate = i < n and pattern[i] == "^"
            i += negate
            items: list[str] = []
            count = 0
            while not (i < n and pattern[i] == "]" and count):
                lo, i = _go_class_char(pattern, i)
                hi = lo
                if lo is not None and i < n and pattern[i] == "-":
                    hi, i = _go_class_char(pattern, i + 1)
                if lo is None or hi is None:
                    return None
                if lo <= hi:  # Go takes an empty range, which matches nothing
                    items.append(re.escape(lo) if lo == hi else f"{re.escape(lo)}-{re.escape(hi)}")
                count += 1
            if items:
                out.append(f"[{'^' if negate else ''}{''.join(items)}]")
            else:
                out.append("." if negate else "(?!)")
        else:
            out.append(re.escape(ch))
        i += 1
    return re.compile("".join(out) + r"\Z", re.DOTALL)


def _go_class_char(pattern: str, i: int) -> tuple[str | None, int]:
    """Go's getEsc: one (escaped) character of a class; None where the class is malformed."""
    if i >= len(pattern) or pattern[i] in "-]":
        return None, i
    if pattern[i] == "\\":
        i += 1
        if i >= len(pattern):
            return None, i
    if i + 1 >= len(pattern):  # the class never closes
        return None, i
    return pattern[i], i + 1


_POSIX = {
    "alnum": "0-9A-Za-z", "alpha": "A-Za-z", "ascii": "\\x00-\\x7f", "blank": "\\t ",
    "cntrl": "\\x00-\\x1f\\x7f", "digit": "0-9", "graph": "!-~", "lower": "a-z",
    "print": " -~", "punct": "!-/:-@\\[-`{-~", "space": "\\t\\n\\v\\f\\r ", "upper": "A-Z",
    "word": "0-9A-Za-z_", "xdigit": "0-9A-Fa-f",
}  # fmt: skip
# What Python's re takes and RE2 (aptly) refuses: lookaround, atomic groups, backreferences,
# possessive quantifiers ("g\+\+" unquoted is "g++": a possessive + in Python 3.11).
_NOT_RE2 = re.compile(r"\(\?(?:[=!>]|<[=!])|\\[1-9]|[*+?}]\+")


def _re2(pattern: str) -> re.Pattern[str]:
    """An RE2 pattern (aptly's ``~``) as a Python regex; re.error when RE2 would refuse it."""
    if m := _NOT_RE2.search(pattern):
        raise re.error(f"{m[0]!r} is not in RE2's syntax (aptly's)")
    translated = re.sub(r"\[:(\w+):\]", lambda m: _POSIX.get(m[1], m[0]), pattern)
    return re.compile(translated, re.ASCII)


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
        if self.op in ("%", "~"):  # aptly: a pattern on the package's own version
            assert self.version is not None
            return pkg.name == self.name and _pattern_matches(self.op, self.version, pkg.version)
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


# aptly's computed fields; any other name is a field of the stanza.
SPECIAL_FIELDS = ("$Source", "$SourceVersion", "$Version", "$Architecture", "$PackageType")


@dataclass(frozen=True)
class Field(Query):
    """``Field``, ``Field (value)``, ``Field (op value)``; ``Name`` and the ``$`` fields
    (SPECIAL_FIELDS) are computed."""

    name: str
    op: str | None = None
    value: str | None = None

    def _value(self, pkg: Package, fields: Fields) -> str | None:
        special: dict[str, Callable[[], str]] = {
            "Name": lambda: pkg.name,
            "$Source": lambda: pkg.source,
            "$SourceVersion": lambda: _source_version(pkg, fields),
            "$Version": lambda: pkg.version,
            "$Architecture": lambda: pkg.architecture,
            "$PackageType": lambda: _package_type(pkg),
        }
        if self.name in special:
            return special[self.name]()
        return fields.field(pkg, self.name)

    def matches(self, pkg: Package, fields: Fields) -> bool:
        actual = self._value(pkg, fields)
        if self.value is None:
            return actual is not None and actual != ""
        actual = actual or ""  # aptly compares a field the package lacks as ""
        if self.op in (None, "="):
            if self.name == "$Architecture" and actual == "all" and self.value != "source":
                return True  # aptly: arch-independent packages install on every architecture
            if self.name == "$Version":
                return compare_versions(actual, self.value) == 0
            return actual == self.value
        if self.op in ("%", "~"):
            return _pattern_matches(self.op, self.value, actual)
        return version_matches(actual, self.op, self.value)


def _package_type(pkg: Package) -> str:
    """aptly's $PackageType: ``source``, ``udeb`` or ``deb``."""
    if pkg.architecture == "source":
        return "source"
    return "udeb" if pkg.filename.endswith(".udeb") else "deb"


def _source_version(pkg: Package, fields: Fields) -> str:
    """aptly's $SourceVersion: the version in ``Source: name (version)``, else the package's."""
    source = fields.field(pkg, "Source") or ""
    m = re.search(r"\(([^)]*)\)", source)
    return m[1].strip() if m else pkg.version


def _pattern_matches(op: str, pattern: str, value: str) -> bool:
    if op == "%":
        glob = _glob(pattern)
        return glob is not None and glob.match(value) is not None
    return _regex(pattern).search(value) is not None


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str] | None:
    return _go_glob(pattern)


@lru_cache(maxsize=256)
def _regex(pattern: str) -> re.Pattern[str]:
    return _re2(pattern)


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
            raise self.fail(f"unexpected {self.token()!r}: expected ',', '|' or the end")
        return query

    def token(self) -> str:
        """The word (or the one character) at the cursor, for error messages."""
        self.skip()
        m = re.compile(r"[^\s()|,!{}\"']+").match(self.text, self.pos)
        return m[0] if m else self.text[self.pos : self.pos + 1]

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
            what = "end of query" if ch == "" else repr(ch)
            raise self.fail(f"unexpected {what}: expected a package name, a field or '('")
        start = self.pos
        word = self.word()
        if word[0] == "$" and word not in SPECIAL_FIELDS:
            raise self.fail(
                f"unknown field {word!r}: expected one of {', '.join(SPECIAL_FIELDS)}", start
            )
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
            at = self.pos
            op, version = self.condition(field=False)
            op = op or "="  # "nginx (1.22)" means exactly that version
            if op not in ("%", "~"):
                try:
                    Version(version)
                except ValueError:
                    raise self.fail(f"{version!r} is not a Debian version", at + 1) from None
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
            self.pos += len(op)
        self.skip()
        at = self.pos
        quoted = self.peek() in ('"', "'")
        if quoted:
            value = self.quoted()
        else:
            while self.pos < len(self.text) and self.text[self.pos] != ")":
                self.pos += 1
            value = self.text[at : self.pos].strip()
        if self.peek() != ")":
            raise self.fail("expected ')'" if value or quoted else "expected a value and ')'")
        if not value and not (quoted and field):
            raise self.fail("expected a value before ')'")
        if op == "%" and _glob(value) is None:
            raise self.fail(
                f"malformed pattern {value!r} ('[' without ']', or a '\\' at the end)", at
            )
        if op == "~":
            try:
                _regex(value)
            except re.error as exc:
                raise self.fail(f"invalid regular expression {value!r} ({exc})", at) from None
        self.pos += 1
        return op, value


def parse(text: str) -> Query:
    """Parse a query; raises QueryError pointing at the column where it went wrong."""
    return _Parser(text).parse()
