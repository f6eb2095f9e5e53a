"""``seed_concepts`` (S->C): the coding concepts of each deduplicated seed."""

import time

import dagster as dg
import polars as pl

from amr_dagster.generation.concepts import CONCEPT_SCHEMA, seed_concepts as extract_concepts
from amr_dagster.outcomes import accepted, cap_accepted
from assets.generation_versions import llm_stage_version
from assets.partitions import seed_batches
from assets.stage import accepted_ids, emit, require_engine, stage_checks
from resources.generation import GenerationSettings
from resources.llm import LLMResource


@dg.asset(
    partitions_def=seed_batches,
    group_name="selfcodealign",
    kinds={"python", "parquet"},
    code_version=llm_stage_version("seed_concepts"),
    check_specs=stage_checks("seed_concepts"),
    description="S->C: the generator (a base model, prompted few-shot) lists the coding concepts of each seed.",
)
def seed_concepts(context: dg.AssetExecutionContext, generator: LLMResource, generation: GenerationSettings, deduped_seeds: pl.DataFrame):
    started = time.perf_counter()
    seeds, over_limit = cap_accepted(accepted(deduped_seeds), generation.max_seeds, "over_seed_limit")
    before = generator.usage_snapshot()
    frame, stats = extract_concepts(seeds, require_engine(generator), generation.config())
    if over_limit.height:
        frame = pl.concat([frame, over_limit_rows(over_limit)], how="diagonal_relaxed").select(list(CONCEPT_SCHEMA))
    yield from emit(
        context, frame, expected_inputs=accepted_ids(deduped_seeds), schema=CONCEPT_SCHEMA, started=started,
        stats=stats, extra={"llm": generator.usage_since(before), "seeds_over_limit": over_limit.height},
    )


def over_limit_rows(seeds: pl.DataFrame) -> pl.DataFrame:
    """Seeds beyond ``max_seeds`` as concept rows that say so (recorded, never dropped)."""
    return seeds.select(
        pl.col("id").alias("parent_id"), pl.col("id").alias("seed_id"), pl.col("id"), pl.col("batch"),
        pl.col("name").alias("seed_name"), pl.col("status"), pl.col("reject_reason"),
    )
