"""Profiles: parsing, defaults, and an error naming file and key for every rule."""

from __future__ import annotations

import dataclasses
import datetime
from pathlib import Path

import pytest

from mirrorkit.errors import ProfileError
from mirrorkit.models import MergePolicy, MirrorSpec
from mirrorkit.profile import (
    FilterSpec,
    Profile,
    PublishSpec,
    SnapshotPolicy,
    load_profile,
    snapshot_name,
)

PROFILES = Path(__file__).resolve().parents[2] / "profiles"
FPR = "B8B80B5B623EAB6AD8775C45B7C5D7D6350947F8"


def upstream(**override: str | None) -> str:
    """One [[upstream]] table; each override is a raw TOML value, or None to drop the key."""
    keys: dict[str, str | None] = {
        "name": '"bookworm"',
        "url": '"http://deb.debian.org/debian"',
        "suite": '"bookworm"',
        "keyring": '"/usr/share/keyrings/debian-archive-keyring.gpg"',
    }
    keys.update(override)
    body = "".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None)
    return f"[[upstream]]\n{body}\n"


BASE = upstream()
SECOND = upstream(name='"bookworm-security"', suite='"bookworm-security"')


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load_error(path: Path) -> ProfileError:
    with pytest.raises(ProfileError) as info:
        load_profile(str(path))
    return info.value


