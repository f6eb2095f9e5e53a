"""The IO manager: stage frames as Parquet at ``<data root>/<asset>/<partition>.parquet``.

Thin on purpose: it takes its root from the ``data_root`` resource (the one owner of where data
lives) and paths and atomic writes from ``amr_dagster.storage.FrameStore``, so the core, the
CLI and the benchmarks read exactly what the assets wrote.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from amr_dagster.storage.frames import FrameStore


class ParquetFrameIOManager(dg.IOManager):
    """Reads and writes polars frames in the data root's frame store."""

    def __init__(self, store: FrameStore) -> None:
        self.store = store

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if obj is None:
            return
        asset = context.asset_key.to_user_string()
        partition = context.partition_key if context.has_partition_key else None
        path = self.store.write(asset, partition, obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(str(path))})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        asset = context.upstream_output.asset_key.to_user_string() if context.upstream_output else context.asset_key.to_user_string()
        partition = context.partition_key if context.has_partition_key else None
        return self.store.read(asset, partition)


@dg.io_manager(required_resource_keys={"data_root"}, description="Parquet frames under the data root")
def parquet_frames(context: dg.InitResourceContext) -> ParquetFrameIOManager:
    return ParquetFrameIOManager(context.resources.data_root.layout().frames())
