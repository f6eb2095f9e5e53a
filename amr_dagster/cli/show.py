"""``amr-dagster show STAGE``: a stage's rows as a readable table, e.g. what it rejected and why.

Rows come from the stage's Parquet file for one batch (the newest registered batch that has the
stage, unless ``--batch`` names one). ``--rejected REASON`` keeps rejected rows whose reason is
REASON or starts with it (``pyright`` matches ``pyright: 2 errors``); ``--rejected`` alone keeps
every rejected row. The columns shown are the ones a reader needs for that stage (ids, status,
reason, then what the row is about: name, instruction, code, verdict ...), cut to one line each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import polars as pl

from amr_dagster.outcomes import ACCEPTED, REASON, REJECTED, STATUS, family_counts, summarize
from amr_dagster.cli.status import registered_batches
from amr_dagster.storage.layout import DataLayout
from amr_dagster.storage.frames import FrameStore
from amr_dagster.cli.text_table import render

#: What a row is about, most telling first; the first few present in a stage are shown.
CONTENT_COLUMNS = (
    "name", "source_path", "line_start", "duplicate_of", "judge_verdict", "concepts", "category", "difficulty",
    "instruction", "sample_index", "sandbox_status", "tests_passed", "tests_run", "origin", "signature",
    "description", "code", "tests", "sandbox_detail", "response", "raw_output", "text",
)
LEADING = ("id", STATUS, REASON)


@dataclass(frozen=True)
class Selection:
    stage: str
    batch: str
    frame: pl.DataFrame  # the rows shown (after filters and limit)
    total: dict  # summarize() of the whole stage output for the batch
    matched: int  # rows matching the filters, before the limit


def pick_batch(store: FrameStore, root: str, stage: str, batch: str | None) -> str:
    """The batch key to show: ``batch`` (a unique prefix is enough), else the newest with output."""
    have = store.partitions(stage)
    if not have:
        raise LookupError(f"stage {stage!r} has no output under {root} (materialize it first)")
    if batch:
        exact = [k for k in have if k == batch] or [k for k in have if k.startswith(batch)]
        if len(exact) != 1:
            raise LookupError(f"batch {batch!r} {'is ambiguous' if exact else 'has no output'} for {stage}; batches with output: {', '.join(have)}")
        return exact[0]
    order = {b.key: i for i, b in enumerate(registered_batches(root))}
    return max(have, key=lambda k: (order.get(k, -1), k))


def select_rows(frame: pl.DataFrame, rejected: str | None = None, accepted_only: bool = False) -> pl.DataFrame:
    """Filter by status/reason: ``rejected=""`` every rejected row, ``"x"`` reasons starting with x."""
    if STATUS not in frame.columns:
        return frame
    if accepted_only:
        return frame.filter(pl.col(STATUS) == ACCEPTED)
    if rejected is None:
        return frame
    out = frame.filter(pl.col(STATUS) == REJECTED)
    if rejected:
        out = out.filter(pl.col(REASON).fill_null("").str.starts_with(rejected))
    return out


def display_columns(frame: pl.DataFrame, wanted: Sequence[str] | None = None, max_content: int = 4) -> list[str]:
    if wanted:
        unknown = [c for c in wanted if c not in frame.columns]
        if unknown:
            raise LookupError(f"no column(s) {unknown}; columns: {', '.join(frame.columns)}")
        return list(wanted)
    content = [c for c in CONTENT_COLUMNS if c in frame.columns][:max_content]
    return [c for c in LEADING if c in frame.columns] + content


def show(
    root: str,
    stage: str,
    *,
    batch: str | None = None,
    rejected: str | None = None,
    accepted_only: bool = False,
    limit: int = 20,
    columns: Sequence[str] | None = None,
) -> Selection:
    store = DataLayout(root).frames()
    key = pick_batch(store, root, stage, batch)
    frame = store.read(stage, key)
    chosen = select_rows(frame, rejected, accepted_only)
    shown = chosen.head(limit) if limit > 0 else chosen
    return Selection(stage, key, shown.select(display_columns(frame, columns)), summarize(frame), chosen.height)


def show_report(selection: Selection, rejected: str | None = None, max_cell: int = 60) -> str:
    """The text ``amr-dagster show`` prints: counts, reasons, then the rows."""
    t = selection.total
    what = "rows" if rejected is None else ("rejected rows" if not rejected else f"rows rejected for {rejected!r}")
    lines = [
        f"{selection.stage}, batch {selection.batch}: {t['rows']} rows, {t['accepted']} accepted, {t['rejected']} rejected",
    ]
    families = family_counts(t["rejected_by_reason"])
    if families:
        lines.append("rejections: " + ", ".join(f"{r} {n}" for r, n in families.items()))
    lines.append(f"showing {selection.frame.height} of {selection.matched} {what}")
    if selection.frame.height:
        lines += ["", render(selection.frame.to_dicts(), selection.frame.columns, max_cell=max_cell,
                             right={c for c, d in selection.frame.schema.items() if d.is_numeric()})]
    return "\n".join(lines)
