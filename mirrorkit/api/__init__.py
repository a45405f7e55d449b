"""The public Python API: one function per command of the CLI (``../shared/cli.md``).

Each function opens the store (``store=``, default as ``--store``: ``$MIRRORKIT_HOME``, else
``$XDG_DATA_HOME/mirrorkit``, else ``~/.local/share/mirrorkit``), initialising it when it
changes it, takes the lock the command takes, checks its arguments, calls the stages and
returns frozen dataclasses. It prints nothing and raises only :class:`MirrorkitError`
subclasses; progress goes to ``reporter=`` (a :class:`~mirrorkit.progress.Reporter`),
diagnostics to ``logging.getLogger("mirrorkit.api")``.

Positional arguments are those of the command line; options are keyword arguments named
after the long option in snake case (``--with-deps`` -> ``with_deps=``; ``--with`` and
``--from``, Python keywords, are ``with_=`` and ``from_=``). The network-bound commands have
``_async`` variants; the plain functions work inside a running event loop too (the work then
runs on a thread of its own).

Stages are imported inside the functions: ``import mirrorkit`` (and every CLI start-up) loads
none of them, and each call loads only what it needs.

Modules: ``mirrors`` (mirror_*, sync), ``snapshots`` (snapshot_*, channel_*), ``repos``
(repo_*), ``exports`` (publish_*, bundle_*, gc), ``server`` (api serve, api user *);
``_support`` holds the error boundary and the shared checks.
"""

from mirrorkit.api._support import normalise_fingerprint, parse_rate
from mirrorkit.api.exports import (
    bundle_export,
    bundle_import,
    bundle_show,
    bundle_verify,
    gc,
    publish_drop,
    publish_fs,
    publish_list,
    publish_s3,
    publish_s3_async,
    store_verify,
)
from mirrorkit.api.mirrors import (
    mirror_add,
    mirror_edit,
    mirror_list,
    mirror_rm,
    mirror_search,
    mirror_show,
    mirror_update,
    mirror_update_async,
    sync,
    sync_async,
)
from mirrorkit.api.repos import (
    repo_add,
    repo_copy,
    repo_create,
    repo_history,
    repo_list,
    repo_move,
    repo_prune,
    repo_remove,
    repo_rm,
    repo_rollback,
    repo_search,
    repo_show,
)
from mirrorkit.api.server import api_user_add, api_user_list, api_user_rm
from mirrorkit.api.snapshots import (
    channel_history,
    channel_list,
    channel_rollback,
    channel_set,
    snapshot_create,
    snapshot_diff,
    snapshot_filter,
    snapshot_list,
    snapshot_merge,
    snapshot_rename,
    snapshot_rm,
    snapshot_search,
    snapshot_show,
    snapshot_verify,
    snapshot_why,
)

__all__ = [
    "api_user_add",
    "api_user_list",
    "api_user_rm",
    "bundle_export",
    "bundle_import",
    "bundle_show",
    "bundle_verify",
    "channel_history",
    "channel_list",
    "channel_rollback",
    "channel_set",
    "gc",
    "mirror_add",
    "mirror_edit",
    "mirror_list",
    "mirror_rm",
    "mirror_search",
    "mirror_show",
    "mirror_update",
    "mirror_update_async",
    "normalise_fingerprint",
    "parse_rate",
    "publish_drop",
    "publish_fs",
    "publish_list",
    "publish_s3",
    "publish_s3_async",
    "repo_add",
    "repo_copy",
    "repo_create",
    "repo_history",
    "repo_list",
    "repo_move",
    "repo_prune",
    "repo_remove",
    "repo_rm",
    "repo_rollback",
    "repo_search",
    "repo_show",
    "snapshot_create",
    "snapshot_diff",
    "snapshot_filter",
    "snapshot_list",
    "snapshot_merge",
    "snapshot_rename",
    "snapshot_rm",
    "snapshot_search",
    "snapshot_show",
    "snapshot_verify",
    "snapshot_why",
    "store_verify",
    "sync",
    "sync_async",
]
