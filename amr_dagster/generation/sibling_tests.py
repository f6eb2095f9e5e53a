"""Sibling tests: a sample's code checked against the tests the instruction's samples wrote.

The n samples of one instruction each write code and tests. With a small model the two fail
independently: one sample's code is right but its tests assert a wrong expected value, or hold a
single assertion; another's tests are sound but its code is wrong. SelfCodeAlign keeps a sample
only when its code passes its *own* tests (two or more assertions here), so such an instruction
yields nothing.

For an instruction none of whose samples passed, each code is run against each sample's test
suite (its own included when it was only rejected for too few assertions), and the suites it
passes are pooled into one suite (in sample order, skipping a suite that would redefine a name
the pool already defines). A pool is kept when it holds at least ``min_assertions`` distinct
assertions that can fail and it passes when run as one suite: the same bar as a sample's own
tests (``weak_tests``). The code must have parsed and been rejected for nothing but its tests;
every suite was written for this instruction, parses, and calls the code.

One row per instruction: the code that passes the most suites (the samples agree on it, as in
CodeT's dual agreement), then the most pooled assertions, then the lowest sample index. The row
is the code's sample with the pooled tests; ``code_from`` names that sample and ``tests_from``
the samples whose suites were pooled. Samples' own rows and verdicts are unchanged.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from amr_dagster.generation.weak_tests import TOO_FEW, count_assertions, defined_names, weak_tests_reason
from amr_dagster.ids import row_id
from amr_dagster.outcomes import ACCEPTED, REASON, STATUS
from amr_dagster.sandbox.base import Limits, Sandbox, Status
from amr_dagster.sandbox.verify import verify_rows
from amr_dagster.schemas import ORIGIN_COLUMNS, VERDICT_COLUMNS

#: Parse rejections that blame only the tests: the sample's code may still be right.
TESTS_ONLY_REASONS = (TOO_FEW, "tests_never_call_code", "no_tests", "syntax_error: tests")


def _tree(source: str | None) -> ast.AST | None:
    if not (source or "").strip():
        return None
    try:
        return ast.parse(source)  # type: ignore[arg-type]
    except (SyntaxError, ValueError):
        return None


@dataclass
class _Sample:
    row: dict[str, Any]
    code_tree: ast.AST | None
    tests_tree: ast.AST | None

    @property
    def id(self) -> str:
        return self.row["id"]

    @property
    def reason(self) -> str:
        return self.row.get(REASON) or ""

    def code_donor(self) -> bool:
        """Code that parsed and was rejected for nothing but its tests (or ran and failed them)."""
        return self.code_tree is not None and (not self.reason or self.reason.startswith(TESTS_ONLY_REASONS))

    def tests_donor(self) -> bool:
        """Tests that passed the parser's checks, or failed only for too few assertions."""
        return self.tests_tree is not None and (not self.reason or self.reason.startswith(TOO_FEW))


@dataclass
class _Pool:
    """The suites one code passed, pooled."""

    code: _Sample
    suites: list[_Sample] = field(default_factory=list)
    names: set[str] = field(default_factory=set)

    def add(self, suite: _Sample) -> None:
        names = defined_names(suite.tests_tree)  # type: ignore[arg-type]
        if not names & self.names and suite.row["tests"] not in (s.row["tests"] for s in self.suites):
            self.suites.append(suite)
            self.names |= names

    @property
    def tests(self) -> str:
        return "\n\n".join(s.row["tests"].strip("\n") for s in self.suites) + "\n"

    @property
    def assertions(self) -> int:
        return count_assertions(ast.parse(self.tests)) if self.suites else 0


def unsolved_instructions(samples: pl.DataFrame, executed: pl.DataFrame) -> dict[str, list[_Sample]]:
    """The samples (in sample order) of each instruction none of whose samples passed."""
    solved = set(executed.filter(pl.col(STATUS) == ACCEPTED).get_column("parent_id").to_list()) if executed.height else set()
    groups: dict[str, list[_Sample]] = defaultdict(list)
    for row in samples.sort("parent_id", "sample_index", "id").iter_rows(named=True):
        if row["parent_id"] not in solved:
            groups[row["parent_id"]].append(_Sample(row, _tree(row.get("code")), _tree(row.get("tests"))))
    return groups


