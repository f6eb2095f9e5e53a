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

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
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
                "no_code_block", "no_tests", "unterminated", "syntax_error", "copied_fewshot",
                "tests_never_call_code", "too_few_assertions", "incomplete_code",
            }, parsed.reason
    # The one recorded sample that parses has tests that never call its code (see
    # test_weak_tests.py): without that rule it is accepted.
    assert "tests_never_call_code" in reasons
    assert any(
        parse_response(c["text"], c["finish_reason"], copies=CODE_COPIES, require_call=False).reason is None
        for _, c in completions("responses")
    ), "no recorded response parsed: the prompts need work"


# -- pinned: what the parser takes from particular recorded outputs -------------------------


def _seed_name(tag: str) -> str:
    doc = json.loads((RECORDED / "concepts.json").read_text())
    return next(row["name"] for row in doc["inputs"] if row["id"] == tag)


def _concepts_of(snippet: str):
    for record, c in completions("concepts"):
        if c["text"].startswith(snippet):
            return parse_concepts(c["text"], c["finish_reason"], _seed_name(record["tag"]))
    raise AssertionError(f"no recorded concept line starts with {snippet!r}")


def test_concepts_clean_line_drops_the_seed_name():
    # fnmatch.filter -> "filter, list comprehension, string slicing, string concatenation"
    assert _concepts_of("filter, list comprehension").concepts == (
        "list comprehension", "string slicing", "string concatenation"
    )


def test_concepts_repeated_phrases_collapse():
    # shlex.quote -> "string splitting, string to integer conversion" x3 (stopped at the newline)
    parsed = _concepts_of("string splitting, string to integer")
    assert parsed.reason is None
    assert parsed.concepts == ("string splitting", "string to integer conversion")


def test_concepts_loop_cut_by_max_tokens_is_salvaged_when_two_phrases_survive():
    # calendar.leapdays -> "leap years, leap days, leap years, ..." until max_tokens
    parsed = _concepts_of("leap years, leap days")
    assert parsed.reason is None and parsed.concepts == ("leap years", "leap days")


def test_concepts_identifier_loops_are_unterminated():
    # colorsys.rgb_to_hsv -> "rgb_to_hsv, rgb_to_hsv_to_h, ..." and bisect -> "insert_right, insert_left, ..."
    for snippet in ("rgb_to_hsv, rgb_to_hsv_to_h", "insert_right, insert_left"):
        parsed = _concepts_of(snippet)
        assert parsed == type(parsed)((), "unterminated: hit max_tokens")


def test_instruction_paragraph_is_kept_whole():
    c = find("instructions", "Write a function `map(str, s)`")
    parsed = parse_instruction(c["text"], c["finish_reason"], copies=INSTRUCTION_COPIES)
    assert parsed.reason is None
    assert parsed.instruction == (
        "Write a function `map(str, s)` that returns a list of str substrings and is used to split them "
        "into integers.\nThe keys are the substrings in the string, and the values are the integers."
    )


def test_instruction_rambling_to_max_tokens_is_unterminated():
    c = find("instructions", "Write a program that reads a list of numbers, in order")
    assert c["finish_reason"] == "length"
    assert parse_instruction(c["text"], c["finish_reason"]).reason == "unterminated: hit max_tokens"


def test_instruction_near_copy_of_a_shot_is_rejected():
    # The model repeated the TTLCache shot with one letter dropped ("TLCache").
    c = find("instructions", "`TLCache(ttl, clock=time.monotonic)`")
    assert parse_instruction(c["text"], c["finish_reason"]).reason is None  # without the library
    parsed = parse_instruction(c["text"], c["finish_reason"], copies=INSTRUCTION_COPIES)
    assert parsed.reason == "copied_fewshot: class-medium-ttl-cache"


