"""The SelfCodeAlign stages as the pipeline calls them (S->C, C->I, I->R, execution).

Keyword arguments only, passed by name by the Dagster layer (see ``amr_dagster.seeds.stages``);
each returns a ``StageResult`` naming the input rows it must account for.
"""

from __future__ import annotations

import polars as pl

from amr_dagster.accounting import StageResult, accepted_ids
from amr_dagster.generation.concepts import seed_concepts
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.execution import execute_responses
from amr_dagster.generation.instructions import instructions
from amr_dagster.generation.responses import responses
from amr_dagster.generation.sibling_tests import rescue_with_sibling_tests
from amr_dagster.llm.base import LLMEngine
from amr_dagster.outcomes import accepted, cap_accepted
from amr_dagster.sandbox.base import Limits, Sandbox
from amr_dagster.schemas import CONCEPT_SCHEMA, ORIGIN_COLUMNS


def over_limit_rows(seeds: pl.DataFrame) -> pl.DataFrame:
    """Seeds beyond ``max_seeds`` as concept rows that say so (recorded, never dropped)."""
    return seeds.select(
        pl.col("id").alias("parent_id"), pl.col("id").alias("seed_id"), pl.col("id"), pl.col("batch"),
        pl.col("name").alias("seed_name"), pl.col("status"), pl.col("reject_reason"),
    )


def extract_concepts(*, deduped_seeds: pl.DataFrame, generator: LLMEngine, generation: GenerationConfig) -> StageResult:
    """S->C for the first ``max_seeds`` deduplicated seeds; the rest are rejected ``over_seed_limit``."""
    seeds, over_limit = cap_accepted(accepted(deduped_seeds), generation.max_seeds, "over_seed_limit")
    frame, stats = seed_concepts(seeds, generator, generation)
    if over_limit.height:
        frame = pl.concat([frame, over_limit_rows(over_limit)], how="diagonal_relaxed").select(list(CONCEPT_SCHEMA))
    return StageResult(frame, accepted_ids(deduped_seeds), stats=stats, metrics={"seeds_over_limit": over_limit.height})


def write_instructions(*, seed_concepts: pl.DataFrame, generator: LLMEngine, generation: GenerationConfig) -> StageResult:
    """C->I: one instruction per accepted concepts row."""
    frame, stats = instructions(accepted(seed_concepts), generator, generation)
    return StageResult(frame, accepted_ids(seed_concepts), stats=stats)


def sample_responses(*, instructions: pl.DataFrame, generator: LLMEngine, generation: GenerationConfig) -> StageResult:
    """I->R: ``n_samples`` parsed responses per accepted instruction."""
    frame, stats = responses(accepted(instructions), generator, generation)
    return StageResult(
        frame, accepted_ids(instructions), stats=stats, metrics={"samples_per_instruction": generation.n_samples},
        notes={"profile": generation.profile},
    )


def run_in_sandbox(*, responses: pl.DataFrame, sandbox: Sandbox, limits: Limits, generation: GenerationConfig) -> StageResult:
    """Every parsed sample against its own tests; then, with ``sibling_tests``, one row of a
    sample's code with its siblings' pooled tests for each instruction none of whose samples passed."""
    frame, stats = execute_responses(responses, sandbox, limits)
    frame = frame.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in ORIGIN_COLUMNS.items()])
    rescued = 0
    if generation.sibling_tests:
        extra, sibling = rescue_with_sibling_tests(
            responses, frame, sandbox, limits, generation.min_test_assertions, generation.tests_must_call_code
        )
        frame = pl.concat([frame, extra], how="vertical_relaxed")
        stats = {**stats, "sibling_tests": sibling}
        rescued = sibling["instructions_rescued"]
    rates = ("pass_rate", "pass_rate_per_sample", "pass_rate_per_parsed_sample")
    metrics = {**{k: stats.get(k, 0.0) for k in rates}, "rescued_by_sibling_tests": rescued}
    return StageResult(frame, accepted_ids(responses), "id", stats, metrics=metrics)
