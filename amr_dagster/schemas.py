"""The columns each stage's frame must carry (checked by every asset's ``schema`` check).

One place that states the contract between stages; the stage modules build frames that
satisfy it, and downstream stages may rely on it.
"""

from __future__ import annotations

import polars as pl

from amr_dagster.seeds.filters import FILTERED_SEED_COLUMNS
from amr_dagster.seeds.mining import SEED_FUNCTION_COLUMNS

__all__ = ["SEED_FUNCTION_COLUMNS", "FILTERED_SEED_COLUMNS", "DEDUPED_SEED_COLUMNS"]

DEDUPED_SEED_COLUMNS: dict[str, pl.DataType] = {
    **FILTERED_SEED_COLUMNS,
    "duplicate_of": pl.String(),
    "duplicate_jaccard": pl.Float64(),
}
