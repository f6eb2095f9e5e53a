"""The last two stages as the pipeline calls them: one verified pair per instruction (per
batch), then the dataset over every batch with its card.

Keyword arguments only, passed by name by the Dagster layer (see ``amr_dagster.seeds.stages``).
The export reads partitions one at a time from the data root: a global asset handed every
partition's frame at once is how memory blows up.
"""

from __future__ import annotations

import json
from typing import Any, Iterator

import polars as pl

from amr_dagster.accounting import Markdown, StageResult, column_values
from amr_dagster.storage.layout import DataLayout
from amr_dagster.dataset.export import ExportConfig, attach_lineage, build_dataset, dataset_card, write_dataset
from amr_dagster.dataset.figures import card_section, inline_markdown, write_figures
from amr_dagster.dataset.selection import select_verified
from amr_dagster.evol.report import batch_report, combine_reports
from amr_dagster.generation.config import GenerationConfig
from amr_dagster.profiles import load_profile
from amr_dagster.outcomes import REASON, STATUS, family_counts, summarize
from amr_dagster.schemas import PARTITIONED_STAGES, VERIFIED_PAIR_COLUMNS
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


class StageCount:
    """Rows/accepted/rejected of one stage, summed partition by partition."""

    def __init__(self) -> None:
        self.totals = {"rows": 0, "accepted": 0, "rejected": 0}
        self.reasons: dict[str, int] = {}

    def add(self, frame: pl.DataFrame) -> None:
        counts = summarize(frame)
        for key in self.totals:
            self.totals[key] += counts[key]
        for reason, n in counts["rejected_by_reason"].items():
            self.reasons[reason] = self.reasons.get(reason, 0) + n

    def result(self) -> dict:
        return {**self.totals, "rejected_by_reason_family": family_counts(self.reasons)}


def stage_counts(data: DataLayout, stages: list[str] | tuple[str, ...], known: dict[str, dict] | None = None) -> dict[str, dict]:
    """Rows/accepted/rejected per stage summed over every partition, one partition at a time
    (``known``: stages already counted elsewhere, not read again)."""
    store = data.frames()
    totals: dict[str, dict] = {}
    for stage in stages:
        if known and stage in known:
            totals[stage] = known[stage]
            continue
        count = StageCount()
        for _, frame in store.iter_partitions(stage):
            count.add(frame)
        totals[stage] = count.result()
    return totals


class VerifiedPairsPass:
    """The one read of every ``verified_pairs`` partition: it feeds the export and, on the way,
    that stage's counts and each batch's AMR-Evol report (which needs the batch's pairs too)."""

    def __init__(self, data: DataLayout) -> None:
        self.store = data.frames()
        self.count = StageCount()
        self.evol_reports: list[dict] = []
        self.evol_by_batch: dict[str, dict] = {}  # the same reports by batch key, for the card's figures

    def __iter__(self) -> Iterator[tuple[str, pl.DataFrame]]:
        for key, pairs in self.store.iter_partitions("verified_pairs"):
            self.count.add(pairs)
            if self.store.exists("evolved_responses", key) and self.store.exists("executed_responses", key):
                samples = self.store.read("responses", key).height if self.store.exists("responses", key) else None
                self.evol_reports.append(
                    batch_report(self.store.read("executed_responses", key), self.store.read("evolved_responses", key), pairs, samples)
                )
                self.evol_by_batch[key] = self.evol_reports[-1]
            yield key, pairs


def export_dataset(
    *, data: DataLayout, config: ExportConfig, decontaminator: Decontaminator, generation: GenerationConfig, run_settings: dict[str, Any]
) -> StageResult:
    """Every batch's pairs, output-deduplicated and decontaminated, written with a card.

    ``run_settings``: what the card records about the run (LLM roles, prompt version, benchmarks).
    Check ``pairs_accounted``: exported + rejected = the verified pairs that came in.
    """
    from dataclasses import asdict

    verified = VerifiedPairsPass(data)
    dataset, stats = build_dataset(iter(verified), config, decontaminator, workdir=data.root)  # S3 root: scratch in /tmp
    folder = data.dataset_store()
    paths = write_dataset(dataset, folder)
    counts = stage_counts(data, PARTITIONED_STAGES, known={"verified_pairs": verified.count.result()})
    settings = {"profile": load_profile(generation.profile).summary(), **run_settings, "generation": asdict(generation), "export": asdict(config)}
    evolution = combine_reports(verified.evol_reports) if verified.evol_reports else None  # None: AMR-Evol did not run
    figures = write_figures(folder, counts, verified.evol_by_batch)
    card = dataset_card(stats, counts, settings, evolution, figures=card_section(figures))
    folder.put("DATASET_CARD.md", card.encode("utf-8"))
    folder.put("card.json", json.dumps({"stats": stats, "stages": counts, "settings": settings, "evolution": evolution}, indent=2, default=str).encode("utf-8"))
    rejected = sum(stats["rejected_by_reason"].values())
    accounted = stats["exported"] + rejected == stats["pairs_in"] == dataset.height
    return StageResult(
        None,
        stats=stats,
        metrics={
            "exported_pairs": stats["exported"], "verified_pairs_in": stats["pairs_in"], "rejected": rejected,
            "partitions": len(stats["partitions"]),
            "pass_rate_per_sample": (evolution or {}).get("pass_rate_per_sample") or 0.0,
            "pass_rate_per_parsed_sample": (evolution or {}).get("pass_rate_per_parsed_sample") or 0.0,
        },
        notes={
            "profile": generation.profile, "jsonl": paths["jsonl"], "parquet": paths["parquet"], "card": Markdown(card), "rejected_by_reason": stats["rejected_by_reason"],
            "card_path": folder.uri("DATASET_CARD.md"), "figures": Markdown(inline_markdown(figures)),
            "funnel_svg": figures["funnel"].uri, "pass_rates_svg": figures["pass_rates"].uri,
        },
        checks={"pairs_accounted": (accounted, {"exported": stats["exported"], "rejected": rejected, "pairs_in": stats["pairs_in"]})},
    )
