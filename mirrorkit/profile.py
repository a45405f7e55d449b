"""Profiles (``profiles/*.toml``): what ``sync`` and ``mirror add --profile`` read.

A profile is parsed with :mod:`tomllib` into frozen dataclasses and validated completely at load
time, so that a typo fails in a second instead of after an hour of downloading. Every error is a
:class:`~mirrorkit.errors.ProfileError` that names the file, the key as a dotted path (such as
``upstream[2].suite``; ``[[upstream]]`` tables count from 1, as a person counts them in the file)
and what is expected.

Relative paths (``keyring``, ``publish.fs``) are relative to the directory of the profile file and
are returned absolute. Loading does not read the keyrings; :func:`check_keyrings` does, for the
commands that are about to use them.
"""

from __future__ import annotations

import datetime
import difflib
import os
import re
import string
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import urlsplit

from mirrorkit.errors import MirrorkitError, ProfileError
from mirrorkit.models import MergePolicy, MirrorSpec
from mirrorkit.net.config import NetworkConfig

__all__ = [
    "FilterSpec",
    "Profile",
    "PublishSpec",
    "SnapshotPolicy",
    "load_profile",
    "snapshot_name",
]

_SAFE_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_ARCH: Final = re.compile(r"[a-z0-9-]+")
# A component may carry a path, as Debian's security archive says ``updates/main``.
_COMPONENT: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*(?:/[A-Za-z0-9][A-Za-z0-9._+-]*)*")
# A suite is a path below ``dists/`` (or, ending in "/", below the URL for a flat repository).
_SUITE: Final = re.compile(r"[A-Za-z0-9._+~-]+(?:/[A-Za-z0-9._+~-]+)*/?")
_FINGERPRINT: Final = re.compile(r"[0-9A-F]{40}|[0-9A-F]{64}")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")

_TOP_KEYS: Final = ("upstream", "snapshot", "filter", "publish", "network")
_NETWORK_KEYS: Final = ("proxy", "ca_bundle", "auth_file")
_UPSTREAM_KEYS: Final = (
    "name",
    "url",
    "suite",
    "components",
    "architectures",
    "keyring",
    "fingerprints",
    "languages",
    "with_contents",
    "with_sources",
    "with_udebs",
)
_SNAPSHOT_KEYS: Final = ("name", "merge")
_LANGUAGE = re.compile(r"[a-z]{2,3}(_[A-Z]{2})?")
# The Translations a mirror follows unless told otherwise: apt's own default (Acquire::Languages
# "environment,en") fetches Translation-en on every client, so `apt show` has long descriptions.
DEFAULT_LANGUAGES: Final = ("en",)
_FILTER_KEYS: Final = ("query", "with_deps", "with_recommends", "allow_missing", "allow_empty")
_PUBLISH_KEYS: Final = (
    "fs",
    "s3",
    "endpoint_url",
    "region",
    "prune",
    "suite",
    "key",
    "channel",
    "origin",
    "label",
    "valid_for",
)
_TEMPLATE_FIELDS: Final = ("date", "profile")
_SAMPLE_DATE: Final = datetime.date(2000, 1, 1)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """How ``sync`` names and merges the snapshot it takes.

    ``name`` is a template: ``{date}`` becomes YYYYMMDD, ``{profile}`` the profile file's stem.
    """

    name: str = "{profile}-{date}"
    merge: MergePolicy = MergePolicy.LATER


@dataclass(frozen=True, slots=True)
class FilterSpec:
    """A package query (aptly's language) applied across all upstreams, with its closure."""

    query: str
    with_deps: bool = True
    with_recommends: bool = False
    allow_missing: bool = False  # snapshot even if dependencies are unmet (they are listed)
    allow_empty: bool = False  # a query that matches nothing is not an error


@dataclass(frozen=True, slots=True)
class PublishSpec:
    """Where ``sync`` publishes: exactly one of ``fs`` (absolute) or ``s3`` (``s3://...``)."""

    fs: Path | None = None
    s3: str | None = None
    endpoint_url: str | None = None
    region: str | None = None
    prune: bool = False  # s3: then delete the pool objects no suite lists (publish s3 --prune)
    suite: str | None = None
    key: str | None = None
    channel: str | None = None
    origin: str | None = None
    label: str | None = None
    valid_for: str | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """A validated profile. ``path`` is absolute; ``name`` is the file's stem."""

    path: Path
    name: str
    upstreams: tuple[MirrorSpec, ...]
    snapshot: SnapshotPolicy
    filter: FilterSpec | None
    publish: PublishSpec | None
    # [network]: proxy, ca_bundle, auth_file; the command line's options win over it.
    network: NetworkConfig = field(default_factory=NetworkConfig)


