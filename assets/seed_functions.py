"""``seed_functions``: documented top-level functions mined from one seed batch."""


import time

import dagster as dg

from amr_dagster.seeds.mining import SEED_FUNCTION_COLUMNS, mine_batch
from assets.partitions import seed_batches
from assets.stage import emit, stage_checks
from resources.benchmarks import BenchmarkSet
from resources.data_root import DataRoot


@dg.asset(
    partitions_def=seed_batches,
    group_name="seeds",
    kinds={"python", "parquet"},
    code_version="seed_functions.v1",
    check_specs=stage_checks("seed_functions"),
    description="Top-level (async) functions whose first statement is a docstring, with source path, "
    "line span, name, docstring and code. Every source file yields at least one row: its functions, "
    "or one rejected row saying why it could not be used (a benchmark solution that is no seed in form "
    "is still reported as contaminated).",
)
def seed_functions(context: dg.AssetExecutionContext, data_root: DataRoot, benchmarks: BenchmarkSet):
    started = time.perf_counter()
    location = data_root.batches().resolve(context.partition_key)
    frame = mine_batch(location, context.partition_key, screen=benchmarks.decontaminator().check)
    files = frame.get_column("parent_id").n_unique() if frame.height else 0
    yield from emit(
        context,
        frame,
        expected_inputs=None,
        schema=SEED_FUNCTION_COLUMNS,
        started=started,
        extra={"source_files": files, "seed_location": str(location)},
    )
