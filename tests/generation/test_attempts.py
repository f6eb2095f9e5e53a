"""S->C and C->I with several attempts per row (``concept_attempts``, ``instruction_attempts``).

A scripted engine answers each request with a fixed list of completions, so what is checked is
the choice: the first attempt that parses is kept, a row none of whose attempts parse keeps the
first one's reason, every attempt is counted in the stage's LLM usage. The real model runs the
stages in ``test_generation_stages``.
"""

from __future__ import annotations

import polars as pl
import pytest

from amr_dagster.generation.concepts import seed_concepts
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.instructions import instructions
from amr_dagster.ids import row_id
from amr_dagster.llm.base import Completion

TASK = "Write a function `add(a, b)` that returns the sum of the two numbers a and b."


class Scripted:
    """Every request gets the first ``params.n`` of ``answers`` (text, finish reason)."""

    model_id = "scripted"

    def __init__(self, answers: list[tuple[str, str]]) -> None:
        self.answers = answers
        self.requests = []

    def generate(self, requests):
        self.requests.extend(requests)
        return [[Completion(t, f, 50, 10, i) for i, (t, f) in enumerate(self.answers[: r.params.n])] for r in requests]


def _concepts_rows() -> pl.DataFrame:
    return pl.DataFrame([{"id": "c1", "seed_id": "s1", "batch": "b", "concepts": ["addition"], "status": "accepted"}])


def _seed_rows() -> pl.DataFrame:
    code = 'def total(xs):\n    """Sum of xs."""\n    return sum(xs)\n'
    return pl.DataFrame([{"id": "s1", "batch": "b", "name": "total", "code": code, "status": "accepted"}])


def test_the_first_instruction_that_parses_is_kept():
    engine = Scripted([("Add.", "stop"), (TASK, "stop"), ("Write something else entirely, a longer task text.", "stop")])
    out, stats = instructions(_concepts_rows(), engine, GenerationConfig(instruction_attempts=3))
    assert engine.requests[0].params.n == 3
    (row,) = out.to_dicts()
    assert row["status"] == "accepted" and row["instruction"] == TASK
    assert row["id"] == row_id("c1", TASK)  # the id follows the kept attempt's text
    assert stats["accepted_on_a_later_attempt"] == 1
    assert stats["llm"]["requests"] == 3 and stats["llm"]["completion_tokens"] == 30  # every attempt cost tokens


def test_a_row_no_attempt_parses_keeps_the_first_reason():
    engine = Scripted([("Add.", "stop"), ("Sum", "length")])
    out, stats = instructions(_concepts_rows(), engine, GenerationConfig(instruction_attempts=2))
    (row,) = out.to_dicts()
    assert row["status"] == "rejected" and row["reject_reason"].startswith("too_short")
    assert stats["accepted_on_a_later_attempt"] == 0


def test_one_attempt_by_default():
    engine = Scripted([("Add.", "stop"), (TASK, "stop")])
    out, _ = instructions(_concepts_rows(), engine, GenerationConfig())
    assert engine.requests[0].params.n == 1 and out["status"].to_list() == ["rejected"]


def test_concept_attempts():
    engine = Scripted([("total", "stop"), ("summation, iteration over a list", "stop")])  # the seed's own name is no concept
    config = GenerationConfig(concept_attempts=2, concepts_temperature=0.7)
    out, stats = seed_concepts(_seed_rows(), engine, config)
    (row,) = out.to_dicts()
    assert row["status"] == "accepted" and row["concepts"] == ["summation", "iteration over a list"]
    assert stats["accepted_on_a_later_attempt"] == 1 and stats["llm"]["requests"] == 2


def test_greedy_concept_attempts_are_refused():
    with pytest.raises(ValueError, match="concepts_temperature > 0"):
        GenerationConfig(concept_attempts=3)
