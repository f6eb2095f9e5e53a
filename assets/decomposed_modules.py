"""``decomposed_modules`` (AMR-Evol stage 1): function modules of each instruction's direct response."""

from amr_dagster.evol.config import prompt_version
from amr_dagster.evol.stages import decompose
from amr_dagster.schemas import MODULE_COLUMNS
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="decomposed_modules",
    group="amr_evol",
    run=decompose,
    upstream=("executed_responses",),
    schema=MODULE_COLUMNS,
    prompts_version=prompt_version(),
    description="The teacher splits each instruction's direct response (a passing sample if any, else the "
    "best parsed one) into function modules: name, typed signature, description, parameters, returns.",
)
decomposed_modules = stage_asset(SPEC)
