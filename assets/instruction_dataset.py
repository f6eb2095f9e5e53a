"""``instruction_dataset`` (global): every batch's verified pairs, output-deduplicated,
decontaminated again, exported as JSONL + Parquet with a dataset card.

Reads partitions one at a time from the data root (a non-partitioned asset handed every
partition's frame at once is how memory blows up)."""

import json
import time

import dagster as dg

from amr_dagster.export import ExportConfig, build_dataset, dataset_card, write_dataset
from amr_dagster.outcomes import family_counts, summarize
from assets.generation_versions import PROMPTS_VERSION
from resources.benchmarks import BenchmarkSet
from resources.data_root import DataRoot
from resources.generation import GenerationSettings
from resources.llm import LLMResource


class ExportSettings(dg.Config):
    num_perm: int = 256
    threshold: float = 0.7
    shingle_size: int = 5


def stage_counts(data_root: DataRoot, stages: list[str]) -> dict[str, dict]:
    """Rows/accepted/rejected per stage summed over every partition, one partition at a time."""
    store = data_root.frames()
    totals: dict[str, dict] = {}
    for stage in stages:
        agg = {"rows": 0, "accepted": 0, "rejected": 0, "rejected_by_reason": {}}
        for _, frame in store.iter_partitions(stage):
            counts = summarize(frame)
            for key in ("rows", "accepted", "rejected"):
                agg[key] += counts[key]
            for reason, n in counts["rejected_by_reason"].items():
                agg["rejected_by_reason"][reason] = agg["rejected_by_reason"].get(reason, 0) + n
        agg["rejected_by_reason_family"] = family_counts(agg.pop("rejected_by_reason"))
        totals[stage] = agg
    return totals


@dg.asset(
    deps=["verified_pairs"],
    group_name="dataset",
    kinds={"python", "parquet", "json"},
    code_version="instruction_dataset.v1",
    description="All verified pairs across batches after output near-dedup (instructions, responses, code) "
    "and decontamination, as dataset.jsonl / dataset.parquet with lineage columns and a dataset card.",
)
def instruction_dataset(
    context: dg.AssetExecutionContext,
    config: ExportSettings,
    data_root: DataRoot,
    benchmarks: BenchmarkSet,
    generation: GenerationSettings,
    generator: LLMResource,
    teacher: LLMResource,
) -> dg.MaterializeResult:
    from assets import PARTITIONED_ASSETS

    started = time.perf_counter()
    store = data_root.frames()
    export = ExportConfig(num_perm=config.num_perm, threshold=config.threshold, shingle_size=config.shingle_size)
    dataset, stats = build_dataset(store.iter_partitions("verified_pairs"), export, benchmarks.decontaminator(), workdir=data_root.root())
    folder = data_root.root() / "instruction_dataset"
    paths = write_dataset(dataset, folder)
    stages = [key.to_user_string() for a in PARTITIONED_ASSETS for key in a.keys]
    counts = stage_counts(data_root, stages)
    settings = {
        "generator": _engine_summary(generator),
        "teacher": _engine_summary(teacher),
        "prompts_version": PROMPTS_VERSION,
        "generation": generation.model_dump(),
        "export": export.__dict__,
        "benchmarks": ["HumanEval", *benchmarks.extra_files],
    }
    evolution = _evolution_summary(store)
    card = dataset_card(stats, counts, settings, evolution)
    (folder / "DATASET_CARD.md").write_text(card)
    (folder / "card.json").write_text(json.dumps({"stats": stats, "stages": counts, "settings": settings, "evolution": evolution}, indent=2, default=str))
    return dg.MaterializeResult(
        metadata={
            "exported_pairs": stats["exported"],
            "verified_pairs_in": stats["pairs_in"],
            "rejected_by_reason": dg.MetadataValue.json(stats["rejected_by_reason"]),
            "partitions": len(stats["partitions"]),
            "jsonl": dg.MetadataValue.path(str(paths["jsonl"])),
            "parquet": dg.MetadataValue.path(str(paths["parquet"])),
            "card": dg.MetadataValue.md(card),
            "wall_s": round(time.perf_counter() - started, 3),
        }
    )


def _evolution_summary(store) -> dict | None:
    """Direct vs evolved numbers over all batches (one partition at a time), when AMR-Evol ran."""
    from amr_dagster.evol.report import combine_reports, evol_report
    from assets.evolved_responses import report_views

    reports = []
    for key in store.partitions("evolved_responses"):
        if not (store.exists("executed_responses", key) and store.exists("verified_pairs", key)):
            continue
        parsed, executed_evolved = report_views(store.read("evolved_responses", key))
        reports.append(
            evol_report(store.read("executed_responses", key), parsed, executed_evolved, store.read("verified_pairs", key))
        )
    return combine_reports(reports) if reports else None


def _engine_summary(resource: LLMResource) -> dict:
    return {"backend": resource.backend, "model": resource.model or "embedded Gemma 3 270M (Q4_K_M)", "base_url": resource.base_url or None}
