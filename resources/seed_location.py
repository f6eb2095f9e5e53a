"""Where new seed batches arrive: a local folder or an S3 prefix, behind the same two methods
(list entries cheaply with a change stamp, give one entry's location for registration).

On S3 the listing goes through dagster-aws's S3 client and an object's ETag is its stamp."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from amr_dagster import settings
from amr_dagster.ids import stable_id
from amr_dagster.storage.objectstore import is_s3, open_store, split_s3
from amr_dagster.seeds.batches import is_seed_entry
from amr_dagster.seeds.remote import remote_entries
from resources.s3 import client_factory


@dataclass(frozen=True)
class SeedEntry:
    name: str
    path: str  # a local path or an s3:// URI, what ``BatchRegistry.register`` takes
    stamp: str  # cheap change marker (size + mtime, or the ETag); content is hashed only when it changes


class SeedLocation(dg.ConfigurableResource):
    """A folder or ``s3://bucket/prefix`` whose top-level files (.py, .tar.gz, .zip, .jsonl,
    .parquet) and sub-folders are seed batches; ``path`` empty means ``$AMR_SEEDS_DIR``
    (default ``./seeds``)."""

    path: str = ""

    def url(self) -> str:
        return self.path or settings.seeds_root()

    def entries(self) -> list[SeedEntry]:
        if is_s3(self.url()):
            from dagster_aws.s3.sensor import get_objects

            store = open_store(self.url(), client_factory())
            bucket, prefix = split_s3(self.url())
            start = len(prefix) + 1 if prefix else 0
            objects = get_objects(bucket, f"{prefix}/" if prefix else "", client=store.client)
            listing = [(o["Key"][start:], str(o["ETag"])) for o in objects]
            return [SeedEntry(e.name, e.uri, e.stamp) for e in remote_entries(store, listing)]
        root = Path(self.url())
        if not root.is_dir():
            return []
        found = []
        for child in sorted(root.iterdir()):
            try:
                if not is_seed_entry(child):
                    continue
                found.append(SeedEntry(child.name, str(child.resolve()), _stamp(child)))
            except OSError:
                continue  # vanished or unreadable between listing and stat: next tick sees it
        return found


def _stamp(path: Path) -> str:
    if path.is_file():
        st = path.stat()
        return f"{st.st_size}:{st.st_mtime_ns}"
    parts = []
    for child in sorted(path.rglob("*")):
        try:
            if child.is_file():
                st = child.stat()
                parts.append(f"{child.relative_to(path)}:{st.st_size}:{st.st_mtime_ns}")
        except OSError:
            continue
    return stable_id(*parts)
