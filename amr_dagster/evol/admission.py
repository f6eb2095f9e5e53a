"""Which seed functions may enter the module library (``EvolConfig.library_seeds``).

Modules harvested from responses were run against their tests in the sandbox before they are
offered. Seed functions were only documented, type-checked and judged: nobody ran them. The
library should hold only code that was run, so seed candidates are judged by one of:

- ``executed`` (default): each seed module's standalone code (its imports, the function) runs in
  the sandbox under a test that the function was defined and is callable. This proves the
  module runs on its own (no missing import, no error at definition time), not that it is
  correct: seeds have no tests of their own. A failure is ``seed_failed_to_run: <status>``.
- ``exclude``: no seed enters (``seed_not_executed``); the library grows only from code that
  passed its own tests.
- ``unverified``: every documented, type-checked seed enters unrun (the behaviour before this
  setting existed).

Only the accepted seed rows are judged; harvested rows and earlier rejections pass through.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from amr_dagster.outcomes import ACCEPTED, REASON, REJECTED, STATUS
from amr_dagster.sandbox.base import Limits, Sandbox

SEED_ADMISSION = ("executed", "exclude", "unverified")
SEED_RAN = "seed: documented + type-checked, ran in the sandbox"


def _definition_test(name: str) -> str:
    return f"def test_module_defines_{name}():\n    assert callable({name})\n"


def admit_seeds(candidates: pl.DataFrame, mode: str, sandbox: Sandbox | None = None, limits: Limits = Limits()) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Judge the accepted seed candidates by ``mode``; returns the frame and counts."""
    if mode not in SEED_ADMISSION:
        raise ValueError(f"unknown library_seeds {mode!r}; choose one of {', '.join(SEED_ADMISSION)}")
    if candidates.is_empty() or mode == "unverified":
        return candidates, {"library_seeds": mode}
    is_seed = (pl.col("source") == "seed") & (pl.col(STATUS) == ACCEPTED)
    seeds = candidates.with_row_index("_row").filter(is_seed)
    reasons: dict[int, str | None] = {}
    if mode == "exclude":
        reasons = {i: "seed_not_executed" for i in seeds.get_column("_row").to_list()}
    elif seeds.height:
        if sandbox is None:
            raise ValueError("library_seeds='executed' needs a sandbox")
        from amr_dagster.sandbox.harness import build_job, run_with_retries

        jobs = [
            build_job(row["code"], _definition_test(row["name"]), limits, row["module_id"])
            for row in seeds.iter_rows(named=True)
        ]
        for row, result in zip(seeds.iter_rows(named=True), run_with_retries(sandbox, jobs)):
            ok = result.passed
            reasons[row["_row"]] = None if ok else f"seed_failed_to_run: {result.status.value}"
    rows = candidates.to_dicts()
    for i, reason in reasons.items():
        rows[i][REASON] = reason
        rows[i][STATUS] = ACCEPTED if reason is None else REJECTED
        rows[i]["verified"] = reason is None
        if mode == "executed" and reason is None:
            rows[i]["verified_how"] = SEED_RAN
    out = pl.DataFrame(rows, schema=candidates.schema)
    judged = [r for r in reasons.values()]
    return out, {"library_seeds": mode, "seeds_judged": len(judged), "seeds_admitted": judged.count(None)}