# (id, profile text, dotted key the message must name, a fragment of what is expected)
ERRORS: list[tuple[str, str, str, str]] = [
    # unknown keys, everywhere
    ("unknown-top", "mirror = 1\n" + BASE, "mirror", "unknown key"),
    (
        "unknown-upstream",
        upstream(compnents='["main"]'),
        "upstream[1].compnents",
        "unknown key",
    ),
    (
        "unknown-second-upstream",
        BASE + upstream(name='"b"', arch='["amd64"]'),
        "upstream[2].arch",
        "unknown key",
    ),
    ("unknown-snapshot", BASE + "[snapshot]\nnmae = 'x'\n", "snapshot.nmae", "unknown key"),
    ("unknown-filter", BASE + "[filter]\nquery = 'a'\ndeps = true\n", "filter.deps", "unknown"),
    ("unknown-publish", BASE + "[publish]\nfs = '/srv'\nbucket = 'b'\n", "publish.bucket", "unkn"),
    # [[upstream]]
    ("no-upstream", "[snapshot]\nmerge = 'later'\n", "upstream", "at least one [[upstream]]"),
    ("empty-upstream", "upstream = []\n", "upstream", "at least one [[upstream]]"),
    ("upstream-table", "[upstream]\nname = 'a'\n", "upstream", "an array of tables"),
    ("upstream-string", "upstream = 'bookworm'\n", "upstream", "got 'bookworm'"),
    # name
    ("name-missing", upstream(name=None), "upstream[1].name", "required key is missing"),
    ("name-type", upstream(name="3"), "upstream[1].name", "expected a string, got 3"),
    ("name-empty", upstream(name='""'), "upstream[1].name", "non-empty string"),
    ("name-leading-dash", upstream(name='"-x"'), "upstream[1].name", "not a safe name"),
    ("name-space", upstream(name='"a b"'), "upstream[1].name", "not a safe name"),
    ("name-slash", upstream(name='"a/b"'), "upstream[1].name", "not a safe name"),
    ("name-duplicate", BASE + BASE, "upstream[2].name", "already used by upstream[1]"),
    # url
    ("url-missing", upstream(url=None), "upstream[1].url", "required key is missing"),
    ("url-type", upstream(url="[]"), "upstream[1].url", "expected a string, got []"),
    ("url-ftp", upstream(url='"ftp://ftp.debian.org/debian"'), "upstream[1].url", "http://"),
    ("url-no-scheme", upstream(url='"deb.debian.org/debian"'), "upstream[1].url", "http://"),
    ("url-no-host", upstream(url='"http:///debian"'), "upstream[1].url", "http://"),
    ("url-file-relative", upstream(url='"file://repo"'), "upstream[1].url", "file:///"),
    ("url-space", upstream(url='"http://a b/debian"'), "upstream[1].url", "http://"),
    # suite
    ("suite-missing", upstream(suite=None), "upstream[1].suite", "required key is missing"),
    ("suite-type", upstream(suite="12"), "upstream[1].suite", "expected a string, got 12"),
    ("suite-dotdot", upstream(suite='"../etc"'), "upstream[1].suite", "not a valid suite"),
    ("suite-space", upstream(suite='"book worm"'), "upstream[1].suite", "not a valid suite"),
    ("suite-absolute", upstream(suite='"/srv/repo/"'), "upstream[1].suite", "not a valid suite"),
    (
        "flat-with-components",
        upstream(suite='"./"', components='["main"]'),
        "upstream[1].components",
        "flat repository",
    ),
    # components
    (
        "components-string",
        upstream(components='"main"'),
        "upstream[1].components",
        "expected a list of strings, got 'main'",
    ),
    (
        "components-int",
        upstream(components='["main", 5]'),
        "upstream[1].components",
        "expected a list of strings, got ['main', 5]",
    ),
    ("components-empty", upstream(components="[]"), "upstream[1].components", "at least one"),
    (
        "components-bad-name",
        upstream(components='["ma in"]'),
        "upstream[1].components",
        "not a valid component name",
    ),
    (
        "components-dotdot",
        upstream(components='["../main"]'),
        "upstream[1].components",
        "not a valid component name",
    ),
    (
        "components-twice",
        upstream(components='["main", "main"]'),
        "upstream[1].components",
        "listed twice",
    ),
    # architectures
    (
        "arch-string",
        upstream(architectures='"amd64"'),
        "upstream[1].architectures",
        "expected a list of strings, got 'amd64'",
    ),
    ("arch-empty", upstream(architectures="[]"), "upstream[1].architectures", "at least one"),
    (
        "arch-upper",
        upstream(architectures='["AMD64"]'),
        "upstream[1].architectures",
        "not a valid architecture",
    ),
    (
        "arch-underscore",
        upstream(architectures='["x86_64"]'),
        "upstream[1].architectures",
        "not a valid architecture",
    ),
    (
        "arch-twice",
        upstream(architectures='["amd64", "amd64"]'),
        "upstream[1].architectures",
        "listed twice",
    ),
    # keyring
    ("keyring-missing", upstream(keyring=None), "upstream[1].keyring", "required key is missing"),
    ("keyring-type", upstream(keyring="true"), "upstream[1].keyring", "a string, got true"),
    ("keyring-list", upstream(keyring='["a.gpg"]'), "upstream[1].keyring", "a string"),
    ("keyring-empty", upstream(keyring='""'), "upstream[1].keyring", "non-empty string"),
    # fingerprints
    (
        "fingerprints-string",
        upstream(fingerprints=f'"{FPR}"'),
        "upstream[1].fingerprints",
        "expected a list of strings",
    ),
    (
        "fingerprints-short",
        upstream(fingerprints='["B8B80B5B"]'),
        "upstream[1].fingerprints",
        "40 hexadecimal digits",
    ),
    (
        "fingerprints-not-hex",
        upstream(fingerprints=f'["{FPR[:-1]}G"]'),
        "upstream[1].fingerprints",
        "40 hexadecimal digits",
    ),
    (
        "fingerprints-keyid",
        upstream(fingerprints='["0x6ED0E7B82643E131"]'),
        "upstream[1].fingerprints",
        "not a fingerprint",
    ),
    # an error in the second upstream names it
    (
        "second-upstream",
        BASE + upstream(name='"sec"', suite="1"),
        "upstream[2].suite",
        "expected a string",
    ),
    # [snapshot]
    (
        "snapshot-not-table",
        BASE.replace("[[upstream]]", "snapshot = 'x'\n[[upstream]]"),
        "snapshot",
        "a table",
    ),
    (
        "snapshot-unknown-placeholder",
        BASE + "[snapshot]\nname = '{host}-{date}'\n",
        "snapshot.name",
        "{date} (YYYYMMDD) and {profile}",
    ),
    (
        "snapshot-format-spec",
        BASE + "[snapshot]\nname = 'x-{date:>10}'\n",
        "snapshot.name",
        "not a valid template",
    ),
    (
        "snapshot-conversion",
        BASE + "[snapshot]\nname = 'x-{date!r}'\n",
        "snapshot.name",
        "not a valid template",
    ),
    (
        "snapshot-positional",
        BASE + "[snapshot]\nname = 'x-{}'\n",
        "snapshot.name",
        "not a valid template",
    ),
    (
        "snapshot-unbalanced",
        BASE + "[snapshot]\nname = 'x-{date'\n",
        "snapshot.name",
        "not a valid template",
    ),
    (
        "snapshot-unsafe-render",
        BASE + "[snapshot]\nname = 'my snap-{date}'\n",
        "snapshot.name",
        "not a safe snapshot name",
    ),
    ("snapshot-name-type", BASE + "[snapshot]\nname = 1\n", "snapshot.name", "a string, got 1"),
    (
        "snapshot-merge",
        BASE + "[snapshot]\nmerge = 'newest'\n",
        "snapshot.merge",
        "expected one of later, latest, all-versions, got 'newest'",
    ),
    (
        "snapshot-merge-type",
        BASE + "[snapshot]\nmerge = true\n",
        "snapshot.merge",
        "a string, got true",
    ),
    # [filter]
    ("filter-not-table", "filter = 'nginx'\n" + BASE, "filter", "a table"),
    ("filter-no-query", BASE + "[filter]\nwith_deps = true\n", "filter.query", "required key"),
    ("filter-query-type", BASE + "[filter]\nquery = ['a']\n", "filter.query", "a string"),
    ("filter-query-empty", BASE + "[filter]\nquery = ' '\n", "filter.query", "non-empty"),
    (
        "filter-with-deps",
        BASE + "[filter]\nquery = 'a'\nwith_deps = 'yes'\n",
        "filter.with_deps",
        "expected a boolean (true or false), got 'yes'",
    ),
    (
        "filter-with-recommends",
        BASE + "[filter]\nquery = 'a'\nwith_recommends = 1\n",
        "filter.with_recommends",
        "expected a boolean (true or false), got 1",
    ),
    # [publish]
    ("publish-not-table", "publish = '/srv/apt'\n" + BASE, "publish", "a table"),
    ("publish-neither", BASE + "[publish]\nsuite = 'x'\n", "publish", "got neither"),
    (
        "publish-both",
        BASE + "[publish]\nfs = '/srv'\ns3 = 's3://b/p'\n",
        "publish",
        "got both",
    ),
    ("publish-fs-type", BASE + "[publish]\nfs = 1\n", "publish.fs", "a string, got 1"),
    ("publish-s3-scheme", BASE + "[publish]\ns3 = 'b/p'\n", "publish.s3", "s3://BUCKET"),
    ("publish-s3-https", BASE + "[publish]\ns3 = 'https://b/p'\n", "publish.s3", "s3://"),
    ("publish-s3-no-bucket", BASE + "[publish]\ns3 = 's3://'\n", "publish.s3", "s3://BUCKET"),
    (
        "publish-endpoint-with-fs",
        BASE + "[publish]\nfs = '/srv'\nendpoint_url = 'http://minio:9000'\n",
        "publish.endpoint_url",
        "only meaningful with s3",
    ),
    (
        "publish-prune-with-fs",
        BASE + "[publish]\nfs = '/srv'\nprune = true\n",
        "publish.prune",
        "only meaningful with s3",
    ),
    (
        "publish-valid-for-text",
        BASE + "[publish]\nfs = '/srv'\nvalid_for = 'two weeks'\n",
        "publish.valid_for",
        "invalid duration 'two weeks'",
    ),
    (
        "publish-prune-type",
        BASE + "[publish]\ns3 = 's3://b'\nprune = 'yes'\n",
        "publish.prune",
        "a boolean",
    ),
    (
        "publish-endpoint-scheme",
        BASE + "[publish]\ns3 = 's3://b'\nendpoint_url = 'minio:9000'\n",
        "publish.endpoint_url",
        "http:// or https://",
    ),
    (
        "publish-suite",
        BASE + "[publish]\nfs = '/srv'\nsuite = '../x'\n",
        "publish.suite",
        "not a valid suite",
    ),
    (
        "publish-channel",
        BASE + "[publish]\nfs = '/srv'\nchannel = 'my channel'\n",
        "publish.channel",
        "not a safe name",
    ),
    ("publish-key-type", BASE + "[publish]\nfs = '/srv'\nkey = 42\n", "publish.key", "a string"),
    (
        "publish-origin-newline",
        BASE + '[publish]\nfs = "/srv"\norigin = "a\\nSuite: evil"\n',
        "publish.origin",
        "single-line",
    ),
    (
        "publish-label-type",
        BASE + "[publish]\nfs = '/srv'\nlabel = []\n",
        "publish.label",
        "a string",
    ),
    (
        "publish-valid-for-type",
        BASE + "[publish]\nfs = '/srv'\nvalid_for = 7\n",
        "publish.valid_for",
        "a string, got 7",
    ),
    (
        "publish-endpoint-type",
        BASE + "[publish]\ns3 = 's3://b'\nendpoint_url = false\n",
        "publish.endpoint_url",
        "a string, got false",
    ),
]


