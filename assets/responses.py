"""``responses`` (I->R): n sampled responses with their own tests per instruction."""

from amr_dagster.generation.stages import sample_responses
from amr_dagster.schemas import RESPONSE_SCHEMA
from assets.generation_versions import PROMPTS_VERSION
from assets.stage import StageSpec, stage_asset

SPEC = StageSpec(
    name="responses",
    group="selfcodealign",
    run=sample_responses,
    upstream=("instructions",),
    schema=RESPONSE_SCHEMA,
    revision=2,  # the tests come from a second call (GenerationConfig.tests_call)
    prompts_version=PROMPTS_VERSION,
    description="I->R: n samples per instruction, each parsed into explanation, code and tests; "
    "unparsable samples are rejected with a reason (no code block, no tests, unterminated, syntax error).",
)
responses = stage_asset(SPEC)