def check_keyrings(profile: Profile) -> None:
    """Refuse, naming the file and key, an upstream whose keyring is not a file; before any
    mirror of the profile is touched."""
    for i, spec in enumerate(profile.upstreams):
        keyring = Path(spec.keyring)
        if not keyring.is_file():
            what = "is a directory, not a keyring file" if keyring.is_dir() else "no such file"
            raise ProfileError(
                f"{profile.path}: upstream[{i}].keyring: {keyring}: {what}",
                "give the upstream's public keyring, e.g. "
                "/usr/share/keyrings/debian-archive-keyring.gpg (apt-get install "
                "debian-archive-keyring).",
            )


def load_profile(path: str | Path) -> Profile:
    """Read, parse and validate one profile file; raise ProfileError on any problem."""
    shown = str(path)
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError as exc:
        raise ProfileError(
            f"{shown}: no such profile file", hint="check the path; profiles live in profiles/"
        ) from exc
    except IsADirectoryError as exc:
        raise ProfileError(f"{shown}: is a directory, expected a profile file") from exc
    except OSError as exc:
        raise ProfileError(f"{shown}: cannot read the profile ({exc.strerror or exc})") from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProfileError(
            f"{shown}: not valid UTF-8 (byte {exc.start}); TOML files are UTF-8"
        ) from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{shown}: invalid TOML: {exc}") from exc
    return _Loader(shown, file.resolve()).profile(data)


def snapshot_name(policy: SnapshotPolicy, profile_name: str, today: datetime.date) -> str:
    """Render ``policy.name`` for ``today`` (``{date}`` = YYYYMMDD, ``{profile}`` = profile_name).

    The caller adds ``-2``, ``-3`` ... when the name is taken.
    """
    fields = _template_fields(policy.name)
    if fields is None:
        raise ProfileError(
            f"snapshot name template {policy.name!r} is invalid: expected text with only "
            "{date} and {profile} placeholders"
        )
    return policy.name.format(date=today.strftime("%Y%m%d"), profile=profile_name)