@pytest.mark.parametrize(
    ("text", "key", "expected"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS]
)
def test_error_names_file_key_and_expectation(
    tmp_path: Path, text: str, key: str, expected: str
) -> None:
    path = write(tmp_path, text)
    message = str(load_error(path))
    assert message.startswith(f"{path}: {key}: "), message
    assert expected in message, message


def test_unknown_key_hint_suggests_the_close_match(tmp_path: Path) -> None:
    error = load_error(write(tmp_path, upstream(compnents='["main"]')))
    assert error.hint == "did you mean 'components'?"
    assert "components" in error.message  # the list of what is expected


def test_example_message_from_the_brief(tmp_path: Path) -> None:
    path = write(tmp_path, upstream(components='"main"'), "x.toml")
    error = load_error(path)
    assert str(error) == f"{path}: upstream[1].components: expected a list of strings, got 'main'"


def test_error_uses_the_path_as_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "profiles").mkdir()
    write(tmp_path / "profiles", upstream(components='"main"'), "x.toml")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ProfileError, match=r"^profiles/x\.toml: upstream\[1\]\.components: "):
        load_profile("profiles/x.toml")


# -- file-level errors ----------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    error = load_error(path)
    assert str(error).startswith(f"{path}: ")
    assert "no such profile file" in str(error)


