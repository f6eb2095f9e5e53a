"""``instructions`` (C->I): a new task from each seed's concepts, category and difficulty drawn per row."""

from amr_dagster.generation.stages import write_instructions
from amr_dagster.schemas import INSTRUCTION_SCHEMA
from assets.generation_versions import PROMPTS_VERSION
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="instructions",
    group="selfcodealign",
    run=write_instructions,
    upstream=("seed_concepts",),
    schema=INSTRUCTION_SCHEMA,
    prompts_version=PROMPTS_VERSION,
    description="C->I: the generator writes a new instruction from the concepts, with a category "
    "(function, function, class, program) and difficulty (easy, medium, hard) drawn per row, seeded.",
)
instructions = stage_asset(SPEC)
