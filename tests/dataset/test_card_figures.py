"""The dataset card's figures: well-formed SVG whose bars carry the card's numbers, written
beside the card, linked from it, and inlined for the UI."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from amr_dagster.dataset.export import dataset_card
from amr_dagster.dataset.figures import (
    ACCEPTED_COLOUR,
    card_section,
    funnel_svg,
    inline_markdown,
    pass_rates_svg,
    reason_colours,
    write_figures,
)

SVG = "{http://www.w3.org/2000/svg}"
STAGES = {
    "seed_functions": {"rows": 100, "accepted": 60, "rejected": 40, "rejected_by_reason_family": {"no_docstring": 30, "syntax_error": 10}},
    "filtered_seeds": {"rows": 60, "accepted": 30, "rejected": 30, "rejected_by_reason_family": {"pyright": 20, "no_docstring": 10}},
    "verified_pairs": {"rows": 0, "accepted": 0, "rejected": 0, "rejected_by_reason_family": {}},
}
BATCHES = {"a-123": {"direct_pass_rate": 0.25, "evolved_pass_rate": 0.5}, "b-456": {"direct_pass_rate": 0.0, "evolved_pass_rate": 0.1}}


def _bars(svg: str) -> list[tuple[str, float]]:
    root = ET.fromstring(svg)
    return [(r.find(f"{SVG}title").text, float(r.get("width"))) for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]


def test_funnel_bars_are_proportional_to_the_counts():
    bars = dict(_bars(funnel_svg(STAGES)))
    assert bars["seed_functions: accepted 60"] == 2 * bars["filtered_seeds: accepted 30"]
    assert bars["seed_functions: no_docstring 30"] == 3 * bars["seed_functions: syntax_error 10"]
    total = sum(w for t, w in bars.items() if t.startswith("seed_functions:"))
    assert abs(total - 460) < 0.01  # the widest stage fills the bar width
    assert not [t for t in bars if t.startswith("verified_pairs")]  # an empty stage draws no bar
    assert "0/0" in funnel_svg(STAGES) and "60/100 (60%)" in funnel_svg(STAGES)


def test_reason_colours_follow_overall_frequency():
    colours = reason_colours(STAGES)
    assert list(colours) == ["no_docstring", "pyright", "syntax_error"]
    assert ACCEPTED_COLOUR not in colours.values()


def test_pass_rates_direct_vs_evolved_per_batch():
    svg = pass_rates_svg(BATCHES)
    bars = dict(_bars(svg))
    assert bars["a-123: evolved 50.0%"] == 2 * bars["a-123: direct 25.0%"]
    assert "b-456: direct 0.0%" in bars  # a zero rate is still drawn (1 px) and labelled
    assert "AMR-Evol has not run" in pass_rates_svg({})


def test_written_linked_from_the_card_and_inlined(tmp_path):
    paths = write_figures(tmp_path, STAGES, BATCHES)
    for figure in paths.values():
        ET.parse(tmp_path / figure.name)  # well-formed, written beside the card
    stats = {"exported": 1, "pairs_in": 2, "partitions": ["a-123"], "rejected_by_reason": {}}
    card = dataset_card(stats, STAGES, {}, figures=card_section(paths))
    assert "![Funnel: rows per stage, rejections by reason](funnel.svg)" in card
    assert "](pass_rates.svg)" in card
    assert card.index("## Figures") < card.index("## Export filters")
    md = inline_markdown(paths)
    encoded = md.split("data:image/svg+xml;base64,")[1].split(")")[0]
    assert base64.b64decode(encoded) == (tmp_path / "funnel.svg").read_bytes()
