"""``evolved_responses`` (AMR-Evol stage 2): rewrite each direct response with retrieved
library modules, then run the rewrite against its tests in the sandbox.

Retrieval reads the library snapshot that includes this batch's own contribution (its seed
functions and its verified direct responses) and everything earlier batches added, minus the
modules harvested from the instruction's own samples: a response never retrieves its own code.
The snapshot id and the entry ids shown are on every row, so a rerun sees the same library."""

import time

import dagster as dg
import polars as pl

from amr_dagster.evol.decomposition import choose_direct, prompt_version, retrieval_queries
from amr_dagster.evol.evolution import EVOLVED_COLUMNS, evolve_responses
from amr_dagster.generation.execution import VERDICT_COLUMNS, execute_responses
from amr_dagster.outcomes import ACCEPTED, REJECTED, STATUS
from assets.partitions import seed_batches
from assets.stage import emit, require_engine, stage_checks
from resources.evolution import EvolSettings, ModuleLibraryResource
from resources.generation import GenerationSettings
from resources.llm import LLMResource
from resources.sandbox import SandboxResource

EVOLVED_SCHEMA = {**EVOLVED_COLUMNS, **VERDICT_COLUMNS}


def retrieval_snapshot(library, batch: str) -> str:
    """The snapshot this batch committed (the latest one if it never contributed)."""
    own = library.snapshot_for_batch(batch)
    return (own or library.latest_snapshot()).snapshot_id


def without_own_code(retrieved: pl.DataFrame, queries: pl.DataFrame, entries: pl.DataFrame, executed: pl.DataFrame, k: int) -> pl.DataFrame:
    """Drop library entries harvested from the querying instruction's own samples; keep the best k."""
    instruction_of_sample = dict(zip(executed.get_column("id").to_list(), executed.get_column("parent_id").to_list()))
    source_instruction = {
        entry: instruction_of_sample.get(parent)
        for entry, parent in zip(entries.get_column("module_id").to_list(), entries.get_column("parent_id").to_list())
    }
    instruction_of_query = dict(zip(queries.get_column("query_id").to_list(), queries.get_column("instruction_id").to_list()))
    kept = [
        [e for e in hits if source_instruction.get(e["entry_id"]) != instruction_of_query.get(query)][:k]
        for query, hits in zip(retrieved.get_column("query_id").to_list(), retrieved.get_column("retrieved").to_list())
    ]
    return retrieved.with_columns(pl.Series("retrieved", kept, dtype=retrieved.schema["retrieved"]))


def run_evolution(executed, modules, library, batch, engine, sandbox, limits, config, top_k):
    """Retrieve, evolve and execute: the whole stage as one plain function (used by tests too)."""
    direct = choose_direct(executed, config.global_seed)
    snapshot = retrieval_snapshot(library, batch)
    retrieved = None
    if config.use_retrieval:
        queries = retrieval_queries(direct, modules, config)
        if queries.height:
            hits = library.retrieve_for_queries(queries, 2 * top_k + 2, snapshot=snapshot)
            retrieved = without_own_code(hits, queries, library.entries(snapshot), executed, top_k)
    evolved, stats = evolve_responses(direct, modules, retrieved, engine, config, library_snapshot=snapshot if config.use_retrieval else None)
    executed_evolved, run_stats = execute_responses(evolved, sandbox, limits, label="evolved_responses: sandbox")
    untouched = evolved.filter(pl.col(STATUS) != ACCEPTED).with_columns([pl.lit(None, dtype=t).alias(c) for c, t in VERDICT_COLUMNS.items()])
    frame = pl.concat([executed_evolved.select(untouched.columns), untouched], how="vertical") if executed_evolved.height else untouched
    stats.update({"sandbox": run_stats, "library_snapshot": snapshot, "instructions_with_direct": direct.filter(pl.col(STATUS) == ACCEPTED).height})
    return frame, stats, direct


def report_views(evolved: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(every evolved row with ``status`` = parsed or not, the executed ones) for ``evol_report``:
    in this asset ``status`` means "passed in the sandbox", a parsed row has a sandbox verdict."""
    ran = pl.col("sandbox_status").is_not_null()
    parsed = evolved.with_columns(pl.when(ran).then(pl.lit(ACCEPTED)).otherwise(pl.lit(REJECTED)).alias(STATUS))
    return parsed, evolved.filter(ran)


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
