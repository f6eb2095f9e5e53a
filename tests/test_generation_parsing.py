"""Parsing of real base-model output, on completions recorded from the embedded Gemma 3 270M.

The recordings (tests/fixtures/recorded/*.json, written by scripts/record_fixtures.py) hold each
prompt, its sampling parameters and the raw completions. The pinned cases below assert what
the parser extracts from those exact texts; the derived cases change a recorded text in one
stated way (cut it, drop a fence) to reach a branch the recording did not happen to hit.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from amr_dagster.generation.fewshot import default_library
from amr_dagster.generation.parsing import (
    CopyDetector,
    parse_concepts,
    parse_instruction,
    parse_response,
)
from amr_dagster.outcomes import reason_prefix

RECORDED = Path(__file__).parent / "fixtures" / "recorded"
LIBRARY = default_library()
CODE_COPIES = CopyDetector({e.id: e.code for e in LIBRARY.examples})
INSTRUCTION_COPIES = CopyDetector({e.id: e.instruction for e in LIBRARY.examples})


def completions(stage: str) -> list[tuple[dict, dict]]:
    doc = json.loads((RECORDED / f"{stage}.json").read_text())
    return [(record, c) for record in doc["records"] for c in record["completions"]]


def find(stage: str, snippet: str, sample_index: int | None = None) -> dict:
    """The one recorded completion whose text contains ``snippet``."""
    hits = [
        c for _, c in completions(stage)
        if snippet in c["text"] and (sample_index is None or c["sample_index"] == sample_index)
    ]
    assert len(hits) == 1, f"{len(hits)} recorded {stage} completions contain {snippet!r}"
    return hits[0]


def test_recordings_come_from_the_embedded_model():
    for stage in ("concepts", "instructions", "responses"):
        doc = json.loads((RECORDED / f"{stage}.json").read_text())
        assert doc["model_id"].startswith("llama_cpp:gemma-3-270m")
        assert doc["records"] and all(r["prompt"] and r["completions"] for r in doc["records"])


# -- every recorded output ------------------------------------------------------------------


def test_every_recorded_concept_line_parses_to_phrases_or_a_reason():
    outcomes = []
    for record, c in completions("concepts"):
        parsed = parse_concepts(c["text"], c["finish_reason"])
        outcomes.append(parsed.reason)
        if parsed.reason is None:
            assert 1 <= len(parsed.concepts) <= 8
            assert len({x.lower() for x in parsed.concepts}) == len(parsed.concepts)
            assert all(x and "," not in x and "\n" not in x and len(x) <= 60 for x in parsed.concepts)
        else:
            assert reason_prefix(parsed.reason) in {"unparsed", "unterminated"}
    assert None in outcomes


def test_every_recorded_instruction_parses_to_text_or_a_reason():
    outcomes = []
    for _, c in completions("instructions"):
        parsed = parse_instruction(c["text"], c["finish_reason"], copies=INSTRUCTION_COPIES)
        outcomes.append(parsed.reason)
        if parsed.reason is None:
            assert 40 <= len(parsed.instruction) <= 1500
            assert "###" not in parsed.instruction and "```" not in parsed.instruction
            assert parsed.instruction == parsed.instruction.strip()
    assert None in outcomes


def test_every_recorded_response_parses_to_code_and_tests_or_a_reason():
    reasons = []
    for _, c in completions("responses"):
        parsed = parse_response(c["text"], c["finish_reason"], copies=CODE_COPIES)
        reasons.append(parsed.reason)
        if parsed.reason is None:
            ast.parse(parsed.code)
            tree = ast.parse(parsed.tests)
            assert any(isinstance(n, ast.Assert) for n in ast.walk(tree))
            assert "```" not in parsed.code and "```" not in parsed.tests
            assert "### Tests" not in parsed.code
            assert parsed.response.endswith("```python\n" + parsed.code + "\n```")
        else:
            assert reason_prefix(parsed.reason) in {
                "no_code_block", "no_tests", "unterminated", "syntax_error", "copied_fewshot"
            }, parsed.reason
    assert None in reasons, "no recorded response parsed: the prompts need work"
