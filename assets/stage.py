"""What every stage asset does after calling the core: counts, checks, metadata.

Each partitioned stage yields its frame plus two in-asset checks:
- ``rows_accounted``: accepted + rejected = rows, every rejected row has a reason, and the rows
  cover every input row (accepted rows of the upstream stage, or input files for mining);
- ``schema``: the frame has the stage's declared columns and types.
"""


import time
from typing import Any, Iterator, Mapping

import dagster as dg
import polars as pl

from amr_dagster.outcomes import ACCEPTED, REASON, REJECTED, STATUS, summarize


def stage_checks(asset_name: str) -> list[dg.AssetCheckSpec]:
    return [
        dg.AssetCheckSpec("rows_accounted", asset=asset_name, description="accepted + rejected = input; every rejection has a reason"),
        dg.AssetCheckSpec("schema", asset=asset_name, description="columns and types of the stage's frame"),
    ]


def _json(value: Any) -> dg.MetadataValue:
    return dg.MetadataValue.json(value)


def accounting(frame: pl.DataFrame, expected_inputs: set[str] | int | None, input_column: str = "parent_id") -> tuple[bool, dict[str, Any]]:
    """Do the counts add up? ``expected_inputs``: the input ids that must each appear, or a count."""
    counts = summarize(frame)
    problems: list[str] = []
    if counts["accepted"] + counts["rejected"] != counts["rows"]:
        problems.append(f"{counts['rows'] - counts['accepted'] - counts['rejected']} rows with neither status")
    if frame.height and STATUS in frame.columns:
        missing_reason = frame.filter((pl.col(STATUS) == REJECTED) & pl.col(REASON).is_null()).height
        if missing_reason:
            problems.append(f"{missing_reason} rejected rows without a reason")
    missing_inputs: list[str] = []
    if isinstance(expected_inputs, set):
        seen = set(frame.get_column(input_column).to_list()) if frame.height else set()
        missing_inputs = sorted(expected_inputs - seen)
        if missing_inputs:
            problems.append(f"{len(missing_inputs)} input rows vanished (e.g. {missing_inputs[:3]})")
    elif isinstance(expected_inputs, int) and expected_inputs != counts["rows"]:
        problems.append(f"{expected_inputs} inputs but {counts['rows']} output rows")
    meta = {
        "input_rows": len(expected_inputs) if isinstance(expected_inputs, set) else expected_inputs,
        "rows": counts["rows"],
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "problems": problems,
    }
    return not problems, meta


def schema_problems(frame: pl.DataFrame, schema: Mapping[str, pl.DataType | type]) -> list[str]:
    problems = []
    for name, dtype in schema.items():
        if name not in frame.columns:
            problems.append(f"missing column {name}")
        elif frame.schema[name] != dtype and not (frame.height == 0 and frame.schema[name] == pl.Null):
            problems.append(f"column {name}: {frame.schema[name]} != {dtype}")
    return problems


def emit(
    context: dg.AssetExecutionContext,
    frame: pl.DataFrame,
    *,
    expected_inputs: set[str] | int | None,
    schema: Mapping[str, Any],
    started: float,
    stats: Mapping[str, Any] | None = None,
    extra: Mapping[str, Any] | None = None,
    input_column: str = "parent_id",
) -> Iterator[dg.Output | dg.AssetCheckResult]:
    """Yield the frame with stage metadata, then the two checks."""
    counts = summarize(frame)
    ok, acct = accounting(frame, expected_inputs, input_column)
    problems = schema_problems(frame, schema)
    input_rows = acct["input_rows"]
    metadata: dict[str, Any] = {
        "dagster/row_count": counts["rows"],
        "input_rows": input_rows if input_rows is not None else counts["rows"],
        "accepted": counts["accepted"],
        "rejected": counts["rejected"],
        "yield": round(counts["accepted"] / counts["rows"], 4) if counts["rows"] else 0.0,
        "rejected_by_reason": _json(counts["rejected_by_reason"]),
        "wall_s": round(time.perf_counter() - started, 3),
    }
    if stats:
        metadata["stats"] = _json(_jsonable(stats))
    for key, value in (extra or {}).items():
        metadata[key] = _json(_jsonable(value)) if isinstance(value, (dict, list)) else value
    yield dg.Output(frame, metadata=metadata)
    yield dg.AssetCheckResult(check_name="rows_accounted", passed=ok, metadata={k: _json(v) if isinstance(v, list) else v for k, v in acct.items() if v is not None})
    yield dg.AssetCheckResult(check_name="schema", passed=not problems, metadata={"problems": _json(problems)})
    if not ok:
        context.log.error(f"row accounting failed: {acct['problems']}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return round(value, 6)
    if value is None or isinstance(value, (str, int, bool)):
        return value
    return str(value)


def accepted_ids(frame: pl.DataFrame) -> set[str]:
    if frame.is_empty():
        return set()
    return set(frame.filter(pl.col(STATUS) == ACCEPTED).get_column("id").to_list())


def require_engine(resource: Any, role: str = "generator") -> Any:
    """The role's cached engine, or a clear failure when the role has no backend."""
    engine = resource.engine()
    if engine is None:
        raise dg.Failure(f"this stage needs an LLM but the {role}'s backend is 'none' (set AMR_LLM_BACKEND or AMR_{role.upper()}_BACKEND)")
    return engine
