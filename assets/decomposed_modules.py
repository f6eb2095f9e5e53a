"""``decomposed_modules`` (AMR-Evol stage 1): function modules of each instruction's direct response."""

import time

import dagster as dg
import polars as pl

from amr_dagster.evol.decomposition import MODULE_COLUMNS, decomposed_modules as decompose, prompt_version
from assets.partitions import seed_batches
from assets.stage import emit, require_engine, stage_checks
from resources.evolution import EvolSettings
from resources.generation import GenerationSettings
from resources.llm import LLMResource


@dg.asset(
    partitions_def=seed_batches,
    group_name="amr_evol",
    kinds={"python", "parquet"},
    code_version=f"decomposed_modules.v1+prompts.{prompt_version()}",
    check_specs=stage_checks("decomposed_modules"),
    description="The teacher splits each instruction's direct response (a passing sample if any, else the "
    "best parsed one) into function modules: name, typed signature, description, parameters, returns.",
)
def decomposed_modules(
    context: dg.AssetExecutionContext,
    teacher: LLMResource,
    evolution: EvolSettings,
    generation: GenerationSettings,
    executed_responses: pl.DataFrame,
):
    started = time.perf_counter()
    before = teacher.usage_snapshot()
    frame, stats = decompose(executed_responses, require_engine(teacher, "teacher"), evolution.config(generation.global_seed))
    instructions_in = set(executed_responses.get_column("parent_id").to_list()) if executed_responses.height else set()
    yield from emit(
        context, frame, expected_inputs=instructions_in, input_column="instruction_id",
        schema=MODULE_COLUMNS, started=started, stats=stats, extra={"llm": teacher.usage_since(before)},
    )