def _template_fields(template: str) -> list[str] | None:
    """The placeholders of a template, or None if it uses anything but bare {date}/{profile}."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:  # unbalanced braces
        return None
    fields: list[str] = []
    for _literal, field_name, spec, conversion in parsed:
        if field_name is None:
            continue
        if field_name not in _TEMPLATE_FIELDS or spec or conversion:
            return None
        fields.append(field_name)
    return fields


def _describe(value: object) -> str:
    """A short description of a wrong value for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return "an array of tables"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class _Loader:
    """Validates the parsed TOML of one file; ``shown`` is the file as the user named it."""

    def __init__(self, shown: str, file: Path) -> None:
        self.shown = shown
        self.file = file
        self.base = file.parent

    # -- errors ---------------------------------------------------------------------------------

    def error(self, key: str, what: str, hint: str | None = None) -> ProfileError:
        return ProfileError(f"{self.shown}: {key}: {what}", hint)

    def expected(self, key: str, expected: str, value: object) -> ProfileError:
        return self.error(key, f"expected {expected}, got {_describe(value)}")

    def check_keys(self, table: Mapping[str, Any], allowed: tuple[str, ...], prefix: str) -> None:
        for key in table:
            if key in allowed:
                continue
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"did you mean '{close[0]}'?" if close else None
            raise self.error(
                f"{prefix}{key}", f"unknown key (expected one of: {', '.join(allowed)})", hint
            )

    # -- typed getters --------------------------------------------------------------------------

    def table(self, data: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any] | None:
        value = data.get(key)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise self.expected(where, f"a table ([{key}])", value)
        return value

    def string(self, table: Mapping[str, Any], key: str, where: str) -> str | None:
        """An optional non-empty single-line string."""
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.expected(where, "a string", value)
        if not value.strip():
            raise self.expected(where, "a non-empty string", value)
        if _CONTROL.search(value):
            raise self.expected(where, "a single-line string without control characters", value)
        return value

    def required_string(self, table: Mapping[str, Any], key: str, where: str) -> str:
        value = self.string(table, key, where)
        if value is None:
            raise self.error(where, "required key is missing (expected a string)")
        return value

    def boolean(self, table: Mapping[str, Any], key: str, where: str, default: bool) -> bool:
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.expected(where, "a boolean (true or false)", value)
        return value

    def string_list(self, table: Mapping[str, Any], key: str, where: str) -> list[str] | None:
        value = table.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.expected(where, "a list of strings", value)
        return list(value)

    def unique(self, items: list[_T], where: str) -> None:
        seen: set[_T] = set()
        for item in items:
            if item in seen:
                raise self.error(where, f"{item!r} is listed twice")
            seen.add(item)

    def path(self, value: str) -> Path:
        """An absolute path; relative ones are relative to the profile's directory."""
        expanded = Path(os.path.expanduser(value))
        if expanded.is_absolute():
            return expanded
        return Path(os.path.normpath(self.base / expanded))

    # -- sections -------------------------------------------------------------------------------

    def profile(self, data: Mapping[str, Any]) -> Profile:
        self.check_keys(data, _TOP_KEYS, "")
        name = self.file.stem
        return Profile(
            path=self.file,
            name=name,
            upstreams=self.upstreams(data),
            snapshot=self.snapshot(data, name),
            filter=self.filter(data),
            publish=self.publish(data),
            network=self.network(data),
        )

    def upstreams(self, data: Mapping[str, Any]) -> tuple[MirrorSpec, ...]:
        value = data.get("upstream")
        if value is None:
            raise self.error(
                "upstream",
                "required key is missing (expected at least one [[upstream]] table)",
            )
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise self.expected("upstream", "an array of tables ([[upstream]])", value)
        if not value:
            raise self.error("upstream", "expected at least one [[upstream]] table, got none")
        specs: list[MirrorSpec] = []
        first_use: dict[str, str] = {}
        for number, table in enumerate(value, start=1):
            prefix = f"upstream[{number}]"
            spec = self.upstream(table, prefix)
            if spec.name in first_use:
                raise self.error(
                    f"{prefix}.name",
                    f"{spec.name!r} is already used by {first_use[spec.name]}; "
                    "expected a name unique across upstreams",
                )
            first_use[spec.name] = prefix
            specs.append(spec)
        return tuple(specs)

    def upstream(self, table: Mapping[str, Any], prefix: str) -> MirrorSpec:
        self.check_keys(table, _UPSTREAM_KEYS, f"{prefix}.")

        def key(name: str) -> str:
            return f"{prefix}.{name}"

        name = self.required_string(table, "name", key("name"))
        if not _SAFE_NAME.fullmatch(name):
            raise self.error(
                key("name"),
                f"{name!r} is not a safe name (expected letters, digits, '.', '_', '+', '-', "
                "starting with a letter or digit)",
            )

        url = self.required_string(table, "url", key("url"))
        url = self.url(url, key("url"))

        suite = self.required_string(table, "suite", key("suite"))
        if not _SUITE.fullmatch(suite) or ".." in suite.split("/"):
            raise self.error(
                key("suite"),
                f"{suite!r} is not a valid suite (expected a name such as 'bookworm', or a "
                "path ending in '/' such as './' for a flat repository)",
            )
        flat = suite.endswith("/")

        components = self.string_list(table, "components", key("components"))
        if flat:
            if components:
                raise self.error(
                    key("components"),
                    f"a flat repository (suite {suite!r} ends in '/') has no components; "
                    "expected none or []",
                )
            components = []
        elif components is None:
            components = ["main"]
        elif not components:
            raise self.error(key("components"), "expected at least one component, got []")
        for component in components:
            if not _COMPONENT.fullmatch(component):
                raise self.error(
                    key("components"),
                    f"{component!r} is not a valid component name (expected e.g. 'main', "
                    "'contrib', 'non-free-firmware' or 'updates/main')",
                )
        self.unique(components, key("components"))

        architectures = self.string_list(table, "architectures", key("architectures"))
        if architectures is None:
            architectures = ["amd64"]
        if not architectures:
            raise self.error(key("architectures"), "expected at least one architecture, got []")
        for arch in architectures:
            if not _ARCH.fullmatch(arch):
                raise self.error(
                    key("architectures"),
                    f"{arch!r} is not a valid architecture name (expected lower-case letters, "
                    "digits and '-', such as 'amd64', 'arm64', 'i386' or 'all')",
                )
        self.unique(architectures, key("architectures"))

        keyring_value = table.get("keyring")
        if keyring_value is None:
            raise self.error(
                key("keyring"),
                "required key is missing (expected the path of an OpenPGP keyring file)",
                hint="apt-get install debian-archive-keyring (or ubuntu-keyring) provides "
                "/usr/share/keyrings/debian-archive-keyring.gpg (ubuntu-archive-keyring.gpg)",
            )
        keyring = self.required_string(table, "keyring", key("keyring"))

        fingerprints: list[str] = []
        for raw in self.string_list(table, "fingerprints", key("fingerprints")) or []:
            fingerprint = raw.replace(" ", "").upper()
            if not _FINGERPRINT.fullmatch(fingerprint):
                raise self.error(
                    key("fingerprints"),
                    f"{raw!r} is not a fingerprint (expected 40 hexadecimal digits, 64 for a v5 "
                    "key; spaces are allowed)",
                    hint="gpg --show-keys --with-fingerprint KEYRING prints them",
                )
            if fingerprint not in fingerprints:
                fingerprints.append(fingerprint)

        languages = self.string_list(table, "languages", key("languages"))
        if languages is None:
            languages = [] if flat else list(DEFAULT_LANGUAGES)
        for lang in languages:
            if not _LANGUAGE.fullmatch(lang):
                raise self.error(
                    key("languages"),
                    f"{lang!r} is not a language code (expected codes as apt names "
                    "Translation files, e.g. 'en', 'de', 'pt_BR'; [] for none)",
                )
        self.unique(languages, key("languages"))
        return MirrorSpec(
            name=name,
            url=url,
            suite=suite,
            components=tuple(components),
            architectures=tuple(architectures),
            keyring=str(self.path(keyring)),
            fingerprints=tuple(fingerprints),
            languages=tuple(languages),
            with_contents=self.boolean(table, "with_contents", key("with_contents"), False),
            with_sources=self.boolean(table, "with_sources", key("with_sources"), False),
            with_udebs=self.boolean(table, "with_udebs", key("with_udebs"), False),
        )

    def url(self, url: str, where: str) -> str:
        """Check an upstream URL; return it without trailing slashes."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        ok = (scheme in ("http", "https") and bool(parts.hostname)) or (
            scheme == "file" and not parts.netloc and parts.path.startswith("/")
        )
        if not ok or any(c.isspace() for c in url) or parts.query or parts.fragment:
            raise self.error(
                where,
                f"{url!r} is not a usable archive URL (expected http://HOST/PATH, "
                "https://HOST/PATH or file:///ABSOLUTE/PATH)",
            )
        # No trailing slashes, so that URL + "/dists/..." is right; file:/// keeps its root.
        stripped = url.rstrip("/")
        kept = urlsplit(stripped)
        return stripped if kept.netloc or kept.path else url

    def snapshot(self, data: Mapping[str, Any], profile_name: str) -> SnapshotPolicy:
        table = self.table(data, "snapshot", "snapshot")
        if table is None:
            table = {}
        self.check_keys(table, _SNAPSHOT_KEYS, "snapshot.")
        name = self.string(table, "name", "snapshot.name")
        merge = self.string(table, "merge", "snapshot.merge")
        policy = SnapshotPolicy()
        if name is not None:
            if _template_fields(name) is None:
                raise self.error(
                    "snapshot.name",
                    f"{name!r} is not a valid template (expected text with only {{date}} "
                    "(YYYYMMDD) and {profile} (the profile file's stem) as placeholders)",
                )
            policy = SnapshotPolicy(name=name, merge=policy.merge)
        if merge is not None:
            if merge not in set(MergePolicy):
                raise self.error(
                    "snapshot.merge",
                    f"expected one of {', '.join(MergePolicy)}, got {merge!r}",
                )
            policy = SnapshotPolicy(name=policy.name, merge=MergePolicy(merge))
        rendered = snapshot_name(policy, profile_name, _SAMPLE_DATE)
        if not _SAFE_NAME.fullmatch(rendered):
            raise self.error(
                "snapshot.name",
                f"template {policy.name!r} renders to {rendered!r}, which is not a safe "
                "snapshot name (expected letters, digits, '.', '_', '+', '-', starting with a "
                "letter or digit)",
                hint="set [snapshot] name, or rename the profile file"
                if "{profile}" in policy.name
                else None,
            )
        return policy

    def filter(self, data: Mapping[str, Any]) -> FilterSpec | None:
        table = self.table(data, "filter", "filter")
        if table is None:
            return None
        self.check_keys(table, _FILTER_KEYS, "filter.")
        return FilterSpec(
            query=self.required_string(table, "query", "filter.query").strip(),
            with_deps=self.boolean(table, "with_deps", "filter.with_deps", True),
            with_recommends=self.boolean(table, "with_recommends", "filter.with_recommends", False),
            allow_missing=self.boolean(table, "allow_missing", "filter.allow_missing", False),
            allow_empty=self.boolean(table, "allow_empty", "filter.allow_empty", False),
        )

    def network(self, data: Mapping[str, Any]) -> NetworkConfig:
        table = self.table(data, "network", "network")
        if table is None:
            return NetworkConfig()
        self.check_keys(table, _NETWORK_KEYS, "network.")
        proxy = self.string(table, "proxy", "network.proxy")
        ca_bundle = self.string(table, "ca_bundle", "network.ca_bundle")
        files: tuple[Path, ...] | None = None
        value = table.get("auth_file")
        if isinstance(value, str):
            files = (self.path(value),)
        elif value is not None:
            listed = self.string_list(table, "auth_file", "network.auth_file")
            files = tuple(self.path(v) for v in listed or ())
        return NetworkConfig(
            proxy=proxy, ca_bundle=self.path(ca_bundle) if ca_bundle else None, auth_files=files
        )

    def publish(self, data: Mapping[str, Any]) -> PublishSpec | None:
        table = self.table(data, "publish", "publish")
        if table is None:
            return None
        self.check_keys(table, _PUBLISH_KEYS, "publish.")
        values = {k: self.string(table, k, f"publish.{k}") for k in _PUBLISH_KEYS if k != "prune"}
        prune = self.boolean(table, "prune", "publish.prune", False)
        fs, s3 = values["fs"], values["s3"]
        if (fs is None) == (s3 is None):
            raise self.error(
                "publish",
                "expected exactly one of fs or s3, got "
                + ("both" if fs is not None else "neither"),
            )
        if s3 is not None:
            if not s3.startswith("s3://") or not urlsplit(s3).netloc:
                raise self.error(
                    "publish.s3", f"expected a URL of the form s3://BUCKET/PREFIX, got {s3!r}"
                )
        else:
            for key in ("endpoint_url", "region", "prune"):
                if table.get(key) is not None:
                    raise self.error(f"publish.{key}", "only meaningful with s3, not with fs")
        endpoint = values["endpoint_url"]
        if endpoint is not None:
            parts = urlsplit(endpoint)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise self.error(
                    "publish.endpoint_url",
                    f"expected an http:// or https:// URL, got {endpoint!r}",
                )
        suite = values["suite"]
        if suite is not None and (
            not _SUITE.fullmatch(suite) or suite.endswith("/") or ".." in suite.split("/")
        ):
            raise self.error(
                "publish.suite", f"{suite!r} is not a valid suite (expected e.g. 'bookworm')"
            )
        if values["valid_for"] is not None:
            from mirrorkit.publish import parse_duration  # checked now, not after the downloads

            try:
                parse_duration(values["valid_for"])
            except MirrorkitError as exc:
                raise self.error("publish.valid_for", exc.message, exc.hint) from exc
        channel = values["channel"]
        if channel is not None and not _SAFE_NAME.fullmatch(channel):
            raise self.error(
                "publish.channel",
                f"{channel!r} is not a safe name (expected letters, digits, '.', '_', '+', '-', "
                "starting with a letter or digit)",
            )
        return PublishSpec(
            fs=self.path(fs) if fs is not None else None,
            s3=s3,
            endpoint_url=endpoint,
            region=values["region"],
            prune=prune,
            suite=suite,
            key=values["key"],
            channel=channel,
            origin=values["origin"],
            label=values["label"],
            valid_for=values["valid_for"],
        )
