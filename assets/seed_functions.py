"""``seed_functions``: documented top-level functions mined from one seed batch."""

from __future__ import annotations

import time

import dagster as dg
import polars as pl

from amr_dagster.mining import SEED_FUNCTION_COLUMNS, mine_source
from amr_dagster.seed_sources import iter_source_files
from assets.partitions import seed_batches
from assets.stage import emit, stage_checks
from resources.data_root import DataRoot


@dg.asset(
    partitions_def=seed_batches,
    group_name="seeds",
    kinds={"python", "parquet"},
    code_version="seed_functions.v1",
    check_specs=stage_checks("seed_functions"),
    description="Top-level (async) functions whose first statement is a docstring, with source path, "
    "line span, name, docstring and code. Unusable files are kept as rejected rows with a reason.",
)
def seed_functions(context: dg.AssetExecutionContext, data_root: DataRoot):
    started = time.perf_counter()
    batch = context.partition_key
    location = data_root.batches().resolve(batch)
    rows: list[dict] = []
    files = 0
    for source in iter_source_files(location):
        files += 1
        rows.extend(mine_source(source, batch))
    frame = pl.DataFrame(rows, schema=SEED_FUNCTION_COLUMNS)
    distinct_files = frame.get_column("parent_id").n_unique() if frame.height else 0
    yield from emit(
        context,
        frame,
        expected_inputs=None,
        schema=SEED_FUNCTION_COLUMNS,
        started=started,
        extra={"source_files": files, "files_represented": distinct_files, "seed_location": str(location)},
    )
