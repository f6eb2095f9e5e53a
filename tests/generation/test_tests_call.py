"""I->R with the tests written in a second call (``GenerationConfig.tests_call``).

A scripted engine answers the first call with recorded-style texts and the tests call with a
fixed tests body, so what is checked is the flow: which samples get a tests call, what the
tests call's prompt is, how the two are joined and parsed. The real model runs the same flow in
``test_generation_stages.test_stages_run_on_the_real_model``.
"""

from __future__ import annotations

import polars as pl
import pytest

from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.prompting import default_templates
from amr_dagster.generation.responses import response_stop, responses
from amr_dagster.llm.base import Completion, LLMRequest

GOOD = "Add them.\n```python\ndef add(a, b):\n    return a + b\n```\n"
OWN_TESTS = GOOD + "\n```python\nassert add(1, 2) == 3\nassert add(0, 0) == 0\n```\n"
BROKEN = "Oops.\n```python\ndef add(a, b)\n    return a + b\n```\n"
CUT = "Add.\n```python\ndef add(a, b):\n    return a + b + a + b + a + b"
TESTS = "def test_add():\n    assert add(1, 2) == 3\n    assert add(-1, 1) == 0\n"


class Scripted:
    """First calls get ``firsts`` in turn (text, finish reason); tests calls get ``tests``."""

    model_id = "scripted"

    def __init__(self, firsts: list[tuple[str, str]], tests: tuple[str, str] = (TESTS, "stop")) -> None:
        self.firsts, self.tests = firsts, tests
        self.requests: list[LLMRequest] = []

    def generate(self, requests):
        self.requests.extend(requests)
        out = []
        for request in requests:
            if request.params.stop == default_templates()["responses"].tests_stop:
                text, finish = self.tests
                out.append([Completion(text, finish, 100, 20, 0)])
            else:
                out.append([Completion(t, f, 90, 30, i) for i, (t, f) in enumerate(self.firsts[: request.params.n])])
        return out


def _instructions() -> pl.DataFrame:
    return pl.DataFrame(
        [{"id": "i1", "seed_id": "s1", "batch": "b", "instruction": "Write `add(a, b)` returning a + b.",
          "category": "function", "difficulty": "easy", "concepts": ["addition"], "status": "accepted"}]
    )


def test_only_finished_parsable_code_gets_a_tests_call_and_the_parts_are_joined():
    step = default_templates()["responses"]
    engine = Scripted([(GOOD, "stop"), (OWN_TESTS, "stop"), (BROKEN, "stop"), (CUT, "length")])
    out, stats = responses(_instructions(), engine, GenerationConfig(n_samples=4))

    first, *second = engine.requests
    assert "\n### Tests" in first.params.stop  # the first call ends where the tests start
    assert len(second) == 1  # only the finished, parsable code without tests of its own
    assert second[0].prompt == first.prompt + GOOD.rstrip("\n") + "\n" + step.tests_lead
    assert second[0].params.max_tokens == GenerationConfig().tests_max_tokens

    rows = out.sort("sample_index").to_dicts()
    assert rows[0]["status"] == "accepted"
    assert rows[0]["tests"] == TESTS.rstrip("\n")
    assert rows[0]["raw_output"] == GOOD.rstrip("\n") + "\n" + step.tests_lead + TESTS.rstrip("\n") + "\n```"
    assert (rows[0]["prompt_tokens"], rows[0]["completion_tokens"]) == (190, 50)
    assert rows[1]["status"] == "accepted" and "add(0, 0)" in rows[1]["tests"]  # its own tests kept
    assert rows[2]["reject_reason"] == "syntax_error: code line 1"
    assert rows[3]["reject_reason"] == "unterminated: hit max_tokens"
    assert stats["llm"]["requests"] == 5 and stats["accepted"] + stats["rejected"] == 4


def test_tests_cut_by_max_tokens_keep_their_complete_statements():
    looping = "def test_add():\n" + "    assert add(1, 2) == 3\n    assert add(2, 2) == 4\n" * 6 + "    assert add("
    out, _ = responses(_instructions(), Scripted([(GOOD, "stop")], tests=(looping, "length")), GenerationConfig(n_samples=1))
    row = out.to_dicts()[0]
    assert row["finish_reason"] == "length"
    assert row["status"] == "accepted" and not row["tests"].endswith("add(")


def test_one_call_when_tests_call_is_off():
    engine = Scripted([(OWN_TESTS, "stop")])
    out, _ = responses(_instructions(), engine, GenerationConfig(n_samples=1, tests_call=False))
    assert len(engine.requests) == 1 and "\n### Tests" not in engine.requests[0].params.stop
    assert out["status"].to_list() == ["accepted"]


def test_templates_without_a_tests_lead_are_refused_with_a_fix(tmp_path):
    source = (default_templates()["responses"])
    bare = type(source)(source.header, source.example, source.query, source.stop)
    with pytest.raises(ValueError, match="tests_lead.*tests_call: false"):
        response_stop(bare, GenerationConfig())
    assert response_stop(bare, GenerationConfig(tests_call=False)) == source.stop
