"""Suites that follow a repo: a publish from a repo (alone, or as one component of a suite)
is remembered in the repo's record with its options, and ``--publish`` on a change publishes
every such suite again, from the head as it is then.

A suite stops following the repo when it is published from something else: the store's
publish record (``published/``) then names another source for it, and the repo forgets it
on its next republish.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mirrorkit import publish, repo
from mirrorkit.publish.records import serves
from mirrorkit.store import Store

if TYPE_CHECKING:
    from mirrorkit.publish import Published


def _identity(spec: dict[str, Any]) -> tuple[str, str, str | None]:
    return (spec["target"], spec["suite"], spec.get("endpoint_url"))


def spec_of(
    published: Published,
    sources: Sequence[tuple[str, str]],
    *,
    kind: str,
    options: dict[str, Any],
) -> dict[str, Any]:
    """The follower record of a publish: where, which suite, from what, how."""
    spec: dict[str, Any] = {
        "kind": kind,
        "target": published.location if kind == "s3" else str(Path(published.location).resolve()),
        "suite": published.result.suite,
        "key": published.fingerprint,
        "published": published.snapshot,
    }
    if len(sources) == 1 and sources[0][0] == "":
        spec["source"] = sources[0][1]
    else:
        spec["components"] = dict(sources)
    spec.update({k: v for k, v in options.items() if v is not None})
    return spec


def follow(store: Store, names: Sequence[str], spec: dict[str, Any], wait: float | None) -> None:
    """Remember in each repo of ``names`` that ``spec``'s suite follows it."""
    with repo.locked(store, names, wait):
        for name in names:
            if not repo.exists(store, name):
                continue
            r = repo.load(store, name)
            kept = [f for f in r.followers if _identity(f) != _identity(spec)]
            repo.set_followers(store, r, [*kept, spec])


def _still_following(store: Store, spec: dict[str, Any]) -> bool:
    target: Path | str = Path(spec["target"]) if spec["kind"] == "fs" else spec["target"]
    return serves(
        store, target, spec["suite"], spec["published"], endpoint_url=spec.get("endpoint_url")
    )


def republish(
    store: Store, name: str, *, gnupghome: str | None, wait: float | None
) -> list[Published]:
    """Publish every suite that follows repo ``name`` again (see the module's doc)."""
    r = repo.load(store, name)
    done: list[Published] = []
    stale = []
    for spec in r.followers:
        if not _still_following(store, spec):
            stale.append(spec)
            continue
        done.append(_publish(store, spec, gnupghome, wait))
    if stale:
        with repo.locked(store, [name], wait):
            current = repo.load(store, name)
            gone = {_identity(s) for s in stale}
            repo.set_followers(
                store, current, [f for f in current.followers if _identity(f) not in gone]
            )
    return done


def _publish(
    store: Store, spec: dict[str, Any], gnupghome: str | None, wait: float | None
) -> Published:
    source = spec.get("source")
    components = spec.get("components")
    common: dict[str, Any] = {
        "key": spec["key"],
        "suite": spec["suite"],
        "gnupghome": gnupghome,
        "origin": spec.get("origin"),
        "label": spec.get("label"),
        "valid_for": spec.get("valid_for"),
        "components": components,
    }
    if spec["kind"] == "fs":
        pub = publish.publish_fs(store, source, Path(spec["target"]), **common)
    else:
        pub = publish.publish_s3(
            store,
            source,
            spec["target"],
            endpoint_url=spec.get("endpoint_url"),
            region=spec.get("region"),
            prune=bool(spec.get("prune", False)),
            client_url=spec.get("client_url", "http"),
            **common,
        )
    follow(store, pub.follows, {**spec, "published": pub.snapshot}, wait)
    return pub
