"""``humaneval_eval`` (global): how strong is the generator? pass@1 (greedy) and pass@k (sampled)
on the 164 HumanEval problems, run through the project's own sandbox.

Global, not partitioned by seed batch: the score belongs to a model, not to a batch of seeds;
per-batch partitions would evaluate the same model again for every batch. Every LLM call goes
through the persistent cache, so re-materializing for the same model and settings costs only the
sandbox runs. It is not part of ``amr_pipeline``: the ``evaluation`` job (or
``amr-dagster run --select humaneval_eval``) launches it. The model scored is the run's
``generator`` resource: point it at any vLLM or OpenAI-compatible endpoint to score that."""

from amr_dagster.evaluation.humaneval import HumanEvalConfig
from amr_dagster.evaluation.stages import evaluate_humaneval
from assets.stage import StageSpec, stage_asset
from resources.derived import CoreConfig, derive

HumanEvalSettings = derive(HumanEvalConfig, CoreConfig, name="HumanEvalSettings")

SPEC = StageSpec(
    name="humaneval_eval",
    group="evaluation",
    run=evaluate_humaneval,
    config=HumanEvalSettings,
    partitioned=False,
    checks={"problems_accounted": "every requested problem has a row with a sandbox verdict"},
    description="pass@1 (greedy) and pass@k (sampled, unbiased estimator) of the generator on HumanEval's "
    "164 problems, each completion run in the project's sandbox; one row per problem.",
)
humaneval_eval = stage_asset(SPEC)
