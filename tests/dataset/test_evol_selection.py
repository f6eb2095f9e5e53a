"""verified_pairs selection (evolved, else passing direct, else rejected) and the AMR-Evol report."""

from __future__ import annotations

import polars as pl
import pytest

from amr_dagster.evol.direct import choose_direct
from amr_dagster.evol.report import combine_reports, evol_report, report_markdown
from amr_dagster.dataset.selection import select_verified
from amr_dagster.outcomes import summarize

GOOD = "def f(x):\n    return x + 1\n"
BROKEN = "def f(x)\n    return x\n"

DIRECT_SCHEMA = {
    "id": pl.String, "parent_id": pl.String, "instruction": pl.String, "response": pl.String,
    "code": pl.String, "tests": pl.String, "sandbox_status": pl.String, "tests_passed": pl.Int64, "tests_run": pl.Int64,
}
EVOLVED_SCHEMA = {
    "id": pl.String, "parent_id": pl.String, "instruction_id": pl.String, "response": pl.String,
    "code": pl.String, "tests": pl.String, "sandbox_status": pl.String, "status": pl.String,
    "retrieved_similarities": pl.List(pl.Float64),
}


def direct_frame(rows: list[tuple[str, str, str | None, str]]) -> pl.DataFrame:
    """(sample id, instruction id, verdict, code) -> an executed-responses frame."""
    return pl.DataFrame(
        [
            {
                "id": sid, "parent_id": iid, "instruction": f"task {iid}", "response": f"answer {sid}",
                "code": code, "tests": "assert f(1) == 2", "sandbox_status": verdict,
                "tests_passed": 1 if verdict == "passed" else 0, "tests_run": 1,
            }
            for sid, iid, verdict, code in rows
        ],
        schema=DIRECT_SCHEMA,
    )


def evolved_frame(rows: list[tuple[str, str, str, str | None, str, list[float]]]) -> pl.DataFrame:
    """(evolved id, direct id, instruction id, verdict, code, similarities) -> evolved frame."""
    return pl.DataFrame(
        [
            {
                "id": eid, "parent_id": did, "instruction_id": iid, "response": f"evolved {eid}", "code": code,
                "tests": "assert f(1) == 2", "sandbox_status": verdict,
                "status": "accepted" if verdict is not None else "rejected", "retrieved_similarities": sims,
            }
            for eid, did, iid, verdict, code, sims in rows
        ],
        schema=EVOLVED_SCHEMA,
    )


@pytest.fixture
def scenario() -> tuple[pl.DataFrame, pl.DataFrame]:
    direct = direct_frame(
        [
            ("a1", "A", "failed", GOOD), ("a2", "A", "failed", GOOD),   # A: direct fails, evolved passes
            ("b1", "B", "passed", GOOD), ("b2", "B", "passed", GOOD),   # B: evolved fails, direct passes
            ("c1", "C", "failed", GOOD),                                # C: nothing passes
            ("d1", "D", "passed", GOOD),                                # D: evolved passes with bad syntax
            ("e1", "E", "infra_error", GOOD), ("e2", "E", "passed", GOOD),  # E: evolution infra error
        ]
    )
    evolved = evolved_frame(
        [
            ("ea", "a1", "A", "passed", GOOD, [0.9, 0.5]),
            ("eb", "b1", "B", "failed", GOOD, [0.4]),
            ("ec", "c1", "C", None, "", []),
            ("ed", "d1", "D", "passed", BROKEN, [0.7]),
            ("ee", "e2", "E", "infra_error", GOOD, []),
        ]
    )
    return direct, evolved


def by_instruction(frame: pl.DataFrame) -> dict[str, dict]:
    return {r["instruction_id"]: r for r in frame.iter_rows(named=True)}


