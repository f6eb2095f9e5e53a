"""Seed batches: a batch is one seed file or folder, keyed by its name plus a content hash.

The partition key changes whenever the content changes, so an edited file is a new batch and
the old one stays reproducible. The registry (one small JSON per key under the data root)
maps a key back to its location; the mining stage refuses to run if the content changed
underneath a registered key rather than silently mining different code.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from amr_dagster import settings
from amr_dagster.storage.objectstore import ObjectStore, is_s3, open_store
from amr_dagster.seeds.remote import fetch_seed
from amr_dagster.seeds.sources import SEED_SUFFIXES, batch_fingerprint, is_seed_location

_KEY_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SeedBatch:
    key: str
    location: str  # absolute path of the file or folder, or its s3:// URI
    fingerprint: str
    registered_at: float


def is_seed_entry(path: Path) -> bool:
    """Entries of the seeds folder that form a batch: supported files and sub-folders."""
    if path.name.startswith("."):
        return False
    return (path.is_dir() or path.is_file()) and is_seed_location(path)


def batch_key(location: Path, content_hash: str | None = None) -> str:
    """``<file name>-<hash>``: readable in the UI, unique per content."""
    name = location.name
    for suffix in sorted(SEED_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            name = name[: -len(suffix)]
            break
    name = _KEY_SAFE.sub("_", name).strip("._-")[:60] or "batch"
    return f"{name}-{(content_hash or batch_fingerprint(location))[:8]}"


class BatchRegistry:
    """Key -> location records under ``<data root>/_batches`` (a folder or an S3 prefix).

    A location is a local path or an ``s3://`` URI; a remote batch is fetched to the machine's
    cache to be fingerprinted and mined (``amr_dagster.seeds.remote``).
    """

    def __init__(self, root: str | os.PathLike[str] | ObjectStore | None = None) -> None:
        if root is None or isinstance(root, (str, os.PathLike)):
            root = open_store(root or settings.data_root())
        self.objects: ObjectStore = root.child("_batches")
        self.folder = self.objects.uri()

    def register(self, location: str | os.PathLike[str]) -> SeedBatch:
        remote = is_s3(location)
        local = fetch_seed(str(location)) if remote else Path(location).resolve()
        if not local.exists():
            raise FileNotFoundError(f"seed location {local} does not exist")
        where = str(location).rstrip("/") if remote else str(local)
        digest = batch_fingerprint(local)
        key = batch_key(local, digest)
        existing = self.get(key)
        if existing is not None and existing.location == where:
            return existing
        batch = SeedBatch(key=key, location=where, fingerprint=digest, registered_at=time.time())
        self.objects.put(f"{key}.json", json.dumps(asdict(batch), indent=2).encode())
        return batch

    def get(self, key: str) -> SeedBatch | None:
        data = self.objects.get(f"{key}.json")
        return None if data is None else SeedBatch(**json.loads(data))

    def resolve(self, key: str) -> Path:
        """The batch's local location (fetched if remote), checked to still hold the content it
        was registered with."""
        batch = self.get(key)
        if batch is None:
            raise KeyError(f"seed batch {key!r} is not registered under {self.folder}")
        location = fetch_seed(batch.location) if is_s3(batch.location) else Path(batch.location)
        if not location.exists():
            raise FileNotFoundError(f"seed batch {key!r}: {location} no longer exists")
        now = batch_fingerprint(location)
        if now != batch.fingerprint:
            raise ValueError(
                f"seed batch {key!r}: {batch.location} changed since it was registered "
                f"(fingerprint {batch.fingerprint} -> {now}); changed content is a new batch "
                "(the sensor or `amr-dagster run --seeds` registers it under a new key)"
            )
        return location

    def keys(self) -> list[str]:
        return sorted(k[: -len(".json")] for k in self.objects.list() if k.endswith(".json") and "/" not in k)
