"""The dataset card's pictures, as self-contained SVG (no plotting dependency, text stays text).

- ``funnel.svg``: one bar per stage, as long as the stage's rows (all batches): the accepted part,
  then the rejected part split by reason family (the most frequent families get their own
  colour, shared across stages, the rest is "other"), with accepted/rows and the yield beside it.
- ``pass_rates.svg``: per seed batch, the direct pass rate (instructions with a passing direct
  sample) next to the evolved pass rate (evolved responses passing in the sandbox), the
  definitions of ``evol.report``.

``write_figures`` writes both beside ``DATASET_CARD.md``; ``card_section`` is the Markdown that
links them; ``inline_markdown`` embeds them as data URIs for the Dagster UI, which renders
Markdown metadata but cannot read files on the run worker's disk.
"""

from __future__ import annotations

import base64
import os
from collections import Counter
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Any, Mapping

from amr_dagster.storage.objectstore import LocalObjectStore, ObjectStore

ACCEPTED_COLOUR = "#3a9d5d"
OTHER_COLOUR = "#b8b8b8"
REASON_COLOURS = ("#d1495b", "#edae49", "#8f5bd6", "#00798c", "#f08a4b", "#6b7a8f")
DIRECT_COLOUR, EVOLVED_COLOUR = "#4f7cac", "#e07a2f"
FONT = 'font-family="DejaVu Sans, Arial, sans-serif"'

FUNNEL_FILE, PASS_RATES_FILE = "funnel.svg", "pass_rates.svg"


def _svg(width: int, height: int, body: list[str], title: str) -> str:
    return "\n".join([
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" {FONT} font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="12" y="22" font-size="15" font-weight="bold">{escape(title)}</text>',
        *body,
        "</svg>",
        "",
    ])


def reason_colours(stage_counts: Mapping[str, Mapping[str, Any]]) -> dict[str, str]:
    """Colour per reason family: the most frequent families overall, in order."""
    totals: Counter[str] = Counter()
    for counts in stage_counts.values():
        totals.update(counts.get("rejected_by_reason_family", {}))
    return {family: REASON_COLOURS[i] for i, (family, _) in enumerate(totals.most_common(len(REASON_COLOURS)))}


def funnel_svg(stage_counts: Mapping[str, Mapping[str, Any]]) -> str:
    """Rows per stage split into accepted and rejected-by-reason (``card.json``'s ``stages``)."""
    colours = reason_colours(stage_counts)
    label_w, bar_w, row_h, top = 170, 460, 26, 40
    widest = max([int(c.get("rows", 0)) for c in stage_counts.values()] + [1])
    body: list[str] = []
    y = top
    for stage, counts in stage_counts.items():
        rows, accepted = int(counts.get("rows", 0)), int(counts.get("accepted", 0))
        body.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(stage)}</text>')
        x = float(label_w)
        scale = bar_w / widest
        segments = [("accepted", accepted, ACCEPTED_COLOUR)]
        other = int(counts.get("rejected", 0))
        for family, n in counts.get("rejected_by_reason_family", {}).items():
            if family in colours:
                segments.append((family, int(n), colours[family]))
                other -= int(n)
        if other > 0:
            segments.append(("other", other, OTHER_COLOUR))
        for name, n, colour in segments:
            if n <= 0:
                continue
            w = n * scale
            body.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{row_h - 6}" fill="{colour}"><title>{escape(stage)}: {escape(name)} {n}</title></rect>')
            x += w
        share = f" ({accepted / rows:.0%})" if rows else ""
        body.append(f'<text x="{x + 6:.1f}" y="{y + 15}">{accepted}/{rows}{share}</text>')
        y += row_h
    legend = [("accepted", ACCEPTED_COLOUR), *colours.items(), ("other rejections", OTHER_COLOUR)]
    y += 8
    x = 12
    for name, colour in legend:
        body.append(f'<rect x="{x}" y="{y}" width="12" height="12" fill="{colour}"/>')
        body.append(f'<text x="{x + 16}" y="{y + 11}">{escape(name)}</text>')
        x += 28 + 7 * len(name)
    width = max(label_w + bar_w + 110, x + 12)
    return _svg(width, y + 28, body, "Funnel: rows per stage, accepted and rejected by reason (all batches)")


