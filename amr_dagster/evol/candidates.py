"""Library candidates: verified functions offered to the module library, one row each.

Two sources: documented, type-checked seed functions (``from_seed_rows``) and top-level
functions harvested from code that passed its tests in the sandbox (``from_verified_code``).
Each row carries its provenance (source, batch, parent row id, how it was verified) and is
accepted or rejected with a reason (no docstring, a test function, a body that does nothing).
"""

from __future__ import annotations

import ast
import textwrap
from typing import Any, Iterable, Iterator, Mapping

import polars as pl

from amr_dagster.evol.functions import FunctionParts, _function_parts, _is_trivial, module_text, parse_functions, standalone_code
from amr_dagster.ids import stable_id
from amr_dagster.outcomes import ACCEPTED, REASON, REJECTED, STATUS
from amr_dagster.schemas import CANDIDATE_SCHEMA

SEED = "seed"
HARVESTED = "harvested"
SEED_VERIFIED = "seed: documented + type-checked"
SANDBOX_VERIFIED = "sandbox: tests passed"


def module_id_for(code: str) -> str:
    """A module's id: its code alone, so the same function from two parents is one module."""
    return stable_id("module", "\n".join(line.rstrip() for line in code.strip().splitlines()))


def _candidate(
    parts: FunctionParts | None,
    *,
    code: str,
    source: str,
    batch: str,
    parent_id: str | None,
    verified_how: str,
    reason: str | None,
) -> dict[str, Any]:
    name = parts.name if parts else ""
    return {
        "module_id": module_id_for(code) if code else stable_id("module", parent_id, reason),
        "name": name,
        "signature": parts.signature if parts else "",
        "description": parts.description if parts else "",
        "code": code,
        "embed_text": module_text(name, parts.signature, parts.description, parts.body) if parts else "",
        "source": source,
        "batch": batch,
        "parent_id": parent_id,
        "verified": reason is None,
        "verified_how": verified_how,
        REASON: reason,
        STATUS: ACCEPTED if reason is None else REJECTED,
    }


def candidates_frame(rows: Iterable[Mapping[str, Any]]) -> pl.DataFrame:
    """Candidate rows as a frame with the fixed candidate schema."""
    return pl.DataFrame(list(rows), schema=CANDIDATE_SCHEMA)


def _iter_rows(rows: pl.DataFrame | Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    return rows.iter_rows(named=True) if isinstance(rows, pl.DataFrame) else iter(rows)


def from_seed_rows(
    rows: pl.DataFrame | Iterable[Mapping[str, Any]],
    *,
    code_key: str = "code",
    id_key: str = "id",
    batch_key: str = "batch",
    imports_key: str = "imports",
    batch: str | None = None,
) -> pl.DataFrame:
    """Candidates from accepted seed functions (documented and type-checked upstream).

    Each row's ``code_key`` holds one function definition (the keys default to the columns of
    ``amr_dagster.seeds.mining``'s seed rows); ``id_key`` becomes the parent id, ``batch`` (or the
    row's ``batch_key``) the origin batch, and the import statements under ``imports_key`` (if
    any) are put above the stored code so it runs on its own. Rows whose code does not parse,
    holds no function or has no docstring come back rejected with the reason.
    """
    out = []
    for row in _iter_rows(rows):
        code = str(row.get(code_key) or "")
        row_batch = batch if batch is not None else str(row.get(batch_key) or "")
        common: dict[str, Any] = dict(source=SEED, batch=row_batch, parent_id=row.get(id_key), verified_how=SEED_VERIFIED)
        try:
            functions = parse_functions(code)
        except SyntaxError as error:
            out.append(_candidate(None, code=code, reason=f"syntax_error: line {error.lineno}", **common))
            continue
        if not functions:
            out.append(_candidate(None, code=code, reason="no_function", **common))
            continue
        parts = functions[0]
        imports = [str(i) for i in (row.get(imports_key) or [])]
        full_code = "\n".join(imports + ([""] if imports else []) + [parts.code])
        reason = None if parts.description else "no_docstring"
        out.append(_candidate(parts, code=full_code, reason=reason, **common))
    return candidates_frame(out)


def from_verified_code(
    code: str,
    *,
    parent_id: str | None,
    batch: str,
    verified_how: str = SANDBOX_VERIFIED,
) -> pl.DataFrame:
    """Candidates harvested from code that passed its tests: every top-level function.

    A function's stored code gets what it uses from its module (``standalone_code``), so it runs
    on its own. Test functions (``test*``) and bodies that do nothing are rejected with a
    reason; unparsable code gives one rejected row.
    """
    common: dict[str, Any] = dict(source=HARVESTED, batch=batch, parent_id=parent_id, verified_how=verified_how)
    try:
        tree = ast.parse(textwrap.dedent(code))
    except SyntaxError as error:
        return candidates_frame([_candidate(None, code="", reason=f"syntax_error: line {error.lineno}", **common)])
    lines = textwrap.dedent(code).splitlines()
    out = []
    for node in tree.body:
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        parts = _function_parts(node, lines)
        full_code = standalone_code(tree, node, lines)
        reason = None
        if parts.name.startswith("test"):
            reason = "test_function"
        elif _is_trivial(parts.body):
            reason = "trivial_body"
        out.append(_candidate(parts, code=full_code, reason=reason, **common))
    return candidates_frame(out)
