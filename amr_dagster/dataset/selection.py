"""``verified_pairs``: one execution-verified response per instruction, evolved or direct.

Per instruction, in this order:

1. the evolved response, if it passed its tests in the sandbox (``origin="evolved"``);
2. else a passing direct response, chosen at random among the passing samples with the same
   per-instruction seed ``choose_direct`` uses, so it is the very response evolution started from
   (``origin="direct"``);
3. else a rejected row ``no_passing_response``.

A candidate must also survive sanitizing: its code must parse (``syntax_error: line N``
otherwise, and the next candidate is tried) and the instruction must not be over-long
(``instruction_too_long``, which no candidate can fix). Called without an evolved frame it is
plain SelfCodeAlign selection, so the AMR-Evol stages can be switched off without touching it.
"""

from __future__ import annotations

import ast
from typing import Any

import polars as pl

from amr_dagster.schemas import VERIFIED_COLUMNS
from amr_dagster.evol.direct import PASSED, seeded_order
from amr_dagster.schemas import CODE, ID, INSTRUCTION, PARENT, RESPONSE, TESTS, VERDICT
from amr_dagster.ids import row_id
from amr_dagster.outcomes import summarize, with_status

DEFAULT_MAX_INSTRUCTION_CHARS = 4000


def syntax_problem(code: str | None) -> str | None:
    """``syntax_error: line N`` when ``code`` does not parse as Python, else None."""
    try:
        ast.parse(code or "")
    except SyntaxError as exc:
        return f"syntax_error: line {exc.lineno}"
    except ValueError as exc:  # e.g. a NUL byte in the source
        return f"syntax_error: {exc}"
    return None


def _group(frame: pl.DataFrame | None, key: str) -> dict[str, list[dict[str, Any]]]:
    groups: dict[str, list[dict[str, Any]]] = {}
    if frame is None:
        return groups
    for row in frame.iter_rows(named=True):
        groups.setdefault(row[key], []).append(row)
    return groups


def select_verified(
    direct_executed: pl.DataFrame,
    evolved_executed: pl.DataFrame | None = None,
    global_seed: int = 0,
    max_instruction_chars: int = DEFAULT_MAX_INSTRUCTION_CHARS,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """One row per instruction of ``direct_executed`` (see the module docstring).

    ``direct_executed``: executed SelfCodeAlign samples (``id, parent_id`` = instruction id,
    ``instruction, response, code, tests, sandbox_status``). ``evolved_executed``: the evolved responses
    after the sandbox (``id, parent_id`` = direct id, ``instruction_id, response, code, tests,
    sandbox_status``), or None for plain SelfCodeAlign. Output: ``id`` (``row_id(source id, response)``),
    ``parent_id`` (the chosen response's id), ``instruction_id``, ``instruction``, ``response``,
    ``code``, ``tests``, ``origin``, ``direct_id``, ``evolved_id``, ``evolved_verdict``,
    ``passing_direct_samples``, ``status``, ``reject_reason``.
    """
    direct_by_instruction = _group(direct_executed, PARENT)
    evolved_by_instruction = _group(evolved_executed, "instruction_id")

    rows: list[dict[str, Any]] = []
    reasons: list[str | None] = []
    for instruction_id, samples in direct_by_instruction.items():
        instruction = samples[0].get(INSTRUCTION) or ""
        passing_direct = [r for r in samples if r.get(VERDICT) == PASSED]
        evolved = evolved_by_instruction.get(instruction_id, [])
        passing_evolved = [r for r in evolved if r.get(VERDICT) == PASSED]
        candidates = [("evolved", r) for r in seeded_order(passing_evolved, instruction_id, global_seed, "evolved")]
        candidates += [("direct", r) for r in seeded_order(passing_direct, instruction_id, global_seed, "direct")]

        base: dict[str, Any] = dict.fromkeys(VERIFIED_COLUMNS)
        base.update(
            instruction_id=instruction_id,
            instruction=instruction,
            evolved_id=evolved[0][ID] if evolved else None,
            evolved_verdict=evolved[0].get(VERDICT) if evolved else None,
            passing_direct_samples=len(passing_direct),
        )
        if len(instruction) > max_instruction_chars:
            rows.append({**base, "id": row_id(instruction_id, "rejected")})
            reasons.append(f"instruction_too_long: {len(instruction)} > {max_instruction_chars} chars")
            continue
        chosen: tuple[str, dict[str, Any]] | None = None
        problem = "no_passing_response"
        for origin, candidate in candidates:
            found = syntax_problem(candidate.get(CODE))
            if found is None:
                chosen = (origin, candidate)
                break
            problem = found
        if chosen is None:
            rows.append({**base, "id": row_id(instruction_id, "rejected")})
            reasons.append(problem)
            continue
        origin, pick = chosen
        rows.append(
            {
                **base,
                "id": row_id(pick[ID], pick.get(RESPONSE) or ""),
                "parent_id": pick[ID],
                "response": pick.get(RESPONSE),
                "code": pick.get(CODE),
                "tests": pick.get(TESTS),
                "origin": origin,
                "direct_id": pick[PARENT] if origin == "evolved" else pick[ID],
                "evolved_id": pick[ID] if origin == "evolved" else base["evolved_id"],
            }
        )
        reasons.append(None)

    frame = with_status(pl.DataFrame(rows, schema=VERIFIED_COLUMNS), reasons)
    origins = frame.get_column("origin").drop_nulls().value_counts() if frame.height else None
    by_origin = {r["origin"]: r["count"] for r in origins.iter_rows(named=True)} if origins is not None else {}
    stats = {
        **summarize(frame),
        "origin_evolved": by_origin.get("evolved", 0),
        "origin_direct": by_origin.get("direct", 0),
        "evolution_used": evolved_executed is not None,
    }
    return frame, stats
