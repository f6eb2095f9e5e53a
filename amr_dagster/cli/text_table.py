"""Plain-text tables for the terminal: one line per row, long cells cut, newlines shown as ``⏎``.

Used by ``amr-dagster status`` and ``show`` (and the run summary) so that rows holding code,
tests or model output stay one readable line each.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence


def cell(value: Any, width: int) -> str:
    """``value`` as one line of at most ``width`` characters (cut with ``…``)."""
    if value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        text = ", ".join(str(v) for v in value)
    else:
        text = str(value)
    text = " ⏎ ".join(part.strip() for part in text.strip().splitlines()) if "\n" in text else text
    text = text.replace("\t", " ")
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def render(
    rows: Iterable[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    max_cell: int = 48,
    right: Iterable[str] = (),
) -> str:
    """A header, a rule and one line per row; numeric columns named in ``right`` right-aligned."""
    right = set(right)
    cells = [[cell(row.get(c), max_cell) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if c in right else v.ljust(w) for v, w, c in zip(values, widths, columns)]
        return "  ".join(parts).rstrip()

    out = [line(list(columns)), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)
