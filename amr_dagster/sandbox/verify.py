"""Verify (code, tests) rows in a sandbox: the one function the pipeline stages and the
``amr-dagster verify`` command share.

``verify_rows`` takes rows with ``code`` and ``tests`` and returns the same rows with the verdict
added; ``verify_jsonl`` streams a JSONL file through it. A row that cannot be run (missing or
non-text ``code``/``tests``, a line that is not a JSON object) gets status ``invalid_row`` and a
detail saying why, never a crash of the batch. ``infra_error`` verdicts are retried (bounded)
before they are reported, and are never a failing sample.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Iterator

from amr_dagster.ids import stable_id
from amr_dagster.sandbox import harness
from amr_dagster.sandbox.base import Limits, Sandbox, SandboxResult, Status

INVALID_ROW = "invalid_row"
VERDICT_FIELDS = ("status", "tests_run", "tests_passed", "duration_s", "exit_code", "detail", "sandbox")


class _BadLine(dict):
    """A JSONL line that does not parse: kept (as ``line`` and ``raw``) with its error."""

    def __init__(self, number: int, raw: str, error: str):
        super().__init__(line=number, raw=raw)
        self.error = error


def _row_problem(row: Any, code_key: str, tests_key: str) -> str | None:
    if isinstance(row, _BadLine):
        return f"not valid JSON ({row.error})"
    if not isinstance(row, dict):
        return "not a JSON object"
    for key in (code_key, tests_key):
        if key not in row or row[key] is None:
            return f"missing {key}"
        if not isinstance(row[key], str):
            return f"{key} is not text"
        if not row[key].strip():
            return f"empty {key}"
    return None


def _verdict(result: SandboxResult, backend: str, prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}status": result.status.value,
        f"{prefix}tests_run": result.tests_run,
        f"{prefix}tests_passed": result.tests_passed,
        f"{prefix}duration_s": round(result.duration_s, 4),
        f"{prefix}exit_code": result.exit_code,
        f"{prefix}detail": result.detail,
        f"{prefix}sandbox": backend,
    }


def _invalid(problem: str, backend: str, prefix: str) -> dict[str, Any]:
    return {
        f"{prefix}status": INVALID_ROW,
        f"{prefix}tests_run": 0,
        f"{prefix}tests_passed": 0,
        f"{prefix}duration_s": 0.0,
        f"{prefix}exit_code": None,
        f"{prefix}detail": f"{INVALID_ROW}: {problem}",
        f"{prefix}sandbox": backend,
    }


def verify_rows(
    rows: list[dict],
    sandbox: Sandbox,
    limits: Limits | None = None,
    *,
    attempts: int = 3,
    code_key: str = "code",
    tests_key: str = "tests",
    field_prefix: str = "",
) -> list[dict]:
    """The same rows, in order, each with the verdict fields (``VERDICT_FIELDS``, prefixed).

    ``status`` is a sandbox status (``passed``, ``failed``, ``timeout``, ``oom``,
    ``output_limit``, ``infra_error`` after ``attempts`` tries) or ``invalid_row``.
    """
    limits = limits or Limits()
    backend = getattr(sandbox, "name", type(sandbox).__name__)
    out: list[dict | None] = [None] * len(rows)
    jobs, positions = [], []
    for i, row in enumerate(rows):
        problem = _row_problem(row, code_key, tests_key)
        if problem:
            base = row if isinstance(row, dict) else {"row": row}
            out[i] = {**base, **_invalid(problem, backend, field_prefix)}
            continue
        job_id = str(row.get("id") or stable_id(row[code_key], row[tests_key]))
        jobs.append(harness.build_job(row[code_key], row[tests_key], limits, job_id))
        positions.append(i)
    for i, result in zip(positions, harness.run_with_retries(sandbox, jobs, attempts=attempts)):
        out[i] = {**rows[i], **_verdict(result, backend, field_prefix)}
    return [row for row in out if row is not None]


def _read_jsonl(path: Path) -> Iterator[Any]:
    with path.open("r", encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                yield _BadLine(number, line.rstrip("\n")[:2000], str(exc))


def _batches(items: Iterable[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def verify_jsonl(
    in_path: str | Path,
    out_path: str | Path,
    backend: str = "auto",
    *,
    workers: int | None = None,
    limits: Limits | None = None,
    batch_size: int = 64,
    attempts: int = 3,
    sandbox: Sandbox | None = None,
) -> dict[str, Any]:
    """Stream ``in_path`` through the sandbox into ``out_path``; a summary of the verdicts.

    Opens (and self-tests) the ``backend`` unless a ``sandbox`` is given; raises
    ``SandboxUnavailable`` rather than running code unisolated.
    """
    from amr_dagster.sandbox.auto import open_sandbox

    started = time.monotonic()
    owned = sandbox is None
    sandbox = sandbox or open_sandbox(backend, workers=workers)
    counts: Counter[str] = Counter()
    rows = 0
    try:
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        with out_path.open("w", encoding="utf-8") as out:
            for batch in _batches(_read_jsonl(Path(in_path)), batch_size):
                for row in verify_rows(batch, sandbox, limits, attempts=attempts):
                    counts[row["status"]] += 1
                    rows += 1
                    out.write(json.dumps(row, ensure_ascii=False) + "\n")
    finally:
        if owned:
            sandbox.close()
    return {
        "rows": rows,
        "passed": counts.get(Status.PASSED.value, 0),
        "pass_rate": round(counts.get(Status.PASSED.value, 0) / rows, 4) if rows else 0.0,
        "by_status": dict(sorted(counts.items())),
        "sandbox": getattr(sandbox, "name", ""),
        "wall_s": round(time.monotonic() - started, 2),
    }


def add_verify_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The ``verify`` subcommand's arguments (``amr-dagster verify ... IN.jsonl OUT.jsonl``)."""
    parser.add_argument("in_path", metavar="IN.jsonl", help="rows with `code` and `tests`")
    parser.add_argument("out_path", metavar="OUT.jsonl", help="the same rows with the verdict added")
    parser.add_argument("--backend", choices=("auto", "docker", "local"), default="auto",
                        help="sandbox backend (auto: Docker if an engine answers, else bubblewrap)")
    parser.add_argument("--workers", type=int, default=None, help="parallel sandbox workers (default: CPU count)")
    parser.add_argument("--timeout", type=float, default=Limits.wall_s, help="wall-clock seconds per program")
    parser.add_argument("--memory-mb", type=int, default=Limits.memory_bytes // (1024 * 1024), help="memory per program")
    parser.add_argument("--batch-size", type=int, default=64, help="rows per sandbox batch")
    parser.add_argument("--attempts", type=int, default=3, help="tries for infrastructure errors")
    return parser


def run_verify(args: argparse.Namespace) -> int:
    """Run the ``verify`` subcommand; prints a JSON summary. Exit 2 if no sandbox isolates."""
    from amr_dagster.sandbox.base import SandboxUnavailable

    limits = Limits(wall_s=args.timeout, cpu_s=args.timeout, memory_bytes=args.memory_mb * 1024 * 1024)
    try:
        summary = verify_jsonl(args.in_path, args.out_path, args.backend, workers=args.workers,
                               limits=limits, batch_size=args.batch_size, attempts=args.attempts)
    except SandboxUnavailable as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(summary))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m amr_dagster.sandbox.verify`` (the same as ``amr-dagster verify``)."""
    parser = add_verify_arguments(argparse.ArgumentParser(prog="amr-dagster verify", description="Verify (code, tests) rows in a sandbox."))
    return run_verify(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
