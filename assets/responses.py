"""``responses`` (I->R): n sampled responses with their own tests per instruction."""

import time

import dagster as dg
import polars as pl

from amr_dagster.generation.responses import RESPONSE_SCHEMA, responses as sample_responses
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
    code_version=llm_stage_version("responses"),
    check_specs=stage_checks("responses"),
    description="I->R: n samples per instruction, each parsed into explanation, code and tests; "
    "unparsable samples are rejected with a reason (no code block, no tests, unterminated, syntax error).",
)
def responses(context: dg.AssetExecutionContext, generator: LLMResource, generation: GenerationSettings, instructions: pl.DataFrame):
    started = time.perf_counter()
    before = generator.usage_snapshot()
    config = generation.config()
    frame, stats = sample_responses(accepted(instructions), require_engine(generator), config)
    yield from emit(
        context, frame, expected_inputs=accepted_ids(instructions), schema=RESPONSE_SCHEMA, started=started,
        stats=stats, extra={"llm": generator.usage_since(before), "samples_per_instruction": config.n_samples,
               "profile": config.profile},
    )
