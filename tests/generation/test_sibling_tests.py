"""Sibling tests: a sample's code against its siblings' tests, in the real local sandbox."""

import polars as pl

from amr_dagster.accounting import accounting
from amr_dagster.evol.report import evol_report
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.generation.sibling_tests import candidate_pairs, unsolved_instructions
from amr_dagster.generation.stages import run_in_sandbox
from amr_dagster.outcomes import with_status
from amr_dagster.sandbox.base import Limits
from amr_dagster.schemas import ORIGIN_COLUMNS, VERDICT_COLUMNS

RIGHT = "def double(x):\n    return 2 * x\n"
WRONG = "def double(x):\n    return x + 2\n"
SOUND_TESTS = "assert double(3) == 6\nassert double(0) == 0\n"
WRONG_VALUE_TESTS = "assert double(3) == 5\nassert double(1) == 2\n"  # the model miscounted
ONE_ASSERT = "assert double(2) == 4\n"


def samples(rows: list[tuple[str, str, int, str | None, str | None, str | None]]) -> pl.DataFrame:
    """(id, instruction, sample_index, code, tests, parse reason) -> a ``responses`` frame."""
    frame = pl.DataFrame(
        {
            "id": [r[0] for r in rows],
            "parent_id": [r[1] for r in rows],
            "sample_index": [r[2] for r in rows],
            "instruction": ["Double a number."] * len(rows),
            "response": [f"```python\n{r[3]}\n```" if r[3] else None for r in rows],
            "code": [r[3] for r in rows],
            "tests": [r[4] for r in rows],
        }
    )
    return with_status(frame, [r[5] for r in rows])


def test_right_code_with_wrong_tests_passes_its_siblings_pooled_tests(local_sandbox):
    frame = samples(
        [
            ("a", "i1", 0, RIGHT, WRONG_VALUE_TESTS, None),  # right code, wrong expected value
            ("b", "i1", 1, WRONG, SOUND_TESTS, None),  # sound tests, wrong code
            ("c", "i1", 2, RIGHT, ONE_ASSERT, "too_few_assertions: 1 < 2"),  # right code, one assert
            ("d", "i1", 3, "def double(x)\n", None, "syntax_error: code line 1"),  # never a donor
            ("e", "i2", 0, RIGHT, SOUND_TESTS, None),  # i2 passes on its own: not touched
            ("f", "i2", 1, WRONG, WRONG_VALUE_TESTS, None),
        ]
    )
    result = run_in_sandbox(responses=frame, sandbox=local_sandbox, limits=Limits(wall_s=10), generation=GenerationConfig())
    out = result.frame
    assert set(out.columns) == set(frame.columns) | set(VERDICT_COLUMNS) | set(ORIGIN_COLUMNS)
    own = out.filter(pl.col("tests_from").is_null())
    assert sorted(own["id"]) == ["a", "b", "e", "f"]  # every parsed sample keeps its own verdict
    assert dict(zip(own["id"], own["status"])) == {"a": "rejected", "b": "rejected", "e": "accepted", "f": "rejected"}
    rescued = out.filter(pl.col("tests_from").is_not_null()).to_dicts()
    assert len(rescued) == 1  # one row for i1, none for i2 (it has its own pass)
    row = rescued[0]
    # a and c both pass b's and c's suites (3 assertions pooled); a has the lower sample index.
    # b's wrong code passes c's one assertion (double(2) == 2 + 2) but nothing else: no pool.
    assert (row["parent_id"], row["code_from"], row["tests_from"]) == ("i1", "a", ["b", "c"])
    assert row["code"] == RIGHT and row["tests"] == SOUND_TESTS + "\n" + ONE_ASSERT
    assert row["status"] == "accepted" and row["sandbox_status"] == "passed" and row["tests_run"] == row["tests_passed"] > 0
    assert row["id"] not in {"a", "b", "c", "d", "e", "f"}
    # pairs: a x {b, c}, b x {a, c}, c x {a, b, c} (c's own one-assert suite; a's and b's own
    # full suites ran already); passing: a-b, a-c, b-c, c-b, c-c
    assert result.stats["sibling_tests"] == {
        "instructions_tried": 1, "pairs_run": 7, "pairs_passed": 5, "pools": 1, "instructions_rescued": 1
    }
    assert result.metrics["rescued_by_sibling_tests"] == 1
    ok, meta = accounting(out, result.expected_inputs, result.input_column)
    assert ok, meta
    # The per-sample pass rate counts the samples' own verdicts; the instruction counts as passing.
    report = evol_report(out, samples=frame.height)
    assert report["direct_samples_passed"] == 1 and report["direct_samples_executed"] == 4
    assert report["direct_pass_rate"] == 1.0 and report["instructions_passing_by_sibling_tests"] == 1


def test_off_keeps_own_tests_only(local_sandbox):
    frame = samples([("a", "i1", 0, RIGHT, WRONG_VALUE_TESTS, None), ("b", "i1", 1, WRONG, SOUND_TESTS, None)])
    config = GenerationConfig(sibling_tests=False)
    result = run_in_sandbox(responses=frame, sandbox=local_sandbox, limits=Limits(wall_s=10), generation=config)
    assert result.frame.height == 2 and result.frame.filter(pl.col("status") == "accepted").is_empty()
    assert "sibling_tests" not in result.stats


def test_a_suite_must_call_the_code_and_a_donor_must_be_sound():
    """A suite that never calls this sample's code makes no pair; copied or cut-off code and
    tests rejected for more than their count of assertions are never donors."""
    other = "def triple(x):\n    return 3 * x\n"
    frame = samples(
        [
            ("a", "i1", 0, other, WRONG_VALUE_TESTS, None),  # defines triple: b's tests never call it
            ("b", "i1", 1, WRONG, SOUND_TESTS, None),
            ("c", "i1", 2, RIGHT, SOUND_TESTS, "copied_fewshot: fn-easy-1"),
            ("d", "i1", 3, RIGHT, None, "unterminated: hit max_tokens"),
            ("e", "i1", 4, RIGHT, "assert double(1) == 2\n", "tests_never_call_code"),
        ]
    )
    executed = frame.filter(pl.col("status") == "accepted").with_columns(pl.lit("rejected").alias("status"))
    pairs = candidate_pairs(unsolved_instructions(frame, executed))
    # b's code with a's suite (it calls double); e's code (only its tests were rejected) with a's
    # and b's suites; e's own suite is no donor, and neither is anything of c or d.
    assert sorted(p["id"] for p in pairs) == ["b|a", "e|a", "e|b"]


def test_the_code_most_suites_agree_on_wins_over_sample_order(local_sandbox):
    partial = "def double(x):\n    return 2 * x if x < 5 else 0\n"  # right only below 5
    frame = samples(
        [
            ("x", "i", 0, partial, WRONG_VALUE_TESTS, None),
            ("y", "i", 1, RIGHT, "assert double(2) == 5\nassert double(7) == 14\n", None),
            ("t", "i", 2, WRONG, SOUND_TESTS, None),
            ("u", "i", 3, WRONG, "assert double(1) == 2\nassert double(5) == 10\n", None),
        ]
    )
    result = run_in_sandbox(responses=frame, sandbox=local_sandbox, limits=Limits(wall_s=10), generation=GenerationConfig())
    (row,) = result.frame.filter(pl.col("tests_from").is_not_null()).to_dicts()
    # x passes t's suite; y passes t's and u's: y wins though x comes first
    assert (row["code_from"], row["tests_from"]) == ("y", ["t", "u"])