def candidate_pairs(groups: dict[str, list[_Sample]], require_call: bool = True) -> list[dict[str, Any]]:
    """Every (code, suite) pair worth running: the suite calls the code and asserts something.
    A sample's own suite is tried only when its sample failed for too few assertions (a full
    own suite has run already)."""
    pairs = []
    for parent, group in groups.items():
        for code in (s for s in group if s.code_donor()):
            for suite in (s for s in group if s.tests_donor()):
                if suite is code and not code.reason.startswith(TOO_FEW):
                    continue
                if weak_tests_reason(code.code_tree, suite.tests_tree, 1, require_call):  # type: ignore[arg-type]
                    continue
                pairs.append({"id": f"{code.id}|{suite.id}", "code": code.row["code"], "tests": suite.row["tests"], "parent_id": parent})
    return pairs


def pools_of(groups: dict[str, list[_Sample]], verdicts: list[dict[str, Any]], min_assertions: int) -> list[_Pool]:
    """Per instruction, the best pool of at least ``min_assertions`` assertions (see the module docstring)."""
    passed = {v["id"] for v in verdicts if v.get("status") == Status.PASSED}
    best = []
    for group in groups.values():
        pools = []
        for code in group:
            pool = _Pool(code)
            for suite in group:
                if f"{code.id}|{suite.id}" in passed:
                    pool.add(suite)
            if pool.suites and pool.assertions >= min_assertions:
                pools.append(pool)
        if pools:
            best.append(min(pools, key=lambda p: (-len(p.suites), -p.assertions, p.code.row["sample_index"], p.code.id)))
    return best


def rescue_with_sibling_tests(
    samples: pl.DataFrame,
    executed: pl.DataFrame,
    sandbox: Sandbox,
    limits: Limits,
    min_assertions: int = 2,
    require_call: bool = True,
) -> tuple[pl.DataFrame, dict[str, Any]]:
    """The rescued rows (``executed``'s columns plus ``ORIGIN_COLUMNS``, all accepted) and counts.

    ``samples``: every sample of the batch (the ``responses`` frame, rejected ones too);
    ``executed``: the parsed samples with their own verdicts.
    """
    groups = unsolved_instructions(samples, executed)
    pairs = candidate_pairs(groups, require_call)
    verdicts = verify_rows(pairs, sandbox, limits) if pairs else []
    pools = pools_of(groups, verdicts, min_assertions)
    # The pooled suite runs as one: it must pass as written down.
    runs = verify_rows(
        [{"id": row_id(p.code.id, p.tests), "code": p.code.row["code"], "tests": p.tests} for p in pools], sandbox, limits
    ) if pools else []
    rows = []
    for pool, run in zip(pools, runs):
        if run.get("status") != Status.PASSED:
            continue
        row = {
            **pool.code.row,
            "id": run["id"],
            "tests": pool.tests,
            "code_from": pool.code.id,
            "tests_from": [s.id for s in pool.suites],
            "sandbox_status": run["status"],
            "tests_run": int(run.get("tests_run") or 0),
            "tests_passed": int(run.get("tests_passed") or 0),
            "duration_s": float(run.get("duration_s") or 0.0),
            "sandbox_detail": run.get("detail") or None,
            "sandbox_backend": run.get("sandbox") or getattr(sandbox, "name", ""),
            STATUS: ACCEPTED,
            REASON: None,
        }
        rows.append(row)
    columns = executed.columns + [c for c in ORIGIN_COLUMNS if c not in executed.columns]
    schema = {**executed.schema, **VERDICT_COLUMNS, **ORIGIN_COLUMNS}
    frame = pl.DataFrame([{c: r.get(c) for c in columns} for r in rows], schema={c: schema[c] for c in columns})
    stats = {
        "instructions_tried": len({p["parent_id"] for p in pairs}),
        "pairs_run": len(pairs),
        "pairs_passed": sum(v.get("status") == Status.PASSED for v in verdicts),
        "pools": len(pools),
        "instructions_rescued": len(rows),
    }
    return frame, stats
