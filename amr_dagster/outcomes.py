"""The accept/reject convention every stage follows ("nothing is lost").

Each stage returns one frame holding every row it produced or judged, with a ``status``
column (``accepted`` or ``rejected``) and a ``reject_reason`` (null when accepted). Downstream
stages read only accepted rows; rejected rows stay in the stage's own output so a user can
see exactly what was dropped and why, and counts always add up.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import polars as pl

ACCEPTED = "accepted"
REJECTED = "rejected"
STATUS = "status"
REASON = "reject_reason"


def with_status(frame: pl.DataFrame, reasons: pl.Series | list[str | None]) -> pl.DataFrame:
    """Attach status and reason columns from a list of reasons (``None`` means accepted)."""
    reason = pl.Series(REASON, list(reasons) if not isinstance(reasons, pl.Series) else reasons, dtype=pl.String)
    status = pl.when(reason.is_null()).then(pl.lit(ACCEPTED)).otherwise(pl.lit(REJECTED))
    return frame.with_columns(reason.alias(REASON)).with_columns(status.alias(STATUS))


def accepted(frame: pl.DataFrame) -> pl.DataFrame:
    """Only the accepted rows (what the next stage consumes)."""
    if frame.is_empty() or STATUS not in frame.columns:
        return frame
    return frame.filter(pl.col(STATUS) == ACCEPTED)


def summarize(frame: pl.DataFrame) -> dict[str, Any]:
    """Counts for asset metadata: rows, accepted, rejected, and rejected per reason."""
    if frame.is_empty() or STATUS not in frame.columns:
        return {"rows": frame.height, "accepted": 0, "rejected": 0, "rejected_by_reason": {}}
    statuses = Counter(frame.get_column(STATUS).to_list())
    reasons = Counter(r for r in frame.get_column(REASON).to_list() if r is not None)
    return {
        "rows": frame.height,
        "accepted": statuses.get(ACCEPTED, 0),
        "rejected": statuses.get(REJECTED, 0),
        "rejected_by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
    }


def reason_prefix(reason: str) -> str:
    """The reason's family (``syntax_error: line 3`` -> ``syntax_error``) for grouping counts."""
    return reason.split(":", 1)[0].strip()


def family_counts(by_reason: dict[str, int]) -> dict[str, int]:
    """Rejection counts per reason family, most frequent first."""
    out: Counter[str] = Counter()
    for reason, n in by_reason.items():
        out[reason_prefix(reason)] += n
    return dict(out.most_common())


def cap_accepted(frame: pl.DataFrame, limit: int, reason: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Split accepted rows into the first ``limit`` (0 = no cap) and the rest, which are marked
    rejected with ``"<reason>: <limit>"`` so capped rows stay visible and counted."""
    rows = accepted(frame)
    if limit <= 0 or rows.height <= limit:
        return rows, rows.head(0)
    rest = rows.slice(limit).with_columns(pl.lit(REJECTED).alias(STATUS), pl.lit(f"{reason}: {limit}").alias(REASON))
    return rows.head(limit), rest
