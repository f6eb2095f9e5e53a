"""Running parsed responses against their own tests in the sandbox.

Every parsed sample is executed; the verdict (status, tests run/passed, duration) is kept on
the row. A sample is *accepted* only when the harness saw at least one test run and all pass;
anything else is rejected with the sandbox status as its reason (``failed: 1/3 tests passed``,
``timeout``, ``oom``, ...). ``infra_error`` is retried inside ``verify_rows`` and, if it
persists, recorded as such: it is never counted as a failing sample in pass rates.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import polars as pl

from amr_dagster import progress
from amr_dagster.schemas import VERDICT_COLUMNS
from amr_dagster.outcomes import accepted, with_status
from amr_dagster.sandbox.base import Limits, Sandbox, Status


def _reason(verdict: dict[str, Any]) -> str | None:
    status = verdict.get("status")
    if status == Status.PASSED:
        return None
    if status == Status.FAILED:
        return f"failed: {verdict.get('tests_passed', 0)}/{verdict.get('tests_run', 0)} tests passed"
    detail = verdict.get("detail") or ""
    return f"{status}: {detail}" if detail else str(status)


#: Samples handed to the sandbox at once: progress is reported between chunks, and a chunk is
#: large enough to keep a pool of workers busy.
EXECUTION_CHUNK = 32


def execute_responses(
    frame: pl.DataFrame, sandbox: Sandbox, limits: Limits, label: str = "executed_responses"
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Run every accepted (parsed) sample of ``frame`` (columns ``code``, ``tests``); ``frame``
    holds every sample (rejected ones too), so the stats carry both pass rates. Progress is
    reported as task ``label`` counting samples."""
    from amr_dagster.sandbox.verify import verify_rows

    from amr_dagster.evol.report import sample_pass_rates

    started = time.perf_counter()
    todo = accepted(frame)
    if todo.is_empty():
        empty = todo.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in VERDICT_COLUMNS.items()])
        return empty, {"executed": 0, "wall_s": 0.0, **sample_pass_rates(frame.height, [])}
    rows = todo.select("id", "code", "tests").to_dicts()
    verdicts: list[dict[str, Any]] = []
    with progress.task(label, total=len(rows), unit="samples") as task:
        for start in range(0, len(rows), EXECUTION_CHUNK):
            chunk = rows[start : start + EXECUTION_CHUNK]
            verdicts.extend(verify_rows(chunk, sandbox, limits))
            task.advance(len(chunk))
    by_column = {
        "sandbox_status": [v.get("status") for v in verdicts],
        "tests_run": [int(v.get("tests_run") or 0) for v in verdicts],
        "tests_passed": [int(v.get("tests_passed") or 0) for v in verdicts],
        "duration_s": [float(v.get("duration_s") or 0.0) for v in verdicts],
        "sandbox_detail": [v.get("detail") or None for v in verdicts],
        "sandbox_backend": [v.get("sandbox") or getattr(sandbox, "name", "") for v in verdicts],
    }
    out = todo.with_columns([pl.Series(c, by_column[c], dtype=t) for c, t in VERDICT_COLUMNS.items()])
    out = with_status(out.drop("status", "reject_reason"), [_reason(v) for v in verdicts])
    statuses = Counter(by_column["sandbox_status"])
    judged = sum(n for s, n in statuses.items() if s != Status.INFRA_ERROR)
    stats = {
        "executed": len(verdicts),
        "by_status": dict(statuses),
        "pass_rate": round(statuses.get(Status.PASSED.value, 0) / judged, 4) if judged else 0.0,
        **sample_pass_rates(frame.height, by_column["sandbox_status"]),
        "infra_errors": statuses.get(Status.INFRA_ERROR.value, 0),
        "backend": getattr(sandbox, "name", ""),
        "wall_s": round(time.perf_counter() - started, 3),
    }
    return out, stats
