"""The last two stages as the pipeline calls them: one verified pair per instruction (per
batch), then the dataset over every batch with its card.

Keyword arguments only, passed by name by the Dagster layer (see ``amr_dagster.seeds.stages``).
The export reads only new or changed partitions, one batch at a time (``dataset.incremental``).
"""

from __future__ import annotations

import json
import time
from typing import Any

import polars as pl

from amr_dagster.accounting import Markdown, StageResult, column_values
from amr_dagster.storage.layout import DataLayout
from amr_dagster.dataset.export import ExportConfig, attach_lineage, dataset_card
from amr_dagster.dataset.incremental import ExportState, batch_stamps, shard_names, sum_stages
from amr_dagster.dataset.figures import card_section, inline_markdown, write_figures
from amr_dagster.dataset.selection import select_verified
from amr_dagster.evol.report import batch_report, combine_reports
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.profiles import load_profile
from amr_dagster.outcomes import REASON, STATUS
from amr_dagster.schemas import VERIFIED_PAIR_COLUMNS
from amr_dagster.seeds.decontamination import Decontaminator


def verify_and_trace(executed: pl.DataFrame, evolved: pl.DataFrame | None, seeds: pl.DataFrame, global_seed: int) -> tuple[pl.DataFrame, dict]:
    """Select one pair per instruction and attach its seed's lineage."""
    frame, stats = select_verified(executed, evolved, global_seed=global_seed)
    traced = attach_lineage(frame, executed, seeds)
    return traced.select([c for c in VERIFIED_PAIR_COLUMNS if c not in (STATUS, REASON)] + [STATUS, REASON]), stats


def verified_pairs(
    *, executed_responses: pl.DataFrame, evolved_responses: pl.DataFrame, deduped_seeds: pl.DataFrame, generation: GenerationConfig
) -> StageResult:
    """Per instruction the evolved response if it passed, else a passing direct one, else a rejection."""
    frame, stats = verify_and_trace(executed_responses, evolved_responses, deduped_seeds, generation.global_seed)
    stats["evolution"] = batch_report(executed_responses, evolved_responses, frame)
    evolution = stats["evolution"]
    metrics = {"origin_evolved": stats.get("origin_evolved", 0), "origin_direct": stats.get("origin_direct", 0)}
    for rate in ("direct_pass_rate", "evolved_pass_rate"):
        if evolution.get(rate) is not None:
            metrics[rate] = evolution[rate]
    return StageResult(frame, column_values(executed_responses, "parent_id"), "instruction_id", stats, metrics=metrics)


def export_numbers(entries: list[dict[str, Any]], started: float) -> dict[str, Any]:
    """The export's numbers over every judged batch, from the state's ledger."""
    reasons: dict[str, int] = {}
    for entry in entries:
        for reason, n in entry["rejected_by_reason"].items():
            reasons[reason] = reasons.get(reason, 0) + n
    return {
        "pairs_in": sum(e["pairs_in"] for e in entries),
        "exported": sum(e["exported"] for e in entries),
        "rejected_by_reason": dict(sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0]))),
        "partitions": {e["batch"]: e["pairs_in"] for e in entries},
        "wall_s": round(time.perf_counter() - started, 3),
    }


def export_dataset(
    *, data: DataLayout, config: ExportConfig, decontaminator: Decontaminator, generation: GenerationConfig, run_settings: dict[str, Any]
) -> StageResult:
    """Every batch's pairs, output-deduplicated and decontaminated, written with a card.

    Incremental (``dataset.incremental``): only new or changed batches are read and judged;
    the card and its figures are computed from the per-batch summaries the state keeps.
    ``run_settings``: what the card records about the run (LLM roles, prompt version, benchmarks).
    Check ``pairs_accounted``: exported + rejected = the verified pairs that came in.
    """
    from dataclasses import asdict

    started = time.perf_counter()
    frames, folder = data.frames(), data.dataset_store()
    stamps = batch_stamps(frames)
    arrival = data.arrival_order()
    state, update = data.update_export_state(
        lambda state_dir: ExportState(state_dir, config, decontaminator).update(frames, folder, arrival, stamps)
    )
    entries, summaries = state["batches"], state["summaries"]
    stats = export_numbers(entries, started)
    counts = sum_stages(summaries[b] for b in sorted(summaries))
    evol_by_batch = {b: summaries[b]["evolution"] for b in sorted(summaries) if summaries[b].get("evolution")}
    evolution = combine_reports(list(evol_by_batch.values())) if evol_by_batch else None  # None: AMR-Evol did not run
    settings = {"profile": load_profile(generation.profile).summary(), **run_settings, "generation": asdict(generation), "export": asdict(config)}
    figures = write_figures(folder, counts, evol_by_batch)
    card = dataset_card(stats, counts, settings, evolution, figures=card_section(figures))
    shards = [shard_names(e["batch"]) for e in entries]
    folder.put("DATASET_CARD.md", card.encode("utf-8"))
    folder.put("card.json", json.dumps(
        {"stats": stats, "stages": counts, "settings": settings, "evolution": evolution, "shards": shards}, indent=2, default=str
    ).encode("utf-8"))
    rejected = sum(stats["rejected_by_reason"].values())
    judged = sum(e["judged"] for e in entries)
    accounted = stats["exported"] + rejected == stats["pairs_in"] == judged
    return StageResult(
        None,
        stats={**stats, "update": asdict(update)},
        metrics={
            "exported_pairs": stats["exported"], "verified_pairs_in": stats["pairs_in"], "rejected": rejected,
            "partitions": len(stats["partitions"]), "batches_judged": len(update.judged),
            "pass_rate_per_sample": (evolution or {}).get("pass_rate_per_sample") or 0.0,
            "pass_rate_per_parsed_sample": (evolution or {}).get("pass_rate_per_parsed_sample") or 0.0,
        },
        notes={
            "profile": generation.profile, "data": folder.uri("data"), "judged_batches": update.judged,
            "card": Markdown(card), "rejected_by_reason": stats["rejected_by_reason"],
            "card_path": folder.uri("DATASET_CARD.md"), "figures": Markdown(inline_markdown(figures)),
            "funnel_svg": figures["funnel"].uri, "pass_rates_svg": figures["pass_rates"].uri,
        },
        checks={"pairs_accounted": (accounted, {"exported": stats["exported"], "rejected": rejected, "pairs_in": stats["pairs_in"], "judged": judged})},
    )