def test_directory_instead_of_file(tmp_path: Path) -> None:
    error = load_error(tmp_path)
    assert str(error).startswith(f"{tmp_path}: ")


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[[upstream]]\nname = "a\n', "line 2"),
        ("[[upstream]]\nname = 'a'\nname = 'b'\n", "line 3"),
        ("[[upstream]\n", "line 1"),
        ("x = \n", "line 1, column"),
    ],
    ids=["unterminated-string", "duplicate-key", "bad-header", "missing-value"],
)
def test_toml_syntax_error_names_file_and_position(tmp_path: Path, text: str, where: str) -> None:
    path = write(tmp_path, text)
    message = str(load_error(path))
    assert message.startswith(f"{path}: invalid TOML: "), message
    assert where in message, message


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "x.toml"
    path.write_bytes(b"# \xff\n" + BASE.encode())
    message = str(load_error(path))
    assert message.startswith(f"{path}: ") and "UTF-8" in message


# -- what a valid profile gives -------------------------------------------------------------------


def test_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, BASE, "debian-mini.toml")
    profile = load_profile(path)
    assert profile == Profile(
        path=path.resolve(),
        name="debian-mini",
        upstreams=(
            MirrorSpec(
                name="bookworm",
                url="http://deb.debian.org/debian",
                suite="bookworm",
                components=("main",),
                architectures=("amd64",),
                keyring="/usr/share/keyrings/debian-archive-keyring.gpg",
                fingerprints=(),
                languages=("en",),  # apt's default: Translation-en
            ),
        ),
        snapshot=SnapshotPolicy(name="{profile}-{date}", merge=MergePolicy.LATER),
        filter=None,
        publish=None,
    )
    assert isinstance(profile.upstreams[0].components, tuple)
    assert isinstance(profile.upstreams[0].architectures, tuple)
    assert isinstance(profile.upstreams[0].fingerprints, tuple)


def test_every_upstream_key(tmp_path: Path) -> None:
    spaced = " ".join(FPR[i : i + 4] for i in range(0, 40, 4))
    text = upstream(
        name='"sec+1.x_y-z"',
        url='"https://security.debian.org/debian-security/"',
        suite='"bookworm-security"',
        components='["updates/main", "contrib", "non-free-firmware"]',
        architectures='["amd64", "arm64", "i386", "all", "x32", "armhf"]',
        keyring='"keys/debian.gpg"',
        fingerprints=f'["{FPR[:20].lower()} {FPR[20:]}", "{spaced}"]',
    )
    spec = load_profile(write(tmp_path, text)).upstreams[0]
    assert spec.name == "sec+1.x_y-z"
    assert spec.url == "https://security.debian.org/debian-security"  # trailing slash dropped
    assert spec.components == ("updates/main", "contrib", "non-free-firmware")
    assert spec.architectures == ("amd64", "arm64", "i386", "all", "x32", "armhf")
    assert spec.keyring == str(tmp_path.resolve() / "keys" / "debian.gpg")
    assert spec.fingerprints == (FPR,)  # normalised, then the duplicate dropped
    assert not spec.flat


