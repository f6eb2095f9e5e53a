"""What a stage hands back and how its rows are accounted for ("nothing is lost").

Every stage's core function returns a ``StageResult``: its frame, the ids of the input rows
that must each appear in it (or a count), and its numbers. ``accounting`` and
``schema_problems`` are the two checks every partitioned stage runs on that result; the Dagster
layer only reports them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import polars as pl

from amr_dagster.outcomes import ACCEPTED, REASON, REJECTED, STATUS, summarize


class Markdown(str):
    """A note meant to be rendered as Markdown (the dataset card)."""


@dataclass
class StageResult:
    """``frame`` None: a global stage that writes its own files (module library, dataset).

    ``expected_inputs``: the input ids that must each appear in ``frame[input_column]``, or a
    count of input rows, or None (a source stage). ``metrics``: flat numbers a user plots across
    batches; ``notes``: anything else worth showing (paths, nested summaries); ``checks``: extra
    checks of a global stage, name -> (passed, details).
    """

    frame: pl.DataFrame | None
    expected_inputs: set[str] | int | None = None
    input_column: str = "parent_id"
    stats: Mapping[str, Any] = field(default_factory=dict)
    metrics: dict[str, int | float] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    checks: dict[str, tuple[bool, dict[str, Any]]] = field(default_factory=dict)


def accepted_ids(frame: pl.DataFrame) -> set[str]:
    """Ids of the accepted rows (the inputs the next stage must account for)."""
    if frame.is_empty():
        return set()
    return set(frame.filter(pl.col(STATUS) == ACCEPTED).get_column("id").to_list())


def column_values(frame: pl.DataFrame, column: str) -> set[str]:
    return set(frame.get_column(column).to_list()) if frame.height else set()


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
    if isinstance(expected_inputs, set):
        missing_inputs = sorted(expected_inputs - column_values(frame, input_column))
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
    """Columns of ``schema`` missing from ``frame`` or of another type (an empty frame may hold Null)."""
    problems = []
    for name, dtype in schema.items():
        if name not in frame.columns:
            problems.append(f"missing column {name}")
        elif frame.schema[name] != dtype and not (frame.height == 0 and frame.schema[name] == pl.Null):
            problems.append(f"column {name}: {frame.schema[name]} != {dtype}")
    return problems
