"""The IO manager: stage frames as Parquet at ``<data root>/<asset>/<partition>.parquet``.

Thin on purpose: paths and atomic writes live in ``amr_dagster.storage.FrameStore`` so the
core, the CLI and the benchmarks read exactly what the assets wrote.
"""

from __future__ import annotations

import dagster as dg
import polars as pl

from amr_dagster import settings
from amr_dagster.storage import FrameStore
from resources.s3 import client_factory


class ParquetFrameIOManager(dg.ConfigurableIOManager):
    """Reads and writes polars frames; ``data_dir`` (a folder or ``s3://bucket/prefix``) empty
    means ``$AMR_DATA_DIR`` (./.amr/data)."""

    data_dir: str = ""

    def store(self) -> FrameStore:
        return FrameStore(self.data_dir or settings.data_root(), client_factory())

    def handle_output(self, context: dg.OutputContext, obj: pl.DataFrame) -> None:
        if obj is None:
            return
        asset = context.asset_key.to_user_string()
        partition = context.partition_key if context.has_partition_key else None
        path = self.store().write(asset, partition, obj)
        context.add_output_metadata({"path": dg.MetadataValue.path(path)})

    def load_input(self, context: dg.InputContext) -> pl.DataFrame:
        asset = context.upstream_output.asset_key.to_user_string() if context.upstream_output else context.asset_key.to_user_string()
        partition = context.partition_key if context.has_partition_key else None
        return self.store().read(asset, partition)
