"""``amr-dagster status``: what the data root holds, batch by batch.

For every registered seed batch (oldest first): each stage's accepted / rows, its yield and its
most frequent rejection reasons, read from the stage's Parquet file (only the ``status`` and
``reject_reason`` columns); then the exported dataset's size. Plain Python over the data root,
so it answers in a second without loading Dagster or a model.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Sequence

import polars as pl

from amr_dagster.outcomes import REASON, STATUS, family_counts, summarize
from amr_dagster.storage.layout import DataLayout
from amr_dagster.seeds.batches import SeedBatch
from amr_dagster.storage.frames import FrameStore
from amr_dagster.cli.text_table import render


@dataclass
class StageYield:
    stage: str
    rows: int
    accepted: int
    rejected: int
    reasons: dict[str, int] = field(default_factory=dict)  # per reason family, most frequent first

    @property
    def yield_(self) -> float | None:
        return self.accepted / self.rows if self.rows else None


def stage_yield(store: FrameStore, stage: str, key: str) -> StageYield | None:
    """Counts of one stage for one batch; None when it was never materialized."""
    if not store.exists(stage, key):
        return None
    frame = store.read(stage, key)
    counts = summarize(frame.select([c for c in (STATUS, REASON) if c in frame.columns]))
    return StageYield(stage, counts["rows"], counts["accepted"], counts["rejected"], family_counts(counts["rejected_by_reason"]))


def batch_yields(store: FrameStore, stages: Sequence[str], key: str) -> list[StageYield | None]:
    return [stage_yield(store, stage, key) for stage in stages]


def dataset_size(root: str) -> dict[str, object] | None:
    """Rows of the exported dataset and where it is (from ``card.json``); None before the first export."""
    folder = DataLayout(root).dataset_store()
    card = folder.get("card.json")
    if card is None:
        return None
    return {"pairs": json.loads(card)["stats"]["exported"], "jsonl": folder.uri("data"), "card": folder.uri("DATASET_CARD.md")}


def registered_batches(root: str) -> list[SeedBatch]:
    """Every registered batch, oldest first."""
    registry = DataLayout(root).batches()
    batches = [b for b in (registry.get(k) for k in registry.keys()) if b is not None]
    return sorted(batches, key=lambda b: (b.registered_at, b.key))


def status_report(root: str, stages: Sequence[str], batch: str | None = None) -> str:
    """The text ``amr-dagster status`` prints."""
    store = DataLayout(root).frames()
    batches = registered_batches(root)
    if batch:
        batches = [b for b in batches if b.key == batch or b.key.startswith(batch)]
    lines = [f"data root {root}: {len(batches)} seed batch(es)"]
    if not batches:
        lines.append("no seed batch registered yet: `amr-dagster run` or drop a file into the seeds folder")
    for b in batches:
        when = dt.datetime.fromtimestamp(b.registered_at).strftime("%Y-%m-%d %H:%M")
        lines += ["", f"batch {b.key}  (registered {when}, {b.location})"]
        rows = []
        for stage, y in zip(stages, batch_yields(store, stages, b.key)):
            if y is None:
                rows.append({"stage": stage, "rows": None, "accepted": None, "yield": None, "top rejection reasons": "(not materialized)"})
                continue
            reasons = ", ".join(f"{r} {n}" for r, n in list(y.reasons.items())[:3])
            rows.append({
                "stage": stage,
                "rows": y.rows,
                "accepted": y.accepted,
                "yield": f"{y.yield_:.0%}" if y.yield_ is not None else "-",
                "top rejection reasons": reasons or None,
            })
        table = render(rows, ["stage", "rows", "accepted", "yield", "top rejection reasons"], max_cell=70, right={"rows", "accepted", "yield"})
        lines += ["  " + line for line in table.splitlines()]
    size = dataset_size(root)
    lines.append("")
    if size is None:
        lines.append("dataset: not exported yet (materialize instruction_dataset)")
    else:
        lines.append(f"dataset: {size['pairs']} pairs -> {size['jsonl']} (card: {size['card']})")
    return "\n".join(lines)