def test_evolved_first_then_direct_then_rejected(scenario):
    direct, evolved = scenario
    frame, stats = select_verified(direct, evolved, global_seed=7)
    rows = by_instruction(frame)
    assert frame.height == 5  # one row per instruction, nothing dropped
    assert rows["A"]["origin"] == "evolved" and rows["A"]["parent_id"] == "ea" and rows["A"]["direct_id"] == "a1"
    assert rows["B"]["origin"] == "direct" and rows["B"]["parent_id"] in {"b1", "b2"}
    assert rows["B"]["evolved_id"] == "eb" and rows["B"]["evolved_verdict"] == "failed"
    assert rows["C"]["status"] == "rejected" and rows["C"]["reject_reason"] == "no_passing_response"
    assert rows["D"]["origin"] == "direct" and rows["D"]["parent_id"] == "d1"  # broken evolved code skipped
    assert rows["E"]["origin"] == "direct" and rows["E"]["parent_id"] == "e2"
    assert stats["origin_evolved"] == 1 and stats["origin_direct"] == 3
    assert stats["accepted"] + stats["rejected"] == stats["rows"] == 5


def test_direct_choice_matches_the_response_evolution_started_from(scenario):
    direct, evolved = scenario
    for seed in range(12):
        frame, _ = select_verified(direct, None, global_seed=seed)
        chosen = choose_direct(direct, seed)
        want = {r["instruction_id"]: r["direct_id"] for r in chosen.filter(pl.col("direct_passed")).iter_rows(named=True)}
        got = {r["instruction_id"]: r["parent_id"] for r in frame.filter(pl.col("status") == "accepted").iter_rows(named=True)}
        assert got == want


def test_seeded_choice_is_independent_of_row_order_and_varies_with_the_seed():
    direct = direct_frame([(f"s{i}", "X", "passed", GOOD) for i in range(6)])
    picks = set()
    for seed in range(20):
        forward = select_verified(direct, None, global_seed=seed)[0]["parent_id"][0]
        backward = select_verified(direct.reverse(), None, global_seed=seed)[0]["parent_id"][0]
        assert forward == backward
        picks.add(forward)
    assert len(picks) > 1


def test_without_evolution_is_plain_selfcodealign(scenario):
    direct, _ = scenario
    frame, stats = select_verified(direct, None, global_seed=7)
    assert set(frame.get_column("origin").drop_nulls()) == {"direct"}
    assert stats["evolution_used"] is False
    assert by_instruction(frame)["A"]["reject_reason"] == "no_passing_response"
    assert frame.get_column("evolved_id").null_count() == frame.height


def test_sanitizing_rejects_long_instructions_and_unparsable_code():
    direct = direct_frame([("x1", "X", "passed", GOOD), ("y1", "Y", "passed", BROKEN)])
    direct = direct.with_columns(
        pl.when(pl.col("parent_id") == "X").then(pl.lit("w" * 50)).otherwise(pl.col("instruction")).alias("instruction")
    )
    frame, stats = select_verified(direct, None, max_instruction_chars=40)
    rows = by_instruction(frame)
    assert rows["X"]["reject_reason"] == "instruction_too_long: 50 > 40 chars"
    assert rows["Y"]["reject_reason"] == "syntax_error: line 1"
    assert summarize(frame)["rejected"] == 2


def test_report_counts_transitions_and_similarity(scenario):
    direct, evolved = scenario
    # As the pipeline hands them over: all evolved rows, and the parsed ones after the sandbox.
    evolved_executed = evolved.filter(pl.col("status") == "accepted")
    verified, _ = select_verified(direct, evolved_executed, global_seed=1)
    report = evol_report(direct, evolved.drop("sandbox_status"), evolved_executed, verified)
    assert report["instructions"] == 5
    assert report["direct_samples_executed"] == 7 and report["direct_samples_infra_error"] == 1
    assert report["direct_sample_pass_rate"] == round(4 / 7, 4)
    assert report["direct_pass_rate"] == round(3 / 5, 4)  # B, D, E
    # evolved: ea passed (a1 failed), eb failed (b1 passed), ec unparsed (c1 failed),
    # ed passed (d1 passed), ee infra_error (left out)
    assert report["evolved_responses"] == 5 and report["evolved_infra_error"] == 1
    assert report["evolved_parsed"] == 4
    assert report["evolved_pass_rate"] == 0.5
    assert (report["fail_to_pass"], report["pass_to_fail"], report["pass_to_pass"], report["fail_to_fail"]) == (1, 1, 1, 1)
    assert report["retrieval_responses_with_modules"] == 3
    assert report["retrieval_top1_similarity_mean"] == round((0.9 + 0.4 + 0.7) / 3, 4)
    assert report["retrieval_top1_similarity_median"] == 0.7
    assert report["retrieval_top1_similarity_max"] == 0.9
    assert (report["verified_pairs"], report["verified_evolved"], report["verified_direct"]) == (4, 1, 3)
    card = report_markdown(report)
    assert "| Evolution: failing -> passing | 1 |" in card
    assert "| Evolved pass rate | 0.5 |" in card


