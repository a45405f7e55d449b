"""mirrorkit: verified offline snapshot mirrors of Debian/Ubuntu APT archives.

The public Python surface: one function per CLI command (see :mod:`mirrorkit.api` and README's
"Using it from Python"), every error type, the progress protocol, and ``__version__``. Names not
in ``__all__`` are internal and may change in any release.
"""

import importlib
from typing import TYPE_CHECKING, Any

from mirrorkit._version import __version__
from mirrorkit.errors import (
    AuthError,
    BundleError,
    ConflictError,
    ConnectionFailedError,
    DNSError,
    EmptyResultError,
    FetchError,
    FormatError,
    HTTPStatusError,
    InsufficientSpaceError,
    IntegrityError,
    MirrorkitError,
    NetworkConfigError,
    NetworkTimeoutError,
    NotFoundError,
    ProfileError,
    ProxyError,
    PublishError,
    ReleaseError,
    SignatureError,
    StorageError,
    StoreFormatError,
    StoreLockedError,
    TLSError,
    UsageError,
)
from mirrorkit.progress import NullReporter, Reporter

_API_NAMES = (
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
    "publish_fs",
    "publish_list",
    "publish_s3",
    "publish_s3_async",
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
    "sync",
    "sync_async",
)

__all__ = [
    "AuthError",
    "BundleError",
    "ConflictError",
    "ConnectionFailedError",
    "DNSError",
    "EmptyResultError",
    "FetchError",
    "FormatError",
    "HTTPStatusError",
    "InsufficientSpaceError",
    "IntegrityError",
    "MirrorkitError",
    "NetworkConfigError",
    "NetworkTimeoutError",
    "NotFoundError",
    "NullReporter",
    "ProfileError",
    "ProxyError",
    "PublishError",
    "QueryError",
    "ReleaseError",
    "Reporter",
    "SignatureError",
    "StorageError",
    "StoreFormatError",
    "StoreLockedError",
    "TLSError",
    "UnmetDependenciesError",
    "UsageError",
    "__version__",
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
    "publish_fs",
    "publish_list",
    "publish_s3",
    "publish_s3_async",
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
    "sync",
    "sync_async",
]

if TYPE_CHECKING:
    from mirrorkit.api import (
        api_user_add,
        api_user_list,
        api_user_rm,
        bundle_export,
        bundle_import,
        bundle_show,
        bundle_verify,
        channel_history,
        channel_list,
        channel_rollback,
        channel_set,
        gc,
        mirror_add,
        mirror_edit,
        mirror_list,
        mirror_rm,
        mirror_search,
        mirror_show,
        mirror_update,
        mirror_update_async,
        publish_fs,
        publish_list,
        publish_s3,
        publish_s3_async,
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
        sync,
        sync_async,
    )
    from mirrorkit.query import QueryError
    from mirrorkit.resolve import UnmetDependenciesError

# Loaded when first used: the API functions (so that importing any stage, as a benchmark's
# worker or a test does, runs this file without loading the API and the store behind it), and
# the errors defined beside the stage that raises them (the query parser, the resolver).
_LAZY = {
    **dict.fromkeys(_API_NAMES, "mirrorkit.api"),
    "QueryError": "mirrorkit.query",
    "UnmetDependenciesError": "mirrorkit.resolve",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mirrorkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
