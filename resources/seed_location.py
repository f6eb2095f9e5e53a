"""Where new seed batches arrive. Local folder today; an S3 variant plugs in behind the same
two methods (list entries cheaply, materialize one entry as a local path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from amr_dagster import settings
from amr_dagster.seeds.batches import is_seed_entry


@dataclass(frozen=True)
class SeedEntry:
    name: str
    path: Path
    stamp: str  # cheap change marker (size + mtime); content is hashed only when it changes


class LocalSeedLocation(dg.ConfigurableResource):
    """A folder whose top-level files (.py, .tar.gz, .zip, .jsonl, .parquet) and sub-folders are
    seed batches; ``path`` empty means ``$AMR_SEEDS_DIR`` (default ``./seeds``)."""

    path: str = ""

    def root(self) -> Path:
        return Path(self.path) if self.path else settings.seeds_dir()

    def entries(self) -> list[SeedEntry]:
        root = self.root()
        if not root.is_dir():
            return []
        found = []
        for child in sorted(root.iterdir()):
            try:
                if not is_seed_entry(child):
                    continue
                found.append(SeedEntry(child.name, child.resolve(), _stamp(child)))
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
    from amr_dagster.ids import stable_id

    return stable_id(*parts)
