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

from amr_dagster.outcomes import accepted, with_status
from amr_dagster.sandbox.base import Limits, Sandbox

VERDICT_COLUMNS: dict[str, pl.DataType] = {
    "sandbox_status": pl.String(),
    "tests_run": pl.Int64(),
    "tests_passed": pl.Int64(),
    "duration_s": pl.Float64(),
    "sandbox_detail": pl.String(),
    "sandbox_backend": pl.String(),
}


def _reason(verdict: dict[str, Any]) -> str | None:
    status = verdict.get("status")
    if status == "passed":
        return None
    if status == "failed":
        return f"failed: {verdict.get('tests_passed', 0)}/{verdict.get('tests_run', 0)} tests passed"
    detail = verdict.get("detail") or ""
    return f"{status}: {detail}" if detail else str(status)


def execute_responses(frame: pl.DataFrame, sandbox: Sandbox, limits: Limits) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Run every accepted (parsed) sample of ``frame`` (columns ``code``, ``tests``); ``frame``
    holds every sample (rejected ones too), so the stats carry both pass rates."""
    from amr_dagster.sandbox.verify import verify_rows

    from amr_dagster.evol.report import sample_pass_rates

    started = time.perf_counter()
    todo = accepted(frame)
    if todo.is_empty():
        empty = todo.with_columns([pl.lit(None, dtype=t).alias(c) for c, t in VERDICT_COLUMNS.items()])
        return empty, {"executed": 0, "wall_s": 0.0, **sample_pass_rates(frame.height, [])}
    verdicts = verify_rows(todo.select("id", "code", "tests").to_dicts(), sandbox, limits)
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
    judged = sum(n for s, n in statuses.items() if s != "infra_error")
    stats = {
        "executed": len(verdicts),
        "by_status": dict(statuses),
        "pass_rate": round(statuses.get("passed", 0) / judged, 4) if judged else 0.0,
        **sample_pass_rates(frame.height, by_column["sandbox_status"]),
        "infra_errors": statuses.get("infra_error", 0),
        "backend": getattr(sandbox, "name", ""),
        "wall_s": round(time.perf_counter() - started, 3),
    }
    return out, stats
