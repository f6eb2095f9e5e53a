"""Choosing each instruction's *direct* response (the SelfCodeAlign answer evolution starts from).

1. a passing sample if there is any, chosen uniformly at random among the passing ones with a
   per-instruction seed (``seed_for(instruction_id, global_seed, "direct")``), so the choice is
   the same on every machine and independent of row order;
2. else the "best parsed" sample: most tests passed, then highest fraction of tests passed, then
   the mildest verdict (failed < timeout < output_limit < oom < infra_error < never executed),
   ties again broken by the same seeded choice;
3. an instruction without any sample that has code gets a rejected row ``no_direct_response``.
"""

from __future__ import annotations

import random
from typing import Any

import polars as pl

from amr_dagster.ids import seed_for
from amr_dagster.outcomes import with_status
from amr_dagster.sandbox.base import Status
from amr_dagster.schemas import CODE, DIRECT_COLUMNS, ID, INSTRUCTION, PARENT, RESPONSE, TESTS, TESTS_PASSED, TESTS_RUN, VERDICT

PASSED = Status.PASSED.value
# Lower is better when no sample passed; None (never executed) ranks last.
_VERDICT_RANK = {s.value: rank for rank, s in enumerate((Status.FAILED, Status.TIMEOUT, Status.OUTPUT_LIMIT, Status.OOM, Status.INFRA_ERROR))}


def seeded_order(rows: list[dict[str, Any]], instruction_id: str, global_seed: int, salt: str = "direct") -> list[dict[str, Any]]:
    """``rows`` in a random order fixed by the instruction id and the global seed (not by input order)."""
    ordered = sorted(rows, key=lambda r: r[ID])
    random.Random(seed_for(instruction_id, global_seed, salt)).shuffle(ordered)
    return ordered


def _seeded_pick(rows: list[dict[str, Any]], instruction_id: str, global_seed: int) -> dict[str, Any]:
    return seeded_order(rows, instruction_id, global_seed)[0]


def _quality(row: dict[str, Any]) -> tuple[int, float, int]:
    """Sort key, larger is better, for samples of which none passed."""
    passed = int(row.get(TESTS_PASSED) or 0)
    run = int(row.get(TESTS_RUN) or 0)
    verdict_rank = _VERDICT_RANK.get(row.get(VERDICT) or "", len(_VERDICT_RANK))
    return passed, (passed / run if run else 0.0), -verdict_rank


def choose_direct(executed: pl.DataFrame, global_seed: int) -> pl.DataFrame:
    """One row per instruction: the direct response AMR-Evol starts from (see module docstring).

    ``executed`` needs the columns ``id, parent_id, instruction, response, code, tests, sandbox_status,
    tests_passed, tests_run`` (``parent_id`` is the instruction id). Rows are accepted, or
    rejected with ``no_direct_response`` when no sample of the instruction has code.
    """
    by_instruction: dict[str, list[dict[str, Any]]] = {}
    order: list[str] = []
    for row in executed.iter_rows(named=True):
        key = row[PARENT]
        if key not in by_instruction:
            by_instruction[key] = []
            order.append(key)
        by_instruction[key].append(row)

    out: list[dict[str, Any]] = []
    reasons: list[str | None] = []
    for instruction_id in order:
        samples = by_instruction[instruction_id]
        with_code = [r for r in samples if (r.get(CODE) or "").strip()]
        passing = [r for r in with_code if r.get(VERDICT) == PASSED]
        if passing:
            chosen = _seeded_pick(passing, instruction_id, global_seed)
        elif with_code:
            best = max(_quality(r) for r in with_code)
            chosen = _seeded_pick([r for r in with_code if _quality(r) == best], instruction_id, global_seed)
        else:
            chosen = None
        base = chosen or samples[0]
        out.append(
            {
                "instruction_id": instruction_id,
                "instruction": base.get(INSTRUCTION),
                "direct_id": chosen[ID] if chosen else None,
                "response": chosen.get(RESPONSE) if chosen else None,
                "code": chosen.get(CODE) if chosen else None,
                "tests": chosen.get(TESTS) if chosen else None,
                "sandbox_status": chosen.get(VERDICT) if chosen else None,
                "tests_passed": int(chosen.get(TESTS_PASSED) or 0) if chosen else 0,
                "tests_run": int(chosen.get(TESTS_RUN) or 0) if chosen else 0,
                "direct_passed": bool(chosen and chosen.get(VERDICT) == PASSED),
                "samples": len(samples),
                "passing_samples": len(passing),
            }
        )
        reasons.append(None if chosen else f"no_direct_response: none of {len(samples)} samples has code")
    return with_status(pl.DataFrame(out, schema=DIRECT_COLUMNS), reasons)
