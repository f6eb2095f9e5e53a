"""Responses executed in the real local sandbox (bubblewrap): verdicts and reasons per sample."""

import polars as pl
import pytest

from amr_dagster.generation.execution import execute_responses
from amr_dagster.outcomes import with_status
from amr_dagster.sandbox.base import Limits


def test_execute_responses_keeps_every_sample_with_its_verdict(local_sandbox):
    rows = pl.DataFrame(
        {
            "id": ["pass", "fail", "notests", "parse_rejected"],
            "code": ["def add(a, b):\n    return a + b\n", "def add(a, b):\n    return a - b\n", "def add(a, b):\n    return a + b\n", None],
            "tests": ["assert add(1, 2) == 3\nassert add(0, 0) == 0\n", "assert add(1, 2) == 3\n", "x = 1\n", None],
        }
    )
    frame = with_status(rows, [None, None, None, "no_code_block"])
    out, stats = execute_responses(frame, local_sandbox, Limits(wall_s=10))
    by_id = {r["id"]: r for r in out.iter_rows(named=True)}
    assert set(by_id) == {"pass", "fail", "notests"}  # only parsed samples are executed
    assert by_id["pass"]["status"] == "accepted" and by_id["pass"]["tests_run"] == 2 == by_id["pass"]["tests_passed"]
    assert by_id["fail"]["status"] == "rejected" and by_id["fail"]["reject_reason"] == "failed: 0/1 tests passed"
    assert by_id["notests"]["status"] == "rejected"  # no test ran: never a pass
    assert by_id["pass"]["sandbox_backend"] == "local"
    assert stats["executed"] == 3 and stats["pass_rate"] == pytest.approx(1 / 3, abs=1e-3)
