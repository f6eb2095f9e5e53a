"""``library_candidates``: the verified function modules one batch offers the module library.

Two sources, both verified: the batch's documented, type-checked seed functions, and every
top-level function of its direct responses that passed their tests in the sandbox. Taking
harvested code from the *direct* executed responses (not from ``verified_pairs``, which
depends on evolution, which reads the library) is what keeps the library loop free of cycles:
deduped_seeds + executed_responses -> library_candidates -> module_library -> evolved_responses.
"""

import time

import dagster as dg
import polars as pl

from amr_dagster.evol.admission import admit_seeds
from amr_dagster.evol.module_library import CANDIDATE_SCHEMA, from_seed_rows, from_verified_code
from amr_dagster.outcomes import accepted
from assets.partitions import seed_batches
from assets.stage import emit, stage_checks
from resources.evolution import EvolSettings
from resources.sandbox import SandboxResource


def batch_candidates(seeds: pl.DataFrame, executed: pl.DataFrame, batch: str) -> pl.DataFrame:
    """Candidates from accepted seeds and from passing executed samples (one or more rows each)."""
    frames = [from_seed_rows(accepted(seeds), batch=batch)] if seeds.height else []
    passing = executed.filter(pl.col("sandbox_status") == "passed") if executed.height else executed
    for row in passing.select("id", "code").iter_rows(named=True):
        frames.append(from_verified_code(row["code"] or "", parent_id=row["id"], batch=batch))
    return pl.concat(frames, how="vertical") if frames else pl.DataFrame(schema=CANDIDATE_SCHEMA)


@dg.asset(
    partitions_def=seed_batches,
    group_name="amr_evol",
    kinds={"python", "parquet"},
    code_version="library_candidates.v1",
    check_specs=stage_checks("library_candidates"),
    description="Verified function modules this batch offers the library: its documented, type-checked "
    "seed functions that ran in the sandbox (or none, or all: evolution.library_seeds) and the top-level "
    "functions of direct responses that passed in the sandbox.",
)
def library_candidates(
    context: dg.AssetExecutionContext,
    evolution: EvolSettings,
    sandbox: SandboxResource,
    deduped_seeds: pl.DataFrame,
    executed_responses: pl.DataFrame,
):
    started = time.perf_counter()
    frame = batch_candidates(deduped_seeds, executed_responses, context.partition_key)
    mode = evolution.library_seeds
    frame, admission = admit_seeds(frame, mode, sandbox.sandbox() if mode == "executed" and frame.height else None, sandbox.limits())
    inputs = set(accepted(deduped_seeds).get_column("id").to_list())
    if executed_responses.height:
        inputs |= set(executed_responses.filter(pl.col("sandbox_status") == "passed").get_column("id").to_list())
    yield from emit(
        context, frame, expected_inputs=inputs, schema=CANDIDATE_SCHEMA,
        started=started,
        extra={"by_source": dict(frame.group_by("source").len().iter_rows()) if frame.height else {}, "admission": admission},
    )
