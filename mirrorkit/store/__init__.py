"""The store on disk: its layout and format (``layout``), atomic file writes (``files``), the
content-addressed objects (``objects``) and the versioned records (``records``).

``docs/store-format.md`` describes the whole layout and what other tools may rely on.
"""

from mirrorkit.store.files import (
    atomic_write,
    canonical_json,
    check_name,
    default_store_path,
    fsync_dir,
    held_dir,
    read_json,
    reclaim_dirs,
    storage_error,
    syncfs,
    temp_dir,
    temp_file,
    work_dir,
    write_json,
)
from mirrorkit.store.layout import STORE_FORMAT, Store
from mirrorkit.store.objects import MetaStore, Packed, Pool
from mirrorkit.store.records import (
    CHANNEL,
    IMPORTED_BUNDLES,
    MIRROR,
    PUBLISHED,
    REPO,
    SNAPSHOT,
    RecordKind,
    decode_record,
    encode_record,
    read_record,
    write_record,
)

__all__ = [
    "CHANNEL",
    "IMPORTED_BUNDLES",
    "MIRROR",
    "PUBLISHED",
    "REPO",
    "SNAPSHOT",
    "STORE_FORMAT",
    "MetaStore",
    "Packed",
    "Pool",
    "RecordKind",
    "Store",
    "atomic_write",
    "canonical_json",
    "check_name",
    "decode_record",
    "default_store_path",
    "encode_record",
    "fsync_dir",
    "held_dir",
    "read_json",
    "read_record",
    "reclaim_dirs",
    "storage_error",
    "syncfs",
    "temp_dir",
    "temp_file",
    "work_dir",
    "write_json",
    "write_record",
]
