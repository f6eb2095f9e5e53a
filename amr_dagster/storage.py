"""Where stage outputs live: one Parquet file per asset partition under the data root.

Layout: ``<root>/<asset name>/<partition key>.parquet`` (``<asset name>.parquet`` for global
assets). Writes are atomic (temp file + rename) so a crash never leaves a half-written
partition that a rerun would mistake for a finished one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

import polars as pl

from amr_dagster import settings

GLOBAL = "__global__"


class FrameStore:
    """Parquet frames keyed by (asset, partition) under one root folder."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(root) if root else settings.data_dir()

    def path(self, asset: str, partition: str | None = None) -> Path:
        name = partition if partition else asset
        return self.root / asset / f"{name}.parquet"

    def exists(self, asset: str, partition: str | None = None) -> bool:
        return self.path(asset, partition).is_file()

    def write(self, asset: str, partition: str | None, frame: pl.DataFrame) -> Path:
        target = self.path(asset, partition)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        os.close(fd)
        try:
            frame.write_parquet(tmp, compression="zstd", statistics=True)
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        return target

    def read(self, asset: str, partition: str | None = None) -> pl.DataFrame:
        path = self.path(asset, partition)
        if not path.is_file():
            raise FileNotFoundError(
                f"no output of asset {asset!r} for partition {partition!r} at {path}; materialize it first"
            )
        return pl.read_parquet(path)

    def partitions(self, asset: str) -> list[str]:
        folder = self.root / asset
        if not folder.is_dir():
            return []
        return sorted(p.name[: -len(".parquet")] for p in folder.glob("*.parquet") if not p.name.startswith("."))

    def iter_partitions(self, asset: str, partitions: list[str] | None = None) -> Iterator[tuple[str, pl.DataFrame]]:
        """Stream one partition at a time (global assets must never load everything at once)."""
        for key in partitions if partitions is not None else self.partitions(asset):
            if self.exists(asset, key):
                yield key, self.read(asset, key)
