"""``executed_responses``: every parsed sample run against its own tests in the sandbox."""

import time

import dagster as dg
import polars as pl

from amr_dagster.generation.execution import VERDICT_COLUMNS, execute_responses
from amr_dagster.generation.responses import RESPONSE_SCHEMA
from assets.partitions import seed_batches
from assets.stage import accepted_ids, emit, stage_checks
from resources.sandbox import SandboxResource

EXECUTED_SCHEMA = {**RESPONSE_SCHEMA, **VERDICT_COLUMNS}


@dg.asset(
    partitions_def=seed_batches,
    group_name="selfcodealign",
    kinds={"python", "parquet"},
    code_version="executed_responses.v1",
    check_specs=stage_checks("executed_responses"),
    pool="sandbox",
    description="Each parsed sample executed in the sandbox by the harness-owned runner: verdict, "
    "tests run/passed and duration per sample. Accepted = at least one test ran and all passed.",
)
def executed_responses(context: dg.AssetExecutionContext, sandbox: SandboxResource, responses: pl.DataFrame):
    started = time.perf_counter()
    frame, stats = execute_responses(responses, sandbox.sandbox(), sandbox.limits())
    yield from emit(
        context, frame, expected_inputs=accepted_ids(responses), input_column="id", schema=EXECUTED_SCHEMA,
        started=started, stats=stats, extra={
            "pass_rate": stats.get("pass_rate", 0.0),
            "pass_rate_per_sample": stats.get("pass_rate_per_sample", 0.0),
            "pass_rate_per_parsed_sample": stats.get("pass_rate_per_parsed_sample", 0.0),
        },
    )