def test_keyring_relative_to_profile_not_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "profiles").mkdir()
    write(tmp_path / "profiles", upstream(keyring='"../keys/k.gpg"'), "p.toml")
    monkeypatch.chdir(tmp_path)
    spec = load_profile("profiles/p.toml").upstreams[0]
    assert spec.keyring == str(tmp_path.resolve() / "keys" / "k.gpg")
    assert Path(spec.keyring).is_absolute()


@pytest.mark.parametrize(
    ("suite", "components"),
    [('"./"', None), ('"debian/"', "[]"), ('"a/b/"', None)],
    ids=["dot", "empty-list", "nested"],
)
def test_flat_repository(tmp_path: Path, suite: str, components: str | None) -> None:
    text = upstream(url='"file:///srv/repo"', suite=suite, components=components)
    spec = load_profile(write(tmp_path, text)).upstreams[0]
    assert spec.flat
    assert spec.components == ()
    assert spec.url == "file:///srv/repo"


def test_file_url_root_kept(tmp_path: Path) -> None:
    spec = load_profile(write(tmp_path, upstream(url='"file:///"', suite='"./"'))).upstreams[0]
    assert spec.url == "file:///"


def test_names_unique_across_several_upstreams(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, BASE + SECOND))
    assert [u.name for u in profile.upstreams] == ["bookworm", "bookworm-security"]


@pytest.mark.parametrize("merge", ["later", "latest", "all-versions"])
def test_snapshot_merge_values(tmp_path: Path, merge: str) -> None:
    text = BASE + f"[snapshot]\nname = 'deb-{{date}}'\nmerge = '{merge}'\n"
    assert load_profile(write(tmp_path, text)).snapshot == SnapshotPolicy(
        "deb-{date}", MergePolicy(merge)
    )


def test_snapshot_section_may_set_only_merge(tmp_path: Path) -> None:
    policy = load_profile(write(tmp_path, BASE + "[snapshot]\nmerge = 'latest'\n")).snapshot
    assert policy == SnapshotPolicy(name="{profile}-{date}", merge=MergePolicy.LATEST)


def test_unsafe_stem_with_default_template(tmp_path: Path) -> None:
    path = write(tmp_path, BASE, "my profile.toml")
    error = load_error(path)
    assert str(error).startswith(f"{path}: snapshot.name: ")
    assert error.hint is not None and "rename" in error.hint
    # ...and a fixed name makes the same file fine
    path.write_text(BASE + "[snapshot]\nname = 'mine-{date}'\n", encoding="utf-8")
    assert load_profile(path).name == "my profile"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{profile}-{date}", "debian-bookworm-20261121"),
        ("debian-bookworm-{date}", "debian-bookworm-20261121"),
        ("{date}.{profile}", "20261121.debian-bookworm"),
        ("fixed", "fixed"),
        ("{date}-{date}", "20261121-20261121"),
    ],
)
def test_snapshot_name(template: str, expected: str) -> None:
    policy = SnapshotPolicy(name=template)
    today = datetime.date(2026, 11, 21)
    assert snapshot_name(policy, "debian-bookworm", today) == expected


def test_snapshot_name_pads_the_date() -> None:
    assert snapshot_name(SnapshotPolicy(), "p", datetime.date(2027, 1, 2)) == "p-20270102"


@pytest.mark.parametrize("template", ["{host}", "{date:%Y}", "{0}", "{", "{date!s}"])
def test_snapshot_name_rejects_bad_template(template: str) -> None:
    with pytest.raises(ProfileError, match=r"only \{date\} and \{profile\} placeholders"):
        snapshot_name(SnapshotPolicy(name=template), "p", datetime.date(2026, 1, 1))


def test_filter(tmp_path: Path) -> None:
    text = BASE + "[filter]\nquery = ' nginx | curl '\n"
    assert load_profile(write(tmp_path, text)).filter == FilterSpec(
        query="nginx | curl", with_deps=True, with_recommends=False
    )
    text = BASE + "[filter]\nquery = 'a'\nwith_deps = false\nwith_recommends = true\n"
    assert load_profile(write(tmp_path, text)).filter == FilterSpec("a", False, True)


