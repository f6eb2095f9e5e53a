"""``executed_responses``: every parsed sample run against its own tests in the sandbox, and
for each instruction none of whose samples passed, a sample's code with its siblings' tests."""

from amr_dagster.generation.stages import run_in_sandbox
from amr_dagster.schemas import EXECUTED_SCHEMA
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="executed_responses",
    group="selfcodealign",
    run=run_in_sandbox,
    upstream=("responses",),
    schema=EXECUTED_SCHEMA,
    revision=2,  # rows of a sample's code with its siblings' pooled tests (GenerationConfig.sibling_tests)
    description="Each parsed sample executed in the sandbox by the harness-owned runner: verdict, "
    "tests run/passed and duration per sample. Accepted = at least one test ran and all passed. "
    "An instruction none of whose samples passed gets, with generation.sibling_tests, one row of a "
    "sample's code with the sibling samples' tests it passes, pooled (code_from, tests_from).",
)
executed_responses = stage_asset(SPEC)