def test_instruction_short_class_task_is_accepted():
    c = find("instructions", "Write a class `Card`")
    parsed = parse_instruction(c["text"], c["finish_reason"], copies=INSTRUCTION_COPIES)
    assert parsed == type(parsed)(
        "Write a class `Card`, create a `Card` object, print the name of the card, and make a copy of the object.",
        None,
    )


def test_response_with_tests_looping_to_max_tokens_keeps_complete_asserts():
    c = find("responses", "def test_digits_and_lemmatization(input_list):")
    assert c["finish_reason"] == "length"
    assert parse_response(c["text"], c["finish_reason"], copies=CODE_COPIES).reason == "tests_never_call_code"
    parsed = parse_response(c["text"], c["finish_reason"], copies=CODE_COPIES, require_call=False)
    assert parsed.reason is None
    assert parsed.explanation.startswith("Print the first letter of a number")
    assert parsed.code.startswith("def test_digits_and_lemmatization(input_list):")
    assert parsed.code.endswith('if __name__ == "__main__":\n    main()')
    test_lines = parsed.tests.splitlines()
    assert test_lines[0] == "def test_generate_digits(input_list):"
    assert test_lines[-1] == '    assert "6456789" in input_list'  # the cut line is gone
    assert test_lines.count('    assert "123456789" in input_list') == 1  # the loop collapsed
    assert '"7456789"' not in parsed.tests


def test_response_code_that_does_not_compile_names_its_line():
    c = find("responses", "def biggest(list(values)):")
    assert parse_response(c["text"], c["finish_reason"]).reason == "syntax_error: code line 1"


def test_response_without_a_tests_block_is_no_tests():
    c = find("responses", 'str1 = "Apple"')
    assert c["finish_reason"] == "stop"
    assert parse_response(c["text"], c["finish_reason"]).reason == "no_tests"


def test_response_code_cut_by_max_tokens_is_unterminated():
    c = find("responses", "class MultiplesOfZero(object):")
    parsed = parse_response(c["text"], c["finish_reason"])
    assert (parsed.reason, parsed.code) == ("unterminated: hit max_tokens", "")
    assert parsed.explanation == "The provided classes return:"


# -- derived: one stated change to a recorded output ------------------------------------------


def _digits_text() -> str:
    return find("responses", "def test_digits_and_lemmatization(input_list):")["text"]


def test_derived_missing_code_fence_is_closed_by_the_tests_header():
    text = _digits_text()
    without_fence = text.replace('    main()\n```\n### Tests', '    main()\n### Tests', 1)
    assert without_fence != text
    assert parse_response(without_fence, "length") == parse_response(text, "length")


def test_derived_next_example_after_the_answer_is_cut_off():
    text = _digits_text()
    head = text[: text.index('    assert "7456789"')] + "```\n"
    rambling = head + "\n## Example 5\n### Instruction\nWrite a function `x()`.\n### Response\n```python\nx = (\n"
    plain = parse_response(head, "stop", require_call=False)
    assert plain.reason is None
    assert parse_response(rambling, "length", require_call=False) == plain


def test_derived_cut_inside_the_code_block_is_unterminated():
    text = _digits_text()
    cut = text[: text.index("        elif result")]
    assert parse_response(cut, "length").reason == "unterminated: hit max_tokens"
    assert parse_response(cut, "stop").reason == "unterminated: code block not closed"


def test_derived_tests_without_asserts_are_no_tests():
    text = _digits_text()
    head = text[: text.index('    assert "0123456789"')] + "    pass\n```\n"
    assert parse_response(head, "stop").reason == "no_tests: no assert statements"


def test_derived_verbatim_few_shot_answer_is_a_copy():
    example = LIBRARY.by_id("fn-medium-format-duration")
    text = f"{example.response}\n### Tests\n{example.tests}\n"
    assert parse_response(text, "stop").reason is None
    assert parse_response(text, "stop", copies=CODE_COPIES).reason == "copied_fewshot: fn-medium-format-duration"
