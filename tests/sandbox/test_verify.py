"""``verify_rows`` / ``verify_jsonl`` / the ``verify`` command, on the real local backend."""

from __future__ import annotations

import argparse
import json

import pytest

from amr_dagster.sandbox.base import Limits
from amr_dagster.sandbox.verify import add_verify_arguments, run_verify, verify_jsonl, verify_rows
from tests.sandbox_backends import make_backend

GOOD = {"id": "good", "code": "def inc(x):\n    return x + 1\n", "tests": "assert inc(1) == 2\nassert inc(2) == 3\n"}
BAD = {"id": "bad", "code": "def inc(x):\n    return x\n", "tests": "assert inc(1) == 2\n"}
SLOW = {"id": "slow", "code": "import time\ntime.sleep(30)\n", "tests": "assert True\n"}
CHEAT = {"id": "cheat", "code": "import os\nos._exit(0)\n", "tests": "assert False\n"}


@pytest.fixture(scope="module")
def local():
    sandbox = make_backend("local", workers=2)
    yield sandbox
    sandbox.close()


def test_verify_rows_keeps_every_row_in_order_with_its_verdict(local):
    rows = [GOOD, {"id": "no-tests", "code": "x = 1"}, BAD, {"id": "odd", "code": 3, "tests": "assert True"}, SLOW, CHEAT,
            {"id": "blank", "code": "x = 1", "tests": "   "}]
    out = verify_rows(rows, local, Limits(wall_s=2.0))
    assert [r["id"] for r in out] == [r["id"] for r in rows]
    assert [r["status"] for r in out] == ["passed", "invalid_row", "failed", "invalid_row", "timeout", "failed", "invalid_row"]
    assert out[0]["tests_run"] == out[0]["tests_passed"] == 2 and out[0]["sandbox"] == "local"
    assert out[1]["detail"] == "invalid_row: missing tests"
    assert out[3]["detail"] == "invalid_row: code is not text"
    assert out[0]["code"] == GOOD["code"]  # the row itself is unchanged
    assert set(out[0]) >= {"status", "tests_run", "tests_passed", "duration_s", "exit_code", "detail", "sandbox"}


def test_verify_rows_can_prefix_its_fields(local):
    [row] = verify_rows([{**GOOD, "status": "accepted"}], local, field_prefix="exec_")
    assert row["status"] == "accepted" and row["exec_status"] == "passed"


def test_verify_jsonl_streams_and_summarizes(local, tmp_path):
    source = tmp_path / "in.jsonl"
    lines = [json.dumps(GOOD), "{not json", json.dumps(BAD), "", json.dumps(CHEAT)] + [json.dumps({**GOOD, "id": f"g{i}"}) for i in range(5)]
    source.write_text("\n".join(lines) + "\n")
    target = tmp_path / "out" / "verified.jsonl"
    summary = verify_jsonl(source, target, sandbox=local, batch_size=3)
    written = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(written) == summary["rows"] == 9
    assert summary["by_status"] == {"failed": 2, "invalid_row": 1, "passed": 6}
    assert summary["passed"] == 6 and summary["sandbox"] == "local"
    bad_line = next(r for r in written if r["status"] == "invalid_row")
    assert bad_line["line"] == 2 and bad_line["raw"] == "{not json" and "not valid JSON" in bad_line["detail"]


def test_verify_command(tmp_path, capsys):
    source = tmp_path / "in.jsonl"
    source.write_text(json.dumps(GOOD) + "\n" + json.dumps(BAD) + "\n")
    target = tmp_path / "out.jsonl"
    args = add_verify_arguments(argparse.ArgumentParser()).parse_args(
        ["--backend", "local", "--workers", "1", "--timeout", "5", str(source), str(target)])
    assert run_verify(args) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["by_status"] == {"failed": 1, "passed": 1}
    assert [json.loads(line)["status"] for line in target.read_text().splitlines()] == ["passed", "failed"]
