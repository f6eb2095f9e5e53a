"""The evaluation stage the ``humaneval_eval`` asset calls: how strong is the generator?"""

from __future__ import annotations

import json

from amr_dagster.accounting import Markdown, StageResult
from amr_dagster.storage.layout import DataLayout
from amr_dagster.evaluation.humaneval import HumanEvalConfig, evaluate, load_problems, scores_markdown
from amr_dagster.llm.base import LLMEngine
from amr_dagster.sandbox.base import Sandbox

FOLDER = "humaneval_eval"


def evaluate_humaneval(*, config: HumanEvalConfig, generator: LLMEngine, sandbox: Sandbox, data: DataLayout) -> StageResult:
    """pass@1 (greedy) and pass@k (sampled) of the generator role on HumanEval, in the sandbox.

    Writes ``<data root>/humaneval_eval.parquet``-style frame (one row per problem with its
    verdict), ``humaneval_eval/HUMANEVAL_CARD.md`` and ``scores.json``. To score another model
    (a vLLM or any OpenAI-compatible endpoint), configure the ``generator`` resource of the run.
    Check ``problems_accounted``: every requested problem has a row and a verdict.
    """
    frame, stats = evaluate(generator, sandbox, config)
    path = data.frames().write(FOLDER, None, frame)
    card = scores_markdown(stats, generator.model_id)
    folder = data.objects().child(FOLDER)
    folder.put("HUMANEVAL_CARD.md", card.encode("utf-8"))
    folder.put("scores.json", json.dumps({"model_id": generator.model_id, **stats}, indent=2, default=str).encode("utf-8"))
    expected = len(load_problems(config))
    missing_verdicts = frame.filter(frame["verdict"].is_null()).height
    accounted = frame.height == expected and missing_verdicts == 0
    scores = {k: v for k, v in stats.items() if k.startswith("pass@")}
    return StageResult(
        None,
        stats=stats,
        metrics={**scores, "problems": stats["problems"], "problems_infra_error": stats["problems_infra_error"], "n_samples": config.n_samples},
        notes={
            "model_id": generator.model_id, "path": path, "card": Markdown(card),
            "by_verdict": dict(frame.group_by("verdict").len().iter_rows()),
        },
        checks={"problems_accounted": (accounted, {"problems": expected, "rows": frame.height, "without_verdict": missing_verdicts})},
    )
