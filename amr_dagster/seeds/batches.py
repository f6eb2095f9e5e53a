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
from amr_dagster.seeds.sources import SEED_SUFFIXES, batch_fingerprint, is_seed_location

_KEY_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class SeedBatch:
    key: str
    location: str  # absolute path of the file or folder
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
    """Key -> location records under ``<data root>/_batches``."""

    def __init__(self, root: Path | None = None) -> None:
        self.folder = (root or settings.data_dir()) / "_batches"

    def register(self, location: Path) -> SeedBatch:
        location = location.resolve()
        if not location.exists():
            raise FileNotFoundError(f"seed location {location} does not exist")
        digest = batch_fingerprint(location)
        key = batch_key(location, digest)
        existing = self.get(key)
        if existing is not None and existing.location == str(location):
            return existing
        batch = SeedBatch(key=key, location=str(location), fingerprint=digest, registered_at=time.time())
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{key}.json.tmp"
        tmp.write_text(json.dumps(asdict(batch), indent=2))
        os.replace(tmp, self.folder / f"{key}.json")
        return batch

    def get(self, key: str) -> SeedBatch | None:
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        return SeedBatch(**json.loads(path.read_text()))

    def resolve(self, key: str) -> Path:
        """The batch's location, checked to still hold the content it was registered with."""
        batch = self.get(key)
        if batch is None:
            raise KeyError(f"seed batch {key!r} is not registered under {self.folder}")
        location = Path(batch.location)
        if not location.exists():
            raise FileNotFoundError(f"seed batch {key!r}: {location} no longer exists")
        now = batch_fingerprint(location)
        if now != batch.fingerprint:
            raise ValueError(
                f"seed batch {key!r}: {location} changed since it was registered "
                f"(fingerprint {batch.fingerprint} -> {now}); changed content is a new batch "
                "(the sensor or `amr-dagster run --seeds` registers it under a new key)"
            )
        return location

    def keys(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        return sorted(p.stem for p in self.folder.glob("*.json"))
