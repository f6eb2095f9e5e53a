"""``instructions`` (C->I): a new task from each seed's concepts, category and difficulty drawn per row."""

import time

import dagster as dg
import polars as pl

from amr_dagster.generation.instructions import INSTRUCTION_SCHEMA, instructions as write_instructions
from amr_dagster.outcomes import accepted
from assets.generation_versions import llm_stage_version
from assets.partitions import seed_batches
from assets.stage import accepted_ids, emit, require_engine, stage_checks
from resources.generation import GenerationSettings
from resources.llm import LLMResource


@dg.asset(
    partitions_def=seed_batches,
    group_name="selfcodealign",
    kinds={"python", "parquet"},
    code_version=llm_stage_version("instructions"),
    check_specs=stage_checks("instructions"),
    description="C->I: the generator writes a new instruction from the concepts, with a category "
    "(function, function, class, program) and difficulty (easy, medium, hard) drawn per row, seeded.",
)
def instructions(context: dg.AssetExecutionContext, generator: LLMResource, generation: GenerationSettings, seed_concepts: pl.DataFrame):
    started = time.perf_counter()
    before = generator.usage_snapshot()
    frame, stats = write_instructions(accepted(seed_concepts), require_engine(generator), generation.config())
    yield from emit(
        context, frame, expected_inputs=accepted_ids(seed_concepts), schema=INSTRUCTION_SCHEMA, started=started,
        stats=stats, extra={"llm": generator.usage_since(before)},
    )
