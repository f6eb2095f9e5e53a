"""Where stage outputs live: one Parquet file per asset partition under the data root.

Layout: ``<root>/<asset name>/<partition key>.parquet`` (``<asset name>.parquet`` for global
assets), the root a local folder (default) or ``s3://bucket/prefix``. Writes are atomic (temp
file + rename locally, one PUT on S3) so a crash never leaves a half-written partition that a
rerun would mistake for a finished one.
"""

from __future__ import annotations

import io
import os
from typing import Any, Callable, Iterator

import polars as pl

from amr_dagster import settings
from amr_dagster.storage.objectstore import ObjectStore, open_store

GLOBAL = "__global__"


class FrameStore:
    """Parquet frames keyed by (asset, partition) under one root (folder or S3 prefix)."""

    def __init__(self, root: str | os.PathLike[str] | ObjectStore | None = None, client_factory: Callable[[], Any] | None = None) -> None:
        if root is None or isinstance(root, (str, os.PathLike)):
            root = open_store(root or settings.data_root(), client_factory)
        self.objects: ObjectStore = root

    @staticmethod
    def key(asset: str, partition: str | None = None) -> str:
        return f"{asset}/{partition or asset}.parquet"

    def path(self, asset: str, partition: str | None = None) -> str:
        """Where the frame is: a local path or an ``s3://`` URI (for metadata and messages)."""
        return self.objects.uri(self.key(asset, partition))

    def exists(self, asset: str, partition: str | None = None) -> bool:
        return self.objects.exists(self.key(asset, partition))

    def write(self, asset: str, partition: str | None, frame: pl.DataFrame) -> str:
        buffer = io.BytesIO()
        frame.write_parquet(buffer, compression="zstd", statistics=True)
        self.objects.put(self.key(asset, partition), buffer.getvalue())
        return self.path(asset, partition)

    def read(self, asset: str, partition: str | None = None) -> pl.DataFrame:
        data = self.objects.get(self.key(asset, partition))
        if data is None:
            raise FileNotFoundError(
                f"no output of asset {asset!r} for partition {partition!r} at {self.path(asset, partition)}; materialize it first"
            )
        return pl.read_parquet(io.BytesIO(data))

    def partitions(self, asset: str) -> list[str]:
        return sorted(
            key.split("/", 1)[1][: -len(".parquet")]
            for key in self.objects.list(asset)
            if key.endswith(".parquet") and key.count("/") == 1
        )

    def stamps(self, asset: str) -> dict[str, str]:
        """partition -> stamp of its file (size and mtime locally, ETag on S3): one listing, no
        file read, so a global asset can tell which partitions changed since it last looked."""
        return {
            key.split("/", 1)[1][: -len(".parquet")]: stamp
            for key, stamp in self.objects.stamps(asset)
            if key.endswith(".parquet") and key.count("/") == 1
        }

    def iter_partitions(self, asset: str, partitions: list[str] | None = None) -> Iterator[tuple[str, pl.DataFrame]]:
        """Stream one partition at a time (global assets must never load everything at once)."""
        for key in partitions if partitions is not None else self.partitions(asset):
            if self.exists(asset, key):
                yield key, self.read(asset, key)
