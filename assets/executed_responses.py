"""``executed_responses``: every parsed sample run against its own tests in the sandbox."""

from amr_dagster.generation.stages import run_in_sandbox
from amr_dagster.schemas import EXECUTED_SCHEMA
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="executed_responses",
    group="selfcodealign",
    run=run_in_sandbox,
    upstream=("responses",),
    schema=EXECUTED_SCHEMA,
    description="Each parsed sample executed in the sandbox by the harness-owned runner: verdict, "
    "tests run/passed and duration per sample. Accepted = at least one test ran and all passed.",
)
executed_responses = stage_asset(SPEC)