def pass_rates_svg(per_batch: Mapping[str, Mapping[str, Any]]) -> str:
    """Direct vs evolved pass rate per batch (``evol.report.evol_report`` of each batch)."""
    label_w, bar_w, bar_h, top = 230, 360, 14, 40
    body: list[str] = []
    y = top
    if not per_batch:
        body.append(f'<text x="12" y="{y + 14}">AMR-Evol has not run on any batch yet.</text>')
        y += 24
    for batch, report in per_batch.items():
        body.append(f'<text x="{label_w - 8}" y="{y + bar_h + 3}" text-anchor="end">{escape(batch)}</text>')
        for i, (name, key, colour) in enumerate((("direct", "direct_pass_rate", DIRECT_COLOUR), ("evolved", "evolved_pass_rate", EVOLVED_COLOUR))):
            rate = float(report.get(key) or 0.0)
            by = y + i * (bar_h + 2)
            body.append(f'<rect x="{label_w}" y="{by}" width="{max(rate * bar_w, 1):.1f}" height="{bar_h}" fill="{colour}"><title>{escape(batch)}: {name} {rate:.1%}</title></rect>')
            body.append(f'<text x="{label_w + max(rate * bar_w, 1) + 6:.1f}" y="{by + 11}">{name} {rate:.1%}</text>')
        y += 2 * bar_h + 14
    body.append(f'<line x1="{label_w}" y1="{top - 4}" x2="{label_w}" y2="{y - 8}" stroke="#444"/>')
    body.append(f'<rect x="12" y="{y}" width="12" height="12" fill="{DIRECT_COLOUR}"/><text x="28" y="{y + 11}">direct: instructions with a passing direct sample</text>')
    body.append(f'<rect x="12" y="{y + 18}" width="12" height="12" fill="{EVOLVED_COLOUR}"/><text x="28" y="{y + 29}">evolved: evolved responses passing their tests</text>')
    return _svg(label_w + bar_w + 130, y + 46, body, "Sandbox pass rate per seed batch: direct vs evolved")


@dataclass(frozen=True)
class Figure:
    """One written figure: its file name beside the card, where it was written, its SVG text."""

    name: str
    uri: str
    svg: str


def write_figures(target: Path | ObjectStore, stage_counts: Mapping[str, Mapping[str, Any]], per_batch: Mapping[str, Mapping[str, Any]]) -> dict[str, Figure]:
    """Write both figures into ``target`` (a folder or an object store, like the card's)."""
    store = LocalObjectStore(target) if isinstance(target, (str, os.PathLike)) else target
    figures = {"funnel": (FUNNEL_FILE, funnel_svg(stage_counts)), "pass_rates": (PASS_RATES_FILE, pass_rates_svg(per_batch))}
    written = {}
    for key, (name, svg) in figures.items():
        store.put(name, svg.encode("utf-8"))
        written[key] = Figure(name, store.uri(name), svg)
    return written


def card_section(figures: Mapping[str, Figure]) -> str:
    """Markdown for the card: the figures by relative file name (they sit beside the card)."""
    return "\n".join([
        "## Figures",
        "",
        f"![Funnel: rows per stage, rejections by reason]({figures['funnel'].name})",
        "",
        f"![Pass rate per batch, direct vs evolved]({figures['pass_rates'].name})",
        "",
    ])


def data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode("utf-8")).decode("ascii")


def inline_markdown(figures: Mapping[str, Figure]) -> str:
    """The figures as Markdown images with data URIs (for a Dagster Markdown metadata entry)."""
    return "\n\n".join(f"![{key}]({data_uri(figure.svg)})" for key, figure in figures.items())
