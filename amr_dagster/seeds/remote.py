"""Seed batches in object storage: list the entries under an S3 prefix, fetch one to local disk.

Mining reads local files, so a remote batch is downloaded first, into the machine-local cache
(``settings.cache_dir()/seeds``) under a name derived from the objects' ETags: an unchanged
batch is fetched once per machine, a changed one lands in a new folder. The partition key stays
the entry's name plus a short hash of its *content* (``batches.batch_key``), so the same file
gives the same key whether it came from a folder or a bucket.

An entry is a top-level object with a seed suffix (``.py``, archives, ``.jsonl``/``.parquet``)
or a top-level "folder" (a common key prefix): its stamp is the ETag, or a hash of its
members' names and ETags.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from amr_dagster import settings
from amr_dagster.ids import stable_id
from amr_dagster.storage.objectstore import ObjectStore, download, open_store, split_s3
from amr_dagster.seeds.sources import SEED_SUFFIXES


@dataclass(frozen=True)
class RemoteEntry:
    name: str
    uri: str
    stamp: str  # the ETag (a file) or a hash of the members' keys and ETags (a folder)


def remote_entries(store: ObjectStore, listing: Iterable[tuple[str, str]] | None = None) -> list[RemoteEntry]:
    """Seed entries directly under the store's root, sorted by name; ``listing`` is its
    (relative key, ETag) pairs when the caller listed them already (default: ``store.stamps()``)."""
    files: dict[str, str] = {}
    folders: dict[str, list[str]] = {}
    for key, etag in store.stamps() if listing is None else listing:
        head, sep, rest = key.partition("/")
        if head.startswith("."):
            continue
        if not sep:
            if head.lower().endswith(SEED_SUFFIXES):
                files[head] = etag
        elif not any(part.startswith(".") for part in rest.split("/")):
            folders.setdefault(head, []).append(f"{rest}:{etag}")
    entries = [RemoteEntry(name, store.uri(name), etag) for name, etag in files.items()]
    entries += [RemoteEntry(name, store.uri(name), stable_id(*sorted(parts))) for name, parts in folders.items()]
    return sorted(entries, key=lambda e: e.name)


def fetch_seed(uri: str, cache: Path | None = None) -> Path:
    """Download the object or folder at ``uri`` to the local cache; returns the local path.

    A folder is every object under ``uri/``; a key that is both (an object and a prefix) is
    read as the object.
    """
    bucket, key = split_s3(uri)
    parent_uri, _, name = uri.rstrip("/").rpartition("/")
    parent = open_store(parent_uri)
    single = parent.etag(name)
    listed = [] if single is not None else parent.stamps(name)
    stamps = [f"{name}:{single}"] if single is not None else [f"{k}:{e}" for k, e in listed]
    if single is None and not listed:
        raise FileNotFoundError(f"no seed object or folder at {uri}")
    folder = (cache or settings.cache_dir() / "seeds") / stable_id(bucket, key, *stamps, length=16)
    target = folder / name
    if target.exists():
        return target
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        for member in [name] if single is not None else [k for k, _ in listed]:
            download(parent, member, staging / member)
        staging.rename(folder)
    except OSError:
        if not target.exists():  # not "another process on this machine fetched it first"
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
