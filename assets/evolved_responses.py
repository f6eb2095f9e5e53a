"""``evolved_responses`` (AMR-Evol stage 2): rewrite each direct response with retrieved
library modules, then run the rewrite against its tests in the sandbox.

Retrieval reads the library snapshot that includes this batch's own contribution (its seed
functions and its verified direct responses) and everything earlier batches added, minus the
modules harvested from the instruction's own samples: a response never retrieves its own code.
The snapshot id and the entry ids shown are on every row, so a rerun sees the same library."""

from amr_dagster.evol.config import prompt_version
from amr_dagster.evol.stages import evolve
from amr_dagster.schemas import EVOLVED_SCHEMA
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="evolved_responses",
    group="amr_evol",
    run=evolve,
    upstream=("executed_responses", "decomposed_modules"),
    deps=("module_library",),
    schema=EVOLVED_SCHEMA,
    prompts_version=prompt_version(),
    description="The teacher rewrites each direct response given its modules and the retrieved library "
    "modules (used only where they help), in the same response-plus-tests format; each rewrite is then "
    "executed in the sandbox. Rows record the library snapshot and the module ids they saw.",
)
evolved_responses = stage_asset(SPEC)
