"""verified_pairs selection (evolved, else passing direct, else rejected) and the AMR-Evol report."""

from __future__ import annotations

import polars as pl
import pytest

from amr_dagster.evol.decomposition import choose_direct
from amr_dagster.evol.report import combine_reports, evol_report, report_markdown
from amr_dagster.evol.selection import select_verified
from amr_dagster.outcomes import summarize

GOOD = "def f(x):\n    return x + 1\n"
BROKEN = "def f(x)\n    return x\n"

DIRECT_SCHEMA = {
    "id": pl.String, "parent_id": pl.String, "instruction": pl.String, "response": pl.String,
    "code": pl.String, "tests": pl.String, "verdict": pl.String, "tests_passed": pl.Int64, "tests_run": pl.Int64,
}
EVOLVED_SCHEMA = {
    "id": pl.String, "parent_id": pl.String, "instruction_id": pl.String, "response": pl.String,
    "code": pl.String, "tests": pl.String, "verdict": pl.String, "status": pl.String,
    "retrieved_similarities": pl.List(pl.Float64),
}


def direct_frame(rows: list[tuple[str, str, str | None, str]]) -> pl.DataFrame:
    """(sample id, instruction id, verdict, code) -> an executed-responses frame."""
    return pl.DataFrame(
        [
            {
                "id": sid, "parent_id": iid, "instruction": f"task {iid}", "response": f"answer {sid}",
                "code": code, "tests": "assert f(1) == 2", "verdict": verdict,
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
                "tests": "assert f(1) == 2", "verdict": verdict,
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
    verified, _ = select_verified(direct, evolved, global_seed=1)
    report = evol_report(direct, evolved, verified)
    assert report["instructions"] == 5
    assert report["direct_samples_executed"] == 7 and report["direct_samples_infra_error"] == 1
    assert report["direct_sample_pass_rate"] == round(4 / 7, 4)
    assert report["direct_pass_rate"] == round(3 / 5, 4)  # B, D, E
    # evolved: ea passed (a1 failed), eb failed (b1 passed), ec unparsed (c1 failed),
    # ed passed (d1 passed), ee infra_error (left out)
    assert report["evolved_responses"] == 5 and report["evolved_infra_error"] == 1
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
    first = evol_report(direct, evolved)
    combined = combine_reports([first, plain])
    assert combined["instructions"] == 10
    assert combined["direct_pass_rate"] == first["direct_pass_rate"]
    assert combined["evolved_pass_rate"] == first["evolved_pass_rate"]
    assert combined["retrieval_top1_similarity_mean"] == first["retrieval_top1_similarity_mean"]
    assert combined["fail_to_pass"] == 1
