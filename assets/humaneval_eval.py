"""``humaneval_eval`` (global): how strong is the generator? pass@1 (greedy) and pass@k (sampled)
on the 164 HumanEval problems, run through the project's own sandbox.

Global, not partitioned by seed batch: the score belongs to a model, not to a batch of seeds;
per-batch partitions would evaluate the same model again for every batch. Every LLM call goes
through the persistent cache, so re-materializing for the same model and settings costs only the
sandbox runs. Writes ``<data root>/humaneval_eval/humaneval_eval.parquet`` (one row per problem
with its verdict) and ``HUMANEVAL_CARD.md``; the scores are in the metadata."""

import dataclasses
import json
import time

import dagster as dg

from amr_dagster.evaluation.humaneval import HumanEvalConfig, evaluate, scores_markdown
from resources.data_root import DataRoot
from resources.llm import LLMResource
from resources.sandbox import SandboxResource

_DEFAULTS = HumanEvalConfig()


class HumanEvalSettings(dg.Config):
    """``backend`` empty evaluates the ``generator`` role; else any engine (``openai`` with
    ``base_url`` for a vLLM or other OpenAI-compatible server, ``vllm``, ``llama_cpp``)."""

    limit: int = _DEFAULTS.limit
    task_ids: list[str] = []
    max_tokens: int = _DEFAULTS.max_tokens
    n_samples: int = _DEFAULTS.n_samples
    temperature: float = _DEFAULTS.temperature
    top_p: float = _DEFAULTS.top_p
    ks: list[int] = list(_DEFAULTS.ks)
    wall_s: float = _DEFAULTS.wall_s
    cpu_s: float = _DEFAULTS.cpu_s
    backend: str = ""
    model: str = ""
    base_url: str = ""


@dg.asset(
    group_name="evaluation",
    kinds={"python", "parquet"},
    code_version="humaneval_eval.v1",
    pool="sandbox",
    description="pass@1 (greedy) and pass@k (sampled, unbiased estimator) of the generator (or a configured "
    "endpoint) on HumanEval's 164 problems, each completion run in the project's sandbox; one row per problem.",
)
def humaneval_eval(
    context: dg.AssetExecutionContext,
    config: HumanEvalSettings,
    generator: LLMResource,
    sandbox: SandboxResource,
    data_root: DataRoot,
) -> dg.MaterializeResult:
    started = time.perf_counter()
    role = generator
    if config.backend:
        role = LLMResource(backend=config.backend, model=config.model, base_url=config.base_url,
                           api_key=generator.api_key, cache_path=generator.cache_path)
    engine = role.engine()
    if engine is None:
        raise dg.Failure("humaneval_eval needs an LLM: the generator's backend is 'none' and no backend is configured")
    core = HumanEvalConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in config.model_dump().items()
                              if k in {f.name for f in dataclasses.fields(HumanEvalConfig)}})
    frame, stats = evaluate(engine, sandbox.sandbox(), core)
    folder = data_root.root() / "humaneval_eval"
    path = data_root.frames().write("humaneval_eval", None, frame)
    card = scores_markdown(stats, engine.model_id)
    (folder / "HUMANEVAL_CARD.md").write_text(card)
    (folder / "scores.json").write_text(json.dumps({"model_id": engine.model_id, **stats}, indent=2, default=str))
    score_keys = {k: v for k, v in stats.items() if k.startswith("pass@")}
    return dg.MaterializeResult(
        metadata={
            **score_keys,
            "problems": stats["problems"],
            "problems_infra_error": stats["problems_infra_error"],
            "model_id": engine.model_id,
            "n_samples": core.n_samples,
            "by_verdict": dg.MetadataValue.json(dict(frame.group_by("verdict").len().iter_rows())),
            "llm": dg.MetadataValue.json(stats.get("llm", {})),
            "path": dg.MetadataValue.path(str(path)),
            "card": dg.MetadataValue.md(card),
            "wall_s": round(time.perf_counter() - started, 3),
        }
    )