def test_publish_fs_relative_to_profile(tmp_path: Path) -> None:
    text = BASE + "[publish]\nfs = './published'\n"
    publish = load_profile(write(tmp_path, text)).publish
    assert publish == PublishSpec(
        fs=tmp_path.resolve() / "published",
        s3=None,
        endpoint_url=None,
        suite=None,
        key=None,
        channel=None,
        origin=None,
        label=None,
        valid_for=None,
    )


def test_publish_s3_every_key(tmp_path: Path) -> None:
    text = BASE + (
        "[publish]\ns3 = 's3://bucket/apt/prefix'\nendpoint_url = 'http://127.0.0.1:9000'\n"
        "suite = 'bookworm'\nkey = 'ops@example.org'\nchannel = 'prod'\norigin = 'Ops'\n"
        "label = 'Ops apt'\nvalid_for = '7d'\nregion = 'eu-west-1'\nprune = true\n"
    )
    publish = load_profile(write(tmp_path, text)).publish
    assert publish == PublishSpec(
        fs=None,
        s3="s3://bucket/apt/prefix",
        endpoint_url="http://127.0.0.1:9000",
        region="eu-west-1",
        prune=True,
        suite="bookworm",
        key="ops@example.org",
        channel="prod",
        origin="Ops",
        label="Ops apt",
        valid_for="7d",
    )


def test_profile_is_frozen(tmp_path: Path) -> None:
    profile = load_profile(write(tmp_path, BASE))
    with pytest.raises(dataclasses.FrozenInstanceError):
        profile.name = "other"  # type: ignore[misc]


# -- the shipped profiles -------------------------------------------------------------------------

SHIPPED = sorted(PROFILES.glob("*.toml"))


def test_shipped_profiles_exist() -> None:
    names = {p.stem for p in SHIPPED}
    assert {
        "debian-bookworm",
        "debian-trixie",
        "ubuntu-noble",
        "ubuntu-jammy",
        "example-filtered",
    } <= names


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_profile_loads(path: Path) -> None:
    profile = load_profile(path)
    assert profile.name == path.stem
    assert profile.upstreams
    for spec in profile.upstreams:
        assert Path(spec.keyring).is_absolute()
        assert spec.keyring.startswith("/usr/share/keyrings/")
    today = datetime.date(2026, 11, 21)
    assert snapshot_name(profile.snapshot, profile.name, today).endswith("20261121")


def test_bookworm_profile() -> None:
    profile = load_profile(PROFILES / "debian-bookworm.toml")
    assert [u.name for u in profile.upstreams] == [
        "bookworm",
        "bookworm-updates",
        "bookworm-security",
    ]
    security = profile.upstreams[2]
    assert security.url == "http://security.debian.org/debian-security"
    assert security.suite == "bookworm-security"
    assert security.components == ("main",)
    assert security.keyring == "/usr/share/keyrings/debian-archive-keyring.gpg"
    assert profile.snapshot == SnapshotPolicy(
        name="debian-bookworm-{date}", merge=MergePolicy.LATEST
    )
    assert profile.publish is None


def test_example_filtered_profile_uses_every_section() -> None:
    path = PROFILES / "example-filtered.toml"
    profile = load_profile(path)
    assert profile.filter == FilterSpec("nginx | curl | openssh-server", True, False)
    assert profile.publish is not None
    assert profile.publish.fs == path.resolve().parent / "published"
    assert profile.publish.suite == "bookworm"
    assert profile.publish.key == "ops@example.org"


def test_filter_allow_missing_and_v5_fingerprints(tmp_path: Path) -> None:
    v5 = "AB" * 32
    text = upstream(fingerprints=f'["{v5}"]') + "[filter]\nquery = 'nginx'\nallow_missing = true\n"
    profile = load_profile(write(tmp_path, text))
    assert profile.filter == FilterSpec("nginx", True, False, allow_missing=True)
    assert profile.upstreams[0].fingerprints == (v5,)


def test_check_keyrings_names_the_file_and_the_key(tmp_path: Path) -> None:
    from mirrorkit.profile import check_keyrings

    path = write(tmp_path, upstream(keyring=f'"{tmp_path}"'))
    with pytest.raises(ProfileError) as info:
        check_keyrings(load_profile(path))
    assert info.value.message == (
        f"{path}: upstream[0].keyring: {tmp_path}: is a directory, not a keyring file"
    )