def test_report_without_evolution_and_combined(scenario):
    direct, evolved = scenario
    plain = evol_report(direct)
    assert plain["evolved_responses"] == 0 and plain["retrieval_top1_similarity_mean"] is None
    first = evol_report(direct, evolved_executed=evolved)
    combined = combine_reports([first, plain])
    assert combined["instructions"] == 10
    assert combined["direct_pass_rate"] == first["direct_pass_rate"]
    assert combined["evolved_pass_rate"] == first["evolved_pass_rate"]
    assert combined["retrieval_top1_similarity_mean"] == first["retrieval_top1_similarity_mean"]
    assert combined["fail_to_pass"] == 1


def test_real_sandbox_verdicts_flow_into_selection_and_report():
    """The one-shot evolution example for real: its first solution fails its tests in the
    sandbox, its evolved answer passes, so the pair is kept from evolution and the report counts
    one failing -> passing; a second instruction whose evolution broke the code keeps its direct
    answer and counts one passing -> failing."""
    from amr_dagster.evol.config import evol_prompts
    from amr_dagster.generation.execution import execute_responses
    from amr_dagster.generation.parsing import parse_response
    from amr_dagster.outcomes import with_status
    from amr_dagster.sandbox.auto import open_sandbox
    from amr_dagster.sandbox.base import Limits, SandboxUnavailable

    example = evol_prompts()["evolution"]["example"]
    improved = parse_response(example["response"] + "\n### Tests\n" + example["tests"], "stop")
    assert improved.reason is None
    tests = improved.tests
    good_f = "def f(x):\n    return x + 1"
    f_tests = "def test_f():\n    assert f(1) == 2"
    direct = with_status(
        pl.DataFrame(
            [
                {"id": "d1", "parent_id": "TOP", "instruction": example["instruction"], "response": "r",
                 "code": example["code"], "tests": tests},
                {"id": "d2", "parent_id": "INC", "instruction": "Add one.", "response": "r", "code": good_f, "tests": f_tests},
            ]
        ),
        [None, None],
    )
    evolved = with_status(
        pl.DataFrame(
            [
                {"id": "e1", "parent_id": "d1", "instruction_id": "TOP", "response": improved.response,
                 "code": improved.code, "tests": tests, "retrieved_similarities": [0.8]},
                {"id": "e2", "parent_id": "d2", "instruction_id": "INC", "response": "r",
                 "code": "def f(x):\n    return x - 1", "tests": f_tests, "retrieved_similarities": [0.3]},
            ]
        ),
        [None, None],
    )
    try:
        sandbox = open_sandbox("local", workers=1)
    except SandboxUnavailable as exc:  # pragma: no cover - depends on the machine
        pytest.skip(f"no isolating sandbox here: {exc}")
    try:
        direct_executed, _ = execute_responses(direct, sandbox, Limits(wall_s=20, cpu_s=20))
        evolved_executed, _ = execute_responses(evolved, sandbox, Limits(wall_s=20, cpu_s=20))
    finally:
        sandbox.close()
    assert dict(zip(direct_executed["id"], direct_executed["sandbox_status"])) == {"d1": "failed", "d2": "passed"}
    assert dict(zip(evolved_executed["id"], evolved_executed["sandbox_status"])) == {"e1": "passed", "e2": "failed"}

    verified, stats = select_verified(direct_executed, evolved_executed, global_seed=3)
    rows = by_instruction(verified)
    assert (rows["TOP"]["origin"], rows["TOP"]["parent_id"]) == ("evolved", "e1")
    assert (rows["INC"]["origin"], rows["INC"]["parent_id"]) == ("direct", "d2")
    report = evol_report(direct_executed, evolved, evolved_executed, verified)
    assert (report["fail_to_pass"], report["pass_to_fail"]) == (1, 1)
    assert report["direct_pass_rate"] == 0.5 and report["evolved_pass_rate"] == 0.5
    assert report["verified_pairs"] == 2 and report["verified_evolved"] == 1
