"""``seed_concepts`` (S->C): the coding concepts of each deduplicated seed."""

from amr_dagster.generation.stages import extract_concepts
from amr_dagster.schemas import CONCEPT_SCHEMA
from assets.generation_versions import PROMPTS_VERSION
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="seed_concepts",
    group="selfcodealign",
    run=extract_concepts,
    upstream=("deduped_seeds",),
    schema=CONCEPT_SCHEMA,
    prompts_version=PROMPTS_VERSION,
    description="S->C: the generator (a base model, prompted few-shot) lists the coding concepts of each seed.",
)
seed_concepts = stage_asset(SPEC)
