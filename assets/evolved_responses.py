"""``evolved_responses`` (AMR-Evol stage 2): rewrite each direct response with retrieved
library modules, then run the rewrite against its tests in the sandbox.

Retrieval reads the library snapshot that existed *before* this batch's own modules were added
(batch N sees what batches before it contributed), so no response retrieves its own code and a
rerun sees the same library. The snapshot id and the entry ids shown are on every row."""

import time

import dagster as dg
import polars as pl

from amr_dagster.evol.decomposition import choose_direct, prompt_version, retrieval_queries
from amr_dagster.evol.evolution import EVOLVED_COLUMNS, evolve_responses
from amr_dagster.execution import VERDICT_COLUMNS, execute_responses
from amr_dagster.outcomes import ACCEPTED, STATUS
from assets.partitions import seed_batches
from assets.stage import emit, require_engine, stage_checks
from resources.evolution import EvolSettings, ModuleLibraryResource
from resources.generation import GenerationSettings
from resources.llm import LLMResource
from resources.sandbox import SandboxResource

EVOLVED_SCHEMA = {**EVOLVED_COLUMNS, **VERDICT_COLUMNS}


def snapshot_before(library, batch: str) -> str:
    """The library as it was before ``batch`` contributed (the latest one if it never did)."""
    snapshots = library.snapshots()
    own = library.snapshot_for_batch(batch)
    if own is None:
        return snapshots[-1].snapshot_id
    earlier = [s for s in snapshots if s.seq < own.seq]
    return earlier[-1].snapshot_id


def run_evolution(executed, modules, library, batch, engine, sandbox, limits, config, top_k):
    """Retrieve, evolve and execute: the whole stage as one plain function (used by tests too)."""
    direct = choose_direct(executed, config.global_seed)
    snapshot = snapshot_before(library, batch)
    retrieved = None
    if config.use_retrieval:
        queries = retrieval_queries(direct, modules, config)
        retrieved = library.retrieve_for_queries(queries, top_k, snapshot=snapshot) if queries.height else None
    evolved, stats = evolve_responses(direct, modules, retrieved, engine, config, library_snapshot=snapshot if config.use_retrieval else None)
    executed_evolved, run_stats = execute_responses(evolved, sandbox, limits)
    untouched = evolved.filter(pl.col(STATUS) != ACCEPTED).with_columns([pl.lit(None, dtype=t).alias(c) for c, t in VERDICT_COLUMNS.items()])
    frame = pl.concat([executed_evolved.select(untouched.columns), untouched], how="vertical") if executed_evolved.height else untouched
    stats.update({"sandbox": run_stats, "library_snapshot": snapshot, "instructions_with_direct": direct.filter(pl.col(STATUS) == ACCEPTED).height})
    return frame, stats, direct


@dg.asset(
    partitions_def=seed_batches,
    group_name="amr_evol",
    kinds={"python", "parquet"},
    deps=["module_library"],
    code_version=f"evolved_responses.v1+prompts.{prompt_version()}",
    check_specs=stage_checks("evolved_responses"),
    description="The teacher rewrites each direct response given its modules and the retrieved library "
    "modules (used only where they help), in the same response-plus-tests format; each rewrite is then "
    "executed in the sandbox. Rows record the library snapshot and the module ids they saw.",
)
def evolved_responses(
    context: dg.AssetExecutionContext,
    teacher: LLMResource,
    evolution: EvolSettings,
    generation: GenerationSettings,
    module_library_store: ModuleLibraryResource,
    sandbox: SandboxResource,
    executed_responses: pl.DataFrame,
    decomposed_modules: pl.DataFrame,
):
    started = time.perf_counter()
    before = teacher.usage_snapshot()
    config = evolution.config(generation.global_seed)
    frame, stats, direct = run_evolution(
        executed_responses, decomposed_modules, module_library_store.library(), context.partition_key,
        require_engine(teacher, "teacher"), sandbox.sandbox(), sandbox.limits(), config, evolution.top_k,
    )
    yield from emit(
        context, frame, expected_inputs=set(direct.filter(pl.col(STATUS) == ACCEPTED).get_column("direct_id").to_list()) if direct.height else set(),
        schema=EVOLVED_SCHEMA, started=started, stats=stats,
        extra={"llm": teacher.usage_since(before), "library_snapshot": stats["library_snapshot"]},
    )
